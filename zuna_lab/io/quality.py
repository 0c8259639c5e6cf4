"""Is a recording plausible EEG in volts? Length, finite samples, flat channels, amplitude units.

A utility below every stage: :func:`zuna_lab.read_raw` runs :func:`check_signal` on what it
read (warning about suspicious but usable data), and the preprocessing runs it again on the Raw
it is given.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from mne.io.constants import FIFF

from ..config import TOKEN_SECONDS
from ..errors import RecordingError, preview
from ..errors import warn as warn_user

__all__ = ["check_signal"]

#: Channel std of the first difference above this (in volts) means the data are not in volts.
_MAX_PLAUSIBLE_STD = 1e-2

#: Median channel amplitude (std in ~1 s windows, volts) outside which read_raw refuses the data:
#: scalp EEG is about 5-100 µV, so below 0.1 µV or above 1 mV the units are wrong.
_AMPLITUDE_REFUSED = (1e-7, 1e-3)

#: ... and outside which it warns (possible, but more likely a units mistake).
_AMPLITUDE_WARNED = (1e-6, 2e-4)

#: A channel this many times quieter than the median channel (or constant) is flat: masked as bad.
_FLAT_RATIO = 1e-2


def _window_std(sample, sfreq):
    """Per channel, the median std of ~1 s windows: DC offsets, drift and short artefacts do not count."""
    width = int(min(4096, max(32, 2 ** round(np.log2(max(float(sfreq), 1.0))))))
    n_windows = sample.shape[1] // width
    if n_windows == 0:
        return sample.std(axis=1)
    windows = sample[:, : n_windows * width].reshape(len(sample), n_windows, width)
    return np.median(windows.std(axis=2), axis=1)


def _units_hint(amplitude):
    """``("1e-6", "µV")``: the power of 1000 that brings a median channel amplitude (V) nearest to EEG (~20 µV)."""
    power = int(np.clip(round(np.log10(20e-6 / amplitude) / 3), -3, 3)) * 3
    units = {-3: "mV", -6: "µV", -9: "nV"}
    return f"1e{power}", units.get(power, f"units 1e{-power} V")


#: (samples, count) of the blocks spread over a recording that its amplitude statistics use.
SAMPLED_BLOCKS = (4096, 64)


#: Threads of the checks' reads and per-channel statistics (at most this many spans in memory at once).
WORKERS = max(1, min(8, os.cpu_count() or 1))


def in_order(function, items):
    """``[function(item) for item in items]``, on :data:`WORKERS` threads where there are several."""
    items = list(items)
    if WORKERS == 1 or len(items) < 2:
        return [function(item) for item in items]
    with ThreadPoolExecutor(WORKERS, thread_name_prefix="zuna_lab-check") as pool:
        return list(pool.map(function, items))


def by_rows(function, array):
    """A per-row reduction ``function(array)`` (a 1-D result) computed on groups of rows at once: each row's
    value is the one of a single call (rows are reduced independently), the groups run on threads."""
    if WORKERS == 1 or len(array) < 2 or array.size < 1 << 20:
        return function(array)
    groups = np.array_split(np.arange(len(array)), min(WORKERS, len(array)))
    return np.concatenate(in_order(lambda rows: function(array[rows[0]:rows[-1] + 1]), groups))


#: FIF data-buffer tag types whose samples are integers (always finite), and the float types' byte layouts.
_FIF_INTEGER_TAGS = frozenset({FIFF.FIFFT_SHORT, FIFF.FIFFT_INT, FIFF.FIFFT_DAU_PACK16})
_FIF_FLOAT_TAGS = {int(FIFF.FIFFT_FLOAT): ">f4", int(FIFF.FIFFT_DOUBLE): ">f8"}

#: Data buffers of a FIF file checked per thread task, and the most bytes read at once by one.
_BUFFERS_AT_ONCE = 256
_READ_BYTES = 1 << 23


def _end(job):
    """Where a FIF data buffer of :func:`fif_samples_finite`'s jobs ends in its file."""
    _, offset, dtype, n_samples, n_stored, _ = job
    return offset + n_samples * n_stored * dtype.itemsize


def fif_samples_finite(raw):
    """True when every stored sample of a lazily read FIF Raw's channels is finite, judged on the file's
    data buffers themselves; None when this cannot tell (the span-by-span pass through MNE then decides).

    A FIF file stores each buffer as samples x channels of big-endian integers or floats; MNE multiplies
    them by finite calibrations, so a sample it returns is finite exactly when the stored one is (integer
    buffers always are). Checking the stored floats takes one read of the file instead of reading the
    recording through MNE in float64 (2-3x faster for a 1 h x 64 ch file on 2 cores). None for anything else: another
    reader, a loaded Raw, a projector or compensation that mixes channels, calibrations that are not
    finite, complex or unexpected buffers — and for a file with a non-finite value among the Raw's
    channels, whose channels the span-by-span pass then names. Buffers are read whole: a cropped Raw's
    extra samples can only send it to that exact pass.
    """
    buffers = _fif_float_buffers(raw)
    if buffers is None:
        return None
    groups = [buffers[i:i + _BUFFERS_AT_ONCE] for i in range(0, len(buffers), _BUFFERS_AT_ONCE)]
    try:
        return True if all(in_order(_buffers_finite, groups)) else None
    except (OSError, ValueError):
        return None


def _fif_float_buffers(raw):
    """The float data buffers of a lazily read FIF Raw's time span, as ``(file, offset, dtype, n_samples,
    n_channels_stored, picks)``; None where :func:`fif_samples_finite` cannot judge the Raw."""
    try:
        from mne.io.fiff.raw import Raw as FifRaw
        if (type(raw) is not FifRaw or raw.preload or getattr(raw, "_projector", None) is not None
                or getattr(raw, "_comp", None) is not None):
            return None
        cals = np.asarray(raw._cals, dtype=np.float64)
        if not (np.isfinite(cals).all() and np.abs(cals).max(initial=0.0) < 1e30):
            return None
        buffers = []
        for extras, picks, first, last in zip(raw._raw_extras, raw._read_picks, raw._first_samps, raw._last_samps):
            bounds, n_stored = np.asarray(extras["bounds"]), int(extras["orig_nchan"])
            picks = np.asarray(picks)
            for index in np.flatnonzero((bounds[:-1] <= last) & (bounds[1:] > first)):
                tag = extras["ent"][index]
                if tag is None or tag.type in _FIF_INTEGER_TAGS:      # a gap (zeros) or integers
                    continue
                dtype = np.dtype(_FIF_FLOAT_TAGS.get(int(tag.type), "V1"))
                n_samples = int(bounds[index + 1] - bounds[index])
                if dtype.kind != "f" or tag.size != n_samples * n_stored * dtype.itemsize:
                    return None
                buffers.append((str(extras["filename"]), int(tag.pos) + 16, dtype, n_samples, n_stored, picks))
        return buffers
    except (AttributeError, ImportError, IndexError, KeyError, TypeError, ValueError):
        return None     # an MNE whose FIF reader is laid out otherwise


def _buffers_finite(buffers):
    """Whether the Raw's channels hold only finite values in these buffers (of :func:`_fif_float_buffers`)."""
    handles = {}
    try:
        for run in _runs(buffers):
            name, first, stop = run[0][0], run[0][1], _end(run[-1])
            if name not in handles:
                handles[name] = open(name, "rb")
            handles[name].seek(first)
            stored = np.fromfile(handles[name], dtype=np.uint8, count=stop - first)
            if stored.size != stop - first:
                raise ValueError("a data buffer ends before its size")
            for _, offset, dtype, n_samples, n_stored, picks in run:
                values = np.frombuffer(stored, dtype=dtype, count=n_samples * n_stored, offset=offset - first)
                if not np.isfinite(values).all() and not np.isfinite(values.reshape(n_samples, n_stored)[:, picks]).all():
                    return False
        return True
    finally:
        for handle in handles.values():
            handle.close()


def _runs(buffers):
    """Buffers that follow one another in a file (16-byte tag headers between them), in runs of at most
    :data:`_READ_BYTES`: each run is one read, so memory stays a few MB per thread whatever the length."""
    run = []
    for buffer in buffers:
        if run and (buffer[0] != run[0][0] or buffer[1] != _end(run[-1]) + 16 or _end(buffer) - run[0][1] > _READ_BYTES):
            yield run
            run = []
        run.append(buffer)
    if run:
        yield run


class SpanReader:
    """The samples of a Raw that is not loaded, as far as :func:`check_signal` uses them: per-channel
    reductions (``sum``, ``max``, ``min``, ``isfinite(...).all``) computed span by span, and slices
    ``[rows, start:stop]`` read on demand — never the whole recording in memory at once (a whole
    channel at most)."""

    VALUES = 1 << 22     # values (channels x samples) read at a time: 32 MB of float64

    def __init__(self, raw):
        self.raw = raw
        self.SPAN = max(1 << 12, self.VALUES // max(1, len(raw.ch_names)))

    def _spans(self, rows=None):
        for start in range(0, self.raw.n_times, self.SPAN):
            yield self._read(start, rows)

    def _read(self, start, rows=None):
        return self.raw.get_data(picks=rows, start=start, stop=min(start + self.SPAN, self.raw.n_times))

    def _reduce(self, function, combine):
        # Spans read and reduced on threads (the reader and NumPy release the GIL), combined in order:
        # the same result as one span after another, with at most WORKERS spans in memory.
        parts = in_order(lambda start: function(self._read(start)), range(0, self.raw.n_times, self.SPAN))
        result = None
        for part in parts:
            result = part if result is None else combine(result, part)
        return result

    def sum(self, axis):
        return self._reduce(lambda x: x.sum(axis=1), np.add)

    def max(self, axis):
        return self._reduce(lambda x: x.max(axis=1), np.maximum)

    def min(self, axis):
        return self._reduce(lambda x: x.min(axis=1), np.minimum)

    def finite_rows(self):
        return self._reduce(lambda x: np.isfinite(x).all(axis=1), np.logical_and)

    def __getitem__(self, key):
        rows, times = key if isinstance(key, tuple) else (key, slice(None))
        picks = np.arange(len(self.raw.ch_names))[rows]
        start, stop, _ = times.indices(self.raw.n_times)
        if stop - start > self.SPAN:
            return np.concatenate(list(_limited(self._spans(picks), start, stop, self.SPAN)), axis=1)
        return self.raw.get_data(picks=picks, start=start, stop=stop)


def _limited(spans, start, stop, size):
    for index, span in enumerate(spans):
        first = index * size
        if first + span.shape[1] <= start or first >= stop:
            continue
        yield span[:, max(0, start - first):stop - first]


def check_signal(raw, *, warn=False):
    """The variant-free checks: length, finite samples, plausible volts; returns the flat channels.

    A channel is flat when it is constant, or its amplitude (median std of ~1 s windows) is
    below 1 % of the median channel's. Amplitudes are judged on the other channels: refused
    below 0.1 µV or above 1 mV (median channel; scalp EEG is 5-100 µV), and with ``warn``, a
    :class:`ZunaLabWarning` below 1 µV or above 200 µV.
    """
    duration = raw.n_times / raw.info["sfreq"]
    if duration < TOKEN_SECONDS:
        raise RecordingError(
            f"The recording lasts {duration:.3f} s, shorter than one ZUNA token (0.125 s); use a longer recording."
        )
    # The preloaded buffer itself, no float64 copy: long recordings are hundreds of MB. A Raw that
    # is not loaded is read span by span (SpanReader), never whole.
    data = raw._data if raw.preload else SpanReader(raw)
    # One pass: a NaN or Inf makes its channel's sum non-finite (volts never overflow a float64 sum); a FIF
    # file read lazily is judged on its stored buffers first (fif_samples_finite), much faster.
    stored_finite = not raw.preload and fif_samples_finite(raw)
    if not stored_finite and not np.isfinite(data.sum(axis=1)).all():
        finite = data.finite_rows() if isinstance(data, SpanReader) else np.isfinite(data).all(axis=1)
        bad = [raw.ch_names[i] for i in np.flatnonzero(~finite)]
        raise RecordingError(
            f"The data contain NaN or Inf samples (channels {preview(bad)}); "
            "interpolate or crop them, e.g. with raw.interpolate_bads() or raw.crop()."
        )
    # Amplitude statistics from at most 64 blocks of 4096 samples spread over the recording.
    block, n_blocks = SAMPLED_BLOCKS
    if raw.n_times > block * n_blocks:
        starts = np.linspace(0, raw.n_times - block, n_blocks).astype(int)
        # the blocks side by side, and their first differences, each written in place by its reading thread
        sample = np.empty((len(raw.ch_names), block * n_blocks))
        steps = np.empty((len(raw.ch_names), (block - 1) * n_blocks))

        def read(index):
            values = sample[:, index * block:(index + 1) * block]
            values[:] = data[:, starts[index]:starts[index] + block]
            np.subtract(values[:, 1:], values[:, :-1], out=steps[:, index * (block - 1):(index + 1) * (block - 1)])

        in_order(read, range(n_blocks))
    else:
        sample = np.asarray(data[:, :], dtype=np.float64)
        steps = np.diff(sample, axis=1) if raw.n_times > 1 else np.zeros((len(sample), 1))
    # Flat only if the whole recording is: the sampled blocks settle the usual case.
    if not (sample.max(axis=1) > sample.min(axis=1)).any() and not (data.max(axis=1) > data.min(axis=1)).any():
        raise RecordingError("The recording is flat (every channel is constant); check the file or the channel selection.")
    sfreq = float(raw.info["sfreq"])
    amplitude = by_rows(lambda rows: _window_std(rows, sfreq), sample)
    moving = amplitude[amplitude > 0]
    typical = float(np.median(moving)) if moving.size else 0.0
    flat = amplitude <= _FLAT_RATIO * typical
    for index in np.flatnonzero(flat):
        # Quiet in the sampled blocks: judge the channel on the whole recording.
        amplitude[index] = _window_std(np.asarray(data[index : index + 1], dtype=np.float64), sfreq)[0]
    flat = amplitude <= _FLAT_RATIO * typical
    live = ~flat if (~flat).any() else np.ones_like(flat)
    level = max(float(np.median(amplitude[live])), 1e-30)
    channel_std = by_rows(lambda rows: rows.std(axis=1), sample)[live]     # (indexing first would copy the sample)
    # Differences ignore DC offsets and slow drift, which can be large in DC-coupled systems.
    step_std = float(np.median(by_rows(lambda rows: rows.std(axis=1), steps)[live])) if raw.n_times > 1 else 0.0
    if step_std > _MAX_PLAUSIBLE_STD or float(np.median(channel_std)) > 1.0 or level > _AMPLITUDE_REFUSED[1]:
        factor, unit = _units_hint(max(level, float(np.median(channel_std))))
        raise RecordingError(
            f"Amplitudes look too large for volts (median channel std {max(level, float(np.median(channel_std))):.3g}, "
            f"while scalp EEG is about 5-100 µV); if the data are in {unit}, multiply by {factor} "
            f"(e.g. raw.apply_function(lambda x: x * {factor}))."
        )
    if level < _AMPLITUDE_REFUSED[0]:
        factor, _ = _units_hint(level)
        raise RecordingError(
            f"Amplitudes look too small for volts (median channel std {level:.3g} V, while scalp EEG is about "
            f"5-100 µV); if the data were scaled down twice, multiply by {factor} "
            f"(e.g. raw.apply_function(lambda x: x * {factor}))."
        )
    if warn and not _AMPLITUDE_WARNED[0] <= level <= _AMPLITUDE_WARNED[1]:
        size = "small" if level < _AMPLITUDE_WARNED[0] else "large"
        warn_user(f"Amplitudes are unusually {size} for scalp EEG in volts (median channel std {level * 1e6:.3g} µV, "
            "typically 5-100 µV); check that the data are in volts and were not scaled twice.")
    return [raw.ch_names[i] for i in np.flatnonzero(flat)]
