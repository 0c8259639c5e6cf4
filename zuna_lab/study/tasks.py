"""What the workers of a study run: read + preprocess + tokenise (CPU), encode or reconstruct (GPU), write (CPU).

The stages are those of :func:`zuna_lab.embed` (:func:`zuna_lab.api.core.prepare` → :mod:`~zuna_lab.pipeline.masks`
→ :func:`~zuna_lab.pipeline.tokens.epoch_masks` → :func:`~zuna_lab.pipeline.tokens.tokenize` → ``model.encode`` →
:func:`~zuna_lab.pipeline.tokens.detokenize` → :func:`~zuna_lab.pipeline.results.embedding_dataset`), cut where the
work changes device:

- :func:`prepare_embedding` (CPU worker): one recording → a :class:`TokenBundle` (its tokens, grouped
  by epoch length, and everything needed to build its Dataset), or a :class:`Failed` with one sentence.
- :func:`encode_bundles` (GPU worker): the epochs of several recordings, batched together by token
  count, through the encoder of the worker's model (loaded once per process, :func:`worker_model`).
- :func:`write_embedding` (CPU worker): the Dataset, built exactly as ``embed`` builds it, into one
  zip file (its zarr group, :mod:`~zuna_lab.study.archive`) under the store's ``.tmp/``, with the
  recording's pooled sums (:mod:`~zuna_lab.study.pooled`); the driver commits it
  (:mod:`zuna_lab.study.store`).

``reconstruct_many`` uses :func:`prepare_reconstruction` → :func:`reconstruct_bundles` →
:func:`write_reconstruction` the same way. Expected failures come back as values, not exceptions.
"""
from __future__ import annotations

import os
import socket
import threading
import time
import warnings
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np

__all__ = ["TokenBundle", "Failed", "prepare_embedding", "encode_bundles", "write_embedding", "bundle_info",
           "bundle_meta", "pick", "prepare_reconstruction", "reconstruct_bundles", "write_reconstruction",
           "worker_model", "ModelPlugin"]

_MODELS: dict = {}
_MODELS_LOCK = threading.Lock()


def worker_model(spec):
    """This process's model for ``spec`` (``{"source": ..., "dtype": ...}``), loaded on first use only."""
    key = (spec["source"], spec.get("dtype"))
    with _MODELS_LOCK:
        if key not in _MODELS:
            from ..api.loading import load_model

            _MODELS[key] = load_model(spec["source"], device="auto", dtype=spec.get("dtype"))
        return _MODELS[key]


try:
    from distributed.diagnostics.plugin import WorkerPlugin
except ImportError:  # pragma: no cover - dask.distributed is a dependency
    WorkerPlugin = object


class ModelPlugin(WorkerPlugin):
    """Loads the study's model on every GPU worker as it starts (restarted workers too), in the background.

    Encode tasks take the same per-process model (:func:`worker_model`), waiting for the load if it
    is still running; CPU workers load it only if they ever encode (no GPU in the cluster).
    """

    name = "zuna_lab-model"

    def __init__(self, spec):
        self.spec = dict(spec)

    def setup(self, worker):
        resources = getattr(worker, "total_resources", None) or getattr(getattr(worker, "state", None),
                                                                         "total_resources", {}) or {}
        if resources.get("GPU"):
            threading.Thread(target=self._load, name="zuna_lab-model-load", daemon=True).start()

    def _load(self):
        try:
            worker_model(self.spec)
        except Exception:      # the encode task loads again and reports the error on its recordings
            pass


@dataclass
class Failed:
    """A recording that could not be processed: its one-sentence error."""

    rec_id: str
    error: str
    warnings: str = ""
    seconds: float = 0.0
    n_channels: int = 0


@dataclass
class TokenBundle:
    """One recording, tokenised: per epoch length a group ``(indices, tokens, tok_idx)``, and its ``meta``."""

    rec_id: str
    groups: list
    meta: SimpleNamespace = field(repr=False)


def failure_message(err):
    """One sentence: a zuna_lab error as it is, anything else as ``Type: message`` on one line."""
    from ..errors import ZunaLabError
    from ..io.read import one_line

    if isinstance(err, ZunaLabError):
        return " ".join(str(err).split())
    return one_line(err, limit=240)


def _warnings(caught):
    from ..errors import ZunaLabWarning

    seen = dict.fromkeys(" ".join(str(w.message).split()) for w in caught if issubclass(w.category, ZunaLabWarning))
    return " | ".join(seen)


def _worker_name():
    try:
        from distributed import get_worker

        return str(get_worker().name)
    except (ImportError, ValueError):
        return f"{socket.gethostname()}:{os.getpid()}"


def _quiet(verbose):
    return "error" if verbose is None else verbose


# ---------------------------------------------------------------------------------------------- embeddings
def _prepare(path, variant, options):
    """:func:`zuna_lab.api.core.prepare` with the study's options (the first stages of embed and reconstruct)."""
    from ..api.core import prepare

    return prepare(path, variant, bad_channels=options.get("bad_channels"), segment_duration=options.get("segment_duration"),
                   sfreq=options.get("sfreq"), ch_names=options.get("ch_names"), verbose=_quiet(options.get("verbose")))


def prepare_embedding(rec_id, path, variant, options):
    """Read, preprocess, mask and tokenise one recording as :func:`zuna_lab.embed` does (CPU).

    Returns a :class:`TokenBundle`, or a :class:`Failed` for a recording that cannot be embedded.
    """
    from ..pipeline import masks
    from ..config import VARIANT_CONSTANTS
    from ..pipeline.embedding import hidden_grid, length_groups, padding_grid, tokenize_epochs
    from ..pipeline.tokens import epoch_masks

    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            prepared = _prepare(path, variant, options)
            request = masks.request(prepared.raw, bads=prepared.bads,
                                    use_annotations=options.get("use_annotations", True), mask=None)
            pre = prepared.pre
            spt = int(VARIANT_CONSTANTS[variant]["samples_per_token"])
            layout = epoch_masks(pre, request)
            n_epochs, n_channels = pre.n_epochs, len(layout.ch_names)
            max_tokens = max(pre.n_samples(i) for i in range(n_epochs)) // spt
            hidden, padding = hidden_grid(pre, layout, max_tokens), padding_grid(pre, layout, max_tokens)
            groups = []
            for indices in length_groups(pre):
                tokens, tok_idx, _ = tokenize_epochs(pre, layout, indices, variant)
                # every epoch of a length shares its tok_idx: keep one, small (bins < 2**15)
                groups.append((np.asarray(indices), tokens, tok_idx[0].astype(np.int16)))
        except Exception as err:
            return Failed(rec_id, failure_message(err), _warnings(caught))
    seconds = prepared.raw.n_times / prepared.raw.info["sfreq"]
    meta = SimpleNamespace(
        rec_id=rec_id, source=prepared.source, variant=variant, spt=spt, ch_names=list(layout.ch_names),
        ch_pos=layout.ch_pos, added=layout.added, epoch_start=np.asarray(pre.epoch_start), hidden=hidden,
        padding=padding,
        max_tokens=max_tokens, n_epochs=n_epochs, n_channels=n_channels, seconds=float(seconds),
        groups=[(indices, tokens.shape[1] // n_channels) for indices, tokens, _ in groups],
        pre=SimpleNamespace(source_sfreq=pre.source_sfreq, sfreq=pre.sfreq, data_norm=pre.data_norm,
                            data_clip=pre.data_clip,
                            params={k: pre.params[k] for k in ("segment_duration", "highpass_hz", "reference")
                                    if k in pre.params}),
        warnings=_warnings(caught), prepare_seconds=time.perf_counter() - start, prepared_by=_worker_name())
    return TokenBundle(rec_id, groups, meta)


def bundle_info(bundle):
    """What the driver needs to batch a prepared recording: a small dict."""
    if isinstance(bundle, Failed):
        return {"rec_id": bundle.rec_id, "ok": False, "error": bundle.error, "warnings": bundle.warnings}
    if isinstance(bundle, TokenBundle):
        tokens = sum(int(np.prod(group[1].shape[:2])) for group in bundle.groups)
        return {"rec_id": bundle.rec_id, "ok": True, "tokens": tokens, "n_epochs": bundle.meta.n_epochs}
    return {"rec_id": bundle.rec_id, "ok": True, "tokens": 0, "n_epochs": bundle.meta.n_epochs}


def bundle_meta(bundle):
    """The part of a prepared recording the writer needs (not its tokens)."""
    return bundle if isinstance(bundle, Failed) else bundle.meta


def pick(results, rec_id):
    """One recording's share of a batch result."""
    return results[rec_id]


def _describe(model):
    return SimpleNamespace(source=getattr(model, "source", None), revision=getattr(model, "revision", None),
                           variant=model.variant, precision=getattr(model, "precision", "fp32"))


def encode_bundles(spec, bundles, batch_size=None):
    """Encode the epochs of several prepared recordings together (GPU worker, or CPU without GPUs).

    Epochs with the same number of tokens are batched across recordings, ``batch_size`` at a time
    (None: from the device's free memory, as :func:`zuna_lab.embed`); each batch is copied back
    while the next one computes. Returns ``{rec_id: (latents per group, model description, seconds)}``.
    """
    import torch

    from ..pipeline.batching import auto_batch_size, to_host_later

    model = worker_model(spec)
    start = time.perf_counter()
    live = [b for b in bundles if isinstance(b, TokenBundle)]
    pieces = {}        # n_tokens per epoch -> [(bundle position, group position)]
    for b, bundle in enumerate(live):
        for g, (_, tokens, _) in enumerate(bundle.groups):
            pieces.setdefault(tokens.shape[1], []).append((b, g))
    # results land in place, batch by batch: nothing to gather at the end while the GPU waits
    latents = {(b, g): np.empty(live[b].groups[g][1].shape[:2] + (model.config.latent_dim,), np.float32)
               for parts in pieces.values() for b, g in parts}
    pending = None
    for n_tokens, parts in pieces.items():
        size = batch_size or auto_batch_size(model, n_tokens, task="embed")
        rows = [(b, g, row) for b, g in parts for row in range(live[b].groups[g][1].shape[0])]
        for begin in range(0, len(rows), size):
            chunk = rows[begin:begin + size]
            tokens = np.stack([live[b].groups[g][1][row] for b, g, row in chunk])
            tok_idx = np.stack([live[b].groups[g][2] for b, g, _ in chunk]).astype(np.int64)
            out = to_host_later(model.encode(torch.from_numpy(tokens), torch.from_numpy(tok_idx)))
            if pending is not None:     # the previous batch comes back while this one computes
                _scatter(latents, *pending)
            pending = (chunk, out)
    if pending is not None:
        _scatter(latents, *pending)
    elapsed = time.perf_counter() - start
    total = max(1, sum(len(rows) for rows in latents.values()))
    described, worker = _describe(model), _worker_name()
    results = {}
    for b, bundle in enumerate(live):
        groups = [latents[(b, g)] for g in range(len(bundle.groups))]
        share = sum(len(group) for group in groups) / total
        results[bundle.rec_id] = (groups, described, elapsed * share, worker)
    for bundle in bundles:
        if isinstance(bundle, Failed):
            results[bundle.rec_id] = bundle
    return results


def _scatter(latents, chunk, out):
    values = out()
    for (b, g, row), value in zip(chunk, values):
        latents[(b, g)][row] = value


def _group_path(tmp_dir, rec_id, run):
    from pathlib import Path

    from .layout import RECORDING_SUFFIX

    return Path(tmp_dir) / f"{rec_id}@{run}{RECORDING_SUFFIX}"


def write_embedding(meta, encoded, tmp_dir, run):
    """Build the recording's Dataset exactly as :func:`zuna_lab.embed` does and write it, with its per-epoch
    sums, as one zip file (:func:`zuna_lab.study.archive.write_recording`).

    Returns the recording's index row (status "done", or "failed" with the one-sentence error); a
    done row carries ``written`` (the file) and ``pooled`` (the recording's totals) for the commit.
    """
    from ..pipeline import results
    from ..pipeline.embedding import empty_grid, place_latents
    from .archive import write_recording
    from .pooled import epoch_sums, recording_sums

    if isinstance(meta, Failed) or isinstance(encoded, Failed):
        failed = meta if isinstance(meta, Failed) else encoded
        return _failed_row(failed)
    start = time.perf_counter()
    groups, model, encode_seconds, encoder = encoded
    try:
        embedding = empty_grid(meta.n_epochs, meta.n_channels, meta.max_tokens, groups[0].shape[-1])
        for (indices, n_tokens), latents in zip(meta.groups, groups):
            place_latents(embedding, indices, latents, n_tokens, meta.variant)
        attrs = results.provenance(model, meta.pre, source=meta.source)
        ds = results.embedding_dataset(embedding, meta.hidden, padding=meta.padding, ch_names=meta.ch_names,
                                        ch_pos=meta.ch_pos,
                                        epoch_start=meta.epoch_start, samples_per_token=meta.spt,
                                        sfreq=meta.pre.sfreq, attrs=attrs, added=meta.added)
        per_chunk = max(1, min(meta.n_epochs, (16 << 20) // max(1, embedding[0].nbytes)))
        encoding = {name: {"chunks": (per_chunk,) + ds[name].shape[1:]} for name in ("embedding", "mask", "padding")}
        path = _group_path(tmp_dir, meta.rec_id, run)
        sums = epoch_sums(ds)
        write_recording(ds, path, sums=sums, encoding=encoding)
        totals = recording_sums(sums)
    except Exception as err:
        return _failed_row(Failed(meta.rec_id, failure_message(err), meta.warnings, meta.seconds, meta.n_channels))
    compute = meta.prepare_seconds + encode_seconds + time.perf_counter() - start
    return dict(recording=meta.rec_id, status="done", n_epochs=int(meta.n_epochs), n_channels=int(meta.n_channels),
                seconds=meta.seconds, warnings=meta.warnings, compute_seconds=round(compute, 3),
                worker=f"{meta.prepared_by} > {encoder}", written=str(path), pooled=totals)


def _failed_row(failed):
    return dict(recording=failed.rec_id, status="failed", error=failed.error, warnings=failed.warnings,
                seconds=float(failed.seconds), n_channels=int(failed.n_channels))


# ---------------------------------------------------------------------------------------------- reconstruction
def prepare_reconstruction(rec_id, path, variant, options):
    """Read and preprocess one recording for :func:`zuna_lab.reconstruct` (CPU); a Prepared or a :class:`Failed`."""
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            prepared = _prepare(path, variant, options)
        except Exception as err:
            return Failed(rec_id, failure_message(err), _warnings(caught))
    meta = SimpleNamespace(rec_id=rec_id, n_epochs=prepared.pre.n_epochs, n_channels=len(prepared.raw.ch_names),
                           seconds=prepared.raw.n_times / prepared.raw.info["sfreq"], warnings=_warnings(caught),
                           prepare_seconds=time.perf_counter() - start, prepared_by=_worker_name())
    return SimpleNamespace(rec_id=rec_id, prepared=prepared, meta=meta)


def reconstruct_bundles(spec, bundles, options):
    """Reconstruct each prepared recording with :func:`zuna_lab.api.core.reconstruct_prepared` (GPU worker)."""
    from ..api.core import reconstruct_prepared

    model = worker_model(spec)
    results = {}
    for bundle in bundles:
        if isinstance(bundle, Failed):
            results[bundle.rec_id] = bundle
            continue
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                rec = reconstruct_prepared(bundle.prepared, model, progress=False,
                                           **{k: options[k] for k in _RECONSTRUCT_KEYS if k in options})
            except Exception as err:
                results[bundle.rec_id] = Failed(bundle.rec_id, failure_message(err), _warnings(caught),
                                                bundle.meta.seconds, bundle.meta.n_channels)
                continue
        results[bundle.rec_id] = (rec, time.perf_counter() - start, _worker_name(), _warnings(caught))
    return results


_RECONSTRUCT_KEYS = ("steps", "cfg", "seed", "bad_segments", "use_annotations", "add_channels", "n_samples",
                     "batch_size", "verbose")


def write_reconstruction(meta, result, target, kind, output=None):
    """Write one repaired recording to FIF atomically (:func:`zuna_lab.write_fif`); its index row.

    ``output`` is the file's name in the index (its path relative to the output folder; default its name).
    """
    from ..api.core import write_fif

    if isinstance(meta, Failed) or isinstance(result, Failed):
        return _failed_row(meta if isinstance(meta, Failed) else result)
    start = time.perf_counter()
    rec, seconds, worker, caught = result
    try:
        with warnings.catch_warnings(record=True) as late:
            warnings.simplefilter("always")
            os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
            write_fif(rec, target, kind=kind, overwrite=True, verbose="error")
    except Exception as err:
        return _failed_row(Failed(meta.rec_id, failure_message(err), meta.warnings, meta.seconds, meta.n_channels))
    notes = " | ".join(filter(None, dict.fromkeys([meta.warnings, caught, _warnings(late)])))
    compute = meta.prepare_seconds + seconds + time.perf_counter() - start
    return dict(recording=meta.rec_id, status="done", n_epochs=int(meta.n_epochs), n_channels=int(meta.n_channels),
                seconds=float(meta.seconds), warnings=notes, compute_seconds=round(compute, 3),
                worker=f"{meta.prepared_by} > {worker}", output=output or os.path.basename(str(target)))
