"""Panel apps: reconstruction explorer, latent health panel, embedding explorer, dashboard.

Structure (HoloViz): state lives in :mod:`zuna_lab.viz.state` (``param``, no
Panel), views are HoloViews objects built by :mod:`zuna_lab.viz.plots` from
that state and bound to its parameters (``pn.bind``), and the
``pn.viewable.Viewer`` classes here only lay out widgets and views.  Every
:func:`dashboard` call builds fresh state objects, so each browser session of
:func:`serve` has its own; the recording (read and preprocessed once,
:class:`~zuna_lab.viz.state.Recording`) and the model
(:func:`zuna_lab.core.cached_model`, one cache for the library and the apps)
are shared.

Each app computes what it shows when it is first viewed (the dashboard's
tabs: when the tab is opened): the reconstruction explorer preprocesses the
recording, the health panel embeds the recordings and computes their health,
the embedding explorer embeds its recording.  Long computations run in a
worker thread (``asyncio.to_thread``) with a progress bar so the page stays
responsive; results are applied back on the session's event loop.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import holoviews as hv
import numpy as np
import panel as pn
import param

from ..core import cached_model as get_model  # the library's model cache (kept here as a short name)
from ..core import clear_model_cache
from ..errors import ZunaTypeError, ZunaValueError
from . import plots
from .state import EmbeddingState, HealthState, ReconstructionState, Recording

__all__ = ["ReconstructionExplorer", "HealthPanel", "EmbeddingExplorer", "Dashboard", "dashboard", "serve",
           "get_model", "clear_model_cache"]

SIDEBAR_WIDTH = 300
SCALP_SIZE = 360


def _md_status(status, error=""):
    if error:
        return f"**status:** {status}  \n<span style='color:#b00'>{error}</span>"
    return f"**status:** {status}"


def _progress_value(progress, running):
    """Progress bar value: the fraction while known, indeterminate (None) while running without one."""
    if running and progress <= 0:
        return None
    return int(round(100 * progress))


async def _in_thread(fn, *args, **kwargs):
    return await asyncio.to_thread(fn, *args, **kwargs)


def _nearest_channel(xy, x, y, radius=0.15):
    if x is None or y is None:
        return None
    d = np.hypot(xy.sel(axis="x").values - x, xy.sel(axis="y").values - y)
    if not np.isfinite(d).any():
        return None
    i = int(np.nanargmin(d))
    return str(xy.channel.values[i]) if d[i] <= radius else None


def _model_arg(model, model_source):
    return model if model is not None else model_source


def _not(value):
    return not value


# --------------------------------------------------------------------------- reconstruction
class ReconstructionExplorer(pn.viewable.Viewer):
    """Mask channels or a time span of one epoch, reconstruct it, compare and download.

    Click electrodes on the scalp (or use the multi-select) to mask channels;
    drag with the x-box-select tool on the traces to mask a time span.  Run
    reconstructs the epoch in a worker thread with a progress bar, through the
    code of :func:`zuna_lab.reconstruct` on the whole preprocessed recording:
    the traces are that epoch of ``zuna_lab.reconstruct(raw, ...)``.

    Parameters
    ----------
    raw : mne.io.Raw | None
        The recording (never modified); or ``recording=`` to share one.
    model : ZunaModel | None
        A loaded model; None loads ``model_source`` once per process (first view).
    model_source : str | None
        Source for :func:`zuna_lab.core.cached_model` when ``model`` is None.
    recording : Recording | None
        A shared :class:`~zuna_lab.viz.state.Recording`.
    state : ReconstructionState | None
        Use an existing state instead.
    autostart : bool
        Prepare on first view (a dashboard drives this itself).

    Examples
    --------
    >>> ReconstructionExplorer(raw, model=model)        # doctest: +SKIP
    """

    state = param.ClassSelector(class_=ReconstructionState)
    kinds = param.ListSelector(default=["original", "hybrid"],
                               objects=["original", "reconstruction", "hybrid"])

    def __init__(self, raw=None, *, model=None, model_source=None, recording=None, state=None, autostart=True,
                 **params):
        if state is None:
            state = ReconstructionState(raw, recording=recording, model=_model_arg(model, model_source))
        super().__init__(state=state, **params)
        st = self.state
        self._run_button = pn.widgets.Button(
            label="Run reconstruction", color="primary", sizing_mode="stretch_width",
            disabled=pn.bind(lambda running, ready: running or not ready, st.param.running, st.param.ready))
        self._run_button.on_click(self._on_run)
        self._clear_button = pn.widgets.Button(label="Clear masks", sizing_mode="stretch_width")
        self._clear_button.on_click(lambda e: st.clear_mask())
        self._progress = pn.indicators.Progress(
            value=pn.bind(_progress_value, st.param.progress, st.param.running), max=100,
            active=st.param.running, sizing_mode="stretch_width", bar_color="primary")
        self._status = pn.pane.Markdown(pn.bind(_md_status, st.param.status, st.param.error),
                                        sizing_mode="stretch_width")
        self._span_text = pn.pane.Markdown(pn.bind(self._span_md, st.param.masked_span, st.param.ready),
                                           sizing_mode="stretch_width")
        self._download = pn.widgets.FileDownload(callback=self._fif_bytes, filename="repaired_raw.fif",
                                                 label="Download repaired FIF", color="success",
                                                 disabled=pn.bind(lambda r: r is None, st.param.result),
                                                 sizing_mode="stretch_width")
        self._waiting = pn.pane.Markdown(pn.bind(self._waiting_md, st.param.status, st.param.error),
                                         visible=st.param.ready.rx.not_(), sizing_mode="stretch_width")
        self._traces_pane = pn.pane.HoloViews(
            pn.bind(self._traces_view, st.param.ready, st.param.epoch, st.param.masked_channels,
                    st.param.masked_span, st.param.result, self.param.kinds),
            sizing_mode="stretch_width", min_height=300, name="traces", linked_axes=False, visible=st.param.ready)
        self._scalp_pane = pn.pane.HoloViews(pn.bind(self._scalp_view, st.param.ready, st.param.masked_channels),
                                             width=SCALP_SIZE, height=SCALP_SIZE, name="scalp", linked_axes=False,
                                             visible=st.param.ready)
        self._table = pn.pane.DataFrame(pn.bind(lambda m: st.error_table(), st.param.metrics), index=False,
                                        float_format="{:.3g}".format, name="errors", sizing_mode="stretch_width")
        self._recording_widgets = pn.Column(sizing_mode="stretch_width")
        st.param.watch(self._on_ready, "ready")
        self._on_ready()
        self._layout = self._build()
        if autostart:
            pn.state.onload(self.activate)

    # ---------------------------------------------------------------- first view
    async def activate(self):
        """Load the model and preprocess the recording if not done yet (in a worker thread)."""
        st = self.state
        if st.ready:
            return
        try:
            await _in_thread(st.prepare)
        except Exception as exc:  # noqa: BLE001 - shown to the user
            st.param.update(error=f"{type(exc).__name__}: {exc}", status="failed")

    def _on_ready(self, *events):
        st = self.state
        if not st.ready:
            self._recording_widgets.objects = []
            return
        if st.n_epochs > 1:
            epoch = pn.widgets.IntSlider.from_param(st.param.epoch, label="epoch", sizing_mode="stretch_width")
        else:
            epoch = pn.pane.Markdown("**epoch:** 0 (the only one)")
        self._recording_widgets.objects = [
            epoch,
            pn.pane.Markdown(pn.bind(self._epoch_md, st.param.epoch), sizing_mode="stretch_width",
                             margin=(0, 10)),
            pn.widgets.MultiChoice.from_param(st.param.masked_channels, label="masked channels",
                                              sizing_mode="stretch_width"),
        ]

    # ---------------------------------------------------------------- views (functions of state)
    def _epoch_md(self, epoch):
        st = self.state
        t0 = st.epoch_start()
        return f"<small>{t0:.2f}–{t0 + st.epoch_duration():.2f} s of the recording ({st.variant} epochs at " \
               f"{st.sfreq:g} Hz)</small>"

    def _waiting_md(self, status, error):
        if error:
            return f"<span style='color:#b00'>{error}</span>"
        return f"⏳ {status if status != 'ready' else 'loading the model and preprocessing the recording…'}"

    def _span_md(self, span=None, ready=None):
        sp = self.state._span() if self.state.ready else None
        return ("**time span:** drag with x-box-select on the traces" if sp is None
                else f"**time span:** {sp[0]:.2f}–{sp[1]:.2f} s of the epoch")

    def _traces_view(self, ready, epoch, masked_channels, masked_span, result, kinds):
        st = self.state
        if not ready:
            return hv.Curve([])
        t0 = st.epoch_start()
        where = f"epoch {epoch} ({t0:.1f}–{t0 + st.epoch_duration():.1f} s)"
        if result is not None:
            order = ("reconstruction", "hybrid", "original")  # original on top: infills show where they differ
            shown = [k for k in order if k in kinds and k in result] or ["original"]
            obj = plots.traces(result, epoch=0, kinds=tuple(shown), responsive=True,
                               title=f"{where}: {' / '.join(shown)} (shaded = infilled)")
        else:
            obj = plots.traces(st.original(), mask=st.token_mask(), responsive=True,
                               title=f"{where} (shaded = will be masked)")
        obj = obj.opts(hv.opts.Path(tools=["xbox_select"], backend="bokeh"))  # no hover: it hangs the browser on long multi_lines
        bounds = hv.streams.BoundsX(source=obj, boundsx=None)
        bounds.add_subscriber(self._on_bounds)
        return obj

    def _scalp_view(self, ready, masked_channels):
        if not ready:
            return hv.Curve([])
        obj = plots.scalp(self.state.positions, masked=masked_channels, size=SCALP_SIZE,
                          title="electrodes (click to mask)")
        tap = hv.streams.Tap(source=obj, x=None, y=None)
        tap.add_subscriber(self._on_tap)
        return obj

    # ---------------------------------------------------------------- stream / widget callbacks
    def _on_bounds(self, boundsx=None, **kw):
        if boundsx is None:
            return
        x0, x1 = boundsx
        if x1 - x0 > 1e-6:
            self.state.masked_span = (float(x0), float(x1))

    def _on_tap(self, x=None, y=None, **kw):
        name = _nearest_channel(plots.scalp_coords(self.state.positions), x, y)
        if name is not None:
            self.state.toggle_channel(name)

    async def _on_run(self, event=None):
        st = self.state
        if st.running:
            return
        out = await _in_thread(st.compute, raise_errors=False)
        st.apply(out)

    def _fif_bytes(self):
        path = self.state.export_fif()
        data = Path(path).read_bytes()
        try:
            Path(path).unlink()
            Path(path).parent.rmdir()
        except OSError:
            pass
        return io.BytesIO(data)

    # ---------------------------------------------------------------- layout
    def _build(self):
        st = self.state
        controls = pn.Column(
            "### Mask and reconstruct",
            self._recording_widgets,
            self._span_text,
            self._clear_button,
            pn.widgets.IntInput.from_param(st.param.steps, label="steps", sizing_mode="stretch_width"),
            pn.widgets.FloatInput.from_param(st.param.cfg, label="cfg", step=0.1, sizing_mode="stretch_width"),
            pn.widgets.IntInput.from_param(st.param.seed, label="seed", sizing_mode="stretch_width"),
            pn.widgets.IntInput.from_param(st.param.n_samples, label="samples", sizing_mode="stretch_width"),
            self._run_button,
            self._progress,
            self._status,
            pn.widgets.CheckButtonGroup.from_param(self.param.kinds, label="show"),
            self._download,
            width=SIDEBAR_WIDTH,
        )
        right = pn.Column(self._waiting, self._traces_pane,
                          pn.Row(self._scalp_pane, pn.Column("### Error on masked cells", self._table,
                                                             sizing_mode="stretch_width"),
                                 sizing_mode="stretch_width"),
                          sizing_mode="stretch_width")
        return pn.Row(controls, right, sizing_mode="stretch_width")

    def __panel__(self):
        return self._layout


# --------------------------------------------------------------------------- health
class HealthPanel(pn.viewable.Viewer):
    """Latent-space health (MMD to N(0, I), moments, drift) of one or several recordings.

    On first view it embeds the recordings that have no embedding yet and computes their health
    (``zuna_lab.mmd_health(zuna_lab.embed(raw))``); *Compute health* recomputes with other options.

    Parameters
    ----------
    embeddings : dict of str -> xr.Dataset | xr.Dataset | None
        Embed results (a single Dataset is named "recording").
    recordings : dict of str -> mne.io.Raw | Recording | None
        Recordings to embed when their embedding is missing.
    model, model_source
        As for :class:`ReconstructionExplorer`.
    autostart : bool
        Compute on first view.

    Examples
    --------
    >>> HealthPanel(embeddings={"s1": emb1, "s2": emb2})   # doctest: +SKIP
    """

    state = param.ClassSelector(class_=HealthState)

    MOMENTS_SIZE = (620, 320)
    HISTOGRAM_SIZE = (440, 320)
    DRIFT_SIZE = (440, 380)

    def __init__(self, embeddings=None, *, recordings=None, model=None, model_source=None, state=None,
                 autostart=True, **params):
        if state is None:
            import xarray as xr

            if isinstance(embeddings, xr.Dataset):
                embeddings = {"recording": embeddings}
            state = HealthState(embeddings=dict(embeddings or {}), recordings=dict(recordings or {}),
                                model=_model_arg(model, model_source))
        super().__init__(state=state, **params)
        st = self.state
        self._button = pn.widgets.Button(label="Compute health", color="primary", sizing_mode="stretch_width",
                                         disabled=st.param.running)
        self._button.on_click(self._on_compute)
        self._progress = pn.indicators.Progress(
            value=pn.bind(_progress_value, st.param.progress, st.param.running), max=100,
            active=st.param.running, sizing_mode="stretch_width", bar_color="primary")
        self._status = pn.pane.Markdown(pn.bind(_md_status, st.param.status, st.param.error),
                                        sizing_mode="stretch_width")
        has = pn.bind(lambda res, sel: bool(res) and sel in res, st.param.results, st.param.selected)
        self._verdict = pn.pane.Markdown(pn.bind(self._verdict_md, st.param.results, st.param.selected,
                                                 st.param.running, st.param.status, st.param.error),
                                         sizing_mode="stretch_width")
        self._table = pn.pane.DataFrame(pn.bind(lambda res: st.summary(), st.param.results), index=False,
                                        float_format="{:.3g}".format, sizing_mode="stretch_width")
        w, h = self.MOMENTS_SIZE
        self._moments = pn.pane.HoloViews(pn.bind(self._moments_view, st.param.results, st.param.selected),
                                          width=w, height=h, linked_axes=False, visible=has, name="moments")
        w, h = self.HISTOGRAM_SIZE
        self._histogram = pn.pane.HoloViews(pn.bind(self._histogram_view, st.param.results, st.param.selected),
                                            width=w, height=h, linked_axes=False, visible=has, name="histogram")
        w, h = self.DRIFT_SIZE
        self._drift = pn.pane.HoloViews(pn.bind(self._drift_view, st.param.comparison), width=w, height=h,
                                        linked_axes=False, visible=st.param.comparison.rx.is_not(None),
                                        name="drift")
        self._layout = pn.Row(
            pn.Column("### Latent health", pn.widgets.Select.from_param(st.param.reference, label="compare with"),
                      pn.widgets.Select.from_param(st.param.selected, label="recording"),
                      pn.widgets.IntInput.from_param(st.param.n_permutations, label="permutations"),
                      pn.widgets.IntInput.from_param(st.param.max_points, label="max tokens (MMD)"),
                      pn.widgets.IntInput.from_param(st.param.seed, label="seed"),
                      pn.widgets.Select.from_param(st.param.kernel, label="kernel"),
                      self._button, self._progress, self._status, width=SIDEBAR_WIDTH),
            # plain Rows/Columns of fixed-size plots: a FlexBox lays plots out collapsed when a
            # dynamic tab renders it (Panel 1.9)
            pn.Column(self._verdict, self._table, pn.Row(self._moments, self._histogram), self._drift,
                      sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )
        if autostart:
            pn.state.onload(self.activate)

    async def activate(self):
        """Compute health (embedding what is missing) unless every recording has a result."""
        st = self.state
        if st.complete or st.running or not st.names:
            return
        await self._compute()

    def _verdict_md(self, results, selected, running, status, error):
        st = self.state
        if not results or selected not in results:
            if error:
                return f"<span style='color:#b00'>{error}</span>"
            if running:
                return f"⏳ Computing latent health of {', '.join(st.names)}: {status}"
            return ("Latent health (visible-token latents vs N(0, I); IMQ-kernel MMD, permutation test) "
                    "is computed when this tab opens; *Compute health* recomputes it.")
        h = results[selected]
        return (f"**{selected}: {h.attrs['verdict']}** — {h.attrs['summary']}  \n"
                f"<small>{h.attrs['verdict_rule']}</small>")

    def _moments_view(self, results, selected):
        if not results or selected not in results:
            return hv.Curve([])
        w, h = self.MOMENTS_SIZE
        return plots.latent_moments(results[selected], width=w, height=h)

    def _histogram_view(self, results, selected):
        if not results or selected not in results:
            return hv.Curve([])
        w, h = self.HISTOGRAM_SIZE
        return plots.latent_histogram(self.state.embeddings[selected], width=w, height=h)

    def _drift_view(self, comparison):
        if comparison is None:
            return hv.Curve([])
        w, h = self.DRIFT_SIZE
        return plots.drift_matrix(comparison, width=w, height=h)

    async def _compute(self):
        st = self.state
        out = await _in_thread(st.compute_results, raise_errors=False)
        st.apply(out)

    async def _on_compute(self, event=None):
        if not self.state.running:
            await self._compute()

    def __panel__(self):
        return self._layout


# --------------------------------------------------------------------------- embeddings
class EmbeddingExplorer(pn.viewable.Viewer):
    """2-D map of token latents linked to the scalp and the traces.

    Select points with box/lasso/tap: the scalp highlights their channels and
    the traces of the first selected epoch (the preprocessed recording the
    tokens come from) shade the selected tokens.  On first view it embeds the
    recording (``zuna_lab.embed``) when no embedding was given.

    Parameters
    ----------
    embedding : xr.Dataset | None
        An ``embed`` result; None embeds ``raw``.
    raw : mne.io.Raw | None
        The recording, for the linked traces (and for embedding it); or ``recording=``.
    model, model_source
        As for :class:`ReconstructionExplorer`.
    autostart : bool
        Embed on first view.

    Examples
    --------
    >>> EmbeddingExplorer(raw=raw, model=model)     # doctest: +SKIP
    """

    state = param.ClassSelector(class_=EmbeddingState)

    MAP_SIZE = 420

    def __init__(self, embedding=None, *, raw=None, model=None, model_source=None, recording=None, state=None,
                 autostart=True, **params):
        if state is None:
            state = EmbeddingState(embedding, raw=raw, recording=recording, model=_model_arg(model, model_source))
        super().__init__(state=state, **params)
        st = self.state
        self._button = pn.widgets.Button(label=pn.bind(lambda e: "Compute embedding" if e is None else "Embed again",
                                                       st.param.embedding),
                                         color="primary", sizing_mode="stretch_width",
                                         visible=st.recording is not None, disabled=st.param.running)
        self._button.on_click(self._on_embed)
        self._progress = pn.indicators.Progress(value=pn.bind(lambda r: None if r else 100, st.param.running),
                                                max=100, active=st.param.running, sizing_mode="stretch_width",
                                                bar_color="primary", visible=st.recording is not None)
        self._info = pn.pane.Markdown(pn.bind(self._info_md, st.param.coords, st.param.selection, st.param.status,
                                              st.param.error, st.param.running),
                                      sizing_mode="stretch_width")
        has = st.param.coords.rx.is_not(None)
        self._map = pn.pane.HoloViews(pn.bind(self._map_view, st.param.coords, st.param.color_by), linked_axes=False,
                                      name="embedding map", visible=has)
        self._scalp = pn.pane.HoloViews(pn.bind(self._scalp_view, st.param.embedding, st.param.selection),
                                        width=SCALP_SIZE, height=SCALP_SIZE, linked_axes=False,
                                        name="selection scalp", visible=has)
        self._traces = pn.pane.HoloViews(pn.bind(self._traces_view, st.param.embedding, st.param.selection),
                                         linked_axes=False, sizing_mode="stretch_width", min_height=300,
                                         visible=has)
        self._placeholder = pn.pane.Markdown(pn.bind(self._placeholder_md, st.param.status, st.param.error,
                                                     st.param.running),
                                             visible=has.rx.not_(), sizing_mode="stretch_width")
        self._layout = pn.Row(
            pn.Column("### Embedding map", self._button, self._progress,
                      pn.widgets.RadioButtonGroup.from_param(st.param.method, label="method"),
                      pn.widgets.Select.from_param(st.param.color_by, label="colour by"),
                      pn.widgets.IntInput.from_param(st.param.max_points, label="max tokens"),
                      self._info, width=SIDEBAR_WIDTH),
            pn.Column(self._placeholder, pn.Row(self._map, self._scalp), self._traces, sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )
        if autostart:
            pn.state.onload(self.activate)

    async def activate(self):
        """Embed the recording unless there is an embedding already."""
        st = self.state
        if st.embedding is not None or st.recording is None or st.running:
            return
        await self._embed()

    def _placeholder_md(self, status, error, running):
        st = self.state
        if error:
            return f"<span style='color:#b00'>{error}</span>"
        if st.recording is None:
            return "No embedding: pass one, or a recording to embed."
        if running:
            return f"⏳ {status}"
        return f"The embedding of {st.recording.name} is computed when this tab opens."

    def _info_md(self, coords, selection, status, error, running):
        st = self.state
        if coords is None:
            return ""
        n = len(selection)
        if not n:
            return f"{coords.sizes['point']} tokens ({coords.attrs.get('method', '').upper()}); select some."
        return (f"**{n} tokens selected** — channels: {', '.join(st.selected_channels)}; "
                f"epochs: {', '.join(map(str, st.selected_epochs))}")

    def _map_view(self, coords, color_by):
        if coords is None:
            return hv.Points([])
        pts = plots.embedding_map(coords, color_by=color_by, size=self.MAP_SIZE)
        sel = hv.streams.Selection1D(source=pts)
        sel.add_subscriber(self._on_select)
        return pts

    def _scalp_view(self, embedding, selection):
        if embedding is None:
            return hv.Curve([])
        return plots.scalp(embedding, selected=self.state.selected_channels, size=SCALP_SIZE,
                           title="selected channels")

    def _traces_view(self, embedding, selection):
        st = self.state
        if embedding is None:
            return hv.Curve([])
        epochs = st.selected_epochs or [int(embedding["epoch"].values[0])]
        e = epochs[0]
        if st.recording is None:
            return hv.Curve([]).opts(title="(no recording given: the traces need the recording)")
        da = st.original(e)
        m = st.selected_mask().sel(epoch=e) if "epoch" in embedding.coords else st.selected_mask().isel(epoch=e)
        m = m.assign_coords(channel=[str(c) for c in embedding.channel.values])
        if set(map(str, da.channel.values)) - set(m.channel.values):
            m = None
        t0 = float(da.attrs.get("epoch_start", 0.0))
        what = "selected tokens shaded" if selection else "select points on the map to shade their tokens"
        return plots.traces(da, mask=m, mask_label="selected", responsive=True,
                            title=f"epoch {e} ({t0:.1f}–{t0 + da.sizes['time'] / da.attrs['sfreq']:.1f} s): {what}")

    def _on_select(self, index=None, **kw):
        self.state.selection = [int(i) for i in (index or [])]

    async def _embed(self):
        st = self.state
        emb = await _in_thread(st.compute_embedding, raise_errors=False)
        st.apply(emb)

    async def _on_embed(self, event=None):
        st = self.state
        if st.running or st.recording is None:
            return
        if st.embedding is not None:  # recompute: forget the cached embedding of this model
            st.recording.forget_embedding(st.model)
        await self._embed()

    def __panel__(self):
        return self._layout


# --------------------------------------------------------------------------- dashboard
class Dashboard(pn.viewable.Viewer):
    """The three apps in tabs; each computes what it shows when its tab is first opened. See :func:`dashboard`."""

    def __init__(self, reconstruction, health, embeddings, *, title="ZUNA lab", **params):
        super().__init__(**params)
        self.reconstruction, self.health, self.embeddings = reconstruction, health, embeddings
        self._apps = (reconstruction, health, embeddings)
        # dynamic: only the open tab is rendered. Plots rendered inside a hidden tab get a zero-size
        # frame, and when the dashboard sits in another stretching Column (as in the notebook) the
        # plots that later appear in the open tab were laid out collapsed too (Bokeh 3.9 / Panel 1.9).
        self.tabs = pn.Tabs(("Reconstruction", reconstruction), ("Latent health", health),
                            ("Embeddings", embeddings), dynamic=True, sizing_mode="stretch_width")
        self.tabs.param.watch(self._on_tab, "active")
        self._layout = pn.Column(f"## {title}", self.tabs, sizing_mode="stretch_width")
        pn.state.onload(self._on_load)

    async def _on_load(self):
        await self.activate(self.tabs.active)

    async def _on_tab(self, event):
        await self.activate(event.new)

    async def activate(self, index=None):
        """Compute what a tab shows (the active one by default) if not done yet."""
        index = self.tabs.active if index is None else int(index)
        await self._apps[index].activate()

    def __panel__(self):
        return self._layout


def _as_recordings(data, segment_duration=None):
    import xarray as xr

    if isinstance(data, Recording):
        return {data.name: data}
    if isinstance(data, dict):
        if not data:
            raise ZunaValueError("dashboard needs at least one recording.")
        return {str(k): v if isinstance(v, Recording) else Recording(_as_raw(v), name=str(k),
                                                                      segment_duration=segment_duration)
                for k, v in data.items()}
    if isinstance(data, xr.Dataset):
        raise ZunaTypeError("dashboard needs a recording (mne Raw or a file path), not a result Dataset; "
                            "use HealthPanel/EmbeddingExplorer for embed results.")
    raw = _as_raw(data)
    name = Path(raw.filenames[0]).stem if getattr(raw, "filenames", None) and raw.filenames[0] else "recording"
    return {name: Recording(raw, name=name, segment_duration=segment_duration)}


def _as_raw(obj):
    if hasattr(obj, "info") and hasattr(obj, "get_data"):
        return obj
    if isinstance(obj, (str, Path)):
        import zuna_lab

        return zuna_lab.read_raw(obj)
    raise ZunaTypeError(f"dashboard needs an mne Raw, a file path or a dict of them, got {type(obj).__name__}.")


def dashboard(data, model=None, *, model_source=None, embeddings=None, segment_duration=None, title="ZUNA lab",
              verbose=None):
    """Reconstruction explorer, latent health and embedding explorer in one tabbed app.

    Works inline in JupyterLab (after ``pn.extension(inline=True)``), as
    ``dashboard(raw).servable()`` under ``panel serve``, or through
    :func:`serve`.  Each call builds new state objects (one per browser
    session when served).  Every number comes from the library: a
    reconstructed epoch equals that epoch of ``zuna_lab.reconstruct(raw, ...)``
    with the same seed and masks, health is ``zuna_lab.mmd_health(zuna_lab.embed(raw))``.
    Each tab computes what it shows when first opened.

    Parameters
    ----------
    data : mne.io.Raw | str | Path | dict
        A recording, a file path (read with ``zuna_lab.read_raw``), or a dict
        of name -> recording (the first is explored; all appear in the health tab).
    model : ZunaModel | None
        A loaded model; None loads ``model_source`` (default ``$ZUNA_LAB_MODEL``
        or ``"Zyphra/ZUNA"``) once per process (:func:`zuna_lab.core.cached_model`).
    model_source : str | None
        See ``model``.
    embeddings : dict of str -> xr.Dataset | xr.Dataset | None
        Precomputed embed results by recording name.
    segment_duration : float | None
        Epoch length (ZUNA1.1: 0.5–30 s; None: 5 s), as in ``zuna_lab.reconstruct``.
    title : str
        Heading.
    verbose : bool | str | int | None
        Unused; accepted for MNE-like signatures.

    Returns
    -------
    Dashboard
        A ``pn.viewable.Viewer``; ``.reconstruction``, ``.health`` and
        ``.embeddings`` hold the three apps (and their ``.state``).

    Examples
    --------
    >>> import panel as pn, zuna_lab as zl
    >>> pn.extension(inline=True)                          # doctest: +SKIP
    >>> zl.dashboard(zl.read_raw("sub01.edf"), model=model)   # doctest: +SKIP
    """
    import xarray as xr

    recs = _as_recordings(data, segment_duration)
    main = next(iter(recs))
    if isinstance(embeddings, xr.Dataset):
        embeddings = {main: embeddings}
    embeddings = dict(embeddings or {})
    m = _model_arg(model, model_source)
    rexp = ReconstructionExplorer(recording=recs[main], model=m, autostart=False)
    hp = HealthPanel(embeddings, recordings=recs, model=m, autostart=False)
    ee = EmbeddingExplorer(embeddings.get(main), recording=recs[main], model=m, autostart=False)

    def _share(event):  # embeddings computed in the health tab feed the explorer at once
        if ee.state.embedding is None and not ee.state.running and main in event.new:
            ee.state.embedding = event.new[main]

    hp.state.param.watch(_share, "embeddings")
    return Dashboard(rexp, hp, ee, title=title)


def serve(data, model=None, *, port=5006, address="127.0.0.1", show=False, threaded=False, websocket_origin=None,
          verbose=None, **kwargs):
    """Serve :func:`dashboard` on ``address:port`` (127.0.0.1 by default: not reachable from other machines).

    Parameters
    ----------
    data, model
        As for :func:`dashboard`.  The recordings are read and preprocessed once and shared by
        all sessions (each session gets its own state).
    port : int
        TCP port.
    address : str
        Interface to bind; pass ``"0.0.0.0"`` deliberately to expose it.
    show : bool
        Open a browser.
    threaded : bool
        Run the server in a background thread and return it (``.stop()`` ends it).
    websocket_origin : list of str | None
        Allowed origins; default ``address:port`` (plus ``localhost:port`` for 127.0.0.1).
    verbose : bool | str | int | None
        Unused; accepted for MNE-like signatures.
    **kwargs
        Passed to :func:`dashboard` (``model_source``, ``embeddings``, ``segment_duration``, ``title``).

    Returns
    -------
    server
        The Panel server (a ``StoppableThread`` when ``threaded``).

    Examples
    --------
    >>> server = serve(raw, model=model, port=5007, threaded=True)   # doctest: +SKIP
    >>> server.stop()                                                # doctest: +SKIP
    """
    if websocket_origin is None:
        websocket_origin = [f"{address}:{port}"]
        if address == "127.0.0.1":
            websocket_origin.append(f"localhost:{port}")
    recs = _as_recordings(data, kwargs.pop("segment_duration", None))  # read once, shared by sessions

    def app():  # a plain function: Panel calls it once per session (a partial would be served as text)
        return dashboard(recs, model, **kwargs)

    return pn.serve({"zuna_lab": app}, port=port, address=address, show=show, threaded=threaded,
                    websocket_origin=websocket_origin, title=kwargs.get("title", "ZUNA lab"))
