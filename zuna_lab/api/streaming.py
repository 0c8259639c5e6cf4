"""Recordings longer than memory: ``zl.embed(..., out=PATH)`` streamed to zarr, and the check that
refuses an in-memory request that would not fit.

The stages are those of :func:`zuna_lab.embed`, chunk by chunk: read lazily
(:func:`~zuna_lab.io.read.read_raw` with ``preload=False``) → masks → preprocess
(:func:`~zuna_lab.pipeline.stream.stream_preprocessed`: the same epochs as the in-memory pipeline)
→ tokens → model → each chunk's values written into the result's zarr folder
(:class:`~zuna_lab.io.write.ZarrRegions`), which is then moved into place atomically and opened
lazily. Memory holds a chunk of epochs (64) and their latents, whatever the recording's length.
"""
from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from types import SimpleNamespace

import mne
import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import ZunaTypeError, ZunaValueError
from ..io.read import read_raw, source_name
from ..io.write import MemoryRegions, ZarrRegions, output_target, replace_atomically
from ..pipeline import masks, results
from ..pipeline.batching import auto_batch_size, prefetched, to_host_later
from ..pipeline.embedding import (empty_grid, hidden_grid, length_batches, padding_grid, place_latents,
                                  tokenize_epochs)
from ..pipeline.results import reconstruction_dataset
from ..pipeline.seams import run_correction, span_runs
from ..pipeline.stream import CHUNK_EPOCHS, EpochSpans, needs_resample, stream_preprocessed
from ..pipeline.tokens import epoch_masks

__all__ = ["embed_to_zarr", "embed_overlapped", "overlaps", "reconstruct_to_zarr", "check_fits_in_memory",
           "available_memory", "in_memory_bytes", "prepare_spans", "reconstruct_spans", "check_epochs"]

#: Bytes held per channel and 256 Hz sample by the in-memory paths, besides the recording itself
#: (its copy, the filtered signal, the model input, the result; reconstruct: three signals per
#: sample drawn and their working copies). Measured: 60 min x 64 ch reconstructed peaked at 4.5 GB.
BYTES_PER_SAMPLE = {"embed": 40, "reconstruct": 80}
#: Epochs from which ``zl.embed`` of a file on a GPU reads and preprocesses under the encoding (two chunks)
OVERLAP_EPOCHS = 2 * CHUNK_EPOCHS


def available_memory():
    """Bytes of memory available to this process now (what the OS could give without swapping)."""
    try:
        import psutil
    except ImportError:      # psutil comes with dask.distributed; without it, Linux's own count
        try:
            with open("/proc/meminfo") as handle:
                fields = dict(line.split(":", 1) for line in handle)
            return int(fields["MemAvailable"].split()[0]) * 1024
        except (OSError, KeyError, ValueError):
            return 1 << 62      # unknown: refuse nothing
    return int(psutil.virtual_memory().available)


def _recording_size(data, sfreq):
    """(n_channels, n_times, sfreq) of ``data`` without reading its samples, or None when unknown."""
    if isinstance(data, mne.io.BaseRaw):
        return len(data.ch_names), data.n_times, float(data.info["sfreq"])
    if isinstance(data, np.ndarray) and data.ndim == 2 and sfreq:
        return data.shape[0], data.shape[1], float(sfreq)
    if isinstance(data, (str, os.PathLike)) and not str(data).lower().endswith((".csv", ".tsv")):
        try:
            header = mne.io.read_raw(data, preload=False, verbose="error")
        except Exception:       # unreadable: read_raw says why, in its own words
            return None
        n_eeg = len(mne.pick_types(header.info, eeg=True, exclude=())) or len(header.ch_names)
        return n_eeg, header.n_times, float(header.info["sfreq"])
    return None


def in_memory_bytes(data, task, *, sfreq=None, n_samples=1):
    """About how many bytes ``zl.embed``/``zl.reconstruct`` (``task``) of ``data`` hold at their peak, or 0."""
    size = _recording_size(data, sfreq)
    if size is None:
        return 0
    n_channels, n_times, rate = size
    per_sample = BYTES_PER_SAMPLE[task] + (48 * (n_samples - 1) if task == "reconstruct" else 0)
    return int(n_channels * n_times * (8 + per_sample * 256.0 / rate))


def check_fits_in_memory(data, task, *, sfreq=None, n_samples=1, fix=None, doing=None):
    """Refuse, before any work, an in-memory ``task`` whose peak would exceed the available memory (``fix``:
    the advice, by default to pass ``out=``; ``doing``: what the sentence says is done, by default the task's)."""
    need, have = in_memory_bytes(data, task, sfreq=sfreq, n_samples=n_samples), available_memory()
    if need > have:
        fix = fix or f"pass out='{_suggested_name(data, task)}' to stream it to disk in bounded memory"
        doing = doing or ("Embedding" if task == "embed" else "Reconstructing")
        raise ZunaValueError(f"{doing} this recording in memory needs "
                             f"about {need / 1e9:.1f} GB but {have / 1e9:.1f} GB are available; {fix}.")


def _suggested_name(data, task):
    result = "embedding" if task == "embed" else "reconstruction"
    if isinstance(data, (str, os.PathLike)):
        return f"{os.path.splitext(os.path.basename(os.fspath(data)))[0]}_{result}.zarr"
    return f"{result}.zarr"


def embed_to_zarr(data, model, out, *, overwrite=False, segment_duration=None, bad_channels=None,
                  use_annotations=True, mask=None, batch_size=None, sfreq=None, ch_names=None, progress=None,
                  verbose=None):
    """:func:`zuna_lab.embed` streamed into the zarr folder ``out`` (arguments checked by the caller).

    Returns the result opened lazily (dask-backed) from ``out``: the same variables, coordinates
    and values as the in-memory result.
    """
    import xarray as xr

    path = output_target(out, overwrite, folder=True)      # before any work
    read = _read_lazily(data, sfreq, ch_names, bad_channels, verbose,                               # read, masks
                        use_annotations=use_annotations, mask=mask)
    replace_atomically(lambda folder: _embed_chunks(data, model, read, path.parent, partial(ZarrRegions, folder),
                                                    segment_duration, mask, batch_size, progress, verbose),
                       path, ".zarr")
    return xr.open_zarr(path, consolidated=True)


def embed_overlapped(data, model, *, segment_duration=None, bad_channels=None, use_annotations=True, mask=None,
                     batch_size=None, sfreq=None, ch_names=None, progress=None, verbose=None):
    """:func:`zuna_lab.embed` in memory through the streamed stages (arguments checked by the caller): the
    file is read and preprocessed chunk by chunk on a thread while the GPU encodes, the signal spilled to a
    temporary folder. The same result as the in-memory pipeline's (see :func:`overlaps`)."""
    import tempfile

    read = _read_lazily(data, sfreq, ch_names, bad_channels, verbose, use_annotations=use_annotations, mask=mask)
    with tempfile.TemporaryDirectory(prefix="zuna_lab-embed-") as folder:
        regions = _embed_chunks(data, model, read, folder, MemoryRegions, segment_duration, mask, batch_size,
                                progress, verbose)
    return regions.dataset


def overlaps(data, model, *, events=None):
    """Whether ``zl.embed(data)`` in memory is faster through the streamed stages: a file of at least
    :data:`OVERLAP_EPOCHS` 5 s epochs, on a GPU, where the chunks can come while the file is read (ZUNA1.1 at
    its own rate: nothing spans the recording) — reading and preprocessing then run under the encoding."""
    if model.device.type != "cuda" or events is not None or model.variant != "ZUNA1.1":
        return False
    if not isinstance(data, (str, os.PathLike)) or not os.path.isfile(data):
        return False
    try:
        header = mne.io.read_raw(data, preload=False, verbose="error")
    except Exception:            # noqa: BLE001 — the reader of the in-memory path says what is wrong
        return False
    rate = float(header.info["sfreq"])
    return not needs_resample("ZUNA1.1", rate) and header.n_times / rate >= OVERLAP_EPOCHS * 5.0


def _embed_chunks(data, model, read, spill_folder, regions_for, segment_duration, mask, batch_size, progress,
                  verbose):
    """Preprocess (spilled in ``spill_folder``), tokenise and encode the lazily read recording chunk by chunk
    into ``regions_for(template)``; returns the regions. The regions (the result's arrays, or its zarr store)
    are made on the writing thread while the first chunk is read and encoded."""
    raw, request, work = read
    chunks, plan = _stream(work, model, spill_folder, segment_duration, mask, len(raw.ch_names), verbose)  # preprocess

    def make_regions():
        return regions_for(results.embedding_template(
            plan.n_epochs, len(raw.ch_names), plan.max_tokens, model.config.latent_dim,
            chunk_epochs=plan.chunk_epochs,
            ch_names=plan.common["ch_names"], ch_pos=plan.common["ch_pos"], epoch_start=plan.epoch_start,
            samples_per_token=model.config.constants["samples_per_token"], sfreq=plan.common["sfreq"],
            attrs=results.provenance(model, _described(plan), source=source_name(data))))

    size = batch_size or auto_batch_size(model, len(raw.ch_names) * plan.max_tokens, task="embed")
    with ThreadPoolExecutor(1, thread_name_prefix="zuna_lab-write") as writer:
        regions = writer.submit(make_regions)
        with tqdm(total=plan.n_epochs, desc="embed", unit="epoch",
                  disable=not (progress if progress is not None else plan.n_epochs > 50)) as bar:
            _encode_chunks(model, chunks, request, plan, size, regions, bar, writer)
        return regions.result()


def _encode_chunks(model, chunks, request, plan, size, regions, bar, writer):
    """Encode the preprocessed ``chunks`` into ``regions`` (a future). On a GPU three things run at once: the
    next chunks are read, preprocessed and tokenised on a thread (two ahead), this one is encoded, and the
    previous one's latents are put on their grid and written on the ``writer`` thread; on a CPU the
    stages take turns (they would compete for the same cores)."""
    on_gpu = model.device.type == "cuda"

    def tokenised():
        for first, pre in chunks:
            layout = epoch_masks(pre, _chunk_request(request, first, pre))                       # tokens
            yield first, pre, layout, [(indices, *tokenize_epochs(pre, layout, indices, model.variant))
                                       for indices in length_batches(pre, None, size)]

    def finish(first, pre, layout, encoded):
        grid = empty_grid(pre.n_epochs, len(layout.ch_names), plan.max_tokens, model.config.latent_dim)
        for indices, latents, n_tokens in encoded:
            place_latents(grid, indices, latents(), n_tokens, model.variant)
        regions.result().write(first, embedding=grid, mask=hidden_grid(pre, layout, plan.max_tokens),   # Dataset
                               padding=padding_grid(pre, layout, plan.max_tokens))
        bar.update(pre.n_epochs)

    written = None
    for first, pre, layout, batches in prefetched(tokenised(), 2 if on_gpu else 1):
        encoded = [(indices, to_host_later(model.encode(torch.from_numpy(tokens), torch.from_numpy(tok_idx))),
                    batch_masks.shape[-1]) for indices, tokens, tok_idx, batch_masks in batches]      # model
        if written is not None:
            written.result()                  # at most one chunk waits to be written
        if on_gpu:
            written = writer.submit(finish, first, pre, layout, encoded)
        else:
            finish(first, pre, layout, encoded)
    if written is not None:
        written.result()


def _read_lazily(data, sfreq, ch_names, bad_channels, verbose, **mask_options):
    """The recording read lazily, its mask request, and the copy the preprocessing reads (BAD_ spans are
    masks, not dropped epochs; the hidden channels are its bads, as in :func:`zuna_lab.api.core.prepare`)."""
    raw = read_raw(data, sfreq=sfreq, ch_names=ch_names, preload=False, verbose=verbose)
    bads = masks.hidden_channels(raw, bad_channels)
    request = masks.request(raw, bads=bads, **mask_options)
    work = raw.copy()
    work.set_annotations(None)
    work.info["bads"] = list(bads)
    return raw, request, work


def _stream(work, model, folder, segment_duration, mask, n_channels, verbose):
    """The chunks of the preprocessed recording (spilled in ``folder``) and their plan, the mask checked."""
    chunks = stream_preprocessed(work, model.variant, folder, segment_duration=segment_duration, verbose=verbose)
    plan = next(chunks)
    _check_mask(mask, plan, n_channels)
    return chunks, plan


def _check_mask(mask, plan, n_channels):
    if mask is None:
        return
    expected = (plan.n_epochs, n_channels, plan.max_tokens)
    if np.shape(mask) != expected:
        raise ZunaValueError(f"mask must have shape (n_epochs, n_channels, n_tokens) = {expected} for this "
                             f"recording, got {np.shape(mask)}.")


def _chunk_request(request, first, pre):
    """The mask request of one chunk: a user mask cut to its epochs (and their tokens)."""
    if request.mask is None:
        return request
    n_tokens = max(pre.n_samples(i) for i in range(pre.n_epochs)) // 32
    return dataclasses.replace(request, mask=np.asarray(request.mask)[first:first + pre.n_epochs, :, :n_tokens])


def reconstruct_to_zarr(data, model, out, *, overwrite=False, steps=50, cfg=1.0, seed=None, bad_channels=None,
                        bad_segments=None, use_annotations=True, mask=None, add_channels=None, n_samples=1,
                        segment_duration=None, batch_size=None, sfreq=None, ch_names=None, progress=None,
                        callback=None, verbose=None):
    """:func:`zuna_lab.reconstruct` streamed into the zarr folder ``out`` (arguments checked by the caller).

    Chunk by chunk: the epochs' reconstructions (noise per (seed, sample, epoch), as in memory), the
    originals, and the hybrid seam-corrected on the stitched recording
    (:class:`~zuna_lab.pipeline.seams.StreamedSeams`: a run that crosses chunks is corrected when it
    ends, its earlier part in place). Returns the result opened lazily from ``out``.
    """
    import xarray as xr

    from ..io.read import recording_fingerprint, remember_source
    from ..pipeline.seams import StreamedSeams
    from .infill import reconstruct_epochs

    path = output_target(out, overwrite, folder=True)
    raw, request, work = _read_lazily(data, sfreq, ch_names, bad_channels, verbose,                 # read, masks
                                      bad_segments=bad_segments, use_annotations=use_annotations, mask=mask,
                                      add_channels=add_channels)
    seed = int(np.random.SeedSequence().entropy % (2**31)) if seed is None else int(seed)
    run = dict(steps=int(steps), cfg=float(cfg), seed=seed, n_samples=int(n_samples))
    extra = dict(run, seam_correction="linear ramp on the stitched recording (as zuna 1.1.6 reconstruct_fif)",
                 source_fingerprint=recording_fingerprint(raw), source_ref=remember_source(data))

    def write(folder):
        chunks, plan = _stream(work, model, path.parent, segment_duration, mask, len(raw.ch_names), verbose)  # preprocess
        spt = model.config.constants["samples_per_token"]
        n_rows = len(raw.ch_names) + len(request.added_names)
        n_times = int(plan.n_samples.max())
        template = results.reconstruction_template(
            n_samples, plan.n_epochs, n_rows, n_times, chunk_epochs=plan.chunk_epochs,
            ch_names=list(plan.common["ch_names"]) + list(request.added_names),
            ch_pos=np.vstack([plan.common["ch_pos"], np.asarray(request.added_positions).reshape(-1, 3)]),
            epoch_start=plan.epoch_start, sfreq=plan.common["sfreq"], samples_per_token=spt,
            attrs=results.provenance(model, _described(plan), source=source_name(data),
                                     extra=dict(extra, model_n_times=int(plan.common["n_times"]))),
            added=np.r_[np.zeros(len(raw.ch_names), bool), np.ones(len(request.added_names), bool)])
        regions = ZarrRegions(folder, template)
        seams = StreamedSeams(n_rows, n_samples)
        size = batch_size or auto_batch_size(model, n_rows * (n_times // spt))
        total = sum(len(list(length_batches(_Lengths(plan, a, b), None, size))) for a, b in plan.chunks) * n_samples
        done = 0
        with tqdm(total=plan.n_epochs * n_samples, desc="reconstruct", unit="epoch",
                  disable=not (progress if progress is not None else plan.n_epochs * n_samples > 20)) as bar:
            for first, pre in prefetched(chunks, 1):
                layout = epoch_masks(pre, _chunk_request(request, first, pre))                 # tokens
                volts = reconstruct_epochs(pre, layout, model, list(range(pre.n_epochs)), steps=steps, cfg=cfg,
                                           seed=seed, n_samples=n_samples, batch_size=size, first=first,
                                           callback=callback, progress=bar, done=done, total=total)  # model
                done += len(list(length_batches(pre, None, size))) * n_samples
                final = first + pre.n_epochs == plan.n_epochs
                _write_chunk(regions, seams, plan, pre, layout, volts, first, n_rows, n_times, n_samples, final)

    replace_atomically(write, path, ".zarr")
    return xr.open_zarr(path, consolidated=True)


class _Lengths:
    """Epoch lengths of a chunk, as ``length_batches`` reads them (to count the batches ahead)."""

    def __init__(self, plan, first, stop):
        self.lengths = plan.n_samples[first:stop]
        self.n_epochs = len(self.lengths)

    def n_samples(self, index):
        return int(self.lengths[index])


def _described(plan):
    return SimpleNamespace(source_sfreq=plan.common["source_sfreq"], sfreq=plan.common["sfreq"],
                           params=plan.provenance, data_norm=plan.common["data_norm"],
                           data_clip=plan.common["data_clip"])


def _write_chunk(regions, seams, plan, pre, layout, volts, first, n_rows, n_times, n_samples, final):
    """One chunk's original, reconstruction, mask and seam-corrected hybrid, and the corrections of runs
    that began in earlier chunks."""
    spt, n_epochs = 32, pre.n_epochs
    shape = (n_samples, n_epochs, n_rows, n_times)
    reconstruction, original = np.full(shape, np.nan), np.full(shape[1:], np.nan)
    hidden = np.zeros((n_epochs, n_rows, n_times // spt), bool)
    cells = np.zeros((n_rows, sum(pre.n_samples(i) for i in range(n_epochs))), bool)
    stitched = np.empty((n_samples,) + cells.shape)
    offset = 0
    for index in range(n_epochs):
        width = pre.n_samples(index)
        reconstruction[:, index, :, :width] = volts[index]
        original[index, :, :width] = pre.original(index, n_rows)
        hidden[index, :, :width // spt] = layout.masks[index]
        cells[:, offset:offset + width] = layout.sample_mask(pre, index)
        stitched[:, :, offset:offset + width] = np.where(cells[:, offset:offset + width], volts[index],
                                                         original[index, :, :width])
        offset += width
    start = first * plan.segment
    fixes = seams.correct(start, stitched, cells, final=final)
    hybrid = np.full(shape, np.nan)
    offset = 0
    for index in range(n_epochs):
        width = pre.n_samples(index)
        hybrid[:, index, :, :width] = stitched[:, :, offset:offset + width]
        offset += width
    arrays = dict(original=original, mask=hidden,
                  reconstruction=reconstruction[0] if n_samples == 1 else reconstruction,
                  hybrid=hybrid[0] if n_samples == 1 else hybrid)
    if n_samples > 1:
        arrays["reconstruction_std"] = reconstruction.std(axis=0, ddof=1)
    regions.write(first, **arrays)
    for row, begin, stop, add in fixes:
        _apply_fix(regions, plan, row, begin, stop, add, n_samples)


def _apply_fix(regions, plan, row, begin, stop, add, n_samples):
    """Add a run's correction to its part in chunks already written, epoch by epoch."""
    for epoch in range(begin // plan.segment, (stop - 1) // plan.segment + 1):
        lo, hi = max(begin, epoch * plan.segment), min(stop, (epoch + 1) * plan.segment)
        values = add(np.arange(lo, hi))
        times = slice(lo - epoch * plan.segment, hi - epoch * plan.segment)
        if n_samples == 1:
            regions.add("hybrid", (epoch, row, times), values[0])
        else:
            regions.add("hybrid", (slice(None), epoch, row, times), values)


def prepare_spans(data, variant, *, bad_channels=None, segment_duration=None, events=None, sfreq=None, ch_names=None,
                  verbose=None):
    """What :func:`zuna_lab.api.core.prepare` holds, for a recording read lazily: ``(raw, spans, bads)``, with
    ``spans`` an :class:`~zuna_lab.pipeline.stream.EpochSpans` that prepares any span of epochs on request."""
    if events is not None:
        raise ZunaValueError("preload=False prepares fixed segments; trials around events are prepared in memory: "
                             "leave preload out.")
    raw, request, work = _read_lazily(data, sfreq, ch_names, bad_channels, verbose)
    return raw, EpochSpans(work, variant, segment_duration=segment_duration, verbose=verbose), request.bads


def reconstruct_spans(prepared, model, layout, chosen, run, *, batch_size=None, progress=None, callback=None):
    """:func:`zuna_lab.api.core.reconstruct_prepared` of epochs ``chosen`` of a recording prepared lazily
    (``prepared.pre`` an :class:`~zuna_lab.pipeline.stream.EpochSpans`), in bounded memory.

    Only the chosen epochs are reconstructed, and those holding the ends of a hidden run that reaches
    them (:func:`~zuna_lab.pipeline.seams.span_runs`): the seam correction of a run depends on its ends
    alone, so the hybrid equals the whole recording's. Each epoch is prepared with its window.
    """
    pre, n_samples, spt = prepared.pre, run["n_samples"], model.config.constants["samples_per_token"]
    starts = np.rint(np.asarray(pre.epoch_start) * pre.sfreq).astype(int)
    runs, needed = span_runs(starts, pre.plan.n_samples, layout.masks, chosen, spt)
    n_rows, n_times = len(layout.ch_names), int(pre.plan.n_samples.max())
    size = batch_size or auto_batch_size(model, n_rows * (n_times // spt))
    groups = {}
    for index in needed:
        groups.setdefault(index // pre.window_epochs * pre.window_epochs, []).append(index)
    total = sum(len(list(length_batches(_Lengths(pre.plan, a, a + pre.window_epochs), [i - a for i in group],
                                        size))) for a, group in groups.items()) * n_samples
    volts, done = {}, 0
    with tqdm(total=len(needed) * n_samples, desc="reconstruct", unit="epoch",
              disable=not (progress if progress is not None else len(needed) * n_samples > 20)) as bar:
        for first, group in groups.items():
            window = pre.window(first)[1]
            part = dataclasses.replace(layout, masks=layout.masks[first:first + window.n_epochs])
            local = [index - first for index in group]
            out = _reconstruct_window(window, part, model, local, run, size, first, callback, bar, done, total)
            done += len(list(length_batches(window, local, size))) * n_samples
            volts.update({first + index: values for index, values in out.items()})
    return _span_dataset(prepared, model, layout, chosen, volts, runs, starts, run)


def _reconstruct_window(pre, layout, model, indices, run, size, first, callback, bar, done, total):
    """:func:`~zuna_lab.api.infill.reconstruct_epochs` of a window whose first epoch is the recording's ``first``."""
    from .infill import reconstruct_epochs

    return reconstruct_epochs(pre, layout, model, indices, steps=run["steps"], cfg=run["cfg"], seed=run["seed"],
                              n_samples=run["n_samples"], batch_size=size, first=first, callback=callback,
                              progress=bar, done=done, total=total)


def _span_dataset(prepared, model, layout, chosen, volts, runs, starts, run):
    """The reconstruct Dataset of epochs ``chosen``, the hybrid seam-corrected as on the stitched recording."""
    pre, n_samples, spt = prepared.pre, run["n_samples"], model.config.constants["samples_per_token"]
    n_rows, n_times = len(layout.ch_names), int(pre.plan.n_samples.max())
    shape = (n_samples, len(chosen), n_rows, n_times)
    reconstruction, hybrid, original = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape[1:], np.nan)
    hidden = np.zeros((len(chosen), n_rows, n_times // spt), bool)

    def value(signal, row, sample):          # (draw,) values of the original or a reconstruction at one sample
        epoch = int(np.searchsorted(starts, sample, "right") - 1)
        if signal == "original":
            return np.full(n_samples, pre.original(epoch, n_rows)[row, sample - starts[epoch]])
        return volts[epoch][:, row, sample - starts[epoch]]

    for k, epoch in enumerate(chosen):
        width, start = pre.n_samples(epoch), starts[epoch]
        cells = layout.sample_mask(pre, epoch)
        original[k, :, :width] = pre.original(epoch, n_rows)
        reconstruction[:, k, :, :width] = volts[epoch]
        hybrid[:, k, :, :width] = np.where(cells, volts[epoch], original[k, :, :width])
        hidden[k, :, :width // spt] = layout.masks[epoch]
        for row, begin, stop, left, right in runs:
            lo, hi = max(begin, start), min(stop, start + width)
            add = None if lo >= hi or not (left or right) else run_correction(
                begin, stop - begin, value("original", row, begin - 1) if left else np.full(n_samples, np.nan),
                value("volts", row, begin), value("original", row, stop) if right else np.full(n_samples, np.nan),
                value("volts", row, stop - 1))
            if add is not None:
                hybrid[:, k, row, lo - start:hi - start] += add(np.arange(lo, hi))
    attrs = results.provenance(model, pre, source=prepared.source, extra=dict(
        run, seam_correction="linear ramp on the stitched recording (as zuna 1.1.6 reconstruct_fif)",
        model_n_times=int(pre.n_times), source_fingerprint=prepared.fingerprint, source_ref=prepared.source_ref))
    chosen = np.asarray(chosen)
    return reconstruction_dataset(original, reconstruction, hybrid, hidden, ch_names=layout.ch_names,
                                  ch_pos=layout.ch_pos, epoch_start=pre.epoch_start[chosen], sfreq=pre.sfreq,
                                  samples_per_token=spt, attrs=attrs, added=layout.added, epoch_index=chosen)


def check_epochs(epochs, n_epochs):
    """``epochs`` checked: distinct indices of the recording's epochs, sorted (None: all)."""
    if epochs is None:
        return list(range(n_epochs))
    if isinstance(epochs, (int, np.integer)) and not isinstance(epochs, bool):
        epochs = [epochs]
    if isinstance(epochs, (str, bytes)) or not hasattr(epochs, "__iter__"):
        raise ZunaTypeError(f"epochs must be a list of epoch indices, got {type(epochs).__name__}.")
    chosen = []
    for index in epochs:
        if not isinstance(index, (int, np.integer)) or isinstance(index, bool):
            raise ZunaTypeError(f"epochs must be integer indices, got {index!r}.")
        if not 0 <= index < n_epochs:
            raise ZunaValueError(f"epoch {index} does not exist; the recording has epochs 0 to {n_epochs - 1}.")
        chosen.append(int(index))
    if not chosen:
        raise ZunaValueError("epochs is empty; pass at least one epoch index, or None for all.")
    if len(set(chosen)) != len(chosen):
        raise ZunaValueError("epochs lists an epoch twice; give each index once.")
    return sorted(chosen)
