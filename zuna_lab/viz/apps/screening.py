"""The screening panel: ``zuna_lab.screen``'s suggestions, its channels × time map and its table."""

from __future__ import annotations

import panel as pn
import param

from .. import plots
from ..state import ScreeningState
from ._common import TaskApp, model_arg, plot_pane, waiting_md

__all__ = ["ScreeningPanel", "compact_table"]

#: The table in a notebook column: headers wrap, cells stay small, a scroll bar rather than an overflow.
TABLE_CSS = """
:host { overflow-x: auto; }
table { font-size: 12px; border-collapse: collapse; }
th { white-space: normal; vertical-align: bottom; text-align: left; }
td, th { padding: 2px 6px; }
"""


def compact_table(table):
    """The report's table (``ScreenReport.table``) as the panel shows it, narrow enough for a notebook column.

    The same rows and numbers, fewer and shorter columns: per estimator its median robust z
    (``<estimator> z``) and the share of bad epochs; ``reason``, ``bridged with`` and ``bad s`` only
    when a channel has one; pyprep's and LOF's verdicts, ``failed`` when the detector failed (the
    summary above the map says why); the "bad" flags repeated by ``status`` and LOF's raw score are
    left out (both are in ``report.table``).
    """
    import pandas as pd

    out = pd.DataFrame({"channel": table["channel"], "status": table["status"]})
    if table["reason"].astype(bool).any():
        out["reason"] = table["reason"]
    for column in table.columns:
        if column.endswith("_badness"):
            name = column[:-len("_badness")]
            out[f"{name} z"] = table[column]
            out[f"{name} bad epochs"] = [f"{v:.0%}" if v == v else "" for v in table[f"{name}_bad_epochs"]]
    if "bridged_with" in table and table["bridged_with"].astype(bool).any():
        out["bridged with"] = table["bridged_with"]
    if "segments_s" in table and (table["segments_s"] > 0).any():
        out["bad s"] = table["segments_s"]
    for name in ("pyprep", "lof"):
        if name in table:
            values = table[name].astype(str)
            out[name] = values.where(~values.str.startswith("failed"), "failed")
    return out


class ScreeningPanel(TaskApp):
    """Bad channels and bad segments of a recording, found by what the other channels cannot predict.

    On first view it screens the recording with the spline (``zuna_lab.screen(raw,
    estimators=("spline",))``, seconds); tick ZUNA (one reconstruction per channel, or per group)
    and the other detectors and press *Screen* for the rest. The map and the table are functions
    of the state's report (``pn.bind``); every number is the library's.

    Parameters
    ----------
    raw : mne.io.Raw | None
        The recording (or ``recording=``, shared with the other panels).
    model, model_source
        As for :class:`~zuna_lab.viz.apps.ReconstructionExplorer`.
    autostart : bool
        Screen when first viewed (a dashboard drives this itself).

    Examples
    --------
    >>> ScreeningPanel(raw=raw, model=model)      # doctest: +SKIP
    """

    state = param.ClassSelector(class_=ScreeningState)


    def __init__(self, raw=None, *, recording=None, model=None, model_source=None, state=None, autostart=True,
                 **params):
        if state is None:
            state = ScreeningState(raw=raw, recording=recording, model=model_arg(model, model_source))
        super().__init__(state=state, **params)
        st = self.state
        shown = st.param.report.rx.is_not(None)
        self.map = plot_pane(pn.bind(self.view(self._map_view), st.param.report, st.param.shown, st.param.kind),
                             sizing_mode="stretch_width", visible=shown, name="screening map")
        self.table = pn.pane.DataFrame(pn.bind(self._table_view, st.param.report), index=False,
                                       float_format="{:.2f}".format, sizing_mode="stretch_width", visible=shown,
                                       stylesheets=[TABLE_CSS], name="screening table")
        groups = pn.widgets.IntInput(label="held-out groups (0: each channel alone)", value=0, start=0, end=256)
        groups.param.watch(self.guard(self._set_groups), "value")
        self._layout = self.sidebar(
            "Screening",
            pn.widgets.CheckButtonGroup.from_param(st.param.estimators, label="estimators (ZUNA decides when on)"),
            pn.widgets.CheckButtonGroup.from_param(st.param.compare, label="also run"),
            pn.widgets.FloatInput.from_param(st.param.threshold, label="threshold (robust z)", step=0.5),
            pn.widgets.FloatInput.from_param(st.param.segment_threshold, label="segment threshold (robust z)",
                                             step=0.5),
            groups,
            pn.widgets.IntInput.from_param(st.param.steps, label="ZUNA steps"),
            pn.widgets.Select.from_param(st.param.shown, label="map of"),
            pn.widgets.RadioButtonGroup.from_param(st.param.kind, label="cells"),
            self.button("Screen", self.compute), self.progress_bar(), self.status_pane(),
            main=[pn.pane.Markdown(pn.bind(self._summary_md, st.param.report, self.live.param.running,
                                           self.live.param.status, self.live.param.error),
                                   sizing_mode="stretch_width"),
                  self.map, self.table],
        )
        if autostart:
            pn.state.onload(self.activate)

    def _set_groups(self, event):
        """0 (or 1) means each channel alone; a value the library refuses resets the widget."""
        value = event.new or 0
        try:
            self.state.groups = None if value < 2 else int(value)
        except ValueError as err:                     # outside the parameter's bounds
            self.state.report_error(err)
            event.obj.value = 0

    def needs_compute(self):
        st = self.state
        return st.report is None and not st.running and st.recording is not None

    # ---------------------------------------------------------------- views: functions of the state
    def _summary_md(self, report, running, status, error):
        if report is None:
            idle = ("Each channel is predicted from the others (spherical splines; ZUNA when ticked) and the "
                    "channels and stretches it cannot predict are suggested; computed when this tab opens.")
            return waiting_md(idle, f"Screening: {status}", error, running)
        text = self.state.summary_md()
        return text + (f"\n\n<span style='color:#b00'>{error}</span>" if error else "")

    @staticmethod
    def _map_view(report, shown, kind):
        if report is None:
            return None
        return plots.screen_map(report, estimator=shown, kind=kind)

    @staticmethod
    def _table_view(report):
        if report is None:
            return None
        return compact_table(report.table)
