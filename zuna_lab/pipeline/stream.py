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
import uuid
from dataclasses import dataclass
from pathlib import Path

import mne
import numpy as np

from ..config import VARIANT_CONSTANTS
from ..io.montage import channel_positions
from .preprocessing import (HIGHPASS_HZ, REFERENCE_PIPELINES, assemble_epochs, highpass, resolve_segment_duration,
                            zuna11_segments, check_recording)

__all__ = ["Spill", "StreamPlan", "filtered_spill", "zuna_statistics", "stream_plan", "stream_preprocessed",
           "CHUNK_EPOCHS", "SPAN_VALUES"]

#: Epochs per chunk (64 epochs of 5 s: about 20 MB of signal for 32 channels).
CHUNK_EPOCHS = 64
#: Values (channels x samples) read from the source at a time: 32 MB of float64, whatever the channel count.
SPAN_VALUES = 1 << 22


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


def _needs_resample(variant, source_sfreq):
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
    if not _needs_resample(variant, source_sfreq):
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
    how many samples are written after each span."""
    n_times = raw.n_times
    margin = _filter_margin(sfreq)
    for start in range(0, n_times, span):
        stop = min(start + span, n_times)
        first, last = max(0, start - margin), min(n_times, stop + margin)
        block = highpass(raw.get_data(start=first, stop=last), sfreq, verbose)
        spill.write(start, block[:, start - first:stop - first])
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
                      common, provenance)


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
    good = [i for i, name in enumerate(raw.ch_names) if name not in raw.info["bads"]]
    if variant == "ZUNA1.1" and not _needs_resample(variant, float(raw.info["sfreq"])):
        # no statistic spans the recording: each chunk comes as soon as its spans are filtered, so that
        # the model works on one chunk while the next is read and filtered
        sfreq, mne_verbose = float(raw.info["sfreq"]), verbose if verbose is not None else "error"
        spill = Spill(folder, len(raw.ch_names), raw.n_times)
        spans = _filter_into(spill, raw, sfreq, mne_verbose, max(1 << 12, SPAN_VALUES // len(raw.ch_names)))
        written = 0
    else:
        spill, sfreq, resampled = filtered_spill(raw, variant, folder, verbose=verbose)
        spans, written = None, spill.n_times
    try:
        stats = None
        if variant == "ZUNA":
            stats = zuna_statistics(spill, good, int(round(5.0 * sfreq)), span_epochs=chunk_epochs)
        plan = stream_plan(raw, spill, sfreq, spans is None and resampled, variant, segment_duration=segment_duration,
                           chunk_epochs=chunk_epochs, stats=stats)
        yield plan
        for first, stop in plan.chunks:
            end = spill.n_times if stop == plan.n_epochs else stop * plan.segment
            while written < end:
                written = next(spans)
            yield first, _chunk(spill, plan, good, first, stop, stats)
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
