"""embed / reconstruct: recording in, labelled xarray Dataset out.

Orchestration only: reading (io), preprocessing, tokenising, batching epochs on the model's
device, and handing arrays to :mod:`zuna_lab.datasets`.
"""
from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass

import mne
import numpy as np
import torch

from . import datasets
from .errors import ZunaTypeError, ZunaValueError
from .export import recording_fingerprint, remember_source
from .io import _standard_head_positions, bad_annotation_spans, clean_channel_name, read_raw
from .preprocessing import preprocess
from .seams import seam_correct
from .tokens import detokenize, tokenize
from .validation import check_add_channels, check_arguments, resolve_bad_channels
from .validation import resolve_names as _check_names, resolve_segments as _check_segments  # noqa: F401

_MODEL_CACHE: dict = {}
_MODEL_LOCK = threading.Lock()


def cached_model(source=None, *, device="auto", loader=None):
    """Load a model once per process, source and device; later calls return the same object.

    Parameters
    ----------
    source : str | path | None
        Hub repo id or local directory; default ``$ZUNA_LAB_MODEL`` or "Zyphra/ZUNA".
    device : str
        Passed to :func:`zuna_lab.load_model`.
    loader : callable | None
        Replaces :func:`zuna_lab.load_model` (tests).

    Examples
    --------
    >>> cached_model("Zyphra/ZUNA") is cached_model("Zyphra/ZUNA")   # doctest: +SKIP
    True
    """
    from .hub import default_source

    key = (str(source or default_source()), str(device))
    # A lock: dashboard sessions run in threads and must share one model, not load two.
    with _MODEL_LOCK:
        if key not in _MODEL_CACHE:
            if loader is None:
                from .model import load_model as loader
            _MODEL_CACHE[key] = loader(key[0], device=device)
        return _MODEL_CACHE[key]


def clear_model_cache():
    """Forget the models loaded by :func:`cached_model`."""
    with _MODEL_LOCK:
        _MODEL_CACHE.clear()


def get_model(model=None):
    """``model`` itself, or the cached model of a source (None: ``$ZUNA_LAB_MODEL`` or Zyphra/ZUNA)."""
    from .model import ZunaModel

    if isinstance(model, ZunaModel):
        return model
    if model is None or isinstance(model, (str, os.PathLike)):
        return cached_model(model)
    raise ZunaTypeError(f"model must be a ZunaModel from zuna_lab.load_model, a source string or None, not {type(model).__name__}.")


class _Progress:
    """A small text progress bar (stderr), on for long runs unless switched off."""

    def __init__(self, total, label, enabled):
        self.total, self.label, self.enabled, self.done = total, label, enabled, 0

    def update(self, n=1):
        if not self.enabled:
            return
        self.done += n
        width = 30
        filled = int(width * self.done / max(self.total, 1))
        sys.stderr.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total}")
        if self.done >= self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


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
    source_ref: str = ""   # finds an in-memory input Raw again (export.remember_source)


@dataclass
class _Masked:
    prepared: Prepared
    ch_names: list
    ch_pos: np.ndarray
    added: np.ndarray
    masks: list            # per epoch (n_channels, n_tokens) bool

    @property
    def pre(self):
        return self.prepared.pre


def prepare(data, variant, *, bad_channels=None, segment_duration=None, sfreq=None, ch_names=None, verbose=None):
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
    segment_duration, sfreq, ch_names, verbose
        As in :func:`embed`.

    Returns
    -------
    prepared : Prepared

    Examples
    --------
    >>> prepared = prepare("data/sample_synthetic_raw.fif", model.variant, bad_channels=["T7"])   # doctest: +SKIP
    >>> rec = reconstruct_prepared(prepared, model, epochs=[3], seed=0)                            # doctest: +SKIP
    """
    raw = read_raw(data, sfreq=sfreq, ch_names=ch_names, verbose=verbose)
    bad_channels = resolve_bad_channels(bad_channels, raw)    # refuses hiding every channel
    bads = tuple(dict.fromkeys(list(raw.info["bads"]) + bad_channels))
    work = raw.copy()
    # BAD_ spans become masks, so ZUNA's pipeline must not drop the epochs they touch.
    work.set_annotations(None)
    work.info["bads"] = list(bads)      # ZUNA keeps channels named bad out of the average reference
    pre = preprocess(work, variant, segment_duration=segment_duration, verbose=verbose)
    return Prepared(raw=raw, pre=pre, bads=bads, source=_source_name(data), fingerprint=recording_fingerprint(raw),
                    source_ref=remember_source(data))


def _mask(prepared, *, bad_segments=None, use_annotations=True, mask=None, add_channels=None, verbose=None):
    """Token masks of every epoch: bad channels, bad segments, BAD_ annotations, a mask array, added channels."""
    raw, pre = prepared.raw, prepared.pre
    spans = _check_segments(bad_segments, raw.ch_names, raw.n_times / raw.info["sfreq"])
    if use_annotations:
        spans += list(bad_annotation_spans(raw))
    added_names, added_pos = _added_positions(raw, add_channels, verbose)
    masks = [pre.token_mask(i, bad_channels=prepared.bads, bad_spans=spans) for i in range(pre.n_epochs)]
    if mask is not None:
        masks = _apply_user_mask(masks, mask, pre)
    n_added = len(added_names)
    if n_added:
        masks = [np.vstack([m, np.ones((n_added, m.shape[1]), bool)]) for m in masks]
    return _Masked(prepared=prepared, ch_names=list(pre.ch_names) + added_names,
                   ch_pos=np.vstack([pre.ch_pos, added_pos]),
                   added=np.r_[np.zeros(len(pre.ch_names), bool), np.ones(n_added, bool)], masks=masks)


def _added_positions(raw, add_channels, verbose):
    """Names and head-frame positions of channels to add (upsampling), from the standard 10-05 cap."""
    if add_channels is None:
        return [], np.zeros((0, 3))
    # {lower-case name: (name, head-frame position)}, shared with read_raw's montage fallback
    standard = _standard_head_positions("standard_1005")
    add_channels = check_add_channels(add_channels)      # None (also for []), a count, or 10-05 names
    if add_channels is None:
        return [], np.zeros((0, 3))
    # Present by cleaned name ("EEG Fz-REF" is Fz) or by position (T3 sits where T7 would go).
    present = {clean_channel_name(c).lower() for c in raw.ch_names}
    existing = np.array([raw.info["chs"][i]["loc"][:3] for i in range(len(raw.ch_names))]).reshape(-1, 3)

    def occupied(position):
        near = np.flatnonzero(np.linalg.norm(existing - position, axis=1) < 1e-3)
        return raw.ch_names[near[0]] if near.size else None

    if isinstance(add_channels, int):
        candidates = [entry for key, entry in standard.items() if key not in present and occupied(entry[1]) is None]
        if add_channels > len(candidates):
            raise ZunaValueError(f"add_channels={add_channels} but only {len(candidates)} standard 10-05 positions "
                                 f"are free on this cap; ask for at most {len(candidates)}.")
        names = [name for name, _ in candidates]
        positions = np.array([pos for _, pos in candidates])
        chosen = []
        for _ in range(int(add_channels)):
            # Greedy farthest point: each new electrode goes where the cap is sparsest.
            reference = np.vstack([existing] + [positions[chosen]]) if chosen else existing
            distance = np.linalg.norm(positions[:, None] - reference[None], axis=-1).min(axis=1)
            distance[chosen] = -1
            chosen.append(int(distance.argmax()))
        return [names[i] for i in chosen], positions[chosen]
    names, positions = [], []
    for name in add_channels:
        canonical, position = standard[name.lower()]
        if name.lower() in present or occupied(position) is not None:
            where = "" if name.lower() in present else f" as {occupied(position)!r} at the same position"
            raise ZunaValueError(f"add_channels names {name!r}, which the recording already has{where}; "
                                 "mask it with bad_channels instead.")
        names.append(canonical)
        positions.append(position)
    return names, np.array(positions)


def _apply_user_mask(masks, mask, pre):
    user = np.asarray(mask)
    if user.dtype != bool:
        raise ZunaTypeError(f"mask must be a boolean array (epoch, channel, token), got dtype {user.dtype}.")
    n_tokens = max(m.shape[1] for m in masks)
    expected = (len(masks), pre.n_channels, n_tokens)
    if user.shape != expected:
        raise ZunaValueError(f"mask must have shape (n_epochs, n_channels, n_tokens) = {expected} for this recording, got {user.shape}.")
    return [m | user[i, :, : m.shape[1]] for i, m in enumerate(masks)]


def _epoch_inputs(prep, index):
    """Model-domain epoch with added (zero) channels appended."""
    data = np.asarray(prep.pre.data[index])
    n_added = int(prep.added.sum())
    if n_added:
        data = np.vstack([data, np.zeros((n_added, data.shape[1]), np.float32)])
    return data


def _batches(pre, indices, batch_size):
    """Group epochs of equal length (ZUNA1.1's last segment may be shorter) into batches."""
    by_length = {}
    for index in indices:
        by_length.setdefault(pre.n_samples(index), []).append(index)
    for indices in by_length.values():
        for start in range(0, len(indices), batch_size):
            yield indices[start:start + batch_size]


def _auto_batch_size(model, n_tokens):
    """Epochs per forward pass: bounded by a memory budget on GPU, small on CPU."""
    if model.device.type != "cuda":
        return max(1, min(16, 4096 // max(n_tokens, 1)))
    free, _ = torch.cuda.mem_get_info(model.device)
    # activations ~ a few dim-wide fp32 tensors per token plus attention scores for SDPA fallbacks
    per_epoch = n_tokens * model.config.dim * 4 * 24 + (2 * n_tokens) ** 2 * model.config.n_heads * 2
    return int(max(1, min(256, 0.5 * free // max(per_epoch, 1))))


def embed(data, model=None, *, segment_duration=None, bad_channels=None, use_annotations=True, mask=None,
          batch_size=None, sfreq=None, ch_names=None, progress=None, verbose=None):
    """Embed a recording: one 32-d ZUNA latent per channel and 0.125 s token.

    Parameters
    ----------
    data : path | mne.io.Raw | ndarray
        Anything :func:`zuna_lab.read_raw` takes (a NumPy array needs ``sfreq`` and ``ch_names``).
    model : ZunaModel | str | None
        A loaded model, a source for :func:`zuna_lab.load_model`, or None for the default
        (``$ZUNA_LAB_MODEL`` or "Zyphra/ZUNA"), loaded once and cached.
    segment_duration : float | None
        Epoch length: 5 s for ZUNA; 0.5–30 s for ZUNA1.1 (default 5 s).
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
    progress : bool | None
        Progress bar on stderr; None shows it for more than 50 epochs.
    verbose : bool | None
        MNE verbosity.

    Returns
    -------
    emb : xarray.Dataset
        ``embedding`` (epoch, channel, token, latent) float32 and ``mask`` (epoch, channel, token),
        with channel names, positions, epoch starts, token times and provenance attrs.

    Examples
    --------
    >>> import zuna_lab as zl
    >>> emb = zl.embed("data/sample_synthetic_raw.fif")          # doctest: +SKIP
    >>> emb.embedding.sizes                                       # doctest: +SKIP
    >>> emb.to_dataframe().head()                                 # doctest: +SKIP
    """
    check_arguments(**locals())     # zuna_lab.validation: types, ranges, names, before any work
    model = get_model(model)
    prepared = prepare(data, model.variant, bad_channels=bad_channels, segment_duration=segment_duration,
                       sfreq=sfreq, ch_names=ch_names, verbose=verbose)
    prep = _mask(prepared, use_annotations=use_annotations, mask=mask, verbose=verbose)
    pre, spt = prep.pre, model.config.constants["samples_per_token"]
    n_epochs, n_channels = pre.n_epochs, len(prep.ch_names)
    max_tokens = max(pre.n_samples(i) for i in range(n_epochs)) // spt
    embedding = np.full((n_epochs, n_channels, max_tokens, model.config.latent_dim), np.nan, np.float32)
    masks = np.zeros((n_epochs, n_channels, max_tokens), bool)
    batch_size = batch_size or _auto_batch_size(model, n_channels * max_tokens)
    bar = _Progress(n_epochs, "embed", progress if progress is not None else n_epochs > 50)

    def store(indices, latents, epoch_masks, n_tokens):
        grid = detokenize(latents(), n_channels, n_tokens * model.config.latent_dim, variant=model.variant)
        embedding[indices, :, :n_tokens] = grid.reshape(len(indices), n_channels, n_tokens, -1)
        masks[indices, :, :n_tokens] = epoch_masks
        bar.update(len(indices))

    pending = None
    for indices in _batches(pre, range(n_epochs), batch_size):
        epochs = np.stack([_epoch_inputs(prep, i) for i in indices])
        epoch_masks = np.stack([prep.masks[i] for i in indices])
        tokens, tok_idx = tokenize(epochs, prep.ch_pos, variant=model.variant, mask=epoch_masks)
        latents = _to_host_later(model.encode(torch.from_numpy(tokens), torch.from_numpy(tok_idx)))
        # On a GPU the encode runs asynchronously: the previous batch is copied back and the next
        # one tokenised while it computes.
        if pending is not None:
            store(*pending)
        pending = (indices, latents, epoch_masks, epochs.shape[-1] // spt)
    if pending is not None:
        store(*pending)
    attrs = datasets.provenance(model, pre, source=prepared.source)
    return datasets.embedding_dataset(embedding, masks, ch_names=prep.ch_names, ch_pos=prep.ch_pos,
                                      epoch_start=pre.epoch_start, samples_per_token=spt, sfreq=pre.sfreq,
                                      attrs=attrs, added=prep.added)


def _to_host_later(tensor):
    """Start copying a GPU result to pinned host memory; returns a function that waits for it as NumPy.

    The copy is queued right behind the work that produces ``tensor``, so waiting for it does not
    wait for work queued later (the next batch).
    """
    if tensor.device.type != "cuda":
        return lambda: tensor.numpy()
    host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
    host.copy_(tensor, non_blocking=True)
    done = torch.cuda.Event()
    done.record()

    def wait():
        done.synchronize()
        return host.numpy()

    return wait


def reconstruct(data, model=None, *, steps=50, cfg=1.0, seed=None, bad_channels=None, bad_segments=None,
                use_annotations=True, mask=None, add_channels=None, n_samples=1, segment_duration=None,
                batch_size=None, sfreq=None, ch_names=None, progress=None, callback=None, verbose=None):
    """Reconstruct, repair or upsample a recording with ZUNA.

    Hidden tokens (bad channels, bad segments, ``BAD_`` annotations, a mask, added channels) are
    zeroed before the encoder, and the decoder infills them by rectified flow.

    Parameters
    ----------
    data : path | mne.io.Raw | ndarray
        Anything :func:`zuna_lab.read_raw` takes.
    model : ZunaModel | str | None
        As in :func:`embed`.
    steps : int
        Euler steps of the sampler (50 as the official inference).
    cfg : float
        Classifier-free guidance; 1.0 disables it.
    seed : int | None
        Seeds the noise: the same seed gives the identical result. None draws one (stored in attrs).
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
    segment_duration : float | None
        As in :func:`embed`.
    batch_size, sfreq, ch_names, progress, verbose
        As in :func:`embed`.
    callback : callable | None
        ``callback(done, total)`` after every batch of every sample (for widgets).

    Returns
    -------
    rec : xarray.Dataset
        ``original``, ``reconstruction``, ``hybrid`` (epoch, channel, time) in volts and ``mask``
        (epoch, channel, token); ``hybrid`` is the original with masked cells replaced by the
        seam-corrected reconstruction.

    Examples
    --------
    >>> rec = zl.reconstruct("data/sample_synthetic_raw.fif", bad_channels=["T7"], seed=0)   # doctest: +SKIP
    >>> fixed = zl.to_raw(rec, kind="hybrid")                                                 # doctest: +SKIP
    """
    check_arguments(**locals())     # zuna_lab.validation: types, ranges, names, segments, before any work
    model = get_model(model)
    prepared = prepare(data, model.variant, bad_channels=bad_channels, segment_duration=segment_duration,
                       sfreq=sfreq, ch_names=ch_names, verbose=verbose)
    return reconstruct_prepared(prepared, model, steps=steps, cfg=cfg, seed=seed, bad_segments=bad_segments,
                                use_annotations=use_annotations, mask=mask, add_channels=add_channels,
                                n_samples=n_samples, batch_size=batch_size, progress=progress, callback=callback,
                                verbose=verbose)


def reconstruct_prepared(prepared, model, *, epochs=None, steps=50, cfg=1.0, seed=None, bad_segments=None,
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
    check_arguments(**locals())     # zuna_lab.validation (prepared, model and epochs are checked below)
    if not isinstance(prepared, Prepared):
        raise ZunaTypeError(f"prepared must come from zuna_lab.core.prepare, got {type(prepared).__name__}.")
    if prepared.pre.variant != model.variant:
        raise ZunaValueError(f"The recording was prepared for {prepared.pre.variant} but the model is {model.variant}; "
                             "prepare it again with model.variant.")
    prep = _mask(prepared, bad_segments=bad_segments, use_annotations=use_annotations, mask=mask,
                 add_channels=add_channels, verbose=verbose)
    pre, spt = prep.pre, model.config.constants["samples_per_token"]
    chosen = _check_epochs(epochs, pre.n_epochs)
    seed = int(np.random.SeedSequence().entropy % (2**31)) if seed is None else int(seed)
    n_channels = len(prep.ch_names)
    needed = _joined_epochs(prep, chosen, spt)
    n_times = max(pre.n_samples(i) for i in range(pre.n_epochs))
    batch_size = batch_size or _auto_batch_size(model, n_channels * (n_times // spt))
    batches = list(_batches(pre, needed, batch_size))
    bar = _Progress(len(needed) * n_samples, "reconstruct", progress if progress is not None else len(needed) * n_samples > 20)
    done, total = 0, len(batches) * n_samples
    volts = {}      # epoch -> (n_samples, channel, time) reconstruction in volts
    for indices in batches:
        epoch_data = np.stack([_epoch_inputs(prep, i) for i in indices])
        epoch_masks = np.stack([prep.masks[i] for i in indices])
        tokens, tok_idx = tokenize(epoch_data, prep.ch_pos, variant=model.variant, mask=epoch_masks)
        tok_idx_t = torch.from_numpy(tok_idx)
        latents = model.encode(torch.from_numpy(tokens), tok_idx_t)
        width = epoch_data.shape[-1]
        for index in indices:
            volts[index] = np.empty((n_samples, n_channels, width))
        for sample in range(n_samples):
            # Noise per (seed, sample, epoch): results do not depend on batching or on which epochs run.
            noise = torch.stack([torch.randn(tokens.shape[1:], generator=torch.Generator().manual_seed(
                _noise_seed(seed, sample, i))) for i in indices])
            out = model.sample(latents, tok_idx_t, noise=noise, steps=int(steps), cfg=cfg).cpu().numpy()
            normalised = detokenize(out, n_channels, width, variant=model.variant)
            for row, index in enumerate(indices):
                volts[index][sample] = _to_volts(prep, normalised[row], index)
            done += 1
            bar.update(len(indices))
            if callback is not None:
                callback(done, total)

    shape = (n_samples, len(chosen), n_channels, n_times)
    reconstruction, hybrid = np.full(shape, np.nan), np.full(shape, np.nan)
    original = np.full(shape[1:], np.nan)
    masks = np.zeros((len(chosen), n_channels, n_times // spt), bool)
    stitched = [_stitched_hybrid(prep, volts, sample, spt) for sample in range(n_samples)]
    for row, index in enumerate(chosen):
        width = pre.n_samples(index)
        start = int(round(pre.epoch_start[index] * pre.sfreq))
        reconstruction[:, row, :, :width] = volts[index]
        for sample in range(n_samples):
            hybrid[sample, row, :, :width] = stitched[sample][:, start:start + width]
        original[row, :, :width] = _original(prep, index)
        masks[row, :, : width // spt] = prep.masks[index]
    attrs = datasets.provenance(model, pre, source=prepared.source, extra=dict(
        steps=int(steps), cfg=float(cfg), seed=seed, n_samples=int(n_samples),
        seam_correction="linear ramp on the stitched recording (as zuna 1.1.6 reconstruct_fif)",
        model_n_times=int(pre.n_times), source_fingerprint=prepared.fingerprint, source_ref=prepared.source_ref))
    return datasets.reconstruction_dataset(original, reconstruction, hybrid, masks, ch_names=prep.ch_names,
                                           ch_pos=prep.ch_pos, epoch_start=pre.epoch_start[chosen], sfreq=pre.sfreq,
                                           samples_per_token=spt, attrs=attrs, added=prep.added,
                                           epoch_index=np.asarray(chosen))


def _check_epochs(epochs, n_epochs):
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


def _sample_mask(prep, index, spt):
    return np.repeat(prep.masks[index], spt, axis=1)[:, : prep.pre.n_samples(index)]


def _stitched(prep, spt):
    """(channel, n_times) sample mask of the whole preprocessed recording, and each epoch's start sample."""
    pre = prep.pre
    mask = np.zeros((len(prep.ch_names), pre.n_times), bool)
    starts = np.rint(np.asarray(pre.epoch_start) * pre.sfreq).astype(int)
    for index, start in enumerate(starts):
        block = _sample_mask(prep, index, spt)
        mask[:, start:start + block.shape[1]] = block
    return mask, starts


def _joined_epochs(prep, chosen, spt):
    """``chosen`` plus the epochs that a seam-corrected masked run joins to them.

    A run is seam-corrected when an original sample borders it; its correction depends on the
    reconstruction of every epoch it spans. Runs with no original neighbour (a whole channel)
    are left as they are and join nothing.
    """
    pre = prep.pre
    if len(chosen) == pre.n_epochs:
        return list(chosen)
    mask, starts = _stitched(prep, spt)
    covered = np.zeros(pre.n_times, bool)
    epoch_of = np.full(pre.n_times, -1)
    for index, start in enumerate(starts):
        covered[start:start + pre.n_samples(index)] = True
        epoch_of[start:start + pre.n_samples(index)] = index
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


def _stitched_hybrid(prep, volts, sample, spt):
    """The whole recording's hybrid at the model rate: original on kept cells, reconstruction on
    masked ones, seam-corrected as one signal (as the official v4 reconstructor does after
    stitching). Masked cells of epochs not reconstructed and samples no epoch covers are NaN."""
    pre = prep.pre
    mask, starts = _stitched(prep, spt)
    hybrid = np.full(mask.shape, np.nan)
    for index, start in enumerate(starts):
        width = pre.n_samples(index)
        original = _original(prep, index)
        if index in volts:
            block = np.where(mask[:, start:start + width], volts[index][sample], original)
        else:
            block = np.where(mask[:, start:start + width], np.nan, original)
        hybrid[:, start:start + width] = block
    return seam_correct(hybrid, mask)


def _noise_seed(seed, sample, epoch):
    return int(np.random.SeedSequence([seed, sample, epoch]).generate_state(1)[0])


def _to_volts(prep, normalised, index):
    """Model output (normalised, ÷ data_norm) of one epoch -> volts; added channels use the median scale."""
    n_real = len(prep.pre.ch_names)
    width = normalised.shape[-1]
    volts = np.empty(normalised.shape, np.float64)
    volts[:n_real] = prep.pre.to_volts(normalised[:n_real], index)
    if n_real < normalised.shape[0]:
        scale = float(np.median(prep.pre.scale[index])) * prep.pre.data_norm
        volts[n_real:] = normalised[n_real:] * scale + prep.pre.reference[index][:width]
    return volts


def _original(prep, index):
    real = np.asarray(prep.pre.volts[index], np.float64)
    n_added = int(prep.added.sum())
    return np.vstack([real, np.full((n_added, real.shape[1]), np.nan)]) if n_added else real


def _source_name(data):
    if isinstance(data, (str,)) or hasattr(data, "__fspath__"):
        return str(data)
    if isinstance(data, mne.io.BaseRaw) and data.filenames and data.filenames[0]:
        return str(data.filenames[0])
    return ""
