"""State of the zuna_lab apps as ``param.Parameterized`` classes — no Panel here.

The apps follow the HoloViz structure: these classes hold what the user chose
and what was computed, :mod:`zuna_lab.viz.plots` turns them into views, and
:mod:`zuna_lab.viz.apps` lays widgets and views out.  Everything here runs
and is tested without a browser.

Every number the apps show comes from the library functions a user calls:
:func:`zuna_lab.core.prepare` + :func:`zuna_lab.core.reconstruct_prepared`
(what :func:`zuna_lab.reconstruct` runs), :func:`zuna_lab.embed` and
:func:`zuna_lab.mmd_health`.  A reconstructed epoch therefore equals that
epoch of ``zuna_lab.reconstruct(raw, ...)`` with the same seed and masks.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import param
import xarray as xr

from ..errors import ZunaTypeError, ZunaValueError

__all__ = ["Recording", "ReconstructionState", "HealthState", "EmbeddingState"]


def _check_raw(raw):
    if not (hasattr(raw, "info") and hasattr(raw, "get_data") and hasattr(raw, "times")):
        raise ZunaTypeError(
            f"Expected an mne Raw (use zuna_lab.read_raw to load a file), got {type(raw).__name__}."
        )


def _resolve_model(model):
    """A loaded ZunaModel: ``model`` itself, or the process-wide cached model of a source (None: default)."""
    from ..core import get_model

    return get_model(model)


def _is_loaded(model):
    from ..model import ZunaModel

    return isinstance(model, ZunaModel)


class Recording:
    """One recording as the apps see it: read and preprocessed once per set of hidden channels, embedded once.

    Thread-safe, so the apps of a dashboard (and every session of :func:`~zuna_lab.viz.apps.serve`)
    share one.  Preprocessing is :func:`zuna_lab.core.prepare`; ZUNA keeps hidden channels out of
    its average reference, so a :class:`~zuna_lab.core.Prepared` is kept per set of bad channels
    (the last ``max_prepared`` sets).  The embedding is :func:`zuna_lab.embed`, once per model.

    Parameters
    ----------
    raw : mne.io.Raw
        The recording (never modified).
    name : str
        Shown in the apps.
    segment_duration : float | None
        Epoch length passed to the library (None: the variant's 5 s).
    max_prepared : int
        Preprocessed versions kept (a 1 h x 64 channel recording takes ~0.7 GB each).

    Examples
    --------
    >>> rec = Recording(raw)                                          # doctest: +SKIP
    >>> rec.prepared(model.variant, ["T7"]).pre.n_epochs              # doctest: +SKIP
    """

    def __init__(self, raw, *, name="recording", segment_duration=None, max_prepared=3):
        _check_raw(raw)
        self.raw, self.name, self.segment_duration = raw, str(name), segment_duration
        self.max_prepared = max(2, int(max_prepared))
        self._prepared = OrderedDict()
        self._embeddings = {}
        self._prepare_lock = threading.Lock()
        self._embed_lock = threading.Lock()

    def __repr__(self):
        return f"Recording({self.name!r}, {len(self.raw.ch_names)} channels, {self.raw.times[-1]:.1f} s)"

    @staticmethod
    def key(bad_channels=()):
        return tuple(sorted(str(c) for c in bad_channels))

    def is_prepared(self, variant, bad_channels=()):
        return (variant, self.key(bad_channels)) in self._prepared

    def prepared(self, variant, bad_channels=()):
        """The recording preprocessed for ``variant`` with ``bad_channels`` hidden (cached)."""
        from ..core import prepare

        key = (variant, self.key(bad_channels))
        with self._prepare_lock:
            if key in self._prepared:
                self._prepared.move_to_end(key)
                return self._prepared[key]
            prepared = prepare(self.raw, variant, bad_channels=list(key[1]), segment_duration=self.segment_duration)
            self._prepared[key] = prepared
            base = (variant, ())
            while len(self._prepared) > self.max_prepared:
                oldest = next(k for k in self._prepared if k not in (base, key))
                del self._prepared[oldest]
            return prepared

    def has_embedding(self, model):
        return id(model) in self._embeddings

    def forget_embedding(self, model):
        """Drop the cached embedding of ``model`` (the next :meth:`embedding` recomputes it)."""
        with self._embed_lock:
            self._embeddings.pop(id(model), None)

    def embedding(self, model):
        """``zuna_lab.embed(raw, model=model)`` (cached per model)."""
        import zuna_lab

        with self._embed_lock:
            hit = self._embeddings.get(id(model))
            if hit is None or hit[0] is not model:
                emb = zuna_lab.embed(self.raw, model=model, segment_duration=self.segment_duration)
                self._embeddings[id(model)] = hit = (model, emb)
            return hit[1]

    def original(self, variant, epoch):
        """The library's ``original`` of one epoch: preprocessed volts, ``(channel, time)`` at the model rate."""
        pre = self.prepared(variant).pre
        if not 0 <= int(epoch) < pre.n_epochs:
            raise ZunaValueError(f"epoch {epoch} does not exist; the recording has epochs 0 to {pre.n_epochs - 1}.")
        data = np.asarray(pre.volts[int(epoch)], np.float64)
        return xr.DataArray(
            data, dims=("channel", "time"), name="original",
            coords={"channel": list(pre.ch_names), "time": np.arange(data.shape[1]) / pre.sfreq},
            attrs={"units": "V", "epoch": int(epoch), "epoch_start": float(pre.epoch_start[int(epoch)]),
                   "sfreq": float(pre.sfreq)},
        )


def _as_recording(raw, recording, name="recording"):
    if recording is not None:
        if not isinstance(recording, Recording):
            raise ZunaTypeError(f"recording must be a zuna_lab.viz.state.Recording, got {type(recording).__name__}.")
        return recording
    if raw is None:
        return None
    return Recording(raw, name=name)


class ReconstructionState(param.Parameterized):
    """What the reconstruction explorer shows and runs, for one recording.

    The whole recording is preprocessed once (per set of masked channels) and an epoch is
    reconstructed by :func:`zuna_lab.core.reconstruct_prepared`, the code of
    :func:`zuna_lab.reconstruct`: the result equals ``zuna_lab.reconstruct(raw, **st.request())``
    restricted to that epoch.  Epochs are those of the preprocessed recording (5 s at 256 Hz).

    Masking: channels only → those channels over the whole recording (``bad_channels``: ZUNA
    leaves them out of its average reference); a time span only → every channel inside the span;
    both → the chosen channels inside the span (``bad_segments`` in seconds of the recording).
    ``BAD_`` annotations and ``info["bads"]`` are masked as by the library.

    Parameters
    ----------
    raw : mne.io.Raw
        The recording (never modified); or pass ``recording=`` to share one.
    model : ZunaModel | str | None
        A loaded model, a source, or None for the default; sources load once per process
        (:func:`zuna_lab.core.cached_model`).  With a loaded model the recording is
        preprocessed at once; otherwise on :meth:`prepare` (or the first use).

    Examples
    --------
    >>> st = ReconstructionState(raw=raw, model=model, steps=50, seed=0)     # doctest: +SKIP
    >>> st.masked_channels = ["T7"]; st.run(); st.metrics.rmse               # doctest: +SKIP
    """

    recording = param.ClassSelector(class_=Recording, default=None, constant=True,
                                    doc="The shared recording (raw, preprocessing cache).")
    model = param.Parameter(default=None, doc="ZunaModel, a source string, or None (default source).")
    epoch = param.Integer(default=0, bounds=(0, 0), doc="Epoch of the preprocessed recording.")
    masked_channels = param.ListSelector(default=[], objects=[], doc="Channels to hide and infill.")
    masked_span = param.Range(default=None, allow_None=True, doc="(start, stop) s within the epoch to hide.")
    steps = param.Integer(default=50, bounds=(1, 1000), doc="Sampler steps.")
    cfg = param.Number(default=1.0, bounds=(0.0, 20.0), doc="Classifier-free guidance scale.")
    seed = param.Integer(default=0, bounds=(0, None), doc="Sampler seed.")
    n_samples = param.Integer(default=1, bounds=(1, 32), doc="Samples drawn (spread when > 1).")

    ready = param.Boolean(default=False, doc="The model is loaded and the recording preprocessed.")
    n_epochs = param.Integer(default=0, doc="Epochs of the preprocessed recording.")
    running = param.Boolean(default=False)
    progress = param.Number(default=0.0, bounds=(0.0, 1.0))
    status = param.String(default="ready")
    error = param.String(default="")
    result = param.ClassSelector(class_=xr.Dataset, default=None, allow_None=True)
    metrics = param.ClassSelector(class_=xr.Dataset, default=None, allow_None=True)
    run_count = param.Integer(default=0)

    def __init__(self, raw=None, *, recording=None, **params):
        recording = _as_recording(raw, recording)
        if recording is None:
            raise ZunaValueError("ReconstructionState needs a recording: ReconstructionState(raw=...).")
        later = {k: params.pop(k) for k in ("epoch", "masked_channels", "masked_span") if k in params}
        super().__init__(recording=recording, **params)
        self._lock = threading.Lock()          # one run at a time
        self._prepare_lock = threading.Lock()
        self._thread = None
        self._later = later
        if _is_loaded(self.model):
            self.prepare()

    # ---------------------------------------------------------------- recording
    @property
    def raw(self):
        return self.recording.raw

    def _model(self):
        if not _is_loaded(self.model):
            self.model = _resolve_model(self.model)
        return self.model

    def prepare(self):
        """Load the model if needed and preprocess the recording (idempotent, blocking); returns the Prepared."""
        with self._prepare_lock:
            model = self._model()
            if not self.recording.is_prepared(model.variant):
                self.status = "preprocessing the recording…"
            base = self.recording.prepared(model.variant)
            if not self.ready:
                pre = base.pre
                if pre.n_epochs < 1:
                    raise ZunaValueError("The recording is shorter than one epoch.")
                self.param.epoch.bounds = (0, pre.n_epochs - 1)
                self.param.masked_channels.objects = list(pre.ch_names)
                later, self._later = self._later, {}
                self.param.update(n_epochs=pre.n_epochs, ready=True, status="ready", **later)
            return base

    def _base(self):
        return self.prepare() if not self.ready else self.recording.prepared(self.model.variant)

    @property
    def variant(self):
        return self._model().variant

    @property
    def ch_names(self):
        return list(self._base().pre.ch_names)

    @property
    def sfreq(self):
        """The model rate (256 Hz): epochs, times and traces are those of the preprocessed recording."""
        return float(self._base().pre.sfreq)

    def epoch_start(self, epoch=None):
        """Start of an epoch in seconds from the start of the recording."""
        e = self.epoch if epoch is None else int(epoch)
        return float(self._base().pre.epoch_start[e])

    def epoch_duration(self, epoch=None):
        """Length of an epoch in seconds (ZUNA1.1's last segment may be shorter)."""
        e = self.epoch if epoch is None else int(epoch)
        pre = self._base().pre
        return pre.n_samples(e) / pre.sfreq

    @property
    def positions(self):
        """dict channel -> (x, y, z) m (head frame), as the library reads them."""
        pre = self._base().pre
        return {c: np.asarray(p, float) for c, p in zip(pre.ch_names, pre.ch_pos)}

    def original(self, epoch=None):
        """The library's ``original`` of an epoch (preprocessed volts, ``(channel, time)``, model rate)."""
        self._base()
        return self.recording.original(self.model.variant, self.epoch if epoch is None else int(epoch))

    # ---------------------------------------------------------------- masks
    def toggle_channel(self, name):
        """Add a channel to the mask, or remove it when it is masked."""
        if name not in self.ch_names:
            raise ZunaValueError(f"Unknown channel {name!r}; the recording has {self.ch_names}.")
        cur = list(self.masked_channels)
        self.masked_channels = [c for c in cur if c != name] if name in cur else cur + [name]

    def clear_mask(self):
        self.param.update(masked_channels=[], masked_span=None)

    def _span(self):
        if self.masked_span is None:
            return None
        t0, t1 = sorted(float(v) for v in self.masked_span)
        t0, t1 = max(0.0, t0), min(self.epoch_duration(), t1)
        return (t0, t1) if t1 > t0 else None

    def mask_request(self):
        """The masks as the library's keywords: ``bad_channels`` and ``bad_segments``.

        ``bad_segments`` are ``(start, stop)`` or ``(start, stop, channel)`` in seconds from the
        start of the recording (the span within the epoch plus the epoch's start).
        """
        span = self._span()
        chans = list(self.masked_channels)
        if span is None:
            return {"bad_channels": chans, "bad_segments": []}
        t0 = self.epoch_start()
        start, stop = t0 + span[0], t0 + span[1]
        if chans:
            return {"bad_channels": [], "bad_segments": [(start, stop, c) for c in chans]}
        return {"bad_channels": [], "bad_segments": [(start, stop)]}

    def request(self):
        """Everything a run passes to the library: ``zuna_lab.reconstruct(raw, model=st.model, **st.request())``
        gives the same numbers for this epoch."""
        return {**self.mask_request(), "steps": self.steps, "cfg": self.cfg, "seed": self.seed,
                "n_samples": self.n_samples, "segment_duration": self.recording.segment_duration}

    def token_mask(self, epoch=None):
        """The pending mask of an epoch as a ``(channel, token)`` bool DataArray (True = to infill).

        As the library builds it: the masked channels and span, ``info["bads"]`` and ``BAD_``
        annotations (the preprocessed recording's token grid).
        """
        from ..io import bad_annotation_spans

        e = self.epoch if epoch is None else int(epoch)
        base = self._base()
        pre = base.pre
        req = self.mask_request() if epoch is None or e == self.epoch else {"bad_channels": list(self.masked_channels),
                                                                           "bad_segments": []}
        spans = list(req["bad_segments"]) + list(bad_annotation_spans(base.raw))
        m = pre.token_mask(e, bad_channels=list(base.bads) + list(req["bad_channels"]), bad_spans=spans)
        token_s = pre.n_samples(e) / m.shape[1] / pre.sfreq
        return xr.DataArray(m, dims=("channel", "token"), name="mask",
                            coords={"channel": list(pre.ch_names),
                                    "token_time": ("token", np.arange(m.shape[1]) * token_s)})

    @param.depends("epoch", watch=True)
    def _epoch_changed(self):
        self.param.update(result=None, metrics=None, status="ready", progress=0.0)

    # ---------------------------------------------------------------- run
    def _progress_cb(self, done, total):
        self.progress = float(min(1.0, max(0.0, done / total if total else 1.0)))
        if total > 1:
            self.status = f"running… {done}/{total}"

    def compute(self, *, raise_errors=True):
        """Reconstruct the current epoch with the current masks and options (blocking).

        Sets only ``running``/``progress``/``status``/``error``; returns
        ``(result, metrics, seconds)`` for :meth:`apply` (None on failure when
        ``raise_errors`` is False).  Apps call this in a worker thread and
        :meth:`apply` on their event loop.
        """
        if not self._lock.acquire(blocking=False):
            raise ZunaValueError("A reconstruction is already running; wait for it to finish.")
        try:
            self.param.update(running=True, progress=0.0, error="")
            t0 = time.perf_counter()
            self._base()
            if self.masked_span is not None and self._span() is None:
                raise ZunaValueError("The masked time span is empty; drag over the traces again.")
            req = self.mask_request()
            if not req["bad_channels"] and not req["bad_segments"] and not self.token_mask().values.any():
                raise ZunaValueError("Nothing is masked: choose channels or a time span to reconstruct.")
            from ..core import reconstruct_prepared
            from ..health import reconstruction_errors

            model = self._model()
            if not self.recording.is_prepared(model.variant, req["bad_channels"]):
                self.status = f"preprocessing with {', '.join(req['bad_channels'])} hidden…"
            prepared = self.recording.prepared(model.variant, req["bad_channels"])
            self.status = "running…"
            rec = reconstruct_prepared(prepared, model, epochs=[int(self.epoch)], steps=int(self.steps),
                                       cfg=float(self.cfg), seed=int(self.seed), bad_segments=req["bad_segments"],
                                       n_samples=int(self.n_samples), callback=self._progress_cb)
            return rec, reconstruction_errors(rec), time.perf_counter() - t0
        except Exception as exc:  # noqa: BLE001 - shown to the user
            self.param.update(running=False, error=f"{type(exc).__name__}: {exc}", status="failed")
            if raise_errors:
                raise
            return None
        finally:
            self._lock.release()

    def apply(self, out):
        """Store the output of :meth:`compute` (result, metrics, seconds) in the state."""
        if out is None:
            return None
        rec, metrics, secs = out
        if int(rec["epoch"].values[0]) != int(self.epoch):  # the user moved on while it ran
            self.param.update(running=False, progress=0.0, status="ready (the epoch changed during the run)")
            return None
        self.param.update(result=rec, metrics=metrics, progress=1.0, running=False,
                          run_count=self.run_count + 1, status=f"done in {secs:.1f} s")
        return rec

    def run(self, *, raise_errors=True):
        """Reconstruct the current epoch with the current masks and options (blocking).

        Returns
        -------
        xr.Dataset | None
            The result (also in ``self.result``, with ``self.metrics``): that epoch of
            ``zuna_lab.reconstruct`` (the ``epoch`` coordinate is its index, ``epoch_start`` in
            recording seconds); None when it failed and ``raise_errors`` is False (message in
            ``self.error``).
        """
        return self.apply(self.compute(raise_errors=raise_errors))

    def start(self):
        """Run in a background thread (returns it); progress and result update as params."""
        if self.running or (self._thread is not None and self._thread.is_alive()):
            return self._thread
        self.running = True
        self.status = "starting…"
        self._thread = threading.Thread(target=self.run, kwargs={"raise_errors": False}, daemon=True,
                                        name="zuna-reconstruct")
        self._thread.start()
        return self._thread

    def wait(self, timeout=None):
        """Wait for a background run to finish."""
        if self._thread is not None:
            self._thread.join(timeout)

    # ---------------------------------------------------------------- views of the result
    def error_table(self):
        """Per-channel RMSE (µV) and correlation on masked cells as a DataFrame (empty before a run)."""
        import pandas as pd

        if self.metrics is None:
            return pd.DataFrame(columns=["channel", "rmse_uV", "correlation"])
        m = self.metrics
        dims = [d for d in m.rmse.dims if d != "channel"]
        rmse = m.rmse.mean(dims) if dims else m.rmse
        corr = m.correlation.mean(dims) if dims else m.correlation
        df = pd.DataFrame({"channel": [str(c) for c in m.channel.values],
                           "rmse_uV": rmse.values * 1e6, "correlation": corr.values})
        return df.dropna(subset=["rmse_uV"]).reset_index(drop=True)

    def to_raw(self, kind="hybrid"):
        """The recording with this epoch's repair spliced in (``zuna_lab.to_raw(result, raw=raw)``)."""
        if self.result is None:
            raise ZunaValueError("There is no reconstruction yet: run one first.")
        if kind not in ("original", "reconstruction", "hybrid"):
            raise ZunaValueError(f"kind must be 'original', 'reconstruction' or 'hybrid', got {kind!r}.")
        import inspect

        from zuna_lab import to_raw

        if "raw" in inspect.signature(to_raw).parameters:
            return to_raw(self.result, kind=kind, raw=self.raw)
        # an older to_raw without raw=: the epoch alone, from time 0
        return to_raw(self.result.assign_coords(epoch_start=("epoch", [0.0])), kind=kind)

    def export_fif(self, path=None, *, kind="hybrid", overwrite=True):
        """Write the repaired recording (:meth:`to_raw`) as a FIF file; returns its path."""
        raw = self.to_raw(kind)
        if path is None:
            d = Path(tempfile.mkdtemp(prefix="zuna_lab_"))
            path = d / f"repaired_epoch{self.epoch}_raw.fif"
        path = Path(path)
        raw.save(path, overwrite=overwrite, verbose="error")
        return path


class HealthState(param.Parameterized):
    """Latent-space health of one or several recordings (``zuna_lab.mmd_health(zuna_lab.embed(raw))``).

    Parameters
    ----------
    embeddings : dict of str -> xr.Dataset
        Embed results by recording name (computed ones are added here).
    recordings : dict of str -> Recording | mne.io.Raw
        Recordings to embed on :meth:`compute` when no embedding is given.
    model : ZunaModel | str | None
        As for :class:`ReconstructionState`.

    Examples
    --------
    >>> hs = HealthState(embeddings={"s1": emb1, "s2": emb2}); hs.compute()   # doctest: +SKIP
    >>> hs.summary()                                                          # doctest: +SKIP
    """

    embeddings = param.Dict(default={})
    recordings = param.Dict(default={})
    model = param.Parameter(default=None)
    reference = param.Selector(default="N(0, I)", objects=["N(0, I)"], doc="Compare with N(0, I) or a recording.")
    n_permutations = param.Integer(default=200, bounds=(0, 5000))
    max_points = param.Integer(default=1000, bounds=(50, 20000))
    seed = param.Integer(default=0, bounds=(0, None))
    kernel = param.Selector(default="imq", objects=["imq", "gaussian"])
    selected = param.Selector(default=None, objects=[], allow_None=True, doc="Recording shown in detail.")

    results = param.Dict(default={})
    comparison = param.ClassSelector(class_=xr.Dataset, default=None, allow_None=True)
    running = param.Boolean(default=False)
    progress = param.Number(default=0.0, bounds=(0.0, 1.0))
    status = param.String(default="ready")
    error = param.String(default="")

    def __init__(self, **params):
        recs = params.pop("recordings", None) or {}
        recs = {str(k): v if isinstance(v, Recording) else Recording(v, name=str(k)) for k, v in recs.items()}
        super().__init__(recordings=recs, **params)
        self._lock = threading.Lock()
        self._names_changed()

    @param.depends("embeddings", "recordings", watch=True)
    def _names_changed(self):
        names = list(dict.fromkeys([*self.recordings, *self.embeddings]))
        self.param.reference.objects = ["N(0, I)", *names]
        self.param.selected.objects = names
        if self.selected not in names:
            self.selected = names[0] if names else None

    @property
    def names(self):
        return list(self.param.selected.objects)

    @property
    def complete(self):
        """Every recording has a health result."""
        return bool(self.names) and all(n in self.results for n in self.names)

    def compute_results(self, *, raise_errors=True):
        """Embed what is missing and compute health (blocking; sets only status params).

        Returns ``(embeddings, results, comparison, status)`` for :meth:`apply`, or
        None on failure when ``raise_errors`` is False.
        """
        from ..health import compare_recordings, mmd_health

        if not self._lock.acquire(blocking=False):
            if raise_errors:
                raise ZunaValueError("Health is already being computed; wait for it to finish.")
            return None
        try:
            self.param.update(running=True, error="", status="computing…", progress=0.0)
            t0 = time.perf_counter()
            embs = dict(self.embeddings)
            missing = [n for n in self.names if n not in embs]
            n_steps = len(missing) + len(self.names) + (len(self.names) > 1)
            done = 0
            if missing and not _is_loaded(self.model):
                self.status = "loading the model…"
                self.model = _resolve_model(self.model)
            for name in missing:
                self.status = f"embedding {name}…"
                rec = self.recordings[name]
                rec = rec if isinstance(rec, Recording) else Recording(rec, name=name)
                embs[name] = rec.embedding(self.model)
                done += 1
                self.progress = done / n_steps
            ref = None if self.reference == "N(0, I)" else embs[self.reference]
            res = {}
            for name in self.names:
                self.status = f"health of {name}…"
                res[name] = mmd_health(embs[name], reference=None if name == self.reference else ref,
                                       n_permutations=self.n_permutations, max_points=self.max_points,
                                       seed=self.seed, kernel=self.kernel)
                done += 1
                self.progress = done / n_steps
            cmp = None
            if len(embs) > 1:
                self.status = "comparing recordings…"
                cmp = compare_recordings({n: embs[n] for n in self.names}, n_permutations=min(self.n_permutations, 100),
                                         max_points=min(self.max_points, 500), seed=self.seed, kernel=self.kernel)
            done = (f"done: {self.n_permutations} permutations, {self.max_points} tokens, seed {self.seed}, "
                    f"{time.perf_counter() - t0:.1f} s")
            return embs, res, cmp, done
        except Exception as exc:  # noqa: BLE001
            self.param.update(running=False, error=f"{type(exc).__name__}: {exc}", status="failed")
            if raise_errors:
                raise
            return None
        finally:
            self._lock.release()

    def apply(self, out):
        """Store the output of :meth:`compute_results`."""
        if out is None:
            return None
        embs, res, cmp, done = out
        self.param.update(embeddings=embs, results=res, comparison=cmp, running=False, progress=1.0, status=done)
        return res

    def compute(self, *, raise_errors=True):
        """Embed what is missing, then compute health per recording (and drift when several).

        Returns
        -------
        dict of str -> xr.Dataset | None
            :func:`~zuna_lab.health.mmd_health` per recording (also in ``self.results``).
        """
        return self.apply(self.compute_results(raise_errors=raise_errors))

    def summary(self):
        """One row per recording: verdict, MMD², p-value, flagged dims."""
        import pandas as pd

        rows = []
        for name, h in self.results.items():
            rows.append({"recording": name, "verdict": h.attrs["verdict"], "mmd2": float(h.mmd2),
                         "p_value": float(h.p_value),
                         "collapsed_dims": ", ".join(map(str, h.attrs["collapsed_dims"])),
                         "shifted_dims": ", ".join(map(str, h.attrs["shifted_dims"]))})
        return pd.DataFrame(rows, columns=["recording", "verdict", "mmd2", "p_value", "collapsed_dims",
                                           "shifted_dims"])


class EmbeddingState(param.Parameterized):
    """A 2-D map of token latents, the user's selection on it, and the recording it came from.

    Parameters
    ----------
    embedding : xr.Dataset | None
        An ``embed`` result; None embeds ``recording`` on :meth:`compute`.
    raw : mne.io.Raw | None
        The recording (or pass ``recording=`` to share one): embedded by :meth:`compute`
        (``zuna_lab.embed``) and drawn under the selection (its preprocessed epochs).
    model : ZunaModel | str | None
        As for :class:`ReconstructionState`.

    Examples
    --------
    >>> es = EmbeddingState(raw=raw, model=model); es.compute()        # doctest: +SKIP
    >>> es.selection = [0, 5, 9]; es.selected_channels                 # doctest: +SKIP
    ['Fp1', 'O2']
    """

    embedding = param.ClassSelector(class_=xr.Dataset, default=None, allow_None=True)
    recording = param.ClassSelector(class_=Recording, default=None, allow_None=True, constant=True)
    model = param.Parameter(default=None)
    method = param.Selector(default="pca", objects=["pca", "umap"])
    color_by = param.Selector(default="channel", objects=["channel", "epoch", "time", "region"])
    max_points = param.Integer(default=3000, bounds=(10, 50000))
    seed = param.Integer(default=0, bounds=(0, None))
    selection = param.List(default=[], item_type=int, doc="Row indices into coords (Selection1D).")
    coords = param.ClassSelector(class_=xr.Dataset, default=None, allow_None=True)

    running = param.Boolean(default=False)
    status = param.String(default="ready")
    error = param.String(default="")

    def __init__(self, embedding=None, *, raw=None, recording=None, **params):
        super().__init__(embedding=embedding, recording=_as_recording(raw, recording), **params)
        self._lock = threading.Lock()
        self._recompute()

    @property
    def raw(self):
        return None if self.recording is None else self.recording.raw

    @param.depends("embedding", "method", "max_points", "seed", watch=True)
    def _recompute(self):
        if self.embedding is None:
            self.param.update(coords=None, selection=[])
            return
        from .plots import embedding_coords

        self.param.update(coords=embedding_coords(self.embedding, method=self.method,
                                                  max_points=self.max_points, seed=self.seed),
                          selection=[])

    def compute_embedding(self, *, raise_errors=True):
        """``zuna_lab.embed`` of the recording (blocking; sets only status params); None on failure."""
        if self.recording is None:
            raise ZunaValueError("There is no recording to embed: EmbeddingState(raw=...).")
        if not self._lock.acquire(blocking=False):
            if raise_errors:
                raise ZunaValueError("The recording is already being embedded; wait for it to finish.")
            return None
        try:
            self.param.update(running=True, error="")
            if not _is_loaded(self.model):
                self.status = "loading the model…"
                self.model = _resolve_model(self.model)
            self.status = f"embedding {self.recording.name}…"
            return self.recording.embedding(self.model)
        except Exception as exc:  # noqa: BLE001
            self.param.update(running=False, error=f"{type(exc).__name__}: {exc}", status="failed")
            if raise_errors:
                raise
            return None
        finally:
            self._lock.release()

    def apply(self, emb):
        if emb is None:
            return None
        self.status = "mapping…"
        self.embedding = emb
        self.param.update(running=False, status="done")
        return emb

    def compute(self, *, raise_errors=True):
        """Embed the recording (``zuna_lab.embed(raw, model=model)``) and map it."""
        return self.apply(self.compute_embedding(raise_errors=raise_errors))

    def original(self, epoch):
        """The preprocessed recording's epoch ``epoch`` (the signal the embedding's tokens come from)."""
        if self.recording is None:
            return None
        variant = (self.embedding.attrs.get("model_variant") if self.embedding is not None else None) or \
            _resolve_model(self.model).variant
        return self.recording.original(variant, epoch)

    def select_bounds(self, bounds):
        """Select the points inside ``(x0, y0, x1, y1)`` (a BoundsXY stream value)."""
        if self.coords is None or bounds is None:
            self.selection = []
            return self.selection
        x0, y0, x1, y1 = bounds
        x, y = self.coords["x"].values, self.coords["y"].values
        inside = (x >= min(x0, x1)) & (x <= max(x0, x1)) & (y >= min(y0, y1)) & (y <= max(y0, y1))
        self.selection = [int(i) for i in np.flatnonzero(inside)]
        return self.selection

    @property
    def selected(self):
        """The selected points as a DataFrame (epoch, channel, token, time, region, x, y)."""
        import pandas as pd

        if self.coords is None:
            return pd.DataFrame()
        from .plots import _coords_frame

        df = _coords_frame(self.coords)
        n = len(df)
        idx = [i for i in self.selection if 0 <= i < n]
        return df.iloc[idx].reset_index(drop=True)

    @property
    def selected_channels(self):
        df = self.selected
        return sorted(set(df["channel"])) if "channel" in df else []

    @property
    def selected_epochs(self):
        df = self.selected
        return sorted(int(e) for e in set(df["epoch"])) if "epoch" in df else []

    @property
    def selected_times(self):
        """(epoch, channel, token start s) of the selected tokens."""
        df = self.selected
        cols = [c for c in ("epoch", "channel", "time") if c in df]
        return df[cols]

    def selected_mask(self):
        """The selection as an ``(epoch, channel, token)`` bool DataArray aligned with the embedding."""
        emb = self.embedding
        m = xr.zeros_like(emb["mask"], dtype=bool) if "mask" in emb else xr.DataArray(
            np.zeros([emb.sizes[d] for d in ("epoch", "channel", "token")], bool),
            dims=("epoch", "channel", "token"))
        df = self.selected
        if len(df):
            ei = np.searchsorted(emb["epoch"].values, df["epoch"].values) if "epoch" in emb.coords else df["epoch"].values
            ci = [list(map(str, emb["channel"].values)).index(c) for c in df["channel"]]
            ti = np.searchsorted(emb["token"].values, df["token"].values) if "token" in emb.coords else df["token"].values
            vals = m.values.copy()
            vals[np.asarray(ei), np.asarray(ci), np.asarray(ti)] = True
            m = m.copy(data=vals)
        return m
