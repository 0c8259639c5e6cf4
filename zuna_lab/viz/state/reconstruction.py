"""State of the reconstruction explorer: the epoch, the masks, the sampler options and the result."""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import param
import xarray as xr

from ...errors import ZunaValueError
from ...pipeline.tokens import epoch_token_mask
from ._task import Task, loaded
from .recording import Recording, as_recording

__all__ = ["ReconstructionState"]


class ReconstructionState(Task):
    """What the reconstruction explorer shows and runs, for one recording.

    The whole recording is preprocessed once (per set of masked channels) and an epoch is
    reconstructed by :func:`zuna_lab.api.core.reconstruct_prepared`, the code of
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
        (:func:`zuna_lab.api.core.cached_model`).  With a loaded model the recording is
        preprocessed at once; otherwise on :meth:`prepare` (or the first use).

    Examples
    --------
    >>> st = ReconstructionState(raw=raw, model=model, steps=50, seed=0)     # doctest: +SKIP
    >>> st.masked_channels = ["T7"]; st.run(); st.metrics.rmse               # doctest: +SKIP
    """

    recording = param.ClassSelector(class_=Recording, default=None, constant=True,
                                    doc="The shared recording (raw, preprocessing cache).")
    epoch = param.Integer(default=0, bounds=(0, 0), doc="Epoch of the preprocessed recording.")
    masked_channels = param.ListSelector(default=[], objects=[], doc="Channels to hide and infill.")
    masked_span = param.Range(default=None, allow_None=True, doc="(start, stop) s within the epoch to hide.")
    steps = param.Integer(default=50, bounds=(1, 1000), doc="Sampler steps.")
    cfg = param.Number(default=1.0, bounds=(0.0, 20.0), doc="Classifier-free guidance scale.")
    seed = param.Integer(default=0, bounds=(0, None), doc="Sampler seed.")
    n_samples = param.Integer(default=1, bounds=(1, 32), doc="Samples drawn (spread when > 1).")

    ready = param.Boolean(default=False, doc="The model is loaded and the recording preprocessed.")
    n_epochs = param.Integer(default=0, doc="Epochs of the preprocessed recording.")
    result = param.ClassSelector(class_=xr.Dataset, default=None, allow_None=True)
    metrics = param.ClassSelector(class_=xr.Dataset, default=None, allow_None=True)
    run_count = param.Integer(default=0)

    busy_message = "A reconstruction is already running; wait for it to finish."

    def __init__(self, raw=None, *, recording=None, **params):
        recording = as_recording(raw, recording)
        if recording is None:
            raise ZunaValueError("ReconstructionState needs a recording: ReconstructionState(raw=...).")
        later = {k: params.pop(k) for k in ("epoch", "masked_channels", "masked_span") if k in params}
        super().__init__(recording=recording, **params)
        self._prepare_lock = threading.Lock()
        self._thread = None
        self._later = later
        if loaded(self.model):
            self.prepare()

    # ---------------------------------------------------------------- recording
    @property
    def raw(self):
        return self.recording.raw

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

    def toggle_at(self, x=None, y=None, **_):
        """Toggle the electrode drawn nearest to ``(x, y)`` of the scalp map (a Tap stream's value)."""
        from ..projections import nearest_channel, scalp_coords

        name = nearest_channel(scalp_coords(self.positions), x, y)
        if name is not None:
            self.toggle_channel(name)
        return name

    def select_span(self, boundsx=None, **_):
        """Mask the span ``(start, stop)`` s of the epoch (a BoundsX stream's value; empty ones are ignored)."""
        if boundsx is not None and boundsx[1] - boundsx[0] > 1e-6:
            self.masked_span = (float(boundsx[0]), float(boundsx[1]))

    def clear_mask(self):
        self.param.update(masked_channels=[], masked_span=None)

    def span(self):
        """The masked span clipped to the epoch, ``(start, stop)`` s within it, or None."""
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
        span = self.span()
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

    def token_mask(self):
        """The pending mask of the epoch as a ``(channel, token)`` bool DataArray (True = to infill).

        As the library builds it (:func:`zuna_lab.pipeline.masks.request`, then the preprocessed
        recording's token grid): the masked channels and span, ``info["bads"]`` and ``BAD_``
        annotations.
        """
        from ...pipeline import masks

        base, req = self._base(), self.mask_request()
        pre = base.pre
        hidden = masks.request(base.raw, bads=tuple(base.bads) + tuple(req["bad_channels"]),
                               bad_segments=req["bad_segments"])
        m = epoch_token_mask(pre, int(self.epoch), bad_channels=hidden.bads, bad_spans=hidden.spans)
        token_s = pre.n_samples(int(self.epoch)) / m.shape[1] / pre.sfreq
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

    def _work(self):
        """Reconstruct the current epoch: ``(result, metrics, seconds)``."""
        from ...api.core import reconstruct_prepared
        from ...trust.health import reconstruction_errors

        t0 = time.perf_counter()
        self._base()
        if self.masked_span is not None and self.span() is None:
            raise ZunaValueError("The masked time span is empty; drag over the traces again.")
        req = self.mask_request()
        if not req["bad_channels"] and not req["bad_segments"] and not self.token_mask().values.any():
            raise ZunaValueError("Nothing is masked: choose channels or a time span to reconstruct.")
        model = self._model()
        if not self.recording.is_prepared(model.variant, req["bad_channels"]):
            self.status = f"preprocessing with {', '.join(req['bad_channels'])} hidden…"
        prepared = self.recording.prepared(model.variant, req["bad_channels"])
        self.status = "running…"
        rec = reconstruct_prepared(prepared, model, epochs=[int(self.epoch)], steps=int(self.steps),
                                   cfg=float(self.cfg), seed=int(self.seed), bad_segments=req["bad_segments"],
                                   n_samples=int(self.n_samples), callback=self._progress_cb)
        return rec, reconstruction_errors(rec), time.perf_counter() - t0

    def _apply(self, out):
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
        return self.compute(raise_errors=raise_errors)

    def start(self):
        """Run in a background thread (returns it); progress and result update as params."""
        if self.running or (self._thread is not None and self._thread.is_alive()):
            return self._thread
        self.param.update(running=True, status="starting…")
        self._thread = threading.Thread(target=self.run, kwargs={"raise_errors": False}, daemon=True,
                                        name="zuna-reconstruct")
        self._thread.start()
        return self._thread

    def wait(self, timeout=None):
        """Wait for a background run to finish."""
        if self._thread is not None:
            self._thread.join(timeout)

    # ---------------------------------------------------------------- the result
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
        from zuna_lab import to_raw

        if self.result is None:
            raise ZunaValueError("There is no reconstruction yet: run one first.")
        return to_raw(self.result, kind=kind, raw=self.raw)

    def export_fif(self, path=None, *, kind="hybrid", overwrite=True):
        """Write the repaired recording (:meth:`to_raw`) as a FIF file; returns its path."""
        raw = self.to_raw(kind)
        if path is None:
            path = Path(tempfile.mkdtemp(prefix="zuna_lab_")) / f"repaired_epoch{self.epoch}_raw.fif"
        path = Path(path)
        raw.save(path, overwrite=overwrite, verbose="error")
        return path
