"""The reconstruction explorer: mask channels or a time span of one epoch, reconstruct it, compare and download."""

from __future__ import annotations

import asyncio
import functools
import io
import shutil
from pathlib import Path

import holoviews as hv
import panel as pn
import param

from .. import plots
from ..state import ReconstructionState
from ._common import SCALP_SIZE, TaskApp, dynamic, epoch_title, model_arg, plot_pane, waiting_md

__all__ = ["ReconstructionExplorer"]


class ReconstructionExplorer(TaskApp):
    """Mask channels or a time span of one epoch, reconstruct it, compare and download.

    Click electrodes on the scalp (or use the multi-select) to mask channels;
    drag with the x-box-select tool on the traces to mask a time span.  Run
    reconstructs the epoch in a worker thread with a progress bar, through the
    code of :func:`zuna_lab.reconstruct` on the whole preprocessed recording:
    the traces are that epoch of ``zuna_lab.reconstruct(raw, ...)``.

    The traces and the scalp are ``hv.DynamicMap`` views of the state's parameters (epoch,
    masks, result): a change redraws them in place, and their Tap / BoundsX streams write
    the masks back into the state.

    Parameters
    ----------
    raw : mne.io.Raw | None
        The recording (never modified); or ``recording=`` to share one.
    model : ZunaModel | None
        A loaded model; None loads ``model_source`` once per process (first view).
    model_source : str | None
        Source for :func:`zuna_lab.api.core.cached_model` when ``model`` is None.
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
    kinds = param.ListSelector(default=["original", "hybrid"], objects=["original", "reconstruction", "hybrid"])

    def __init__(self, raw=None, *, model=None, model_source=None, recording=None, state=None, autostart=True,
                 **params):
        if state is None:
            state = ReconstructionState(raw, recording=recording, model=model_arg(model, model_source))
        super().__init__(state=state, **params)
        st = self.state
        download = pn.widgets.FileDownload(callback=self.guard(self._fif_bytes), filename="repaired_raw.fif",
                                           label="Download repaired FIF", color="success",
                                           disabled=st.param.result.rx.is_(None), sizing_mode="stretch_width")
        number = functools.partial(pn.widgets.IntInput.from_param, sizing_mode="stretch_width")
        self._layout = self.sidebar(
            "Mask and reconstruct",
            pn.panel(pn.bind(self._epoch_control, self.live.param.n_epochs), sizing_mode="stretch_width"),
            pn.pane.Markdown(pn.bind(self._epoch_md, st.param.epoch, self.live.param.ready),
                             sizing_mode="stretch_width", margin=(0, 10)),
            pn.widgets.MultiChoice.from_param(st.param.masked_channels, label="masked channels",
                                              sizing_mode="stretch_width"),
            pn.pane.Markdown(pn.bind(self._span_md, st.param.masked_span, st.param.epoch, self.live.param.ready),
                             sizing_mode="stretch_width"),
            pn.widgets.Button(label="Clear masks", sizing_mode="stretch_width",
                              on_click=self.guard(lambda event: st.clear_mask())),
            number(st.param.steps, label="steps"),
            pn.widgets.FloatInput.from_param(st.param.cfg, label="cfg", step=0.1, sizing_mode="stretch_width"),
            number(st.param.seed, label="seed"),
            number(st.param.n_samples, label="samples"),
            self.button("Run reconstruction", self.compute,
                        disabled=pn.bind(lambda running, ready: running or not ready,
                                         self.live.param.running, self.live.param.ready)),
            self.progress_bar(), self.status_pane(),
            pn.widgets.CheckButtonGroup.from_param(self.param.kinds, label="show"),
            download,
            main=[pn.panel(pn.bind(self._views, self.live.param.ready), sizing_mode="stretch_width")],
        )
        if autostart:
            pn.state.onload(self.activate)

    async def activate(self):
        """Load the model and preprocess the recording if not done yet (in a worker thread)."""
        st = self.state
        if st.ready:
            return
        try:
            await asyncio.to_thread(st.prepare)
        except Exception as exc:  # noqa: BLE001 - shown to the user
            st.fail(exc)

    # ---------------------------------------------------------------- views: functions of the state
    def _views(self, ready):
        if not ready:
            lv = self.live
            return pn.pane.Markdown(pn.bind(self._waiting_md, lv.param.status, lv.param.error),
                                    sizing_mode="stretch_width")
        table = pn.pane.DataFrame(pn.bind(lambda metrics: self.state.error_table(), self.state.param.metrics),
                                  index=False, float_format="{:.3g}".format, name="errors",
                                  sizing_mode="stretch_width")
        return pn.Column(
            plot_pane(self.traces, sizing_mode="stretch_width", min_height=300, name="traces"),
            pn.Row(plot_pane(self.scalp, width=SCALP_SIZE, height=SCALP_SIZE, name="scalp"),
                   pn.Column("### Error on masked cells", table, sizing_mode="stretch_width"),
                   sizing_mode="stretch_width"),
            sizing_mode="stretch_width")

    @functools.cached_property
    def traces(self):
        """The epoch's traces (``hv.DynamicMap``): the pending mask shaded, or the result after a run.
        Dragging with x-box-select on them masks that span (a BoundsX stream)."""
        st = self.state
        drag = hv.streams.BoundsX(boundsx=None)
        drag.add_subscriber(self.guard(st.select_span))
        return dynamic(self._traces_view, st.param.epoch, st.param.masked_channels, st.param.masked_span,
                       st.param.result, self.param.kinds, stream=drag)

    @functools.cached_property
    def scalp(self):
        """The electrodes, masked ones in red (``hv.DynamicMap``); a click toggles one (a Tap stream)."""
        st = self.state
        tap = hv.streams.Tap(x=None, y=None)
        tap.add_subscriber(self.guard(st.toggle_at))
        return dynamic(self._scalp_view, st.param.masked_channels, stream=tap)

    def _traces_view(self, epoch, masked_channels, masked_span, result, kinds):
        st = self.state
        where = epoch_title(epoch, st.epoch_start(), st.epoch_duration())
        if result is not None:
            order = ("reconstruction", "hybrid", "original")  # original on top: infills show where they differ
            shown = [k for k in order if k in kinds and k in result] or ["original"]
            obj = plots.traces(result, epoch=0, kinds=tuple(shown), responsive=True, legend=False,
                               title=f"{where}: {' / '.join(shown)} (shaded = infilled)")
        else:
            obj = plots.traces(st.original(), mask=st.token_mask(), responsive=True, legend=False,
                               title=f"{where} (shaded = will be masked)")
        # no hover: it hangs the browser on long multi_lines
        return obj.opts(hv.opts.Path(tools=["xbox_select"], backend="bokeh"))

    def _scalp_view(self, masked_channels):
        return plots.scalp(self.state.positions, masked=masked_channels, size=SCALP_SIZE,
                           title="electrodes (click to mask)")

    def _waiting_md(self, status, error):
        return waiting_md("⏳ loading the model and preprocessing the recording…", status, error, status != "ready")

    def _epoch_control(self, n_epochs):
        if n_epochs > 1:
            return pn.widgets.IntSlider.from_param(self.state.param.epoch, label="epoch", sizing_mode="stretch_width")
        return pn.pane.Markdown("**epoch:** 0 (the only one)" if n_epochs == 1 else "")

    def _epoch_md(self, epoch, ready):
        if not ready:
            return ""
        st = self.state
        t0 = st.epoch_start()
        return f"<small>{t0:.2f}–{t0 + st.epoch_duration():.2f} s of the recording ({st.variant} epochs at " \
               f"{st.sfreq:g} Hz)</small>"

    def _span_md(self, masked_span, epoch, ready):
        span = self.state.span() if ready else None
        if span is None:
            return "**time span:** drag with x-box-select on the traces"
        where = (f"only inside it for {', '.join(self.state.masked_channels)}" if self.state.masked_channels
                 else "on every channel")
        return f"**time span:** {span[0]:.2f}–{span[1]:.2f} s of the epoch, masked {where}"

    def _fif_bytes(self):
        path = Path(self.state.export_fif())
        data = path.read_bytes()
        shutil.rmtree(path.parent, ignore_errors=True)
        return io.BytesIO(data)
