"""The embedding explorer: a 2-D map of token latents linked to the scalp and the traces."""

from __future__ import annotations

import holoviews as hv
import panel as pn
import param

from .. import plots
from ..projections import UMAP_HINT
from ..state import EmbeddingState
from ._common import SCALP_SIZE, TaskApp, epoch_title, model_arg, plot_pane, waiting_md

__all__ = ["EmbeddingExplorer"]


class EmbeddingExplorer(TaskApp):
    """2-D map of token latents linked to the scalp and the traces.

    Select points with box/lasso/tap: the scalp highlights their channels and
    the traces of the first selected epoch (the preprocessed recording the
    tokens come from) shade the selected tokens.  On first view it embeds the
    recording (``zuna_lab.embed``) when no embedding was given.

    The views are functions of the state bound with ``pn.bind``: the map of its ``coords`` and
    ``color_by`` (a Selection1D stream on it writes the state's ``selection``), the scalp and
    the traces of the embedding and the selection.

    Parameters
    ----------
    embedding : xr.Dataset | None
        An ``embed`` result; None embeds ``raw``.
    raw : mne.io.Raw | None
        The recording, for the linked traces (and for embedding it); or ``recording=``.
    model, model_source
        As for :class:`~zuna_lab.viz.apps.ReconstructionExplorer`.
    autostart : bool
        Embed the recording when first viewed (a dashboard drives this itself).

    Examples
    --------
    >>> EmbeddingExplorer(raw=raw, model=model)     # doctest: +SKIP
    """

    state = param.ClassSelector(class_=EmbeddingState)

    MAP_SIZE = 400

    def __init__(self, embedding=None, *, raw=None, model=None, model_source=None, recording=None, state=None,
                 autostart=True, **params):
        if state is None:
            state = EmbeddingState(embedding, raw=raw, recording=recording, model=model_arg(model, model_source))
        super().__init__(state=state, **params)
        st = self.state
        # one selection stream; it follows the map drawn (a new plot when the coords or the colouring change)
        self.selection = hv.streams.Selection1D()
        self.selection.add_subscriber(self.guard(st.select))
        can_embed, shown = st.recording is not None, st.param.coords.rx.is_not(None)
        # views: functions of the state, each redrawn when what it shows changes
        self.map = plot_pane(pn.bind(self.view(self._map_view), st.param.coords, st.param.color_by),
                             name="embedding map")
        self.scalp = plot_pane(pn.bind(self.view(self._scalp_view), st.param.embedding, st.param.selection),
                               width=SCALP_SIZE, height=SCALP_SIZE, name="selection scalp")
        self.traces = plot_pane(pn.bind(self.view(self._traces_view), st.param.embedding, st.param.selection),
                                sizing_mode="stretch_width", min_height=300, name="traces", visible=can_embed)
        self._layout = self.sidebar(
            "Embedding map",
            self.button(pn.bind(lambda emb: "Compute embedding" if emb is None else "Embed again", st.param.embedding),
                        self.embed_again, visible=can_embed),
            self.progress_bar(visible=can_embed),
            self._method_control(),
            pn.widgets.Select.from_param(st.param.color_by, label="colour by"),
            pn.widgets.IntInput.from_param(st.param.max_points, label="max tokens"),
            pn.pane.Markdown(pn.bind(self._info_md, st.param.coords, st.param.selection), sizing_mode="stretch_width"),
            self.status_pane(),
            main=[pn.pane.Markdown(pn.bind(self._placeholder_md, self.live.param.status, self.live.param.error,
                                           self.live.param.running),
                                   visible=shown.rx.not_(), sizing_mode="stretch_width"),
                  # the scalp under the map: side by side they overflow a notebook column (~860 px)
                  pn.Column(pn.Row(self.map), pn.Row(self.scalp), self.traces, visible=shown,
                            sizing_mode="stretch_width")],
        )
        if autostart:
            pn.state.onload(self.activate)

    def _method_control(self):
        """PCA / UMAP; without umap-learn the choice is disabled and a tooltip says what to install."""
        st = self.state
        method = pn.widgets.RadioButtonGroup.from_param(st.param.method, label="method")
        if st.umap_available:
            return method
        method.disabled = True
        return pn.Row(method, pn.widgets.TooltipIcon(value=f"{UMAP_HINT}."),
                      name="method")

    def needs_compute(self):
        st = self.state
        return st.embedding is None and st.recording is not None and not st.running

    async def embed_again(self, event=None):
        """Embed the recording (again, when there is an embedding: its cached one is dropped)."""
        st = self.state
        if st.running or st.recording is None:
            return
        if st.embedding is not None:
            st.forget_embedding()
        await self.compute()

    # ---------------------------------------------------------------- views: functions of the state
    def _map_view(self, coords, color_by):
        if coords is None:
            return None
        points = plots.embedding_map(coords, color_by=color_by, size=self.MAP_SIZE)
        self.selection.source = points
        return points

    def _scalp_view(self, embedding, selection):
        if embedding is None:
            return None
        return plots.scalp(embedding, selected=self.state.selected_channels, size=SCALP_SIZE,
                           title="selected channels")

    def _traces_view(self, embedding, selection):
        st = self.state
        if embedding is None or st.recording is None:
            return None
        e = st.shown_epoch
        da = st.original(e)
        what = "selected tokens shaded" if selection else "select points on the map to shade their tokens"
        where = epoch_title(e, float(da.attrs.get("epoch_start", 0.0)), da.sizes["time"] / da.attrs["sfreq"])
        return plots.traces(da, mask=st.selected_tokens(e), mask_label="selected", responsive=True,
                            title=f"{where}: {what}")

    def _placeholder_md(self, status, error, running):
        st = self.state
        if st.recording is None:
            return "No embedding: pass one, or a recording to embed."
        return waiting_md(f"The embedding of {st.recording.name} is computed when this tab opens.", status, error,
                          running)

    def _info_md(self, coords, selection):
        if coords is None:
            return ""
        if not selection:
            return f"{coords.sizes['point']} tokens ({coords.attrs.get('method', '').upper()}); select some."
        st = self.state
        return (f"**{len(selection)} tokens selected** — channels: {', '.join(st.selected_channels)}; "
                f"epochs: {', '.join(map(str, st.selected_epochs))}")
