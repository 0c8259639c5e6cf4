"""embed / reconstruct / to_raw: recording in, labelled xarray Dataset out, and back.

Orchestration only. Each public function runs the stages in order, each stage a module that
calls only later ones:

read (:mod:`~zuna_lab.io.read`) → masks (:mod:`~zuna_lab.pipeline.masks`) → preprocess
(:mod:`~zuna_lab.pipeline.preprocessing`) → tokens (:mod:`~zuna_lab.pipeline.tokens`) → model
(:mod:`~zuna_lab.model` or its CUDA fast path) → Datasets (:mod:`~zuna_lab.pipeline.results`), and for
the way back: find the recording (:mod:`~zuna_lab.io.read`) → splice the repair into it
(:mod:`~zuna_lab.io.export`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import mne
import numpy as np
import torch
from tqdm.auto import tqdm

from ..pipeline import results, masks
from .cache import cached_model, clear_model_cache, get_model  # noqa: F401  (public through core too)
from ..errors import ZunaTypeError, ZunaValueError, warn
from ..logs import logger, verbose
from ..io.export import check_sample, eeg_only, save_fif, splice
from ..pipeline.batching import auto_batch_size, prefetched, to_host_later
from ..pipeline.preprocessing import HIGHPASS_HZ, preprocess, preprocess_trials
from ..io.read import find_source, read_raw, recording_fingerprint, remember_source, source_name, trials_as_raw
from ..pipeline.seams import joined_epochs, seam_correct, stitched_hybrid
from ..pipeline.events import Trials, check_event_arguments, epochs_trials, event_trials
from ..pipeline.embedding import (empty_grid, hidden_grid, length_batches, padding_grid, place_latents,
                                  tokenize_epochs)
from ..pipeline.tokens import epoch_masks
from ..validation import check_arguments, check_bool
from .infill import reconstruct_epochs
from .streaming import (check_epochs, check_fits_in_memory, embed_overlapped, embed_to_zarr, overlaps,
                        prepare_spans, reconstruct_spans, reconstruct_to_zarr)
from ..pipeline.stream import EpochSpans
from ..io.write import check_reconstruct_dataset, output_target

__all__ = ["embed", "reconstruct", "to_raw", "write_fif", "prepare", "reconstruct_prepared", "Prepared"]


@dataclass(frozen=True, eq=False)
class Prepared:
    """A recording read and preprocessed once for one model variant; masks are added per call.

    Made by :func:`prepare`; :func:`reconstruct_prepared` reconstructs any of its epochs with
    the same code as :func:`reconstruct` (the dashboard keeps one per set of bad channels).
    """

    raw: mne.io.BaseRaw    # read_raw's output: EEG channels with positions, native rate
    pre: object            # preprocessing.Preprocessed
    bads: tuple            # channels hidden everywhere: info["bads"] + bad_channels
    source: str            # the input file, when there is one
    fingerprint: str       # of the EEG samples read (to_raw checks the recording it splices into)
    source_ref: str = ""   # finds an in-memory input Raw again (recording.remember_source)
    trials: Trials | None = None    # event-locked windows, when the epochs are trials


def prepare(data, variant, *, bad_channels=None, segment_duration=None, events=None, event_id=None, tmin=None,
            tmax=None, sfreq=None, ch_names=None, preload=True, verbose=None):
    """Read a recording and run the official preprocessing of ``variant`` once.

    Parameters
    ----------
    data : path | mne.io.Raw | ndarray
        Anything :func:`zuna_lab.read_raw` takes.
    variant : {"ZUNA", "ZUNA1.1"}
        The model variant whose preprocessing to run (``model.variant``).
    bad_channels : list of str | None
        Channels hidden everywhere, on top of ``info["bads"]`` (ZUNA keeps them out of its
        average reference and statistics, so they are part of the preprocessing).
    segment_duration, events, event_id, tmin, tmax, sfreq, ch_names, verbose
        As in :func:`embed`.
    preload : bool
        False: read the recording lazily and prepare each epoch only when it is used
        (``prepared.pre`` is then a :class:`~zuna_lab.pipeline.stream.EpochSpans`: what spans the
        recording — ZUNA's global statistics, resampling — is done once, in bounded memory, and
        :func:`reconstruct_prepared` prepares and reconstructs only the epochs asked for, with the
        same values as in memory). For recordings longer than memory; not with ``events``.

    Returns
    -------
    prepared : Prepared

    Examples
    --------
    >>> prepared = prepare("data/sample_synthetic_raw.fif", model.variant, bad_channels=["T7"])   # doctest: +SKIP
    >>> rec = reconstruct_prepared(prepared, model, epochs=[3], seed=0)                            # doctest: +SKIP
    """
    if isinstance(data, mne.BaseEpochs):
        return _prepare_epochs(data, variant, bad_channels, verbose)
    if not preload:         # read lazily: epochs are prepared when used
        raw, spans, bads = prepare_spans(data, variant, bad_channels=bad_channels, segment_duration=segment_duration,
                                         events=events, sfreq=sfreq, ch_names=ch_names, verbose=verbose)
        return Prepared(raw=raw, pre=spans, bads=bads, source=source_name(data), fingerprint=recording_fingerprint(raw),
                        source_ref=remember_source(data))
    raw = read_raw(data, sfreq=sfreq, ch_names=ch_names, verbose=verbose)           # read
    trials = None if events is None else event_trials(raw, events, event_id, tmin, tmax, variant)
    bads = masks.hidden_channels(raw, bad_channels)                                  # masks
    work = raw.copy()
    # BAD_ spans become masks, so ZUNA's pipeline must not drop the epochs they touch.
    work.set_annotations(None)
    work.info["bads"] = list(bads)      # ZUNA keeps channels named bad out of the average reference
    pre = preprocess(work, variant, segment_duration=segment_duration, windows=trials,          # preprocess
                     samples_checked=True, verbose=verbose)
    return Prepared(raw=raw, pre=pre, bads=bads, source=source_name(data), fingerprint=recording_fingerprint(raw),
                    source_ref=remember_source(data), trials=trials)


def _prepare_epochs(epochs, variant, bad_channels, verbose):
    """:func:`prepare` for ``mne.Epochs``: the trials read as one recording (channels, positions and
    samples checked as any recording's), then preprocessed trial by trial."""
    raw = read_raw(trials_as_raw(epochs), verbose=verbose)                          # read
    bads = masks.hidden_channels(raw, bad_channels)                                  # masks
    work = raw.copy()
    work.info["bads"] = list(bads)
    event_time = epochs.events[:, 0] / float(epochs.info["sfreq"])
    pre, first_token = preprocess_trials(work, len(epochs), float(epochs.tmin), variant,      # preprocess
                                         event_time=event_time, verbose=verbose)
    if epochs.info["highpass"] < HIGHPASS_HZ - 0.05:
        warn(f"The trials were high-passed at {epochs.info['highpass']:g} Hz, below the 0.5 Hz of ZUNA's "
                      "preprocessing, which a trial is too short to apply; filter the continuous recording at 0.5 Hz "
                      "before epoching, or embed the Raw with events=... (zuna_lab filters it).")
    return Prepared(raw=raw, pre=pre, bads=bads, source="mne.Epochs", fingerprint=recording_fingerprint(raw),
                    trials=epochs_trials(epochs, first_token, pre.sfreq))


@verbose
def embed(data, model=None, *, events=None, event_id=None, tmin=None, tmax=None, segment_duration=None,
          bad_channels=None, use_annotations=True, mask=None, batch_size=None, sfreq=None, ch_names=None, out=None,
          overwrite=False, progress=None, verbose=None):
    """Embed a recording: one 32-d ZUNA latent per channel and 0.125 s token.

    Parameters
    ----------
    data : path | mne.io.Raw | ndarray
        Anything :func:`zuna_lab.read_raw` takes (a NumPy array needs ``sfreq`` and ``ch_names``).
    model : ZunaModel | str | None
        A loaded model, a source for :func:`zuna_lab.load_model`, or None for the default
        (``$ZUNA_LAB_MODEL`` or "Zyphra/ZUNA"), loaded once and cached.
    events : ndarray of int, shape (n_events, 3) | None
        MNE events (``mne.find_events(raw)``, ``mne.events_from_annotations(raw)[0]``): one epoch per
        event instead of fixed segments — the trial from ``tmin`` to ``tmax`` around it, widened to
        whole 0.125 s tokens so that the event falls on a token boundary. The continuous recording is
        resampled and high-passed once, then each trial is cut from it and normalised as the model
        normalises an epoch. ZUNA1.1 takes 0.5–30 s trials; ZUNA 5 s trials only.
    event_id : dict of str to int | int | None
        The events to keep, by name (as in ``mne.Epochs``); None keeps every code.
    tmin, tmax : float | None
        The trial around each event, in seconds (with ``events``).
    segment_duration : float | None
        Epoch length without events: 5 s for ZUNA; 0.5–30 s for ZUNA1.1 (default 5 s).
    bad_channels : list of str | None
        Channels hidden from the encoder (in addition to ``info["bads"]``).
    use_annotations : bool
        Hide tokens overlapping ``BAD_`` annotations (channel-specific ones too).
    mask : ndarray of bool (epoch, channel, token) | None
        Further tokens to hide.
    batch_size : int | None
        Epochs per forward pass; None picks one from the device's free memory.
    sfreq, ch_names : float, list of str
        For NumPy input.
    out : path-like | None
        A zarr folder (``"night.zarr"``) to stream the result into, for recordings of any length:
        the file is read, preprocessed, encoded and written a chunk of 64 epochs at a time, so
        memory does not grow with the recording's duration, and the result is returned opened
        lazily (dask-backed) from ``out`` — the same values as in memory. Not with ``events``.
        Without ``out``, a recording whose result would not fit in the available memory is
        refused before any work, with this advice.
    overwrite : bool
        Replace an existing ``out``.
    progress : bool | None
        Progress bar (tqdm: a widget in Jupyter, a bar on stderr); None shows it for more than 50 epochs.
    verbose : bool | None
        MNE verbosity.

    Returns
    -------
    emb : xarray.Dataset
        ``embedding`` (epoch, channel, token, latent) float32 and ``mask`` (epoch, channel, token),
        with channel names, positions, epoch starts, token times and provenance attrs. With
        ``events``, each epoch is a trial with the coordinates ``event`` (name), ``event_code``,
        ``event_sample`` (MNE's numbering) and ``event_time`` (s), and ``token_time`` counts from
        the event (t = 0).

    Examples
    --------
    >>> import zuna_lab as zl
    >>> emb = zl.embed("data/sample_synthetic_raw.fif")          # doctest: +SKIP
    >>> emb.embedding.sizes                                       # doctest: +SKIP
    >>> emb.to_dataframe().head()                                 # doctest: +SKIP
    >>> trials = zl.embed(raw, events=mne.find_events(raw), event_id={"left": 1, "right": 2},
    ...                   tmin=-0.5, tmax=1.5)                       # doctest: +SKIP
    >>> trials.embedding.mean(["channel", "token"]).groupby("event").mean()   # doctest: +SKIP
    >>> night = zl.embed("night.edf", out="night.zarr")          # 24 h in bounded memory  # doctest: +SKIP
    """
    check_arguments(data=data, segment_duration=segment_duration, bad_channels=bad_channels,   # before any work
                    use_annotations=use_annotations, mask=mask, batch_size=batch_size, sfreq=sfreq,
                    ch_names=ch_names, progress=progress, verbose=verbose, epochs_allowed=True)
    check_bool(overwrite, "overwrite")
    started = time.perf_counter()
    model = get_model(model)
    _check_events(model.variant, events, event_id, tmin, tmax, segment_duration, isinstance(data, mne.BaseEpochs))
    if out is not None:
        if events is not None or isinstance(data, mne.BaseEpochs):
            raise ZunaValueError("out= streams a continuous recording in fixed segments; trials (events=, "
                                 "mne.Epochs) are embedded in memory: leave out= out.")
        streamed = embed_to_zarr(data, model, out, overwrite=overwrite, segment_duration=segment_duration,
                             bad_channels=bad_channels, use_annotations=use_annotations, mask=mask,
                             batch_size=batch_size, sfreq=sfreq, ch_names=ch_names, progress=progress,
                             verbose=verbose)
        logger.info("embed: streamed %d epochs into %s in %.1f s.", streamed.sizes["epoch"], out,
                    time.perf_counter() - started)
        return streamed
    check_fits_in_memory(data, "embed", sfreq=sfreq)
    if overlaps(data, model, events=events):        # a long file on a GPU: read and preprocessed under the encoding
        return embed_overlapped(data, model, segment_duration=segment_duration, bad_channels=bad_channels,
                                use_annotations=use_annotations, mask=mask, batch_size=batch_size,
                                progress=progress, verbose=verbose)
    prepared = prepare(data, model.variant, bad_channels=bad_channels, segment_duration=segment_duration,
                       events=events, event_id=event_id, tmin=tmin, tmax=tmax, sfreq=sfreq, ch_names=ch_names,
                       verbose=verbose)
    request = masks.request(prepared.raw, bads=prepared.bads, use_annotations=use_annotations, mask=mask)
    pre, spt = prepared.pre, model.config.constants["samples_per_token"]
    layout = epoch_masks(pre, request)                                               # tokens
    n_epochs, n_channels = pre.n_epochs, len(layout.ch_names)
    max_tokens = max(pre.n_samples(i) for i in range(n_epochs)) // spt
    embedding = empty_grid(n_epochs, n_channels, max_tokens, model.config.latent_dim)
    hidden = hidden_grid(pre, layout, max_tokens)
    batch_size = batch_size or auto_batch_size(model, n_channels * max_tokens, task="embed")
    bar = _progress(n_epochs, "embed", progress if progress is not None else n_epochs > 50)

    def store(indices, latents, n_tokens):
        place_latents(embedding, indices, latents(), n_tokens, model.variant)
        bar.update(len(indices))

    def tokenized():
        for indices in length_batches(pre, None, batch_size):
            tokens, tok_idx, batch_masks = tokenize_epochs(pre, layout, indices, model.variant)
            yield indices, torch.from_numpy(tokens), torch.from_numpy(tok_idx), batch_masks.shape[-1]

    pending = None
    # On a GPU the next batches are tokenised on a thread and the previous one copied back while
    # the encoder computes.
    for indices, tokens, tok_idx, n_tokens in prefetched(tokenized(), 2 if model.device.type == "cuda" else 0):
        latents = to_host_later(model.encode(tokens, tok_idx))                         # model
        if pending is not None:
            store(*pending)
        pending = (indices, latents, n_tokens)
    if pending is not None:
        store(*pending)
    bar.close()
    attrs = results.provenance(model, pre, source=prepared.source)                 # Datasets
    trials = prepared.trials
    logger.info("embed: %d epochs x %d channels x %d tokens with %s in %.1f s.", n_epochs, n_channels, max_tokens,
                model.variant, time.perf_counter() - started)
    return results.embedding_dataset(embedding, hidden, padding=padding_grid(pre, layout, max_tokens),
                                      ch_names=layout.ch_names, ch_pos=layout.ch_pos,
                                      epoch_start=pre.epoch_start, samples_per_token=spt, sfreq=pre.sfreq,
                                      attrs=attrs, added=layout.added,
                                      epoch_coords=None if trials is None else trials.coords(),
                                      token_t0=0.0 if trials is None else trials.tmin)


@verbose
def reconstruct(data, model=None, *, steps=50, cfg=1.0, seed=0, bad_channels=None, bad_segments=None,
                use_annotations=True, mask=None, add_channels=None, n_samples=1, events=None, event_id=None,
                tmin=None, tmax=None, segment_duration=None, batch_size=None, sfreq=None, ch_names=None, out=None,
                overwrite=False, progress=None, callback=None, verbose=None):
    """Reconstruct, repair or upsample a recording with ZUNA.

    Hidden tokens (bad channels, bad segments, ``BAD_`` annotations, a mask, added channels) are
    zeroed before the encoder, and the decoder infills them by rectified flow.

    Parameters
    ----------
    data : path | mne.io.Raw | ndarray | mne.Epochs
        Anything :func:`zuna_lab.read_raw` takes, or trials (as in :func:`embed`).
    model : ZunaModel | str | None
        As in :func:`embed`.
    steps : int
        Euler steps of the sampler (50 as the official inference).
    cfg : float
        Classifier-free guidance; 1.0 disables it.
    seed : int | None
        Seeds the noise: the same seed gives the identical result (default 0, as everywhere in
        zuna_lab). None draws a fresh one (stored in attrs).
    bad_channels : list of str | None
        Channels to infill everywhere (added to ``info["bads"]``).
    bad_segments : list of tuple | None
        ``(start, stop)`` or ``(start, stop, channel)`` in seconds from the first sample; a
        ``stop`` of ``float("inf")`` (or past the end) runs to the end of the recording.
    use_annotations : bool
        Infill tokens overlapping ``BAD_`` annotations (channel-specific ones too).
    mask : ndarray of bool (epoch, channel, token) | None
        Further tokens to infill.
    add_channels : list of str | int | None
        New electrodes (standard 10-05 names, placed in the recording's head frame) or a count
        placed where the cap is sparsest; they appear as channels with ``added=True``.
    n_samples : int
        Draws per epoch; with more than one the result has a ``sample`` dim and a spread.
    events, event_id, tmin, tmax, segment_duration : optional
        As in :func:`embed`: trials around events (repair a bad channel in the trials of one
        condition, say); each trial's hybrid is seam-corrected on its own (trials may overlap, so
        :func:`to_raw` does not put them back into the recording).
    batch_size, sfreq, ch_names, progress, verbose
        As in :func:`embed`.
    out : path-like | None
        A zarr folder to stream the result into (as in :func:`embed`): chunk by chunk, in memory that
        does not grow with the recording's duration, the hybrid seam-corrected on the stitched
        recording as in memory; returned opened lazily. Not with ``events``. Without ``out``, a
        recording whose result would not fit in the available memory is refused before any work.
    overwrite : bool
        Replace an existing ``out``.
    callback : callable | None
        ``callback(done, total)`` after every sampler step of every batch and sample (for widgets).

    Returns
    -------
    rec : xarray.Dataset
        ``original``, ``reconstruction``, ``hybrid`` (epoch, channel, time) in volts and ``mask``
        (epoch, channel, token); ``hybrid`` is the original with masked cells replaced by the
        seam-corrected reconstruction.

    Examples
    --------
    >>> rec = zl.reconstruct("data/sample_synthetic_raw.fif", bad_channels=["T7"], seed=0)   # doctest: +SKIP
    >>> fixed = zl.to_raw(rec)                 # your recording, T7 repaired, all else kept   # doctest: +SKIP
    >>> night = zl.reconstruct("night.edf", bad_channels=["T7"], out="night_rec.zarr")     # doctest: +SKIP
    """
    check_arguments(data=data, steps=steps, cfg=cfg, seed=seed, bad_channels=bad_channels,   # before any work
                    bad_segments=bad_segments, use_annotations=use_annotations, mask=mask,
                    add_channels=add_channels, n_samples=n_samples, segment_duration=segment_duration,
                    batch_size=batch_size, sfreq=sfreq, ch_names=ch_names, progress=progress,
                    callback=callback, verbose=verbose, epochs_allowed=True)
    model = get_model(model)
    _check_events(model.variant, events, event_id, tmin, tmax, segment_duration, isinstance(data, mne.BaseEpochs))
    check_bool(overwrite, "overwrite")
    started = time.perf_counter()
    if out is not None:
        if events is not None or isinstance(data, mne.BaseEpochs):
            raise ZunaValueError("out= streams a continuous recording in fixed segments; trials (events=, "
                                 "mne.Epochs) are reconstructed in memory: leave out= out.")
        streamed = reconstruct_to_zarr(data, model, out, overwrite=overwrite, steps=steps, cfg=cfg, seed=seed,
                                   bad_channels=bad_channels, bad_segments=bad_segments,
                                   use_annotations=use_annotations, mask=mask, add_channels=add_channels,
                                   n_samples=n_samples, segment_duration=segment_duration, batch_size=batch_size,
                                   sfreq=sfreq, ch_names=ch_names, progress=progress, callback=callback,
                                   verbose=verbose)
        logger.info("reconstruct: streamed %d epochs into %s in %.1f s.", streamed.sizes["epoch"], out,
                    time.perf_counter() - started)
        return streamed
    check_fits_in_memory(data, "reconstruct", sfreq=sfreq, n_samples=n_samples)
    prepared = prepare(data, model.variant, bad_channels=bad_channels, segment_duration=segment_duration,
                       events=events, event_id=event_id, tmin=tmin, tmax=tmax, sfreq=sfreq, ch_names=ch_names,
                       verbose=verbose)
    rec = reconstruct_prepared(prepared, model, steps=steps, cfg=cfg, seed=seed, bad_segments=bad_segments,
                               use_annotations=use_annotations, mask=mask, add_channels=add_channels,
                               n_samples=n_samples, batch_size=batch_size, progress=progress, callback=callback,
                               verbose=verbose)
    logger.info("reconstruct: %d epochs x %d channels, %d of %d tokens infilled, %d draw(s) of %d steps (seed %s) "
                "with %s in %.1f s.", rec.sizes["epoch"], rec.sizes["channel"], int(rec["mask"].sum()),
                rec["mask"].size, n_samples, steps, rec.attrs.get("seed"), model.variant,
                time.perf_counter() - started)
    return rec


def reconstruct_prepared(prepared, model, *, epochs=None, steps=50, cfg=1.0, seed=0, bad_segments=None,
                         use_annotations=True, mask=None, add_channels=None, n_samples=1, batch_size=None,
                         progress=None, callback=None, verbose=None):
    """:func:`reconstruct` on a :class:`Prepared` recording, for all epochs or some of them.

    The same code as :func:`reconstruct` (which calls it), so an epoch reconstructed here equals
    that epoch of the whole recording's reconstruction with the same seed: the noise is drawn per
    (seed, sample, epoch), and the hybrid is seam-corrected on the stitched recording. Epochs
    joined to a chosen one by a masked run that crosses their boundary are reconstructed too
    (the seam correction of that run needs both), but only the chosen ones are returned.

    Parameters
    ----------
    prepared : Prepared
        From :func:`prepare` with ``model.variant``.
    model : ZunaModel
    epochs : list of int | None
        Epoch indices to return (None: all); the ``epoch`` coordinate keeps these indices.
    steps, cfg, seed, bad_segments, use_annotations, mask, add_channels, n_samples, batch_size, progress, callback, verbose
        As in :func:`reconstruct`.

    Returns
    -------
    rec : xarray.Dataset
        As :func:`reconstruct`, restricted to ``epochs``.

    Examples
    --------
    >>> prepared = prepare(raw, model.variant, bad_channels=["T7"])           # doctest: +SKIP
    >>> one = reconstruct_prepared(prepared, model, epochs=[2], seed=0)       # doctest: +SKIP
    """
    check_arguments(steps=steps, cfg=cfg, seed=seed, bad_segments=bad_segments, use_annotations=use_annotations,
                    mask=mask, add_channels=add_channels, n_samples=n_samples, batch_size=batch_size,
                    progress=progress, callback=callback, verbose=verbose)
    if not isinstance(prepared, Prepared):
        raise ZunaTypeError(f"prepared must come from zuna_lab.api.core.prepare, got {type(prepared).__name__}.")
    model = get_model(model)
    if prepared.pre.variant != model.variant:
        raise ZunaValueError(f"The recording was prepared for {prepared.pre.variant} but the model is {model.variant}; "
                             "prepare it again with model.variant.")
    request = masks.request(prepared.raw, bads=prepared.bads, bad_segments=bad_segments,        # masks
                            use_annotations=use_annotations, mask=mask, add_channels=add_channels)
    pre, spt = prepared.pre, model.config.constants["samples_per_token"]
    layout = epoch_masks(pre, request)                                                           # tokens
    chosen = check_epochs(epochs, pre.n_epochs)
    seed = int(np.random.SeedSequence().entropy % (2**31)) if seed is None else int(seed)
    run = dict(steps=int(steps), cfg=float(cfg), seed=seed, n_samples=int(n_samples))
    if isinstance(pre, EpochSpans):       # read lazily: only these epochs (and their runs' ends) are prepared
        return reconstruct_spans(prepared, model, layout, chosen, run, batch_size=batch_size, progress=progress,
                                 callback=callback)
    n_channels = len(layout.ch_names)
    needed = list(chosen) if prepared.trials is not None else joined_epochs(pre, layout, chosen)
    n_times = max(pre.n_samples(i) for i in range(pre.n_epochs))
    batch_size = batch_size or auto_batch_size(model, n_channels * (n_times // spt))
    bar = _progress(len(needed) * n_samples, "reconstruct",
                    progress if progress is not None else len(needed) * n_samples > 20)
    volts = reconstruct_epochs(pre, layout, model, needed, steps=steps, cfg=cfg, seed=seed, n_samples=n_samples,
                               batch_size=batch_size, callback=callback, progress=bar)      # model
    bar.close()

    return _reconstruction(prepared, model, layout, chosen, volts, n_samples, n_times, run)           # Datasets


def _reconstruction(prepared, model, layout, chosen, volts, n_samples, n_times, run):
    """The reconstruct Dataset of epochs ``chosen`` from their reconstructions ``volts``. The hybrid is
    seam-corrected on the stitched recording, or trial by trial for event-locked trials (which may overlap)."""
    pre, spt, trials = prepared.pre, model.config.constants["samples_per_token"], prepared.trials
    n_channels = len(layout.ch_names)
    shape = (n_samples, len(chosen), n_channels, n_times)
    reconstruction, hybrid = np.full(shape, np.nan), np.full(shape, np.nan)
    original = np.full(shape[1:], np.nan)
    hidden = np.zeros((len(chosen), n_channels, n_times // spt), bool)
    stitched = None if trials is not None else [stitched_hybrid(pre, layout, volts, k) for k in range(n_samples)]
    for row, index in enumerate(chosen):
        width = pre.n_samples(index)
        start = int(round(pre.epoch_start[index] * pre.sfreq))
        reconstruction[:, row, :, :width] = volts[index]
        original[row, :, :width] = pre.original(index, n_channels)
        for sample in range(n_samples):
            if stitched is not None:
                hybrid[sample, row, :, :width] = stitched[sample][:, start:start + width]
            else:
                cells = layout.sample_mask(pre, index)
                hybrid[sample, row, :, :width] = seam_correct(np.where(cells, volts[index][sample],
                                                                       original[row, :, :width]), cells)
        hidden[row, :, : width // spt] = layout.masks[index]
    seams = ("linear ramp on the stitched recording (as zuna 1.1.6 reconstruct_fif)" if trials is None else
             "linear ramp within each trial (the official rule, trial by trial)")
    attrs = results.provenance(model, pre, source=prepared.source, extra=dict(
        run, seam_correction=seams, model_n_times=int(pre.n_times), source_fingerprint=prepared.fingerprint,
        source_ref=prepared.source_ref))
    chosen = np.asarray(chosen)
    return results.reconstruction_dataset(original, reconstruction, hybrid, hidden, ch_names=layout.ch_names,
                                           ch_pos=layout.ch_pos, epoch_start=pre.epoch_start[chosen], sfreq=pre.sfreq,
                                           samples_per_token=spt, attrs=attrs, added=layout.added, epoch_index=chosen,
                                           epoch_coords=None if trials is None else
                                           {name: values[chosen] for name, values in trials.coords().items()},
                                           t0=0.0 if trials is None else trials.tmin)


@verbose
def to_raw(ds, kind="hybrid", *, raw=None, sample=0, verbose=None):
    """Put a ``reconstruct`` result back into the user's recording: the EEG repaired, nothing else lost.

    The result is a copy of the recording it came from — every channel (stim, EOG, ECG, …),
    annotation, ``meas_date``, sampling rate and sample the model did not touch kept as they
    were — with the EEG cells hidden from the model (``mask``) replaced by the reconstruction,
    resampled to the recording's rate and re-anchored to the recording's own samples around
    each run (the seam correction of the official v4 reconstructor). Added channels
    (upsampling) are appended with their positions. Annotations are added: ``ZUNA_infilled`` on
    the cells the model filled (per channel), and ``ZUNA_unprocessed`` where no epoch reached
    (ZUNA's tail after the last full 5 s epoch keeps its original samples). A channel infilled
    over the whole recording leaves ``info["bads"]``. Neither label starts with ``BAD``, so MNE
    keeps the data.

    The recording is ``raw`` when given; else the Raw that was passed to ``reconstruct``, while
    it is still in memory; else the source file named in ``ds.attrs``. Each is checked to hold
    the EEG that was reconstructed. A Dataset with none of them (e.g. from a NumPy array, or
    loaded from netCDF) gives its EEG alone at the model's rate, with a warning.

    Parameters
    ----------
    ds : xarray.Dataset
        Result of :func:`zuna_lab.reconstruct`.
    kind : {"hybrid", "reconstruction", "original"}
        ``"hybrid"`` (default): original where kept, model where hidden; ``"reconstruction"``:
        the model's output on every EEG cell it processed; ``"original"``: the recording as it was.
    raw : mne.io.Raw | path-like | None
        The recording ``ds`` was reconstructed from (what was passed to ``reconstruct``).
    sample : int
        Which draw to use when the Dataset has a ``sample`` dimension.
    verbose : bool | str | int | None
        MNE verbosity.

    Returns
    -------
    raw : mne.io.Raw
        A new Raw; the input recording is not modified. For a result opened lazily (``reconstruct(...,
        out=)``), a Raw that is not loaded (``preload=False``): each span is computed when it is read
        (``get_data(start=, stop=)``, ``save``), so a day-long repair is written without holding it
        whole; ``load_data()`` gives the same samples as the in-memory result would.

    Examples
    --------
    >>> rec = zl.reconstruct(raw, model=model, bad_channels=["T7"])  # doctest: +SKIP
    >>> fixed = zl.to_raw(rec)  # doctest: +SKIP
    >>> fixed.annotations.description[-1]  # doctest: +SKIP
    'ZUNA_infilled'
    """
    check_reconstruct_dataset(ds, kind)
    if "event_code" in ds.coords:
        raise ZunaValueError("These are trials around events, which may overlap, so they do not go back into the "
                             "recording; reconstruct the recording without events= to repair it, or keep the trials "
                             "as they are (write_netcdf).")
    sample = check_sample(ds, sample)
    # opened from out=, or a recording given not loaded (a long one): the recording is read span by span
    lazy = ds["reconstruction"].chunks is not None or (isinstance(raw, mne.io.BaseRaw) and not raw.preload)
    recording = find_source(ds.attrs, raw, preload=not lazy)                         # read
    if recording is None:
        warn("The recording this result came from is unknown (no raw= and no readable source file), so the Raw "
            "holds only its EEG at the model's rate, without other channels, annotations or meas_date; pass raw= "
            "to put the repair into your recording.")
        return eeg_only(ds, kind, sample, verbose)
    if kind != "original":
        recording = splice(ds, recording, kind=kind, sample=sample)                  # export
    logger.info("to_raw: the %s in a Raw of %d channels, %g s at %g Hz.", kind, len(recording.ch_names),
                recording.n_times / recording.info["sfreq"], recording.info["sfreq"])
    return recording


@verbose
def write_fif(inst, fname, *, kind="hybrid", raw=None, overwrite=False, verbose=None):
    """Write a Raw, or a ``reconstruct`` Dataset (through :func:`to_raw`), to a FIF file atomically.

    A Dataset is written as the user's recording with the EEG repaired and everything else
    kept (see :func:`to_raw`); samples keep the recording's precision (double stays double).
    The target is checked (folder exists and is writable, no file there unless ``overwrite``)
    before anything is computed, and an error never leaves a half-written file.

    Parameters
    ----------
    inst : mne.io.Raw | xarray.Dataset
    fname : path-like
        Target file; MNE's convention is a name ending in ``_raw.fif``.
    kind : {"hybrid", "reconstruction", "original"}
        Which signal of a Dataset to write.
    raw : mne.io.Raw | path-like | None
        The recording a Dataset was reconstructed from (see :func:`to_raw`).
    overwrite : bool
        Replace an existing file.
    verbose : bool | str | int | None

    Returns
    -------
    path : pathlib.Path

    Examples
    --------
    >>> zl.write_fif(rec, "subject01_fixed_raw.fif")  # doctest: +SKIP
    """
    output_target(fname, overwrite)      # refuse an unwritable target before the work
    out = inst if isinstance(inst, mne.io.BaseRaw) else to_raw(inst, kind=kind, raw=raw, verbose=verbose)
    path = save_fif(out, fname, overwrite=overwrite, verbose=verbose)
    logger.info("write_fif: wrote %s.", path)
    return path


def _check_events(variant, events, event_id, tmin, tmax, segment_duration, epochs):
    """The event arguments, before the recording is read."""
    if epochs and any(value is not None for value in (events, event_id, tmin, tmax, segment_duration)):
        raise ZunaValueError("mne.Epochs hold their trials already: events, event_id, tmin, tmax and "
                             "segment_duration go with a continuous recording; leave them out (or use epochs['name']).")
    if events is None:
        if any(value is not None for value in (event_id, tmin, tmax)):
            raise ZunaValueError("event_id, tmin and tmax go with events=...; pass the events (e.g. "
                                 "mne.find_events(raw)) or leave them out.")
        return
    if segment_duration is not None:
        raise ZunaValueError("segment_duration does not apply to event-locked trials (tmin and tmax set their "
                             "length); leave it out.")
    check_event_arguments(events, event_id, tmin, tmax, variant)


def _progress(total, label, enabled):
    """A tqdm bar (a widget in Jupyter, a bar on stderr) of ``total`` epochs."""
    return tqdm(total=total, desc=label, unit="epoch", disable=not enabled)
