"""State of the embedding explorer: an embedding, its 2-D map, the selection on it, the recording under it."""

from __future__ import annotations

import numpy as np
import param
import xarray as xr

from ...errors import ZunaValueError
from ..projections import coords_frame, embedding_coords, umap_available
from ._task import Task, resolve_model
from .recording import Recording, as_recording

__all__ = ["EmbeddingState"]


class EmbeddingState(Task):
    """A 2-D map of token latents, the user's selection on it, and the recording it came from.

    Parameters
    ----------
    embedding : xr.Dataset | None
        An ``embed`` result; None embeds ``recording`` on :meth:`compute`.
    raw : mne.io.Raw | None
        The recording (or pass ``recording=`` to share one): embedded by :meth:`compute`
        (``zuna_lab.embed``) and drawn under the selection (its preprocessed epochs).
    model : ZunaModel | str | None
        As for :class:`~zuna_lab.viz.state.ReconstructionState`.

    Examples
    --------
    >>> es = EmbeddingState(raw=raw, model=model); es.compute()        # doctest: +SKIP
    >>> es.selection = [0, 5, 9]; es.selected_channels                 # doctest: +SKIP
    ['Fp1', 'O2']
    """

    embedding = param.ClassSelector(class_=xr.Dataset, default=None, allow_None=True)
    recording = param.ClassSelector(class_=Recording, default=None, allow_None=True, constant=True)
    method = param.Selector(default="pca", objects=["pca", "umap"])
    color_by = param.Selector(default="channel", objects=["channel", "epoch", "time", "region"])
    max_points = param.Integer(default=3000, bounds=(10, 50000))
    seed = param.Integer(default=0, bounds=(0, None))
    selection = param.List(default=[], item_type=int, doc="Row indices into coords (Selection1D).")
    coords = param.ClassSelector(class_=xr.Dataset, default=None, allow_None=True)

    busy_message = "The recording is already being embedded; wait for it to finish."

    def __init__(self, embedding=None, *, raw=None, recording=None, **params):
        super().__init__(embedding=embedding, recording=as_recording(raw, recording), **params)
        self._recompute()
        self.param.watch(self._options_changed, ["embedding", "method", "max_points", "seed"])

    @property
    def raw(self):
        return None if self.recording is None else self.recording.raw

    @property
    def umap_available(self):
        """Whether ``method="umap"`` can run (umap-learn is installed; not imported here)."""
        return umap_available()

    def _recompute(self):
        if self.embedding is None:
            self.param.update(coords=None, selection=[])
            return
        coords = embedding_coords(self.embedding, method=self.method, max_points=self.max_points, seed=self.seed)
        self.param.update(coords=coords, selection=[], progress=1.0, error="")   # a given or shared one is done

    def _options_changed(self, *events):
        """Map again; options the map cannot use are put back as they were, and ``error`` says why."""
        try:
            self._recompute()
        except Exception as exc:  # noqa: BLE001 - shown to the user
            undo = {e.name: e.old for e in events if e.name != "embedding"}
            if undo:
                self.param.update(**undo)                 # maps again with the options that worked
            self.report_error(exc)

    # ---------------------------------------------------------------- embedding
    def _work(self):
        """``zuna_lab.embed`` of the recording (cached by the recording per model)."""
        if self.recording is None:
            raise ZunaValueError("There is no recording to embed: EmbeddingState(raw=...).")
        model = self._model()
        self.status = f"embedding {self.recording.name}…"
        return self.recording.embedding(model)

    def _apply(self, emb):
        self.status = "mapping…"
        self.embedding = emb
        self.param.update(running=False, progress=1.0, status="done")
        return emb

    def compute(self, *, raise_errors=True):
        """Embed the recording (``zuna_lab.embed(raw, model=model)``) and map it; returns the embedding."""
        return super().compute(raise_errors=raise_errors)

    def forget_embedding(self):
        """Drop the recording's cached embedding of this model, so that the next :meth:`compute` embeds again."""
        if self.recording is not None:
            self.recording.forget_embedding(self.model)

    def original(self, epoch):
        """The preprocessed recording's epoch ``epoch`` (the signal the embedding's tokens come from)."""
        if self.recording is None:
            return None
        variant = (self.embedding.attrs.get("model_variant") if self.embedding is not None else None) or \
            resolve_model(self.model).variant
        return self.recording.original(variant, epoch)

    # ---------------------------------------------------------------- selection
    def select(self, index=None, **_):
        """Select rows of ``coords`` (a Selection1D stream's value)."""
        self.selection = [int(i) for i in ([] if index is None else index)]
        return self.selection

    def select_bounds(self, bounds):
        """Select the points inside ``(x0, y0, x1, y1)`` (a BoundsXY stream value)."""
        if self.coords is None or bounds is None:
            return self.select([])
        x0, y0, x1, y1 = bounds
        x, y = self.coords["x"].values, self.coords["y"].values
        inside = (x >= min(x0, x1)) & (x <= max(x0, x1)) & (y >= min(y0, y1)) & (y <= max(y0, y1))
        return self.select(np.flatnonzero(inside))

    @property
    def selected(self):
        """The selected points as a DataFrame (epoch, channel, token, time, region, x, y)."""
        import pandas as pd

        if self.coords is None:
            return pd.DataFrame()
        df = coords_frame(self.coords)
        idx = [i for i in self.selection if 0 <= i < len(df)]
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
        return df[[c for c in ("epoch", "channel", "time") if c in df]]

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

    @property
    def shown_epoch(self):
        """The epoch drawn under the map: the first selected one, else the embedding's first."""
        epochs = self.selected_epochs
        return epochs[0] if epochs else int(self.embedding["epoch"].values[0])

    def selected_tokens(self, epoch):
        """The selected tokens of ``epoch`` as a ``(channel, token)`` mask for :meth:`original`'s channels (None
        when the embedding's channels differ from the recording's)."""
        emb = self.embedding
        full = self.selected_mask()
        m = full.sel(epoch=epoch) if "epoch" in emb.coords else full.isel(epoch=epoch)
        m = m.assign_coords(channel=[str(c) for c in emb.channel.values])
        channels = self.original(epoch).channel.values
        return None if set(map(str, channels)) - set(m.channel.values) else m
