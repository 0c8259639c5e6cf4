"""Stitching epochs back into one recording, and seam correction of the infilled runs.

The official v4 reconstructor stitches every epoch's hybrid (original on kept cells, model
output on hidden ones) into the whole recording, then re-anchors each infilled run to the
original samples around it (:func:`seam_correct`). :func:`stitched_hybrid` does the same at
the model's rate; :func:`joined_epochs` says which epochs a run ties together.
"""
from __future__ import annotations

import numpy as np

__all__ = ["seam_correct", "stitched_hybrid", "joined_epochs", "StreamedSeams", "span_runs", "run_correction"]


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


def span_runs(starts, widths, masks, chosen, samples_per_token=32):
    """The hidden runs of the stitched recording that reach epochs ``chosen``, found without stitching it.

    What :func:`seam_correct` on the whole stitched recording does to the chosen epochs depends, for
    each run that reaches them, on the run's two ends (its first and last samples and the original
    samples bordering it): this finds those runs by walking the token masks of the neighbouring epochs,
    whose length is all it holds.

    Parameters
    ----------
    starts, widths : ndarray of int
        Every epoch's first sample in the stitched recording and its samples (contiguous epochs).
    masks : list of ndarray
        Every epoch's (row, token) hidden tokens (``EpochMasks.masks``).
    chosen : list of int
    samples_per_token : int

    Returns
    -------
    runs : list of tuple
        ``(row, start, stop, bordered_left, bordered_right)`` in samples of the stitched recording.
    needed : list of int
        ``chosen`` plus the epochs that hold the first or last sample of a run that is corrected.

    Examples
    --------
    >>> m = [np.array([[False, True]]), np.array([[True, False]])]
    >>> span_runs(np.array([0, 64]), np.array([64, 64]), m, [0])
    ([(0, 32, 96, True, True)], [0, 1])
    """
    starts, widths = np.asarray(starts, int), np.asarray(widths, int)
    whole = np.array([np.asarray(m).all(axis=1) for m in masks])          # (epoch, row): hidden throughout
    end = int(starts[-1] + widths[-1])

    def hidden(epoch, row):
        return np.repeat(masks[epoch][row], samples_per_token)[:widths[epoch]]

    runs = set()
    for epoch in chosen:
        for row in range(len(masks[epoch])):
            edges = np.diff(np.r_[0, hidden(epoch, row).astype(np.int8), 0])
            for begin, stop in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)):
                start = starts[epoch] + begin
                if begin == 0:
                    before = np.flatnonzero(~whole[:epoch, row])
                    start = 0 if not len(before) else starts[before[-1]] + np.flatnonzero(~hidden(before[-1], row))[-1] + 1
                stop = starts[epoch] + stop
                if stop == starts[epoch] + widths[epoch]:
                    after = np.flatnonzero(~whole[epoch + 1:, row]) + epoch + 1
                    stop = end if not len(after) else starts[after[0]] + np.flatnonzero(~hidden(after[0], row))[0]
                runs.add((int(row), int(start), int(stop), bool(start > 0), bool(stop < end)))
    needed = set(chosen)
    for _, start, stop, left, right in runs:
        if left or right:
            needed |= {int(np.searchsorted(starts, start, "right") - 1), int(np.searchsorted(starts, stop - 1, "right") - 1)}
    return sorted(runs), sorted(needed)


class StreamedSeams:
    """:func:`seam_correct` on a stitched recording that arrives block by block (a streamed
    reconstruction): the same corrections, whatever the blocks.

    A run that ends in the current block is corrected there; the part of it that lay in earlier
    blocks (already written) comes back from :meth:`correct` as a fix to add to those samples. A run
    still open at a block's end waits for the block where it ends (or the recording's end, where it
    has no right neighbour). Values have a leading sample axis (draws); masks are shared.

    Parameters
    ----------
    n_rows : int
        Channels (added ones included).
    n_draws : int
        Samples drawn per epoch (``n_samples``).
    """

    def __init__(self, n_rows, n_draws):
        self.open = {}                                   # row -> (global start, left values, first values)
        self.before = np.full((n_draws, n_rows), np.nan)  # the sample before the current block

    def correct(self, start, hybrid, hidden, *, final=False):
        """Correct ``hybrid`` (draw, row, width) in place; return fixes ``(row, begin, stop, add)`` for
        global samples ``[begin, stop)`` of earlier blocks, ``add`` a function of the global sample index
        giving the (draw, n) values to add."""
        fixes = []
        width = hidden.shape[1]
        for row in [row for row in self.open if not hidden[row, 0]]:     # runs that ended with the last block
            run_start, left, first = self.open.pop(row)
            add = run_correction(run_start, start - run_start, left, first, hybrid[:, row, 0].copy(),
                                  self.before[:, row].copy())
            if add is not None:
                fixes.append((row, run_start, start, add))
        for row in range(hidden.shape[0]):
            mask = hidden[row]
            if not mask.any():
                continue
            edges = np.diff(np.r_[0, mask.astype(np.int8), 0])
            for begin, stop in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)):
                if begin == 0 and row in self.open:
                    run_start, left, first = self.open.pop(row)
                else:
                    run_start, first = start + begin, hybrid[:, row, begin].copy()
                    left = hybrid[:, row, begin - 1].copy() if begin > 0 else self.before[:, row].copy()
                if stop == width and not final:
                    self.open[row] = (run_start, left, first)
                    continue
                right = hybrid[:, row, stop] if stop < width else np.full(len(first), np.nan)
                add = run_correction(run_start, start + stop - run_start, left, first, right,
                                      hybrid[:, row, stop - 1].copy())
                if add is None:
                    continue
                hybrid[:, row, begin:stop] += add(np.arange(start + begin, start + stop))
                if run_start < start:
                    fixes.append((row, run_start, start, add))
        self.before = hybrid[:, :, -1].copy()
        return fixes


def run_correction(run_start, length, left, first, right, last):
    """The values :func:`seam_correct` adds along one run, as a function of the global sample index (None: none).

    ``left``/``right`` are the (draw,) samples bordering the run (NaN: none), ``first``/``last`` its own
    first and last samples; the run is ``[run_start, run_start + length)``.
    """
    has_left, has_right = np.isfinite(left), np.isfinite(right)
    if not (has_left.any() or has_right.any()):
        return None
    d_left = np.where(has_left, left - first, 0.0)
    d_right = np.where(has_right, right - last, 0.0)
    both = has_left & has_right
    only_right = has_right & ~has_left

    def add(index):
        ramp = (index - run_start) / (length - 1) if length > 1 else np.full(len(index), 0.5)
        linear = d_left[:, None] + (d_right - d_left)[:, None] * ramp[None, :]
        shift = np.where(only_right, d_right, d_left)[:, None] * np.ones((1, len(index)))
        return np.where(both[:, None], linear, shift)

    return add
