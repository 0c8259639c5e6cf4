"""Recordings of any length in bounded memory: the official preprocessing, span by span.

:func:`preprocess` (the whole recording in memory) and :func:`stream_preprocessed` (this module)
give the same epochs. Here the recording is read from its file a span at a time
(``raw.get_data(start=, stop=)``, MNE's lazy reading) and the signal work is spilled to a
temporary file beside the output:

1. **Resample and high-pass** (:func:`filtered_spill`). Without resampling, the 0.5 Hz zero-phase
   FIR high-pass runs on spans that overlap their neighbours by a whole filter length, so every
   sample kept saw exactly the inputs it sees in one call on the whole recording (the true ends
   of the recording are padded as MNE pads them). MNE resamples with one FFT over the whole
   signal, which no span can reproduce: with resampling, each channel in turn is resampled and
   filtered whole, exactly as :meth:`mne.io.Raw.resample` and :meth:`~mne.io.Raw.filter` do it —
   memory then grows with one channel's length (about 0.2 GB per 24 h at 256 Hz), not with the
   number of channels.
2. **Statistics that span the recording** (:func:`zuna_statistics`, ZUNA only): the global mean
   and std of the average-referenced good channels and the std of the epoch-centred signal, from
   sums over one pass — the same numbers as the in-memory pipeline's (to rounding). ZUNA1.1's
   statistics are per segment, computed where the segment is.
3. **Epochs, chunk by chunk** (:func:`stream_preprocessed`): :class:`Preprocessed` objects of
   ``chunk_epochs`` consecutive epochs each, with the recording's epoch starts, ready for the
   token masks, the tokens and the model. Where nothing spans the recording (ZUNA1.1 without
   resampling), steps 1 and 3 interleave: a chunk comes as soon as the spans it needs are filtered,
   so a consumer on another thread (the GPU's) works while the rest is read.
"""
from __future__ import annotations

import math
import os
import tempfile
import threading
import uuid
import weakref
from collections import OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import mne
import numpy as np

from ..config import VARIANT_CONSTANTS
from ..errors import ZunaValueError
from ..io.montage import channel_positions
from .preprocessing import (HIGHPASS_HZ, REFERENCE_PIPELINES, assemble_epochs, highpass, resolve_epoch,
                            resolve_segment_duration, zuna11_segments, check_recording)

__all__ = ["Spill", "FilteredReader", "StreamPlan", "EpochSpans", "needs_resample", "filtered_spill", "zuna_statistics",
           "stream_plan", "stream_preprocessed", "CHUNK_EPOCHS", "SPAN_VALUES", "WINDOW_EPOCHS"]

#: Epochs per chunk (64 epochs of 5 s: about 20 MB of signal for 32 channels).
CHUNK_EPOCHS = 64
#: Values (channels x samples) read from the source at a time: 32 MB of float64, whatever the channel count.
SPAN_VALUES = 1 << 22
#: Spans read and high-passed at once on threads (the next while this one is written and used).
SPANS_AT_ONCE = 2
#: Epochs per window that :class:`EpochSpans` prepares and caches for a viewer (16 epochs of 5 s).
WINDOW_EPOCHS = 16


class Spill:
    """A float64 (channel, time) array in a file, written and read a span or a channel at a time.

    Plain reads and writes at offsets (no memory map, whose pages would count as the process's
    memory): the array never needs to fit in memory. Channel-major, so that a channel is one read.
    """

    def __init__(self, folder, n_channels, n_times, *, name="signal"):
        self.path = Path(folder) / f".{name}-{uuid.uuid4().hex[:8]}.f64"
        self.n_channels, self.n_times = int(n_channels), int(n_times)
        self._file = open(self.path, "w+b")
        self._file.truncate(self.n_channels * self.n_times * 8)

    def write(self, start, block):
        """``block`` (n_channels, width) at samples ``[start, start + width)``."""
        block = np.ascontiguousarray(block, dtype=np.float64)
        for row in range(self.n_channels):
            os.pwrite(self._file.fileno(), block[row].tobytes(), (row * self.n_times + start) * 8)

    def write_row(self, row, values):
        os.pwrite(self._file.fileno(), np.ascontiguousarray(values, dtype=np.float64).tobytes(),
                  row * self.n_times * 8)

    def read(self, start, stop):
        """Samples ``[start, stop)`` of every channel: a new (n_channels, stop - start) array."""
        width = stop - start
        out = np.empty((self.n_channels, width))
        for row in range(self.n_channels):
            buffer = os.pread(self._file.fileno(), width * 8, (row * self.n_times + start) * 8)
            out[row] = np.frombuffer(buffer, dtype=np.float64)
        return out

    def read_row(self, row):
        buffer = os.pread(self._file.fileno(), self.n_times * 8, row * self.n_times * 8)
        return np.frombuffer(buffer, dtype=np.float64).copy()

    def close(self):
        """Close and delete the file."""
        if not self._file.closed:
            self._file.close()
        self.path.unlink(missing_ok=True)


class FilteredReader:
    """The 0.5 Hz high-passed samples of a Raw read lazily, any span on request (no resampling).

    :meth:`read` filters ``[start - margin, stop + margin)`` (clipped at the recording's ends, which
    MNE pads as in one call on the whole recording) and keeps ``[start, stop)``: the margin is a whole
    filter length, so every kept sample sees the inputs it sees in one call on the whole recording.
    Nothing is held between reads. The same interface as :class:`Spill` (``read``, ``n_times``).
    """

    def __init__(self, raw, sfreq, *, verbose=None):
        self.raw, self.sfreq = raw, float(sfreq)
        self.verbose = verbose if verbose is not None else "error"
        self.n_channels, self.n_times = len(raw.ch_names), int(raw.n_times)
        self.margin = _filter_margin(self.sfreq)

    def read(self, start, stop):
        """Samples ``[start, stop)`` of every channel, high-passed: a new (n_channels, stop - start) array."""
        first, last = max(0, start - self.margin), min(self.n_times, stop + self.margin)
        block = highpass(self.raw.get_data(start=first, stop=last), self.sfreq, self.verbose)
        return np.array(block[:, start - first:stop - first])

    def close(self):
        """Nothing to release (the interface of :class:`Spill`)."""


def needs_resample(variant, source_sfreq):
    """As :func:`preprocess`: 0.1.1 resamples when the rate differs at all, 1.1.6 when it does after rounding."""
    target = float(VARIANT_CONSTANTS[variant]["sfreq"])
    return source_sfreq != target if variant == "ZUNA" else int(round(source_sfreq)) != int(target)


def _filter_margin(sfreq):
    """Samples of context each side that the 0.5 Hz high-pass needs: its whole length (more than half)."""
    taps = mne.filter.create_filter(None, sfreq, HIGHPASS_HZ, None, method="fir", verbose="error")
    return int(len(taps))


def filtered_spill(raw, variant, folder, *, verbose=None, span=None):
    """The resampled, 0.5 Hz high-passed EEG of ``raw`` in a :class:`Spill` (see the module's step 1).

    Parameters
    ----------
    raw : mne.io.Raw
        From :func:`zuna_lab.read_raw` (``preload=False`` for a file longer than memory).
    variant : {"ZUNA", "ZUNA1.1"}
    folder : path-like
        Where the temporary file goes (beside the output; removed by the caller with ``close()``).

    Returns
    -------
    spill : Spill
        At the model's rate (256 Hz, or the source's rate when ZUNA1.1 keeps it).
    sfreq : float
    resampled : bool
    """
    mne_verbose = verbose if verbose is not None else "error"
    span = max(1 << 12, SPAN_VALUES // len(raw.ch_names)) if span is None else int(span)
    source_sfreq = float(raw.info["sfreq"])
    if not needs_resample(variant, source_sfreq):
        return _filtered_spans(raw, folder, source_sfreq, mne_verbose, span), source_sfreq, False
    return _resampled_channels(raw, variant, folder, mne_verbose, span), float(VARIANT_CONSTANTS[variant]["sfreq"]), True


def _filtered_spans(raw, folder, sfreq, verbose, span):
    spill = Spill(folder, len(raw.ch_names), raw.n_times)
    try:
        for _ in _filter_into(spill, raw, sfreq, verbose, span):
            pass
    except BaseException:
        spill.close()
        raise
    return spill


def _filter_into(spill, raw, sfreq, verbose, span):
    """High-pass ``raw`` span by span into ``spill`` (spans overlapping by the filter's length); yields
    how many samples are written after each span. :data:`SPANS_AT_ONCE` spans are read and filtered at
    once on threads (the next one while this one is written and used), written in order."""
    reader = FilteredReader(raw, sfreq, verbose=verbose)
    spans = [(start, min(start + span, raw.n_times)) for start in range(0, raw.n_times, span)]
    with ThreadPoolExecutor(SPANS_AT_ONCE, thread_name_prefix="zuna_lab-filter") as pool:
        ahead = deque(pool.submit(reader.read, *bounds) for bounds in spans[:SPANS_AT_ONCE])
        for index, (start, stop) in enumerate(spans):
            filtered = ahead.popleft().result()
            if index + SPANS_AT_ONCE < len(spans):
                ahead.append(pool.submit(reader.read, *spans[index + SPANS_AT_ONCE]))
            spill.write(start, filtered)
            yield stop


def _resampled_channels(raw, variant, folder, verbose, span):
    """Spill the source, then per channel: resample and filter the whole channel as MNE does on the Raw."""
    target = float(VARIANT_CONSTANTS[variant]["sfreq"])
    n_channels = len(raw.ch_names)
    source = Spill(folder, n_channels, raw.n_times, name="source")
    spill = None
    try:
        for start in range(0, raw.n_times, span):
            source.write(start, raw.get_data(start=start, stop=min(start + span, raw.n_times)))
        info = mne.create_info(["x"], float(raw.info["sfreq"]), "eeg")
        for row in range(n_channels):
            one = mne.io.RawArray(source.read_row(row)[None], info, verbose="error")
            one.resample(target, verbose=verbose)
            one.filter(l_freq=HIGHPASS_HZ, h_freq=None, method="fir", verbose=verbose)
            if spill is None:
                spill = Spill(folder, n_channels, one.n_times)
            spill.write_row(row, one.get_data()[0])
    except BaseException:
        if spill is not None:
            spill.close()
        raise
    finally:
        source.close()
    return spill


def _referenced(signal, good):
    """ZUNA's average reference as MNE applies it: the good channels' mean, from the good channels only."""
    referenced = signal.copy()
    referenced[good] -= signal[good].mean(axis=0)
    return referenced


def zuna_statistics(spill, good, epoch_samples, *, span_epochs=CHUNK_EPOCHS):
    """ZUNA's statistics over the whole recording in one pass (module step 2).

    Returns ``global_mean``/``global_std`` (the average-referenced good channels, every sample)
    and ``final_mean``/``final_std`` (after the global z-score and each 5 s epoch's per-channel
    baseline, over every channel of the whole epochs) — the numbers of the in-memory pipeline.
    """
    n_epochs = spill.n_times // epoch_samples
    total = np.zeros(2)
    count = 0
    centred = np.zeros(2)
    centred_count = 0
    span = span_epochs * epoch_samples
    for start in range(0, spill.n_times, span):
        signal = spill.read(start, min(start + span, spill.n_times))
        referenced = _referenced(signal, good)
        kept = referenced[good]
        total += (kept.sum(), np.square(kept).sum())
        count += kept.size
        whole = min(n_epochs * epoch_samples - start, referenced.shape[1]) // epoch_samples
        if whole > 0:
            epochs = referenced[:, :whole * epoch_samples].reshape(len(referenced), whole, epoch_samples)
            deviations = epochs - epochs.mean(axis=2, keepdims=True)
            centred += (deviations.sum(), np.square(deviations).sum())
            centred_count += deviations.size
    global_mean = total[0] / count
    global_std = math.sqrt(max(total[1] / count - global_mean ** 2, 0.0))
    final_mean = centred[0] / centred_count / global_std if centred_count else 0.0
    final_var = centred[1] / centred_count / global_std ** 2 - final_mean ** 2 if centred_count else 0.0
    final_std = math.sqrt(max(final_var, 0.0))
    return dict(global_mean=float(global_mean), global_std=float(global_std), final_mean=float(final_mean),
                final_std=float(final_std) if final_std > 0 else 1.0)


@dataclass(frozen=True)
class StreamPlan:
    """How a recording is cut: epoch length, count and starts, chunks of epochs, shared fields."""

    variant: str
    segment: int                  # samples per epoch (the last ZUNA1.1 segment may be shorter)
    n_epochs: int
    epoch_start: np.ndarray       # seconds, every epoch
    n_samples: np.ndarray         # samples, every epoch
    chunks: tuple                 # (first epoch, stop epoch) pairs
    chunk_epochs: int             # epochs per chunk (a stored result's chunks along epoch)
    common: dict                  # the fields every chunk's Preprocessed shares
    provenance: dict

    @property
    def max_tokens(self):
        return int(self.n_samples.max()) // 32


def stream_plan(raw, spill, sfreq, resampled, variant, *, segment_duration=None, chunk_epochs=CHUNK_EPOCHS,
                stats=None):
    """The :class:`StreamPlan` of ``raw`` filtered into ``spill`` (epochs as :func:`preprocess` makes them)."""
    constants = VARIANT_CONSTANTS[variant]
    duration = resolve_segment_duration(variant, segment_duration)
    spt = int(constants["samples_per_token"])
    if variant == "ZUNA":
        segment = int(round(duration * sfreq))
        n_epochs = spill.n_times // segment
        n_samples = np.full(n_epochs, segment)
    else:
        segment = max(spt, int(round(duration * sfreq)) // spt * spt)
        n_whole = spill.n_times // segment
        tail = (spill.n_times - n_whole * segment) // spt * spt
        n_samples = np.r_[np.full(n_whole, segment), [tail] if tail else []].astype(int)
        n_epochs = len(n_samples)
    common = dict(ch_names=tuple(raw.ch_names), ch_pos=channel_positions(raw), bads=tuple(raw.info["bads"]),
                  sfreq=float(sfreq), source_sfreq=float(raw.info["sfreq"]), n_times=int(spill.n_times),
                  data_norm=float(constants["data_norm"]), data_clip=float(constants["data_clip"]))
    provenance = dict(variant=variant, resampled=bool(resampled), highpass_hz=HIGHPASS_HZ,
                      highpass="mne zero-phase FIR (firwin, hamming, filter_length='auto')",
                      data_norm=common["data_norm"], data_clip=common["data_clip"],
                      reference=REFERENCE_PIPELINES[variant], segment_duration=duration, **(stats or {}))
    chunks = tuple((first, min(first + chunk_epochs, n_epochs)) for first in range(0, n_epochs, chunk_epochs))
    return StreamPlan(variant, segment, n_epochs, np.arange(n_epochs) * segment / sfreq, n_samples, chunks,
                      int(chunk_epochs), common, provenance)


class EpochSpans:
    """Any span of epochs of a recording read lazily, preprocessed exactly as the whole recording is.

    What spans the recording is done once, when it is made: with resampling, the resampled and
    high-passed signal is spilled to a file in ``folder`` (:func:`filtered_spill`); ZUNA's global
    statistics come from one streamed pass (:func:`zuna_statistics`). Without resampling nothing is
    spilled: each span is read and high-passed when asked for, with a filter length of context each
    side (:class:`FilteredReader`). :meth:`epochs` then gives the :class:`Preprocessed` of any span —
    the same epochs, to rounding, as :func:`preprocess` of the whole recording; ZUNA1.1's statistics
    are per segment, so they come with the span.

    It also reads as the whole recording's :class:`Preprocessed` wherever no sample is needed
    (``n_epochs``, ``epoch_start``, ``n_samples(i)``, ``ch_names``, ``ch_pos``, ``sfreq``, ``params``…),
    so the token masks (:func:`~zuna_lab.pipeline.tokens.epoch_masks`) work on it; :meth:`window`
    gives the epochs around one, a few windows cached (thread-safe), for a viewer.

    Parameters
    ----------
    raw : mne.io.Raw
        From :func:`zuna_lab.read_raw` (``preload=False`` for a file), masks applied as for
        :func:`preprocess` (``info["bads"]``, no annotations); not modified.
    variant : {"ZUNA", "ZUNA1.1"}
    folder : path-like | None
        Where a resampled recording's signal is spilled (None: the system's temporary folder);
        the file is removed by :meth:`close` or when the object is collected.
    segment_duration, verbose
        As in :func:`preprocess`.
    chunk_epochs : int | None
        Epochs per chunk of :attr:`plan` (None: :data:`CHUNK_EPOCHS`).
    spill : bool
        Spill the filtered signal even without resampling (a stream that reads every span once
        after the statistics' pass).
    window_epochs : int | None
        Epochs per :meth:`window` (None: :data:`WINDOW_EPOCHS`).
    max_windows : int
        Windows kept by :meth:`window`.

    Examples
    --------
    >>> spans = EpochSpans(zl.read_raw("night.edf", preload=False), "ZUNA")      # doctest: +SKIP
    >>> spans.n_epochs, spans.epochs(5000, 5016).volts[0].shape                  # doctest: +SKIP
    """

    def __init__(self, raw, variant, folder=None, *, segment_duration=None, chunk_epochs=None, spill=False,
                 window_epochs=None, max_windows=4, verbose=None):
        check_recording(raw, variant, samples=False)
        resolve_segment_duration(variant, segment_duration)
        self.good = [i for i, name in enumerate(raw.ch_names) if name not in raw.info["bads"]]
        if variant == "ZUNA" and not self.good:
            raise ZunaValueError("Every channel is in info['bads']; ZUNA needs at least one good channel for its "
                                 "average reference and statistics, so remove some from info['bads'] (or bad_channels).")
        folder = tempfile.gettempdir() if folder is None else folder
        source_sfreq = float(raw.info["sfreq"])
        if spill or needs_resample(variant, source_sfreq):
            self.signal, sfreq, resampled = filtered_spill(raw, variant, folder, verbose=verbose)
        else:
            self.signal, sfreq, resampled = FilteredReader(raw, source_sfreq, verbose=verbose), source_sfreq, False
        self._finalizer = weakref.finalize(self, self.signal.close)
        chunk_epochs = CHUNK_EPOCHS if chunk_epochs is None else int(chunk_epochs)
        self.stats = None
        if variant == "ZUNA":
            self.stats = zuna_statistics(self.signal, self.good, int(round(5.0 * sfreq)), span_epochs=chunk_epochs)
        self.plan = stream_plan(raw, self.signal, sfreq, resampled, variant, segment_duration=segment_duration,
                                chunk_epochs=chunk_epochs, stats=self.stats)
        for name, value in self.plan.common.items():
            setattr(self, name, value)
        self.variant, self.params, self.epoch_start = variant, dict(self.plan.provenance), self.plan.epoch_start
        self.window_epochs = WINDOW_EPOCHS if window_epochs is None else max(1, int(window_epochs))
        self.max_windows = max(1, int(max_windows))
        self._windows = OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self):
        return (f"EpochSpans({self.variant}, {self.n_epochs} epochs x {self.n_channels} channels at "
                f"{self.sfreq:g} Hz, {len(self._windows)} window(s) prepared)")

    @property
    def n_epochs(self):
        """Epochs of the whole recording."""
        return self.plan.n_epochs

    @property
    def n_channels(self):
        return len(self.ch_names)

    def resolve_epoch(self, epoch_index):
        """``epoch_index`` checked (an int in [-n_epochs, n_epochs)) and made non-negative."""
        return resolve_epoch(epoch_index, self.n_epochs)

    def n_samples(self, epoch_index):
        """Samples in one epoch (from the plan: nothing is read)."""
        return int(self.plan.n_samples[self.resolve_epoch(epoch_index)])

    def epochs(self, first, stop):
        """The :class:`Preprocessed` of epochs ``first … stop - 1`` (``epoch_start`` the recording's)."""
        if not (isinstance(first, (int, np.integer)) and isinstance(stop, (int, np.integer))
                and 0 <= first < stop <= self.n_epochs):
            raise ZunaValueError(f"The span of epochs must be 0 <= first < stop <= {self.n_epochs}, "
                                 f"got {first!r}, {stop!r}.")
        return _chunk(self.signal, self.plan, self.good, int(first), int(stop), self.stats)

    def window(self, epoch_index):
        """``(first, pre)``: the cached window of :attr:`window_epochs` epochs that holds ``epoch_index``."""
        index = self.resolve_epoch(epoch_index)
        first = index // self.window_epochs * self.window_epochs
        with self._lock:
            if first in self._windows:
                self._windows.move_to_end(first)
                return first, self._windows[first]
        pre = self.epochs(first, min(first + self.window_epochs, self.n_epochs))
        with self._lock:
            self._windows[first] = pre
            while len(self._windows) > self.max_windows:
                self._windows.popitem(last=False)
        return first, pre

    def original(self, epoch_index, n_rows=None):
        """:meth:`Preprocessed.original` of one epoch of the recording (its window prepared if needed)."""
        first, pre = self.window(epoch_index)
        return pre.original(self.resolve_epoch(epoch_index) - first, n_rows)

    def close(self):
        """Remove the spilled signal, if any (the object then prepares nothing more)."""
        self._finalizer()


def stream_preprocessed(raw, variant, folder, *, segment_duration=None, chunk_epochs=None, verbose=None):
    """The official preprocessing of ``raw``, chunk by chunk, in bounded memory.

    Parameters
    ----------
    raw : mne.io.Raw
        From :func:`zuna_lab.read_raw` (``preload=False`` for a file; its samples checked).
    variant : {"ZUNA", "ZUNA1.1"}
    folder : path-like
        For the temporary signal file (removed when the generator ends).
    segment_duration, verbose
        As in :func:`preprocess`.
    chunk_epochs : int | None
        Epochs per chunk (None: :data:`CHUNK_EPOCHS`).

    Yields
    ------
    plan : StreamPlan
        First: the recording's epochs (count, starts, lengths) and chunks.
    (first, pre) : tuple
        Then per chunk: the index of its first epoch and a :class:`Preprocessed` of its epochs, whose
        ``epoch_start`` are the recording's — equal to epochs ``first …`` of :func:`preprocess`.

    Examples
    --------
    >>> chunks = stream_preprocessed(zl.read_raw("night.edf", preload=False), "ZUNA1.1", "/tmp")  # doctest: +SKIP
    >>> plan = next(chunks)                                                                      # doctest: +SKIP
    >>> for first, pre in chunks: ...                                                            # doctest: +SKIP
    """
    check_recording(raw, variant, samples=False)
    resolve_segment_duration(variant, segment_duration)
    chunk_epochs = CHUNK_EPOCHS if chunk_epochs is None else int(chunk_epochs)
    if variant == "ZUNA1.1" and not needs_resample(variant, float(raw.info["sfreq"])):
        yield from _interleaved(raw, folder, segment_duration, chunk_epochs, verbose)
        return
    spans = EpochSpans(raw, variant, folder, segment_duration=segment_duration, chunk_epochs=chunk_epochs,
                       spill=True, verbose=verbose)
    try:
        yield spans.plan
        for first, stop in spans.plan.chunks:
            yield first, spans.epochs(first, stop)
    finally:
        spans.close()


def _interleaved(raw, folder, segment_duration, chunk_epochs, verbose):
    """ZUNA1.1 without resampling: no statistic spans the recording, so each chunk comes as soon as its spans
    are filtered, and the model works on one chunk while the next is read and filtered."""
    sfreq = float(raw.info["sfreq"])
    spill = Spill(folder, len(raw.ch_names), raw.n_times)
    spans = _filter_into(spill, raw, sfreq, verbose, max(1 << 12, SPAN_VALUES // len(raw.ch_names)))
    written = 0
    try:
        plan = stream_plan(raw, spill, sfreq, False, "ZUNA1.1", segment_duration=segment_duration,
                           chunk_epochs=chunk_epochs)
        yield plan
        for first, stop in plan.chunks:
            end = spill.n_times if stop == plan.n_epochs else stop * plan.segment
            while written < end:
                written = next(spans)
            yield first, _chunk(spill, plan, None, first, stop, None)
    finally:
        spill.close()


def _chunk(spill, plan, good, first, stop, stats):
    start = first * plan.segment
    end = spill.n_times if stop == plan.n_epochs else stop * plan.segment
    signal = spill.read(start, end)
    if plan.variant == "ZUNA":
        parts = _zuna_chunk(signal[:, :(stop - first) * plan.segment], plan.segment, good, stats)
    else:
        parts = zuna11_segments(signal, plan.common["sfreq"], plan.segment / plan.common["sfreq"])
        parts.pop("stats")
        parts["stats"] = dict(segment_samples=plan.segment, std_epsilon=1e-6)
    parts["epoch_start"] = plan.epoch_start[first:stop]
    return assemble_epochs(plan.variant, parts, dict(plan.common), dict(plan.provenance))


def _zuna_chunk(signal, segment, good, stats):
    """ZUNA's epochs of one chunk with the recording's statistics (what :func:`_zuna_epochs` computes)."""
    gm, gs, fm, fs = (stats[k] for k in ("global_mean", "global_std", "final_mean", "final_std"))
    reference = signal[good].mean(axis=0)
    z = (_referenced(signal, good) - gm) / gs
    n_channels, n_epochs = len(signal), signal.shape[1] // segment
    epochs = z.reshape(n_channels, n_epochs, segment).transpose(1, 0, 2)
    baseline = epochs.mean(axis=2)
    normalised = (epochs - baseline[:, :, None] - fm) / fs
    volts = tuple(signal[:, i * segment:(i + 1) * segment] for i in range(n_epochs))
    references = tuple(reference[i * segment:(i + 1) * segment] for i in range(n_epochs))
    return dict(normalised=list(normalised), volts=volts, reference=references,
                scale=np.full((n_epochs, n_channels), fs * gs), offset=(fm + baseline) * gs + gm,
                stats=dict(stats))
