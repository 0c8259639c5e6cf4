"""Stitching epochs back into one recording, and seam correction of the infilled runs.

The official v4 reconstructor stitches every epoch's hybrid (original on kept cells, model
output on hidden ones) into the whole recording, then re-anchors each infilled run to the
original samples around it (:func:`seam_correct`). :func:`stitched_hybrid` does the same at
the model's rate; :func:`joined_epochs` says which epochs a run ties together.
"""
from __future__ import annotations

import numpy as np

__all__ = ["seam_correct", "stitched_hybrid", "joined_epochs"]


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


def _stitched_mask(pre, layout):
    """(channel, n_times) hidden cells of the whole preprocessed recording, and each epoch's first sample."""
    mask = np.zeros((len(layout.ch_names), pre.n_times), bool)
    starts = np.rint(np.asarray(pre.epoch_start) * pre.sfreq).astype(int)
    for index, start in enumerate(starts):
        block = layout.sample_mask(pre, index)
        mask[:, start:start + block.shape[1]] = block
    return mask, starts


def joined_epochs(pre, layout, chosen):
    """``chosen`` plus the epochs that a seam-corrected hidden run joins to them.

    A run is seam-corrected when an original sample borders it; its correction depends on the
    reconstruction of every epoch it spans. Runs with no original neighbour (a whole channel)
    are left as they are and join nothing.
    """
    if len(chosen) == pre.n_epochs:
        return list(chosen)
    mask, starts = _stitched_mask(pre, layout)
    epoch_of = np.full(pre.n_times, -1)
    for index, start in enumerate(starts):
        epoch_of[start:start + pre.n_samples(index)] = index
    covered = epoch_of >= 0
    groups = []
    for hidden in mask:
        edges = np.diff(np.r_[0, hidden.astype(np.int8), 0])
        for start, stop in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)):
            bordered = (start > 0 and covered[start - 1]) or (stop < len(hidden) and covered[stop])
            spanned = set(np.unique(epoch_of[start:stop]).tolist()) - {-1}
            if bordered and len(spanned) > 1:
                groups.append(spanned)
    needed, changed = set(chosen), True
    while changed:
        changed = False
        for group in groups:
            if group & needed and not group <= needed:
                needed |= group
                changed = True
    return sorted(needed)


def stitched_hybrid(pre, layout, volts, sample):
    """The whole recording's hybrid at the model's rate, seam-corrected as one signal.

    Original (``pre.volts``) on kept cells, the reconstruction ``volts[epoch][sample]`` on
    hidden ones; hidden cells of epochs not in ``volts`` and samples no epoch covers are NaN.
    """
    mask, starts = _stitched_mask(pre, layout)
    hybrid = np.full(mask.shape, np.nan)
    n_rows = len(layout.ch_names)
    for index, start in enumerate(starts):
        width = pre.n_samples(index)
        filled = volts[index][sample] if index in volts else np.nan
        hybrid[:, start:start + width] = np.where(mask[:, start:start + width], filled, pre.original(index, n_rows))
    return seam_correct(hybrid, mask)
