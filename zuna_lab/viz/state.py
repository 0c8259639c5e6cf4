"""State of the zuna_lab apps as ``param.Parameterized`` classes — no Panel here.

The apps follow the HoloViz structure: these classes hold what the user chose
and what was computed, :mod:`zuna_lab.viz.plots` turns them into views, and
:mod:`zuna_lab.viz.apps` lays widgets and views out.  Everything here runs
and is tested without a browser.

The model functions (``zuna_lab.reconstruct`` / ``zuna_lab.embed``) are
imported on first use; a different callable can be injected
(``reconstruct_fn=``, ``embed_fn=``), e.g. a stub in tests.
"""

from __future__ import annotations

import inspect
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import param
import xarray as xr

from ..errors import ZunaTypeError, ZunaValueError

__all__ = ["ReconstructionState", "HealthState", "EmbeddingState"]

EPOCH_S = 5.0
TOKEN_S = 0.125


def _accepts(fn, name):
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    return name in sig.parameters or any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())


def _check_raw(raw):
    if not (hasattr(raw, "info") and hasattr(raw, "get_data") and hasattr(raw, "times")):
        raise ZunaTypeError(
            f"Expected an mne Raw (use zuna_lab.read_raw to load a file), got {type(raw).__name__}."
        )


class ReconstructionState(param.Parameterized):
    """What the reconstruction explorer shows and runs, for one recording.

    Masking: channels only → those channels for the whole epoch; a time span
    only → every channel inside the span; both → the chosen channels inside
    the span.  ``run()`` reconstructs the current epoch (the recording cropped
    to it) with these masks and stores the result Dataset and per-channel
    error metrics on the masked cells.

    Parameters
    ----------
    raw : mne.io.Raw
        The recording (never modified).
    model : object | None
        A loaded model passed through to ``reconstruct_fn``.
    reconstruct_fn : callable | None
        Defaults to ``zuna_lab.reconstruct``.

    Examples
    --------
    >>> st = ReconstructionState(raw=raw, reconstruct_fn=my_stub)   # doctest: +SKIP
    >>> st.masked_channels = ["T7"]; st.run(); st.metrics.rmse      # doctest: +SKIP
    """

    raw = param.Parameter(default=None, doc="The recording (mne Raw, volts).", constant=True)
    model = param.Parameter(default=None, doc="Loaded model passed to reconstruct_fn.")
    reconstruct_fn = param.Callable(default=None, doc="reconstruct(raw, *, model, bad_channels, ...).")
    model_loader = param.Callable(default=None, doc="Called once to get the model when model is None.")
    epoch_duration = param.Number(default=EPOCH_S, bounds=(0.5, 30.0), constant=True)
    epoch = param.Integer(default=0, bounds=(0, 0), doc="Epoch index (epoch_duration s windows).")
    masked_channels = param.ListSelector(default=[], objects=[], doc="Channels to hide and infill.")
    masked_span = param.Range(default=None, allow_None=True, doc="(start, stop) s within the epoch to hide.")
    steps = param.Integer(default=50, bounds=(1, 1000), doc="Sampler steps.")
    cfg = param.Number(default=1.0, bounds=(0.0, 20.0), doc="Classifier-free guidance scale.")
    seed = param.Integer(default=0, bounds=(0, None), doc="Sampler seed.")
    n_samples = param.Integer(default=1, bounds=(1, 32), doc="Samples drawn (spread when > 1).")

    running = param.Boolean(default=False, constant=False)
    progress = param.Number(default=0.0, bounds=(0.0, 1.0))
    status = param.String(default="ready")
    error = param.String(default="")
    result = param.ClassSelector(class_=xr.Dataset, default=None, allow_None=True)
    metrics = param.ClassSelector(class_=xr.Dataset, default=None, allow_None=True)
    run_count = param.Integer(default=0)

    def __init__(self, raw=None, **params):
        if raw is None:
            raise ZunaValueError("ReconstructionState needs a recording: ReconstructionState(raw=...).")
        _check_raw(raw)
        later = {k: params.pop(k) for k in ("epoch", "masked_channels", "masked_span") if k in params}
        super().__init__(raw=raw, **params)
        n = self.n_epochs
        if n < 1:
            raise ZunaValueError(
                f"The recording lasts {raw.times[-1] + 1 / raw.info['sfreq']:.2f} s, shorter than one "
                f"{self.epoch_duration:g} s epoch."
            )
        self.param.epoch.bounds = (0, n - 1)
        self.param.masked_channels.objects = list(self.ch_names)
        self._lock = threading.Lock()
        self._thread = None
        self.param.update(**later)

    # ---------------------------------------------------------------- recording
    @property
    def ch_names(self):
        return list(self.raw.ch_names)

    @property
    def sfreq(self):
        return float(self.raw.info["sfreq"])

    @property
    def n_epochs(self):
        return int(self.raw.n_times // int(round(self.epoch_duration * self.sfreq)))

    @property
    def positions(self):
        """dict channel -> (x, y, z) m (head frame) from the recording."""
        return {c["ch_name"]: np.asarray(c["loc"][:3], float) for c in self.raw.info["chs"]}

    def epoch_window(self, epoch=None):
        """(start, stop) sample indices of an epoch."""
        e = self.epoch if epoch is None else int(epoch)
        n = int(round(self.epoch_duration * self.sfreq))
        return e * n, (e + 1) * n

    def original(self, epoch=None):
        """The current epoch of the recording as a ``(channel, time)`` DataArray in volts."""
        start, stop = self.epoch_window(epoch)
        data = self.raw.get_data(start=start, stop=stop)
        return xr.DataArray(
            data, dims=("channel", "time"), name="original",
            coords={"channel": self.ch_names, "time": np.arange(stop - start) / self.sfreq},
            attrs={"units": "V"},
        )

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
        t0, t1 = max(0.0, t0), min(self.epoch_duration, t1)
        return (t0, t1) if t1 > t0 else None

    def mask_request(self):
        """The masks as ``reconstruct`` keywords: ``bad_channels`` and ``bad_segments``.

        ``bad_segments`` are ``(start, stop)`` or ``(start, stop, channel)`` in seconds from
        the start of the epoch (the recording is cropped to the epoch before reconstructing).
        """
        span = self._span()
        chans = list(self.masked_channels)
        if span is None:
            return {"bad_channels": chans, "bad_segments": []}
        if chans:
            return {"bad_channels": [], "bad_segments": [(span[0], span[1], c) for c in chans]}
        return {"bad_channels": [], "bad_segments": [span]}

    def token_mask(self):
        """The pending mask as a ``(channel, token)`` bool DataArray (True = to infill)."""
        n_tok = int(round(self.epoch_duration / TOKEN_S))
        tstart = np.arange(n_tok) * TOKEN_S
        m = np.zeros((len(self.ch_names), n_tok), bool)
        req = self.mask_request()
        idx = {c: i for i, c in enumerate(self.ch_names)}
        for c in req["bad_channels"]:
            m[idx[c]] = True
        for span in req["bad_segments"]:
            hit = (tstart + TOKEN_S > span[0]) & (tstart < span[1])
            if len(span) == 3:
                m[idx[span[2]]] |= hit
            else:
                m |= hit[None, :]
        return xr.DataArray(m, dims=("channel", "token"),
                            coords={"channel": self.ch_names, "token_time": ("token", tstart)}, name="mask")

    @param.depends("epoch", watch=True)
    def _epoch_changed(self):
        self.param.update(result=None, metrics=None, status="ready", progress=0.0)

    # ---------------------------------------------------------------- run
    def _fn(self):
        if self.reconstruct_fn is not None:
            return self.reconstruct_fn
        import zuna_lab

        fn = getattr(zuna_lab, "reconstruct", None)
        if fn is None:
            raise ZunaValueError("zuna_lab.reconstruct is not available in this installation.")
        return fn

    def _progress_cb(self, *args):
        if len(args) >= 2 and args[1]:
            frac = float(args[0]) / float(args[1])
        elif args:
            frac = float(args[0])
        else:
            return
        self.progress = float(min(1.0, max(0.0, frac)))

    def compute(self, *, raise_errors=True):
        """Call the reconstruct function for the current epoch and masks (blocking).

        Sets only ``running``/``progress``/``status``/``error``; returns
        ``(result, metrics, seconds)`` for :meth:`apply` (None on failure when
        ``raise_errors`` is False).  Apps call this in a worker thread and
        :meth:`apply` on their event loop.
        """
        if not self._lock.acquire(blocking=False):
            raise ZunaValueError("A reconstruction is already running; wait for it to finish.")
        try:
            req = self.mask_request()
            if not req["bad_channels"] and not req["bad_segments"]:
                raise ZunaValueError("Nothing is masked: choose channels or a time span to reconstruct.")
            fn = self._fn()
            self.param.update(running=True, progress=0.0, error="", status="running…")
            t0 = time.perf_counter()
            if self.model is None and self.model_loader is not None and self.reconstruct_fn is None:
                self.status = "loading the model…"
                self.model = self.model_loader()
                self.status = "running…"
            start, stop = self.epoch_window()
            segment = self.raw.copy().crop(tmin=start / self.sfreq, tmax=(stop - 1) / self.sfreq)
            kwargs = {"model": self.model, "steps": self.steps, "cfg": self.cfg, "seed": self.seed,
                      "n_samples": self.n_samples, "bad_channels": req["bad_channels"]}
            if req["bad_segments"]:
                if not _accepts(fn, "bad_segments"):
                    raise ZunaValueError("This reconstruct function cannot mask time spans (it has no bad_segments option).")
                kwargs["bad_segments"] = req["bad_segments"]
            if _accepts(fn, "callback"):  # zuna_lab.reconstruct: callback(done, total) per batch
                kwargs["callback"] = self._progress_cb
            kwargs = {k: v for k, v in kwargs.items() if _accepts(fn, k)}
            rec = fn(segment, **kwargs)
            if not isinstance(rec, xr.Dataset):
                raise ZunaTypeError(f"reconstruct returned {type(rec).__name__}, not an xarray Dataset.")
            from ..health import reconstruction_errors

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
        self.param.update(result=rec, metrics=metrics, progress=1.0, running=False,
                          run_count=self.run_count + 1, status=f"done in {secs:.1f} s")
        return rec

    def run(self, *, raise_errors=True):
        """Reconstruct the current epoch with the current masks and options (blocking).

        Returns
        -------
        xr.Dataset | None
            The result (also in ``self.result``, with ``self.metrics``); None
            when it failed and ``raise_errors`` is False (message in ``self.error``).
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
        """The result as an mne Raw (volts) via ``zuna_lab.to_raw``, or a RawArray of the epoch."""
        if self.result is None:
            raise ZunaValueError("There is no reconstruction yet: run one first.")
        if kind not in ("original", "reconstruction", "hybrid"):
            raise ZunaValueError(f"kind must be 'original', 'reconstruction' or 'hybrid', got {kind!r}.")
        try:
            from zuna_lab import to_raw
        except ImportError:
            to_raw = None
        if to_raw is not None:
            return to_raw(self.result, kind=kind)
        return _fallback_raw(self.result, kind)

    def export_fif(self, path=None, *, kind="hybrid", overwrite=True):
        """Write the repaired epoch as a FIF file; returns its path."""
        raw = self.to_raw(kind)
        if path is None:
            d = Path(tempfile.mkdtemp(prefix="zuna_lab_"))
            path = d / f"repaired_epoch{self.epoch}_raw.fif"
        path = Path(path)
        raw.save(path, overwrite=overwrite, verbose="error")
        return path


def _fallback_raw(rec, kind):
    import mne

    da = rec[kind]
    if "sample" in da.dims:
        da = da.mean("sample")
    da = da.transpose("epoch", "channel", "time")
    data = np.concatenate(list(np.asarray(da.values, float)), axis=-1)
    t = np.asarray(rec["time"].values, float)
    sfreq = 1.0 / float(np.median(np.diff(t)))
    names = [str(c) for c in rec["channel"].values]
    info = mne.create_info(names, sfreq, "eeg")
    raw = mne.io.RawArray(np.nan_to_num(data), info, verbose="error")
    if "ch_x" in rec.coords or "ch_pos" in rec.coords:
        from ..datasets import channel_positions

        pos = channel_positions(rec)
        mont = mne.channels.make_dig_montage(ch_pos=dict(zip(names, pos)), coord_frame="head")
        raw.set_montage(mont, verbose="error")
    return raw


class HealthState(param.Parameterized):
    """Latent-space health of one or several recordings.

    Parameters
    ----------
    embeddings : dict of str -> xr.Dataset
        Embed results by recording name (computed ones are added here).
    recordings : dict of str -> mne.io.Raw
        Recordings to embed on :meth:`compute` when no embedding is given.
    embed_fn : callable | None
        Defaults to ``zuna_lab.embed``.

    Examples
    --------
    >>> hs = HealthState(embeddings={"s1": emb1, "s2": emb2}); hs.compute()   # doctest: +SKIP
    >>> hs.summary()                                                          # doctest: +SKIP
    """

    embeddings = param.Dict(default={})
    recordings = param.Dict(default={})
    model = param.Parameter(default=None)
    embed_fn = param.Callable(default=None)
    reference = param.Selector(default="N(0, I)", objects=["N(0, I)"], doc="Compare with N(0, I) or a recording.")
    n_permutations = param.Integer(default=200, bounds=(0, 5000))
    max_points = param.Integer(default=1000, bounds=(50, 20000))
    seed = param.Integer(default=0, bounds=(0, None))
    kernel = param.Selector(default="imq", objects=["imq", "gaussian"])
    selected = param.Selector(default=None, objects=[], allow_None=True, doc="Recording shown in detail.")

    results = param.Dict(default={})
    comparison = param.ClassSelector(class_=xr.Dataset, default=None, allow_None=True)
    running = param.Boolean(default=False)
    status = param.String(default="ready")
    error = param.String(default="")

    def __init__(self, **params):
        super().__init__(**params)
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

    def _embed(self, name):
        fn = self.embed_fn
        if fn is None:
            import zuna_lab

            fn = getattr(zuna_lab, "embed", None)
            if fn is None:
                raise ZunaValueError("zuna_lab.embed is not available in this installation.")
        kw = {"model": self.model} if _accepts(fn, "model") else {}
        return fn(self.recordings[name], **kw)

    def compute_results(self, *, raise_errors=True):
        """Embed what is missing and compute health (blocking; sets only status params).

        Returns ``(embeddings, results, comparison)`` for :meth:`apply`, or
        None on failure when ``raise_errors`` is False.
        """
        from ..health import compare_recordings, mmd_health

        try:
            self.param.update(running=True, error="", status="computing…")
            embs = dict(self.embeddings)
            for name in self.names:
                if name not in embs:
                    self.status = f"embedding {name}…"
                    embs[name] = self._embed(name)
            ref = None if self.reference == "N(0, I)" else embs[self.reference]
            res = {}
            for name, emb in embs.items():
                self.status = f"health of {name}…"
                res[name] = mmd_health(emb, reference=None if name == self.reference else ref,
                                       n_permutations=self.n_permutations, max_points=self.max_points,
                                       seed=self.seed, kernel=self.kernel)
            cmp = None
            if len(embs) > 1:
                self.status = "comparing recordings…"
                cmp = compare_recordings(embs, n_permutations=min(self.n_permutations, 100),
                                         max_points=min(self.max_points, 500), seed=self.seed,
                                         kernel=self.kernel)
            return embs, res, cmp
        except Exception as exc:  # noqa: BLE001
            self.param.update(running=False, error=f"{type(exc).__name__}: {exc}", status="failed")
            if raise_errors:
                raise
            return None

    def apply(self, out):
        """Store the output of :meth:`compute_results`."""
        if out is None:
            return None
        embs, res, cmp = out
        self.param.update(embeddings=embs, results=res, comparison=cmp, running=False, status="done")
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
    """A 2-D map of token latents and the user's selection on it.

    Parameters
    ----------
    embedding : xr.Dataset
        An ``embed`` result.

    Examples
    --------
    >>> es = EmbeddingState(embedding=emb); es.selection = [0, 5, 9]   # doctest: +SKIP
    >>> es.selected_channels                                           # doctest: +SKIP
    ['Fp1', 'O2']
    """

    embedding = param.ClassSelector(class_=xr.Dataset, default=None, allow_None=True)
    method = param.Selector(default="pca", objects=["pca", "umap"])
    color_by = param.Selector(default="channel", objects=["channel", "epoch", "time", "region"])
    max_points = param.Integer(default=3000, bounds=(10, 50000))
    seed = param.Integer(default=0, bounds=(0, None))
    selection = param.List(default=[], item_type=int, doc="Row indices into coords (Selection1D).")
    coords = param.ClassSelector(class_=xr.Dataset, default=None, allow_None=True)

    def __init__(self, **params):
        super().__init__(**params)
        self._recompute()

    @param.depends("embedding", "method", "max_points", "seed", watch=True)
    def _recompute(self):
        if self.embedding is None:
            self.param.update(coords=None, selection=[])
            return
        from .plots import embedding_coords

        self.param.update(coords=embedding_coords(self.embedding, method=self.method,
                                                  max_points=self.max_points, seed=self.seed),
                          selection=[])

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
