"""Seam correction: re-anchor infilled runs of a signal to the original samples around them."""
from __future__ import annotations

import numpy as np

__all__ = ["seam_correct"]


def seam_correct(signal, mask):
    """Re-anchor each masked run of each channel to its unmasked neighbours (a DC/linear change only).

    The rule of the official zuna 1.1.6 v4 reconstructor, applied after stitching: a run with a
    finite unmasked sample on both sides gets a linear ramp so that both ends meet their
    neighbours; a run with one such neighbour (it touches an edge, or NaN = no data) gets a
    constant shift to it; a run with none (e.g. a whole bad channel) is left as it is.

    Parameters
    ----------
    signal : ndarray, shape (n_channels, n_times)
        Original samples on unmasked cells, the infill on masked ones; NaN where there is no data.
    mask : ndarray of bool, same shape
        True on infilled cells.

    Returns
    -------
    corrected : ndarray of float64
        A new array.

    Examples
    --------
    >>> x = np.array([[0.0, 0.0, 5.0, 5.0, 1.0]])
    >>> seam_correct(x, np.array([[False, False, True, True, False]]))
    array([[0., 0., 0., 1., 1.]])
    """
    out = np.array(signal, dtype=np.float64, copy=True)
    n_times = out.shape[1]
    for channel in range(out.shape[0]):
        hidden = np.asarray(mask[channel], bool)
        if not hidden.any() or hidden.all():
            continue
        edges = np.diff(np.r_[0, hidden.astype(np.int8), 0])
        for start, stop in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)):
            run = out[channel, start:stop]
            left = out[channel, start - 1] if start > 0 else np.nan
            right = out[channel, stop] if stop < n_times else np.nan
            has_left, has_right = np.isfinite(left), np.isfinite(right)
            if has_left and has_right:
                d_left, d_right = left - run[0], right - run[-1]
                ramp = np.linspace(0.0, 1.0, stop - start) if stop - start > 1 else np.array([0.5])
                out[channel, start:stop] = run + d_left + (d_right - d_left) * ramp
            elif has_left:
                out[channel, start:stop] = run + (left - run[0])
            elif has_right:
                out[channel, start:stop] = run + (right - run[-1])
    return out
