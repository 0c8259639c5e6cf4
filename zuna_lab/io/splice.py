"""The repair spliced into the user's recording, span by span: in memory or as a lazy MNE Raw.

:class:`Splicer` computes any time span ``[start, stop)`` of the repaired recording (the recording's
rate, every channel of it, then the added ones) from the ``reconstruct`` result and the recording,
reading only the epochs and samples that span needs. What spans the whole recording is kept as
runs, not as arrays of its length: the cells the model filled (from the token masks), the samples
an epoch covers, and each run's seam correction (the official v4 reconstructor's ramp, from the
samples at both ends of the run). The reconstruction goes back to the recording's rate through a
polyphase filter (``scipy.signal.resample_poly``), which only reaches a few samples around each
output: a span computed with that margin is bitwise the span of the whole signal. So
:func:`zuna_lab.to_raw` of a result in memory (the whole span at once) and of a streamed result
(:class:`SplicedRaw`, which MNE reads and writes buffer by buffer) give the same samples.
"""
from __future__ import annotations

from fractions import Fraction

import mne
import numpy as np
from scipy.signal import resample_poly

from ..config import SAMPLES_PER_TOKEN
from ..errors import ZunaValueError, preview
from .montage import channel_positions
from .write import sample_rate_of

__all__ = ["Splicer", "SplicedRaw", "annotate_runs", "runs_of", "INFILLED_DESCRIPTION", "UNPROCESSED_DESCRIPTION"]

#: Description of the annotations put on cells the model filled in (not ``BAD``: MNE keeps them).
INFILLED_DESCRIPTION = "ZUNA_infilled"
#: Description of the annotations :func:`zuna_lab.to_raw` puts where no epoch reached (e.g. ZUNA's tail).
UNPROCESSED_DESCRIPTION = "ZUNA_unprocessed"
#: The largest up/down factors of the rate change (after reduction) the polyphase filter takes
#: (its length grows with them: 10 x max(up, down) taps on each side).
MAX_RATE_FACTOR = 4096


def runs_of(mask):
    """{(start, stop): [rows]} of the runs of True in each row of a (rows, n) bool array."""
    spans = {}
    for row, line in enumerate(mask):
        edges = np.diff(np.r_[0, np.asarray(line).astype(np.int8), 0])
        for start, stop in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)):
            spans.setdefault((int(start), int(stop)), []).append(row)
    return spans


def _merged(intervals):
    """Sorted, non-overlapping union of (start, stop) intervals (touching ones joined)."""
    out = []
    for start, stop in sorted(i for i in intervals if i[1] > i[0]):
        if out and start <= out[-1][1]:
            out[-1][1] = max(out[-1][1], stop)
        else:
            out.append([start, stop])
    return [tuple(i) for i in out]


def _complement(intervals, n):
    """The gaps of sorted, merged intervals within [0, n)."""
    gaps, at = [], 0
    for start, stop in intervals:
        if start > at:
            gaps.append((at, start))
        at = max(at, stop)
    if at < n:
        gaps.append((at, n))
    return gaps


def annotate_runs(out, replaced, gaps, names):
    """Add ``ZUNA_infilled`` (one per run and the channels it covers) and ``ZUNA_unprocessed`` (where
    no epoch reached) annotations to ``out`` in place; ``replaced`` {row: [(start, stop)]} and ``gaps``
    [(start, stop)] in ``out``'s samples, ``names`` the rows' channel names."""
    sfreq, shift = out.info["sfreq"], out.first_time
    spans = {}
    for row in sorted(replaced):
        for run in replaced[row]:
            spans.setdefault(run, []).append(row)
    onsets, durations, descriptions, channels = [], [], [], []
    for (start, stop), rows in sorted(spans.items()):
        onsets.append(start / sfreq + shift)
        durations.append((stop - start) / sfreq)
        descriptions.append(INFILLED_DESCRIPTION)
        channels.append([] if len(rows) == len(out.ch_names) else [names[r] for r in rows])
    for start, stop in gaps:
        onsets.append(start / sfreq + shift)
        durations.append((stop - start) / sfreq)
        descriptions.append(UNPROCESSED_DESCRIPTION)
        channels.append(list(names))
    if onsets:
        out.annotations.append(onsets, durations, descriptions, ch_names=channels)


class _Rate:
    """The model's rate to the recording's: which model sample each recording sample takes its mask
    from, and the polyphase resampling of the reconstruction (identity when rates and lengths agree)."""

    def __init__(self, model_sfreq, sfreq, n_model, n_times):
        self.model_sfreq, self.sfreq, self.n_model, self.n_times = model_sfreq, sfreq, n_model, n_times
        self.identity = model_sfreq == sfreq and n_model == n_times
        ratio = Fraction(sfreq).limit_denominator(10**6) / Fraction(model_sfreq).limit_denominator(10**6)
        self.up, self.down = ratio.numerator, ratio.denominator
        self.exact = (max(self.up, self.down) <= MAX_RATE_FACTOR
                      and abs(float(ratio) - sfreq / model_sfreq) <= 1e-12 * sfreq / model_sfreq)
        # model samples a resampled output reaches on each side, plus slack for the phase alignment
        self.margin = -(-10 * max(self.up, self.down) // self.up) + 2
        self.n_out = -(-n_model * self.up // self.down)          # resample_poly's length for the whole signal

    def model_index(self, i):
        """The model sample recording sample ``i`` takes its mask from (as ``int(i * model / sfreq)``)."""
        return min(int(float(i) * self.model_sfreq / self.sfreq), self.n_model - 1)

    def first_at(self, a):
        """The first recording sample whose model sample is >= a (n_times if none)."""
        if self.identity:
            return min(a, self.n_times)
        i = max(0, int(a * self.sfreq / self.model_sfreq) - 2)
        while i < self.n_times and self.model_index(i) < a:
            i += 1
        return i

    def to_recording(self, intervals):
        """Model-sample intervals as recording-sample intervals (each recording sample in the interval
        of its model sample), empty ones dropped."""
        out = [(self.first_at(a), self.first_at(b)) for a, b in intervals]
        return [(a, b) for a, b in out if b > a]

    def window(self, start, stop):
        """The model span [a, b) whose resampling gives recording samples [start, stop) exactly, and
        the output index of its first sample."""
        stop = min(stop, self.n_out)
        a = max(0, (start * self.down // self.up - self.margin) // self.down * self.down)
        b = min(self.n_model, -(-stop * self.down // self.up) + self.margin)
        return a, b, a * self.up // self.down

    def resample(self, values, start, stop, offset):
        """Recording samples [start, stop) from ``values`` (rows, model span from :meth:`window`),
        as ``_fit_length(resample_poly(whole))`` would give them (the last sample repeated past the end)."""
        y = resample_poly(values, self.up, self.down, axis=1, padtype="edge")
        index = np.minimum(np.arange(start, stop), self.n_out - 1) - offset
        return y[:, index]


def _held_samples(original):
    """Samples each epoch holds (finite in the original, any channel); a lazy result read one chunk at a time."""
    counted = np.isfinite(original.transpose("epoch", "channel", "time")).any("channel").sum("time")
    if original.chunks is None:
        return np.asarray(counted.values, np.int64)
    import dask

    with dask.config.set(scheduler="synchronous"):
        return np.asarray(counted.values, np.int64)


class Splicer:
    """Any span of the repaired recording from a ``reconstruct`` result and the recording it came from.

    Parameters
    ----------
    ds : xarray.Dataset
        The result, in memory or lazy (opened from ``out=``).
    full : mne.io.Raw
        The recording (every channel), preloaded or not; it is only read.
    kind : {"hybrid", "reconstruction"}
    sample : int | None
        The draw, for results with a ``sample`` dim.
    """

    def __init__(self, ds, full, *, kind="hybrid", sample=None):
        self.names = [str(c) for c in ds["channel"].values]
        self.added = (np.asarray(ds["added"].values, bool) if "added" in ds.coords
                      else np.zeros(len(self.names), bool))
        missing = [n for n, a in zip(self.names, self.added) if not a and n not in full.ch_names]
        if missing:
            raise ZunaValueError(f"The recording lacks channels {preview(missing)} of the result; pass raw= the "
                                 "recording you gave to reconstruct.")
        self.full, self.kind = full, kind
        model_sfreq, sfreq = sample_rate_of(ds), float(full.info["sfreq"])
        n_model = int(ds.attrs.get("model_n_times", 0)) or int(round(full.n_times * model_sfreq / sfreq))
        self.rate = _Rate(model_sfreq, sfreq, n_model, full.n_times)
        signal = ds["reconstruction"]
        if sample is not None and "sample" in signal.dims:
            signal = signal.isel(sample=sample)
        self.signal = signal.transpose("epoch", "channel", "time")
        self.lazy = self.signal.chunks is not None
        self.starts = np.rint(np.asarray(ds["epoch_start"].values, dtype=float) * model_sfreq).astype(np.int64)
        self._block = (None, None)
        self.widths = np.clip(np.minimum(_held_samples(ds["original"]), n_model - self.starts), 0, None)
        mask = ds["mask"]
        if "sample" in mask.dims:
            mask = mask.any("sample")
        tokens = np.asarray(mask.transpose("epoch", "channel", "token").values, bool)
        self._model_covered = _merged((s, s + w) for s, w in zip(self.starts, self.widths))
        hidden = {row: [] for row in range(len(self.names))}
        for e, (start, width) in enumerate(zip(self.starts, self.widths)):
            for (first, last), rows in runs_of(tokens[e]).items():
                a, b = start + first * SAMPLES_PER_TOKEN, min(start + last * SAMPLES_PER_TOKEN, start + width)
                for row in rows:
                    hidden[row].append((a, b))
        rate = self.rate
        self.covered = _merged(rate.to_recording(self._model_covered))
        self.gaps = _complement(self.covered, full.n_times)
        if kind == "hybrid":
            replaced = {row: _merged(rate.to_recording(_merged(runs))) for row, runs in hidden.items()}
        else:
            replaced = {row: list(self.covered) for row in hidden}
        for row in np.flatnonzero(self.added):
            replaced[row] = list(self.covered)
        self.replaced = {row: runs for row, runs in replaced.items() if runs}
        # the runs as arrays, to find those a span meets by bisection (a day may hold thousands)
        self._bounds = {row: np.array(runs, dtype=np.int64).T for row, runs in self.replaced.items()}
        self._epoch_ends = self.starts + self.widths
        self._ends = {}

    # -- what spans the recording --------------------------------------------------------------------
    def whole(self, row) -> bool:
        return self.replaced.get(row) == [(0, self.full.n_times)]

    def bads(self):
        """``info["bads"]`` of the repaired recording: a channel infilled over the whole of it leaves them."""
        return [b for b in self.full.info["bads"] if b not in self.names or not self.whole(self.names.index(b))]

    def added_names(self):
        return [n for n, a in zip(self.names, self.added) if a]

    # -- values --------------------------------------------------------------------------------------
    def _epochs(self, first):
        """The reconstruction of the epochs from ``first`` on (a lazy result: the chunk of the store that
        holds ``first``, the last one kept) as (epoch, channel, time), and the index of its first epoch."""
        if not self.lazy:
            return self.signal.values, 0
        size = self.signal.chunks[0][0]
        block = first // size * size
        if self._block[0] != block:
            self._block = (block, np.asarray(self.signal.isel(epoch=slice(block, block + size)).values))
        return self._block[1], block

    def _model_values(self, rows, a, b):
        """(rows, b - a) reconstruction at the model's rate; NaN where no epoch covers."""
        out = np.full((len(rows), b - a), np.nan)
        first = int(np.searchsorted(self._epoch_ends, a, side="right"))
        last = int(np.searchsorted(self.starts, b))
        for index in range(first, last):
            block, offset = self._epochs(index)
            s, w = int(self.starts[index]), int(self.widths[index])
            lo, hi = max(a, s), min(b, s + w)
            if hi > lo:
                out[:, lo - a:hi - a] = block[index - offset][rows, lo - s:hi - s]
        return out

    def _held(self, rows, a, b):
        """:meth:`_model_values` with every uncovered sample holding the first covered sample after
        it (the last covered one past the end) — what the resampler reads."""
        out = self._model_values(rows, a, b)
        covered = self._model_covered
        if not covered:
            return np.zeros_like(out)
        stops = np.array([stop for _, stop in covered])
        for gap_a, gap_b in _complement(covered, self.rate.n_model):
            lo, hi = max(a, gap_a), min(b, gap_b)
            if hi <= lo:
                continue
            following = int(np.searchsorted(stops, gap_b, side="right"))
            source = covered[following][0] if following < len(covered) and gap_b < self.rate.n_model \
                else covered[-1][1] - 1
            value = out[:, source - a] if a <= source < b else self._model_values(rows, source, source + 1)[:, 0]
            out[:, lo - a:hi - a] = value[:, None]
        return out

    def values(self, rows, start, stop):
        """(rows, stop - start) reconstruction at the recording's rate (NaN where no epoch covers when the
        rates agree; resampled from the held signal otherwise)."""
        rate = self.rate
        if rate.identity:
            return self._model_values(rows, start, stop)
        if not rate.exact:
            raise ZunaValueError(
                f"The recording's rate ({rate.sfreq:g} Hz) is not a ratio of small whole numbers to the model's "
                f"{rate.model_sfreq:g} Hz, so the repair cannot be resampled span by span; resample the recording "
                "to a whole number of Hz (raw.resample) and reconstruct it again.")
        first = min(start, rate.n_out - 1)
        a, b, offset = rate.window(first, max(first + 1, min(stop, rate.n_out)))
        return rate.resample(self._held(rows, a, b), start, stop, offset)

    def _run_ends(self, row, run):
        """(left, right, first, last) of one replaced run: the recording's samples around it and the
        reconstruction at its ends (what the seam correction needs)."""
        key = (row, run)
        if key not in self._ends:
            start, stop = run
            k = self.full.ch_names.index(self.names[row])
            n = self.full.n_times
            left = self.full.get_data(picks=[k], start=start - 1, stop=start)[0, 0] if start > 0 else np.nan
            right = self.full.get_data(picks=[k], start=stop, stop=stop + 1)[0, 0] if stop < n else np.nan
            first = self.values([row], start, start + 1)[0, 0]
            last = self.values([row], stop - 1, stop)[0, 0]
            self._ends[key] = (left, right, first, last)
        return self._ends[key]

    def _seam(self, row, run, repaired, start, stop):
        """``seam_correct`` of one run (``zuna_lab.pipeline.seams``), on its part in [start, stop) of
        ``repaired`` (the recording's row, the reconstruction on the run), in place."""
        left, right, first, last = self._run_ends(row, run)
        run_start, run_stop = run
        lo, hi = max(start, run_start), min(stop, run_stop)
        part = repaired[lo - start:hi - start]
        has_left, has_right = np.isfinite(left), np.isfinite(right)
        if has_left and has_right:
            d_left, d_right = left - first, right - last
            length = run_stop - run_start
            if length > 1:
                ramp = np.arange(lo - run_start, hi - run_start) * (1.0 / (length - 1))
                ramp[np.arange(lo, hi) == run_stop - 1] = 1.0
            else:
                ramp = np.array([0.5])
            repaired[lo - start:hi - start] = part + d_left + (d_right - d_left) * ramp
        elif has_left:
            repaired[lo - start:hi - start] = part + (left - first)
        elif has_right:
            repaired[lo - start:hi - start] = part + (right - last)

    def _met(self, row, start, stop):
        """The replaced runs of ``row`` that meet [start, stop)."""
        starts, stops = self._bounds[row]
        first, last = np.searchsorted(stops, start, side="right"), np.searchsorted(starts, stop)
        return [(int(a), int(b)) for a, b in zip(starts[first:last], stops[first:last])]

    def read(self, start, stop):
        """(recording channels + added channels, stop - start) of the repaired recording, in volts."""
        data = self.full.get_data(start=start, stop=stop)
        met = {row: self._met(row, start, stop) for row in self.replaced}
        rows = [row for row, runs in met.items() if runs]
        values = self.values(rows, start, stop) if rows else None
        added = list(np.flatnonzero(self.added))
        extra = np.full((len(added), stop - start), np.nan)
        for i, row in enumerate(rows):
            replace = np.zeros(stop - start, bool)
            for a, b in met[row]:
                replace[max(a, start) - start:min(b, stop) - start] = True
            if self.added[row]:
                extra[added.index(row)] = np.where(replace, values[i], np.nan)
                continue
            k = self.full.ch_names.index(self.names[row])
            repaired = np.where(replace, values[i], data[k])
            if self.kind == "hybrid" and not self.whole(row):
                for run in met[row]:
                    self._seam(row, run, repaired, start, stop)
            data[k] = repaired
        return np.concatenate([data, extra]) if added else data


def _output_info(splicer):
    """The recording's Info with the added channels appended (EEG; :func:`place_added` sets their positions)."""
    full = splicer.full
    names = splicer.added_names()
    holder = mne.io.RawArray(np.zeros((len(full.ch_names), 1)), full.info.copy(), verbose="error")
    extra = mne.io.RawArray(np.zeros((len(names), 1)), mne.create_info(names, full.info["sfreq"], "eeg"),
                            verbose="error")
    extra.set_meas_date(full.info["meas_date"])
    holder.add_channels([extra], force_update_info=True)
    return holder.info


def place_added(info, ds, names):
    """Head-frame positions of the added channels ``names`` (from ``ds``) into ``info`` in place."""
    from mne.io.constants import FIFF

    positions = channel_positions(ds)[[str(c) in names for c in ds["channel"].values]]
    for name, position in zip(names, positions):
        ch = info["chs"][info["ch_names"].index(name)]
        ch["loc"][:3] = position
        ch["coord_frame"] = FIFF.FIFFV_COORD_HEAD


class SplicedRaw(mne.io.BaseRaw):
    """The repaired recording as a Raw that is not loaded (``preload=False``): MNE reads its spans on
    demand (``get_data(start=, stop=)``, ``save`` buffer by buffer) through :meth:`Splicer.read`.

    Its channel info (calibrations included) is the recording's, so that ``save`` stores the samples as
    a copy of the recording would; the samples it returns are in volts.
    """

    def __init__(self, splicer, ds):
        full = splicer.full
        info = _output_info(splicer) if splicer.added.any() else full.info.copy()
        if splicer.added.any():
            place_added(info, ds, splicer.added_names())
        with info._unlock():
            info["bads"] = splicer.bads()
        super().__init__(info, preload=False, first_samps=[full.first_samp], last_samps=[full.last_samp],
                         filenames=[None], raw_extras=[dict(splicer=splicer, first_samp=full.first_samp)],
                         orig_format=getattr(full, "orig_format", "double"), verbose="error")
        self._cals = np.ones(len(self.ch_names))          # read() gives volts: nothing to scale
        self.set_annotations(full.annotations.copy(), verbose="error")

    def _read_segment_file(self, data, idx, fi, start, stop, cals, mult):
        from mne._fiff.utils import _mult_cal_one

        extras = self._raw_extras[fi]
        _mult_cal_one(data, extras["splicer"].read(start - extras["first_samp"], stop - extras["first_samp"]), idx,
                      cals, mult)
