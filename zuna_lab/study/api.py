"""Studies, not files: embed or repair hundreds to thousands of recordings on dask.distributed.

:func:`embed_many` writes every recording's embedding into one resumable zarr store,
:func:`~zuna_lab.study.reading.open_embeddings` reads it back (lazily, one recording at a time or
pooled), and :func:`reconstruct_many` writes one repaired FIF per recording. A BIDS dataset is read
through mne-bids and its outputs form a BIDS derivative dataset (:mod:`zuna_lab.study.bids`). Reading, preprocessing and
tokenising run on CPU workers in parallel, encoding on GPU workers (one per device, the model
loaded once each) with epochs of several recordings batched together; see
:mod:`zuna_lab.study.cluster` for the placement, :mod:`zuna_lab.study.tasks` for the stages and
:mod:`zuna_lab.study.store` for the store and its atomic commits.
"""
from __future__ import annotations

import contextlib
import glob
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import ZunaTypeError, ZunaValueError
from ..logs import logger, verbose
from .guard import check_main_guard
from .store import INDEX_COLUMNS, StudyStore, check_id, recording_id, source_stamps  # noqa: F401

__all__ = ["embed_many", "reconstruct_many", "find_recordings"]

#: File types a folder or a glob is searched for (BrainVision: the .vhdr header; MFF: the folder).
RECORDING_SUFFIXES = (".fif", ".fif.gz", ".edf", ".bdf", ".gdf", ".vhdr", ".set", ".cnt", ".csv", ".tsv", ".mff",
                      ".eeg", ".nxe", ".cdt", ".lay", ".egi", ".data", ".ds", ".mef")
_EMBED_OPTIONS = ("segment_duration", "bad_channels", "use_annotations", "batch_size", "sfreq", "ch_names")
_RECONSTRUCT_OPTIONS = _EMBED_OPTIONS + ("steps", "cfg", "seed", "bad_segments", "add_channels", "n_samples")
#: Options that change the results: a rerun must use the same ones (batch_size and verbose do not).
_RESULT_OPTIONS = ("segment_duration", "bad_channels", "use_annotations", "sfreq", "ch_names", "steps", "cfg", "seed",
                   "bad_segments", "add_channels", "n_samples", "kind")


# ------------------------------------------------------------------------------------------ sources
def _is_recording(path):
    name = path.name.lower()
    if not name.endswith(RECORDING_SUFFIXES) or name.startswith("."):
        return False
    if path.is_dir():
        return name.endswith((".mff", ".ds"))
    # a BrainVision data file is read through its .vhdr
    return not (name.endswith(".eeg") and path.with_suffix(".vhdr").exists())


def _expand(item):
    """One source entry -> recording paths: a file, a folder (searched recursively) or a glob."""
    from .bids import is_bids_root

    text = os.fspath(item)
    path = Path(text).expanduser()
    if is_bids_root(path):
        raise ZunaValueError(f"{text!r} is a BIDS dataset; pass it alone as sources (select recordings with "
                             "subjects=, sessions=, tasks=, runs=) so that it is read through mne-bids.")
    if path.is_dir() and not _is_recording(path):
        found = sorted(p for p in path.rglob("*") if _is_recording(p) and not any(
            part.lower().endswith((".mff", ".ds")) for part in p.relative_to(path).parts[:-1]))
        if not found:
            raise ZunaValueError(f"Folder {text!r} holds no recording file ({', '.join(RECORDING_SUFFIXES[:9])}, …).")
        return found
    if not path.exists() and glob.has_magic(text):
        found = sorted(Path(p) for p in glob.glob(os.path.expanduser(text), recursive=True))
        found = [p for p in found if _is_recording(p) or (p.is_file() and not p.name.startswith("."))]
        if not found:
            raise ZunaValueError(f"The pattern {text!r} matches no file; check the path and the wildcards.")
        return found
    return [path]        # a file; a missing one fails in the index, the others go on


def find_recordings(sources):
    """The ``(recording id, absolute path)`` pairs of ``sources``, ids unique.

    Parameters
    ----------
    sources : path-like | str | list | dict
        A file, a folder (searched recursively for recording files), a glob (``"data/**/*.edf"``),
        a list of any of these or of ``(id, path)`` pairs, or a dict ``{id: path}``. Default ids
        are file names without their extension, made unique in order (``sub-01``, ``sub-01_2``).

    Returns
    -------
    pairs : list of tuple

    Examples
    --------
    >>> find_recordings(["a/sub-01.edf", "b/sub-01.edf", ("control-3", "c/x.fif")])   # doctest: +SKIP
    [('sub-01', '/…/a/sub-01.edf'), ('sub-01_2', '/…/b/sub-01.edf'), ('control-3', '/…/c/x.fif')]
    """
    if isinstance(sources, dict):
        sources = list(sources.items())
    elif isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    elif not isinstance(sources, (list, tuple)) and hasattr(sources, "__iter__"):
        sources = list(sources)
    if not isinstance(sources, (list, tuple)):
        raise ZunaTypeError(f"sources must be a path, a glob, a folder, or a list of them or of (id, path) pairs, "
                            f"got {type(sources).__name__}.")
    named, unnamed = [], []
    for position, item in enumerate(sources):
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], (str, os.PathLike)):
            named.append((position, check_id(item[0]), Path(item[1]).expanduser()))
        elif isinstance(item, (str, os.PathLike)):
            unnamed.extend((position, None, path) for path in _expand(item))
        else:
            raise ZunaTypeError(f"A source must be a path, a glob or an (id, path) pair, got {item!r}.")
    taken = [rec_id for _, rec_id, _ in named]
    if len(set(taken)) != len(taken):
        raise ZunaValueError(f"Recording id {next(i for i in taken if taken.count(i) > 1)!r} is given twice; "
                             "every recording needs its own id.")
    used, pairs, seen = set(taken), [], set()
    for position, rec_id, path in sorted(named + unnamed, key=lambda entry: entry[0]):
        absolute = str(path.absolute())
        if rec_id is None:
            if absolute in seen:
                continue            # the same file twice (a folder and a glob over it): once
            base = recording_id(path)
            rec_id, n = base, 1
            while rec_id in used:
                n += 1
                rec_id = f"{base}_{n}"
        used.add(rec_id)
        seen.add(absolute)
        pairs.append((rec_id, absolute))
    if not pairs:
        raise ZunaValueError("sources is empty; pass recording files, a folder, a glob or (id, path) pairs.")
    return pairs


# ------------------------------------------------------------------------------------------ model and options
def _model_spec(model):
    """(spec for the workers, variant): a source each worker loads once, and the model variant."""
    from ..model.hub import default_source
    from ..model import ZunaModel

    if isinstance(model, ZunaModel):
        if not model.source:
            raise ZunaValueError("This model has no source that the workers could load (it was built in memory); "
                                 "pass its checkpoint folder or repo id as model=.")
        dtype = model.precision if model.device.type == "cuda" else None
        return {"source": str(model.source), "dtype": dtype}, model.variant, getattr(model, "revision", None)
    if model is not None and not isinstance(model, (str, os.PathLike)):
        raise ZunaTypeError(f"model must be a ZunaModel, a checkpoint folder or repo id, or None, "
                            f"got {type(model).__name__}.")
    source = os.fspath(model) if model is not None else default_source()
    local = Path(source).expanduser()
    if local.exists():
        source = str(local.absolute())      # the workers may start elsewhere
    return {"source": source, "dtype": None}, *_variant_of(source)


def _variant_of(source):
    """(variant, revision) of a checkpoint: the variant from its key names (weights fetched or found once, here,
    before the run), the revision its files came from when known."""
    from safetensors import safe_open

    from ..model.hub import resolve
    from ..model import checkpoint as ckpt

    resolved = resolve(source)
    try:
        with safe_open(str(resolved.weights_path), framework="pt", device="cpu") as handle:
            keys = list(handle.keys())
    except Exception as err:
        from ..errors import CheckpointError

        raise CheckpointError(f"{resolved.weights_path} is not a readable safetensors file ({err}); "
                              "download it again.") from None
    return ckpt.detect_variant(ckpt.strip_prefix(keys).values()), resolved.revision


def _check_options(options, allowed, function):
    from ..validation import check_arguments

    unknown = sorted(set(options) - set(allowed))
    if "mask" in unknown:
        raise ZunaValueError(f"{function} takes no mask= (its shape is per recording); hide channels with "
                             "bad_channels= or spans with BAD_ annotations.")
    if unknown:
        raise ZunaTypeError(f"{function} got an unexpected option {unknown[0]!r}; it takes {', '.join(allowed)}.")
    sampler = dict(steps=50, cfg=1.0, seed=0, n_samples=1) if "steps" in allowed else {}
    check_arguments(**{**sampler, **options})      # types and ranges, before any work


def _settings(spec, variant, options):
    values = {"model": spec["source"], "variant": variant}
    for key in _RESULT_OPTIONS:
        if key in options and options[key] is not None:
            value = options[key]
            if isinstance(value, (set, frozenset)):      # names given as a set: stored in one order (JSON has no set)
                value = sorted(value)
            values[key] = [list(v) if isinstance(v, tuple) else v for v in value] if isinstance(value, (list, tuple)) \
                else value
    return values


@contextlib.contextmanager
def _cluster(client, progress):
    """The given client, or a local cluster sized to this machine (loopback only), closed afterwards."""
    from .cluster import local_cluster, plan_workers, visible_gpus

    if client is not None:
        if progress:
            print(f"Dask dashboard: {client.dashboard_link}", file=sys.stderr, flush=True)
        yield client
        return
    with local_cluster(plan_workers(visible_gpus(), os.cpu_count() or 1)) as own:
        if progress:
            print(f"Dask dashboard: {own.dashboard_link}", file=sys.stderr, flush=True)
        yield own


def _check_client(client):
    if client is None:
        return
    try:
        from distributed import Client
    except ImportError:  # pragma: no cover - dask.distributed is a dependency
        raise ZunaTypeError("client= needs dask.distributed; pip install 'dask[distributed]'.") from None
    if not isinstance(client, Client):
        raise ZunaTypeError(f"client must be a dask.distributed Client or None, got {type(client).__name__}.")


def _summary(frame, label, n_skipped):
    done, failed = int((frame.status == "done").sum()), frame[frame.status == "failed"]
    print(f"{label}: {done} recordings done ({n_skipped} already complete), {len(failed)} failed"
          + "".join(f"\n  {row.recording}: {row.error}" for row in failed.head(10).itertuples())
          + (f"\n  … and {len(failed) - 10} more (see the index)" if len(failed) > 10 else ""),
          file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------ public functions
@dataclass
class _Plan:
    """What a study run works on, decided before any work: recordings, target, model, BIDS dataset."""

    pairs: list
    target: StudyStore
    spec: dict
    variant: str
    revision: str | None
    bids_root: Path | None
    bids: dict          # recording id -> BidsRecording (a BIDS dataset's recordings)


def _bids_root(sources):
    """The BIDS root when ``sources`` is one (a folder with ``dataset_description.json``), else None."""
    from .bids import is_bids_root

    if isinstance(sources, (str, os.PathLike)) and is_bids_root(Path(sources).expanduser()):
        return Path(sources).expanduser().absolute()
    return None


def _check_target_path(where, name):
    """``where`` (the store or output folder) is a path or None: not a number, not ``""`` (the current folder)."""
    if where is not None and (not isinstance(where, (str, os.PathLike)) or not os.fspath(where)):
        raise ZunaTypeError(f"{name} must be a folder path (e.g. {'study.zarr' if name == 'store' else 'repaired/'!r}) "
                            f"or None for a BIDS dataset, got {where!r}.")


def _begin(sources, where, kind, model, client, overwrite, filters):
    """The checks every study run makes before any work: client, sources, target, model."""
    from .bids import check_derivative_target, check_filters, derivative_folder, find_bids_recordings

    _check_client(client)
    _check_target_path(where, "store" if kind == "embeddings" else "out_dir")
    root = _bids_root(sources)
    chosen = check_filters(filters)
    if root is not None:
        recordings = find_bids_recordings(root, **chosen)
        pairs = [(rec.rec_id, rec.path) for rec in recordings]
        where = derivative_folder(root, where)
        check_derivative_target(where)
        if where.parent == root / "derivatives":
            where.parent.mkdir(exist_ok=True)      # BIDS's place for derivatives, made on first use
    else:
        if chosen:
            raise ZunaValueError(f"{', '.join(f'{k}=' for k in chosen)} select{'s' if len(chosen) == 1 else ''} "
                                 "recordings of a BIDS dataset; pass the dataset's root (the folder with "
                                 "dataset_description.json) as sources, or leave the filter out.")
        if where is None:
            raise ZunaValueError(f"Where should the {kind} go? Pass a folder (a store such as 'study.zarr' for "
                                 "embed_many); only a BIDS dataset has a default (its derivatives/zuna_lab).")
        pairs, recordings = find_recordings(sources), []
    target = StudyStore(where, kind)
    target.check_target(overwrite)
    target.labels = {rec.rec_id: rec.columns() for rec in recordings}
    return _Plan(pairs, target, *_model_spec(model), root, {rec.rec_id: rec for rec in recordings})


def _open(plan, settings, overwrite):
    """Open the plan's target for the run (a BIDS study's target is a derivative dataset: described first)."""
    from .bids import write_description

    if plan.bids_root is not None:
        settings = dict(settings, bids_root=str(plan.bids_root))
    opened = plan.target.open(settings, overwrite=overwrite)
    if plan.bids_root is not None:
        try:
            write_description(plan.target.path, plan.bids_root, model=plan.spec["source"], revision=plan.revision,
                              variant=plan.variant,
                              kind="embeddings" if plan.target.kind == "embeddings" else "repaired recordings")
        except BaseException:
            plan.target.close()
            raise
    return opened


@verbose
def embed_many(sources, store=None, *, model=None, client=None, subjects=None, sessions=None, tasks=None, runs=None,
               overwrite=False, progress=None, verbose=None, **embed_options):
    """Embed many recordings, or a BIDS dataset, into one resumable zarr store, on dask.distributed.

    Each recording is read, preprocessed and tokenised on a CPU worker, encoded on a GPU worker
    (one per GPU, each loading the model once; epochs of several recordings are batched together)
    and written to the store as soon as it is done. Each recording is committed atomically, so a
    reader never sees half a recording; a rerun skips the recordings already complete whose
    source files are unchanged (size and modification time) and does the rest — so a killed run
    resumes where it stopped. A recording that fails (corrupt file, no EEG, too short) gets its
    one-sentence error in the index and the others go on.

    A **BIDS dataset** (its root: the folder with ``dataset_description.json``) is read through
    mne-bids: its EEG recordings in any format (sidecars are not recordings), the channels marked
    bad in ``channels.tsv`` (hidden, as ``info["bads"]``), the measured positions of
    ``electrodes.tsv`` (before any standard cap) and ``events.tsv`` as annotations. Recordings are
    named by their BIDS name (``sub-01_ses-a_task-rest_run-01``), the index carries their
    entities, ``Study.pooled()`` joins ``participants.tsv``, and the store is a BIDS derivative
    dataset, ``<root>/derivatives/zuna_lab`` by default, with its ``dataset_description.json``.
    A change to a recording's sidecars makes a rerun redo it.

    Parameters
    ----------
    sources : path-like | str | list | dict
        A BIDS dataset's root; or recording files, a folder (searched recursively), a glob,
        ``(id, path)`` pairs or ``{id: path}`` (see :func:`find_recordings`). Default ids: file
        names without extension.
    store : path-like | None
        The zarr store (a folder, conventionally ``*.zarr``), created if missing. None only for a
        BIDS dataset: ``<root>/derivatives/zuna_lab``.
    model : ZunaModel | str | None
        As in :func:`zuna_lab.embed`; a loaded model is loaded again by each worker from its source.
    client : distributed.Client | None
        Run on this cluster (any: local, SSH, dask-jobqueue …; GPU workers declare the resource
        ``GPU=1``, CPU workers ``CPU=1``; the sources and the store must be at the same paths on
        every worker, e.g. a shared filesystem). None starts a local cluster sized to this machine
        (loopback only) and closes it afterwards.
    subjects, sessions, tasks, runs : str | list of str | None
        For a BIDS dataset: only these labels (``"01"`` or ``"sub-01"``). A later run with other
        filters adds to the same store.
    overwrite : bool
        Start the store again, forgetting every recording in it.
    progress : bool | None
        Progress bar (recordings, epochs, rate), the dashboard link and a summary on stderr
        (None, the default, shows them).
    verbose : bool | str | int | None
        The log level of this call, as in MNE (None: the current level), and MNE's in the workers
        (None: errors only). A script must make the call under ``if __name__ == "__main__":`` (the
        local cluster's workers re-run the script); a notebook needs nothing.
    **embed_options
        ``segment_duration``, ``bad_channels``, ``use_annotations``, ``batch_size``, ``sfreq``,
        ``ch_names``: as in :func:`zuna_lab.embed`, the same for every recording.

    Returns
    -------
    index : pandas.DataFrame
        One row per recording of the store: ``recording``, ``source`` (then, for a BIDS dataset,
        ``subject``, ``session``, ``task``, ``acquisition``, ``run``), ``status`` ("done" or
        "failed"), ``n_epochs``, ``n_channels``, ``seconds`` (recording length), ``error`` (one
        sentence, else empty), ``warnings``, ``output`` (its file in the store: one zip per
        recording), ``source_stamp``, ``run_id`` (the run that computed it), ``computed_at``,
        ``compute_seconds``, ``worker``.

    Examples
    --------
    >>> import zuna_lab as zl
    >>> index = zl.embed_many("ds004504/", model="Zyphra/ZUNA1.1", tasks="eyesclosed")  # doctest: +SKIP
    >>> zl.open_embeddings("ds004504/").pooled().groupby("Group").latent_0.mean()    # doctest: +SKIP
    >>> index = zl.embed_many("study/**/*.edf", "study.zarr", model="Zyphra/ZUNA")   # doctest: +SKIP
    >>> index[index.status == "failed"][["recording", "error"]]                       # doctest: +SKIP
    >>> study = zl.open_embeddings("study.zarr"); study["sub-01"]                      # doctest: +SKIP
    """
    from .cluster import Stages
    from .tasks import encode_bundles, prepare_embedding, write_embedding
    from ..validation import check_bool

    _check_options(embed_options, _EMBED_OPTIONS, "embed_many")
    progress = check_bool(progress, "progress", allow_none=True) is not False
    if client is None:
        check_main_guard("embed_many")       # before any worker starts
    plan = _begin(sources, store, "embeddings", model, client, overwrite,
                  dict(subjects=subjects, sessions=sessions, tasks=tasks, runs=runs))
    pairs, target, spec, variant = plan.pairs, plan.target, plan.spec, plan.variant
    options = dict(embed_options, verbose=verbose)
    with _open(plan, _settings(spec, variant, embed_options), overwrite):
        jobs = [(rec_id, path, stamp) for (rec_id, path), stamp in zip(pairs, source_stamps([p for _, p in pairs]))]
        todo = [job for job in jobs if not target.is_complete(*job)]
        if todo:
            stages = Stages(prepare_embedding, encode_bundles, write_embedding, variant, options,
                            encode_args=(embed_options.get("batch_size"),),
                            write_args=lambda rec_id, run: (str(target.tmp), run))
            _run(stages, target, todo, spec, client, progress, "embed_many")
        frame = target.frame()
    return _finish(frame, "embed_many", len(jobs) - len(todo), progress)


@verbose
def reconstruct_many(sources, out_dir=None, *, model=None, client=None, kind="hybrid", subjects=None, sessions=None,
                     tasks=None, runs=None, overwrite=False, progress=None, verbose=None, **reconstruct_options):
    """Repair many recordings: one FIF per recording, written atomically, on dask.distributed.

    Every recording is reconstructed as :func:`zuna_lab.reconstruct` does (``info["bads"]``,
    ``BAD_`` annotations and the options below are infilled) and written with
    :func:`zuna_lab.write_fif` as ``<out_dir>/<id>_repaired_raw.fif`` (for a BIDS dataset as
    ``<out_dir>/sub-…/[ses-…/]eeg/sub-…_desc-zuna_eeg.fif`` in its derivative dataset,
    ``<root>/derivatives/zuna_lab`` by default, beside :func:`embed_many`'s store): the recording with its EEG
    repaired and every other channel, annotation and ``meas_date`` kept. Reading and
    preprocessing run on CPU workers, the model on GPU workers, writing on CPU workers. The index
    (``zuna_lab_index.json`` in ``out_dir``) makes reruns skip the recordings already repaired
    from unchanged sources; failures are listed with their one-sentence error.

    Parameters
    ----------
    sources, model, client, subjects, sessions, tasks, runs, progress, verbose
        As in :func:`embed_many`.
    out_dir : path-like | None
        Folder for the repaired files (created if missing). None only for a BIDS dataset:
        ``<root>/derivatives/zuna_lab``.
    kind : {"hybrid", "reconstruction", "original"}
        The signal written (see :func:`zuna_lab.to_raw`).
    overwrite : bool
        Redo every recording and replace its file.
    **reconstruct_options
        ``steps``, ``cfg``, ``seed``, ``bad_channels``, ``bad_segments``, ``use_annotations``,
        ``add_channels``, ``n_samples``, ``segment_duration``, ``batch_size``, ``sfreq``,
        ``ch_names``: as in :func:`zuna_lab.reconstruct`, the same for every recording.

    Returns
    -------
    index : pandas.DataFrame
        As :func:`embed_many`; ``output`` is the FIF file's path relative to ``out_dir``.

    Examples
    --------
    >>> index = zl.reconstruct_many("clinic/*.edf", "repaired/", seed=0)   # doctest: +SKIP
    >>> raw = mne.io.read_raw_fif("repaired/" + index.output[0])         # doctest: +SKIP
    """
    from .cluster import Stages
    from .tasks import prepare_reconstruction, reconstruct_bundles, write_reconstruction
    from ..validation import check_bool

    _check_options(reconstruct_options, _RECONSTRUCT_OPTIONS, "reconstruct_many")
    progress = check_bool(progress, "progress", allow_none=True) is not False
    if kind not in ("hybrid", "reconstruction", "original"):
        raise ZunaValueError(f"kind must be 'hybrid', 'reconstruction' or 'original', got {kind!r}.")
    if client is None:
        check_main_guard("reconstruct_many")       # before any worker starts
    from .bids import derivative_name

    plan = _begin(sources, out_dir, "reconstructions", model, client, overwrite,
                  dict(subjects=subjects, sessions=sessions, tasks=tasks, runs=runs))
    pairs, target, spec, variant = plan.pairs, plan.target, plan.spec, plan.variant
    names = {rec_id: derivative_name(plan.bids[rec_id], kind) if rec_id in plan.bids else f"{rec_id}_repaired_raw.fif"
             for rec_id, _ in pairs}
    options = dict(reconstruct_options, verbose=verbose)
    with _open(plan, _settings(spec, variant, dict(reconstruct_options, kind=kind)), overwrite):
        jobs = [(rec_id, path, stamp) for (rec_id, path), stamp in zip(pairs, source_stamps([p for _, p in pairs]))]
        todo = [job for job in jobs if not target.is_complete(*job)]
        for rec_id, path, stamp in list(todo):
            output = target.path / names[rec_id]
            known = target.rows.get(rec_id, {}).get("output") == names[rec_id]
            if output.exists() and not known:      # someone else's file: never replaced silently
                todo.remove((rec_id, path, stamp))
                target.commit(dict(recording=rec_id, source=path, source_stamp=stamp, status="failed",
                                   error=f"{str(output)!r} exists and was not written by this study; move it, "
                                         "or pass overwrite=True to replace it."))
        if todo:
            stages = Stages(prepare_reconstruction, reconstruct_bundles, write_reconstruction, variant, options,
                            encode_args=(options,), batch=False,
                            write_args=lambda rec_id, run: (str(target.path / names[rec_id]), kind, names[rec_id]))
            _run(stages, target, todo, spec, client, progress, "reconstruct_many")
        frame = target.frame()
    return _finish(frame, "reconstruct_many", len(jobs) - len(todo), progress)


def _run(stages, target, todo, spec, client, progress, label):
    """The study's pipeline over the recordings still to do, on ``client`` or a local cluster."""
    from .cluster import run_pipeline

    with _cluster(client, progress) as active:
        run_pipeline(active, target, todo, stages, spec, progress=progress, label=label)


def _finish(frame, label, n_skipped, progress):
    """The study's index, after a summary line when progress is shown."""
    if progress:
        _summary(frame, label, n_skipped)
    logger.info("%s: %d recordings done, %d failed.", label, int((frame.status == "done").sum()),
                int((frame.status == "failed").sum()))
    return frame
