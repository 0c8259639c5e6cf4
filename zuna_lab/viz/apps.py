"""Panel apps: reconstruction explorer, latent health panel, embedding explorer, dashboard.

Structure (HoloViz): state lives in :mod:`zuna_lab.viz.state` (``param``, no
Panel), views are HoloViews objects built by :mod:`zuna_lab.viz.plots` from
that state, and the ``pn.viewable.Viewer`` classes here only lay out widgets
and views.  Every :func:`dashboard` call builds fresh state objects, so each
browser session of :func:`serve` has its own; the model is loaded once per
process and source (:func:`get_model`).

Long computations (reconstruct, embed, health) run in a worker thread
(``asyncio.to_thread``) so the page stays responsive; results are applied
back on the session's event loop.
"""

from __future__ import annotations

import asyncio
import functools
import io
from pathlib import Path

import holoviews as hv
import numpy as np
import panel as pn
import param

from ..core import cached_model as get_model
from ..core import clear_model_cache
from ..errors import ZunaTypeError, ZunaValueError
from . import plots
from .state import EmbeddingState, HealthState, ReconstructionState

__all__ = ["ReconstructionExplorer", "HealthPanel", "EmbeddingExplorer", "Dashboard", "dashboard", "serve",
           "get_model", "clear_model_cache"]

def _md_status(status, error):
    if error:
        return f"**status:** {status}  \n<span style='color:#b00'>{error}</span>"
    return f"**status:** {status}"


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


# --------------------------------------------------------------------------- reconstruction
class ReconstructionExplorer(pn.viewable.Viewer):
    """Mask channels or a time span of one epoch, reconstruct it, compare and download.

    Click electrodes on the scalp (or use the multi-select) to mask channels;
    drag with the x-box-select tool on the traces to mask a time span.  Run
    reconstructs in a worker thread with a progress bar.

    Parameters
    ----------
    raw : mne.io.Raw
        The recording (never modified).
    model : object | None
        A loaded model; None loads ``model_source`` once per process on the first run.
    model_source : str | None
        Source for :func:`get_model` when ``model`` is None.
    reconstruct_fn : callable | None
        Replaces ``zuna_lab.reconstruct`` (tests).
    state : ReconstructionState | None
        Use an existing state instead.

    Examples
    --------
    >>> ReconstructionExplorer(raw, model=model)        # doctest: +SKIP
    """

    state = param.ClassSelector(class_=ReconstructionState)
    kinds = param.ListSelector(default=["original", "hybrid"],
                               objects=["original", "reconstruction", "hybrid"])

    def __init__(self, raw=None, *, model=None, model_source=None, reconstruct_fn=None, state=None, **params):
        if state is None:
            loader = None if model is not None else functools.partial(get_model, model_source)
            state = ReconstructionState(raw=raw, model=model, reconstruct_fn=reconstruct_fn, model_loader=loader)
        super().__init__(state=state, **params)
        st = self.state
        self._xy = plots.scalp_coords(st.raw)
        self._run_button = pn.widgets.Button(label="Run reconstruction", color="primary",
                                             sizing_mode="stretch_width")
        self._run_button.on_click(self._on_run)
        self._clear_button = pn.widgets.Button(label="Clear masks", sizing_mode="stretch_width")
        self._clear_button.on_click(lambda e: st.clear_mask())
        self._progress = pn.indicators.Progress(value=0, max=100, sizing_mode="stretch_width",
                                                bar_color="primary")
        self._status = pn.pane.Markdown(_md_status(st.status, st.error), sizing_mode="stretch_width")
        self._span_text = pn.pane.Markdown(self._span_md(), sizing_mode="stretch_width")
        self._download = pn.widgets.FileDownload(callback=self._fif_bytes, filename="repaired_raw.fif",
                                                 label="Download repaired FIF", disabled=True,
                                                 color="success", sizing_mode="stretch_width")
        st.param.watch(self._on_state, ["status", "error", "progress", "running", "result", "masked_span"])
        self._traces_pane = pn.pane.HoloViews(self._traces_view(), sizing_mode="stretch_width",
                                              name="traces", linked_axes=False)
        self._scalp_pane = pn.pane.HoloViews(self._scalp_view(), name="scalp", linked_axes=False)
        self._table = pn.pane.DataFrame(st.error_table(), index=False, float_format="{:.3g}".format,
                                        name="errors", sizing_mode="stretch_width")
        st.param.watch(self._refresh_traces, ["epoch", "masked_channels", "masked_span", "result"])
        self.param.watch(self._refresh_traces, ["kinds"])
        st.param.watch(self._refresh_scalp, ["masked_channels"])
        st.param.watch(self._refresh_table, ["metrics"])
        self._layout = self._build()

    # ---------------------------------------------------------------- views (functions of state)
    def _span_md(self):
        sp = self.state._span()
        return ("**time span:** drag with x-box-select on the traces" if sp is None
                else f"**time span:** {sp[0]:.2f}–{sp[1]:.2f} s")

    def _traces_view(self):
        st = self.state
        if st.result is not None:
            order = ("reconstruction", "hybrid", "original")  # original on top: infills show where they differ
            kinds = [k for k in order if k in self.kinds and k in st.result] or ["original"]
            obj = plots.traces(st.result, epoch=0, kinds=tuple(kinds),
                               responsive=True, title=f"epoch {st.epoch}: {' / '.join(kinds)} (shaded = infilled)")
        else:
            obj = plots.traces(st.original(), mask=st.token_mask(), responsive=True,
                               title=f"epoch {st.epoch} (shaded = will be masked)")
        obj = obj.opts(hv.opts.Path(tools=["xbox_select"], backend="bokeh"))  # no hover: it hangs the browser on long multi_lines
        bounds = hv.streams.BoundsX(source=obj, boundsx=None)
        bounds.add_subscriber(self._on_bounds)
        return obj

    def _scalp_view(self):
        st = self.state
        obj = plots.scalp(st.positions, masked=st.masked_channels, size=360,
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
        name = _nearest_channel(self._xy, x, y)
        if name is not None:
            self.state.toggle_channel(name)

    def _refresh_traces(self, *events):
        self._traces_pane.object = self._traces_view()

    def _refresh_scalp(self, *events):
        self._scalp_pane.object = self._scalp_view()

    def _refresh_table(self, *events):
        self._table.object = self.state.error_table()

    def _on_state(self, *events):
        st = self.state
        names = {e.name for e in events}
        if names & {"status", "error"}:
            self._status.object = _md_status(st.status, st.error)
        if "progress" in names:
            self._progress.value = int(round(100 * st.progress))
        if "running" in names:
            self._run_button.disabled = st.running
            self._progress.active = st.running
        if "result" in names:
            self._download.disabled = st.result is None
        if "masked_span" in names:
            self._span_text.object = self._span_md()

    async def _on_run(self, event=None):
        st = self.state
        if st.running:
            return
        self._run_button.disabled = True
        try:
            out = await _in_thread(st.compute, raise_errors=False)
            st.apply(out)
        finally:
            self._run_button.disabled = False

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
            pn.widgets.IntSlider.from_param(st.param.epoch, label="epoch", sizing_mode="stretch_width"),
            pn.widgets.MultiChoice.from_param(st.param.masked_channels, label="masked channels",
                                              sizing_mode="stretch_width"),
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
            width=300,
        )
        right = pn.Column(self._traces_pane,
                          pn.Row(self._scalp_pane, pn.Column("### Error on masked cells", self._table,
                                                             sizing_mode="stretch_width")),
                          sizing_mode="stretch_width")
        return pn.Row(controls, right, sizing_mode="stretch_width")

    def __panel__(self):
        return self._layout


# --------------------------------------------------------------------------- health
class HealthPanel(pn.viewable.Viewer):
    """Latent-space health (MMD to N(0, I), moments, drift) of one or several recordings.

    Parameters
    ----------
    embeddings : dict of str -> xr.Dataset | xr.Dataset | None
        Embed results (a single Dataset is named "recording").
    recordings : dict of str -> mne.io.Raw | None
        Recordings to embed on Compute when their embedding is missing.
    model, model_source, embed_fn
        As for :class:`ReconstructionExplorer` (``embed_fn`` replaces ``zuna_lab.embed``).

    Examples
    --------
    >>> HealthPanel(embeddings={"s1": emb1, "s2": emb2})   # doctest: +SKIP
    """

    state = param.ClassSelector(class_=HealthState)

    def __init__(self, embeddings=None, *, recordings=None, model=None, model_source=None, embed_fn=None,
                 state=None, **params):
        if state is None:
            import xarray as xr

            if isinstance(embeddings, xr.Dataset):
                embeddings = {"recording": embeddings}
            state = HealthState(embeddings=dict(embeddings or {}), recordings=dict(recordings or {}),
                                model=model, embed_fn=embed_fn)
            self._loader = None if model is not None else functools.partial(get_model, model_source)
        else:
            self._loader = None
        super().__init__(state=state, **params)
        st = self.state
        self._button = pn.widgets.Button(label="Compute health", color="primary", sizing_mode="stretch_width")
        self._button.on_click(self._on_compute)
        self._status = pn.pane.Markdown(_md_status(st.status, st.error))
        self._verdict = pn.pane.Markdown(self._verdict_md(), sizing_mode="stretch_width")
        self._table = pn.pane.DataFrame(st.summary(), index=False, float_format="{:.3g}".format,
                                        sizing_mode="stretch_width")
        self._plots = pn.pane.HoloViews(self._plots_view(), linked_axes=False, sizing_mode="stretch_width")
        st.param.watch(self._refresh, ["results", "selected", "status", "error", "running"])
        self._layout = pn.Row(
            pn.Column("### Latent health", pn.widgets.Select.from_param(st.param.reference, label="compare with"),
                      pn.widgets.Select.from_param(st.param.selected, label="recording"),
                      pn.widgets.IntInput.from_param(st.param.n_permutations, label="permutations"),
                      pn.widgets.IntInput.from_param(st.param.max_points, label="max tokens (MMD)"),
                      pn.widgets.IntInput.from_param(st.param.seed, label="seed"),
                      pn.widgets.Select.from_param(st.param.kernel, label="kernel"),
                      self._button, self._status, width=300),
            pn.Column(self._verdict, self._table, self._plots, sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )

    def _verdict_md(self):
        st = self.state
        if not st.results:
            return "Press **Compute health** (visible-token latents vs N(0, I); IMQ-kernel MMD, permutation test)."
        h = st.results.get(st.selected) or next(iter(st.results.values()))
        return f"**{st.selected}: {h.attrs['verdict']}** — {h.attrs['summary']}  \n<small>{h.attrs['verdict_rule']}</small>"

    def _plots_view(self):
        st = self.state
        if not st.results or st.selected not in st.results:
            return hv.Curve([]).opts(title="no health results yet", backend="bokeh")
        h = st.results[st.selected]
        items = [plots.latent_moments(h), plots.latent_histogram(st.embeddings[st.selected])]
        if st.comparison is not None:
            items.append(plots.drift_matrix(st.comparison))
        return hv.Layout(items).cols(2)

    def _refresh(self, *events):
        st = self.state
        self._status.object = _md_status(st.status, st.error)
        self._button.disabled = st.running
        if {e.name for e in events} & {"results", "selected"}:
            self._verdict.object = self._verdict_md()
            self._table.object = st.summary()
            self._plots.object = self._plots_view()

    async def _on_compute(self, event=None):
        st = self.state
        if st.model is None and st.embed_fn is None and self._loader is not None and st.recordings:
            st.model = await _in_thread(self._loader)
        out = await _in_thread(st.compute_results, raise_errors=False)
        st.apply(out)

    def __panel__(self):
        return self._layout


# --------------------------------------------------------------------------- embeddings
class EmbeddingExplorer(pn.viewable.Viewer):
    """2-D map of token latents linked to the scalp and the traces.

    Select points with box/lasso/tap: the scalp highlights their channels and
    the traces of the first selected epoch shade the selected tokens.

    Parameters
    ----------
    embedding : xr.Dataset | None
        An ``embed`` result; None shows a button that embeds ``raw``.
    raw : mne.io.Raw | None
        The recording, for the linked traces (and for embedding it).
    model, model_source, embed_fn
        As for :class:`HealthPanel`.

    Examples
    --------
    >>> EmbeddingExplorer(emb, raw=raw)     # doctest: +SKIP
    """

    state = param.ClassSelector(class_=EmbeddingState)

    def __init__(self, embedding=None, *, raw=None, model=None, model_source=None, embed_fn=None, state=None,
                 **params):
        super().__init__(state=state or EmbeddingState(embedding=embedding), **params)
        self._raw, self._model, self._embed_fn = raw, model, embed_fn
        self._loader = None if model is not None else functools.partial(get_model, model_source)
        st = self.state
        self._button = pn.widgets.Button(label="Compute embedding", color="primary",
                                         visible=st.embedding is None and raw is not None)
        self._button.on_click(self._on_embed)
        self._info = pn.pane.Markdown(self._info_md(), sizing_mode="stretch_width")
        self._map = pn.pane.HoloViews(self._map_view(), linked_axes=False, name="embedding map")
        self._scalp = pn.pane.HoloViews(self._scalp_view(), linked_axes=False, name="selection scalp")
        self._traces = pn.pane.HoloViews(self._traces_view(), linked_axes=False, sizing_mode="stretch_width")
        st.param.watch(self._refresh_map, ["coords", "color_by"])
        st.param.watch(self._refresh_linked, ["selection", "coords"])
        self._layout = pn.Row(
            pn.Column("### Embedding map", self._button,
                      pn.widgets.RadioButtonGroup.from_param(st.param.method, label="method"),
                      pn.widgets.Select.from_param(st.param.color_by, label="colour by"),
                      pn.widgets.IntInput.from_param(st.param.max_points, label="max tokens"),
                      self._info, width=300),
            pn.Column(pn.Row(self._map, self._scalp), self._traces, sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )

    def _info_md(self):
        st = self.state
        if st.coords is None:
            return "No embedding yet."
        n = len(st.selection)
        if not n:
            return f"{st.coords.sizes['point']} tokens ({st.coords.attrs.get('method', '').upper()}); select some."
        return (f"**{n} tokens selected** — channels: {', '.join(st.selected_channels)}; "
                f"epochs: {', '.join(map(str, st.selected_epochs))}")

    def _map_view(self):
        st = self.state
        if st.coords is None:
            return hv.Points([]).opts(title="no embedding yet", backend="bokeh")
        pts = plots.embedding_map(st.coords, color_by=st.color_by, size=420)
        sel = hv.streams.Selection1D(source=pts)
        sel.add_subscriber(self._on_select)
        return pts

    def _scalp_view(self):
        st = self.state
        if st.embedding is None:
            return hv.Curve([]).opts(title="", backend="bokeh")
        return plots.scalp(st.embedding, selected=st.selected_channels, size=360, title="selected channels")

    def _traces_view(self):
        st = self.state
        if self._raw is None or st.embedding is None:
            return hv.Curve([]).opts(title="pass raw= to see the selected tokens on the traces", backend="bokeh")
        epochs = st.selected_epochs or [0]
        e = epochs[0]
        n = int(round(plots.TOKEN_S * 40 * self._raw.info["sfreq"]))
        start = e * n
        if start + n > self._raw.n_times:
            return hv.Curve([]).opts(title=f"epoch {e} is beyond the recording", backend="bokeh")
        import xarray as xr

        da = xr.DataArray(self._raw.get_data(start=start, stop=start + n), dims=("channel", "time"),
                          coords={"channel": list(self._raw.ch_names),
                                  "time": np.arange(n) / self._raw.info["sfreq"]}, name="original")
        m = st.selected_mask().isel(epoch=e) if e < st.embedding.sizes["epoch"] else None
        if m is not None:
            m = m.assign_coords(channel=[str(c) for c in st.embedding.channel.values])
            missing = [c for c in da.channel.values if c not in m.channel.values]
            if missing:
                m = None
        obj = plots.traces(da, mask=m, responsive=True, title=f"epoch {e}: selected tokens shaded")
        return obj

    def _on_select(self, index=None, **kw):
        self.state.selection = [int(i) for i in (index or [])]

    def _refresh_map(self, *events):
        self._map.object = self._map_view()
        self._button.visible = self.state.embedding is None and self._raw is not None

    def _refresh_linked(self, *events):
        self._info.object = self._info_md()
        self._scalp.object = self._scalp_view()
        self._traces.object = self._traces_view()

    def _embed_blocking(self):
        fn = self._embed_fn
        if fn is None:
            import zuna_lab

            fn = getattr(zuna_lab, "embed", None)
            if fn is None:
                raise ZunaValueError("zuna_lab.embed is not available in this installation.")
        model = self._model if self._model is not None or self._embed_fn is not None else self._loader()
        kw = {"model": model} if "model" in __import__("inspect").signature(fn).parameters else {}
        return fn(self._raw, **kw)

    async def _on_embed(self, event=None):
        self._button.disabled = True
        self._info.object = "embedding…"
        try:
            emb = await _in_thread(self._embed_blocking)
            self.state.embedding = emb
        except Exception as exc:  # noqa: BLE001
            self._info.object = f"<span style='color:#b00'>{type(exc).__name__}: {exc}</span>"
        finally:
            self._button.disabled = False

    def __panel__(self):
        return self._layout


# --------------------------------------------------------------------------- dashboard
class Dashboard(pn.viewable.Viewer):
    """The three apps in tabs; see :func:`dashboard`."""

    def __init__(self, reconstruction, health, embeddings, *, title="ZUNA lab", **params):
        super().__init__(**params)
        self.reconstruction, self.health, self.embeddings = reconstruction, health, embeddings
        self.tabs = pn.Tabs(("Reconstruction", reconstruction), ("Latent health", health),
                            ("Embeddings", embeddings), dynamic=False, sizing_mode="stretch_width")
        self._layout = pn.Column(f"## {title}", self.tabs, sizing_mode="stretch_width")

    def __panel__(self):
        return self._layout


def _as_recordings(data):
    import xarray as xr

    if isinstance(data, dict):
        if not data:
            raise ZunaValueError("dashboard needs at least one recording.")
        return {str(k): _as_raw(v) for k, v in data.items()}
    if isinstance(data, xr.Dataset):
        raise ZunaTypeError("dashboard needs a recording (mne Raw or a file path), not a result Dataset; "
                            "use HealthPanel/EmbeddingExplorer for embed results.")
    raw = _as_raw(data)
    name = Path(raw.filenames[0]).stem if getattr(raw, "filenames", None) and raw.filenames[0] else "recording"
    return {name: raw}


def _as_raw(obj):
    if hasattr(obj, "info") and hasattr(obj, "get_data"):
        return obj
    if isinstance(obj, (str, Path)):
        import zuna_lab

        reader = getattr(zuna_lab, "read_raw", None)
        if reader is None:
            import mne

            return mne.io.read_raw(obj, preload=True, verbose="error")
        return reader(obj)
    raise ZunaTypeError(f"dashboard needs an mne Raw, a file path or a dict of them, got {type(obj).__name__}.")


def dashboard(data, model=None, *, model_source=None, embeddings=None, reconstruct_fn=None, embed_fn=None,
              title="ZUNA lab", verbose=None):
    """Reconstruction explorer, latent health and embedding explorer in one tabbed app.

    Works inline in JupyterLab (after ``pn.extension(inline=True)``), as
    ``dashboard(raw).servable()`` under ``panel serve``, or through
    :func:`serve`.  Each call builds new state objects (one per browser
    session when served); the model is loaded lazily once per process.

    Parameters
    ----------
    data : mne.io.Raw | str | Path | dict
        A recording, a file path (read with ``zuna_lab.read_raw``), or a dict
        of name -> recording (the first is explored; all appear in the health tab).
    model : object | None
        A loaded model; None loads ``model_source`` (default ``$ZUNA_LAB_MODEL``
        or ``"Zyphra/ZUNA"``) on first use.
    model_source : str | None
        See ``model``.
    embeddings : dict of str -> xr.Dataset | xr.Dataset | None
        Precomputed embed results by recording name.
    reconstruct_fn, embed_fn : callable | None
        Replace ``zuna_lab.reconstruct`` / ``zuna_lab.embed`` (tests, custom pipelines).
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

    recs = _as_recordings(data)
    if isinstance(embeddings, xr.Dataset):
        embeddings = {next(iter(recs)): embeddings}
    embeddings = dict(embeddings or {})
    main = next(iter(recs))
    rexp = ReconstructionExplorer(recs[main], model=model, model_source=model_source, reconstruct_fn=reconstruct_fn)
    hp = HealthPanel(embeddings, recordings=recs, model=model, model_source=model_source, embed_fn=embed_fn)
    ee = EmbeddingExplorer(embeddings.get(main), raw=recs[main], model=model, model_source=model_source,
                           embed_fn=embed_fn)

    def _share(event):  # embeddings computed in the health tab feed the explorer
        if ee.state.embedding is None and main in event.new:
            ee.state.embedding = event.new[main]

    hp.state.param.watch(_share, "embeddings")
    return Dashboard(rexp, hp, ee, title=title)


def serve(data, model=None, *, port=5006, address="127.0.0.1", show=False, threaded=False, websocket_origin=None,
          verbose=None, **kwargs):
    """Serve :func:`dashboard` on ``address:port`` (127.0.0.1 by default: not reachable from other machines).

    Parameters
    ----------
    data, model
        As for :func:`dashboard` (shared read-only by all sessions; each
        session gets its own state).
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
        Passed to :func:`dashboard` (``model_source``, ``embeddings``, ``reconstruct_fn``,
        ``embed_fn``, ``title``).

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
    recs = _as_recordings(data)  # read once, shared by sessions

    def app():  # a plain function: Panel calls it once per session (a partial would be served as text)
        return dashboard(recs, model, **kwargs)

    return pn.serve({"zuna_lab": app}, port=port, address=address, show=show, threaded=threaded,
                    websocket_origin=websocket_origin, title=kwargs.get("title", "ZUNA lab"))
