"""The screening map and the dashboard's Screening tab: the library's report drawn, and computed with the
library's function (a tab's numbers are zuna_lab.screen's)."""
import asyncio

import numpy as np
import pytest

import zuna_lab as zl
from zuna_lab.errors import ZunaTypeError, ZunaValueError
from zuna_lab.synthetic import make_synthetic_raw
from zuna_lab.trust.faults import inject_faults

from oracle_support import require_module

hv = require_module("holoviews")


@pytest.fixture(scope="module")
def faulty():
    raw = make_synthetic_raw(duration=20.0, seed=3, verbose="error")
    out, _ = inject_faults(raw, {"dead": ["C3"], "burst": ["Fz"]}, seed=3)
    out.info["bads"] = ["O2"]
    return out


@pytest.fixture(scope="module")
def report(faulty):
    return zl.screen(faulty, estimators=("spline",), compare=(), verbose="error")


def _layers(overlay, kind):
    return [layer for layer in overlay if type(layer) is kind]


def test_screen_map_draws_the_report(report):
    from zuna_lab.viz import plots

    assert report.bad_channels == ["C3"] and any(c == "Fz" for _, _, c in report.segments)
    overlay = plots.screen_map(report)
    mesh, = _layers(overlay, hv.QuadMesh)
    names = list(report.scores["channel"].values)
    badness = report.scores["badness"].sel(estimator="spline").transpose("channel", "epoch").values
    np.testing.assert_array_equal(mesh.dimension_values(2, flat=False)[::-1], badness)     # top row = first channel
    labels = {layer.label for layer in _layers(overlay, hv.Rectangles)}
    assert labels == {"suggested bad channel", "suggested BAD_screen segment", "already marked bad (not scored)"}
    fig = hv.render(overlay, backend="bokeh")
    assert fig.toolbar.active_scroll is None and any(type(t).__name__ == "WheelZoomTool" for t in fig.toolbar.tools)
    assert fig.sizing_mode == "stretch_width" and fig.max_width == plots._style.COLUMN_WIDTH == 860
    assert [item.label.value for item in fig.legend[0].items] == ["already marked bad (not scored)",
                                                                  "suggested bad channel", "suggested BAD_screen segment"]
    assert fig.xaxis.axis_label == "time (s)" and fig.yaxis.axis_label == "channel"
    assert dict(fig.yaxis.major_label_overrides) == {len(names) - 1 - i: n for i, n in enumerate(names)}
    assert "threshold 4" in fig.title.text and "badness" in fig.title.text
    window = plots.screen_map(report, kind="window")
    assert "threshold 6" in hv.render(window, backend="bokeh").title.text


def test_screen_map_png_and_refusals(report, tmp_path):
    from zuna_lab.viz import plots

    path = plots.save_png(plots.screen_map(report, kind="window"), tmp_path / "screening")
    assert path.stat().st_size > 10_000
    with pytest.raises(ZunaValueError, match="kind must be one of"):
        plots.screen_map(report, kind="epochs")
    with pytest.raises(ZunaValueError, match="estimator must be one of 'spline'"):
        plots.screen_map(report, estimator="zuna")
    with pytest.raises(ZunaTypeError, match="needs the report of zuna_lab.screen"):
        plots.screen_map(report.table)


def test_screening_state_is_zl_screen(faulty, report):
    from zuna_lab.viz.state import ScreeningState

    state = ScreeningState(raw=faulty)
    assert state.compute() is state.report and state.status.startswith("done")
    assert state.report.bad_channels == report.bad_channels and state.report.segments == report.segments
    np.testing.assert_array_equal(state.report.scores["badness"].values, report.scores["badness"].values)
    assert "**C3**" in state.summary_md() and state.shown == "spline"
    state.estimators = []
    with pytest.raises(ZunaValueError, match="at least one estimator"):
        state.compute()
    assert state.status == "failed" and "at least one estimator" in state.error


def test_screening_tab_computes_on_first_view(faulty, random_checkpoint):
    require_module("panel")
    from zuna_lab.viz import apps

    model = zl.load_model(random_checkpoint("ZUNA", seed=4), device="cpu")
    d = apps.dashboard(faulty, model=model)
    assert [d.tabs._names[i] for i in range(len(d.tabs))][-1] == "Screening"
    panel = d.screening
    assert panel.state.report is None and not panel.map.visible
    asyncio.run(d.activate(3))                                  # the tab opens: the spline screens it
    assert panel.state.report.bad_channels == ["C3"] and panel.map.visible
    assert isinstance(panel.map.object, hv.Overlay) and len(panel.table.object) == len(faulty.ch_names)
    # ZUNA ticked (random weights): both estimators, the library's report with the same options
    panel.state.param.update(estimators=["zuna", "spline"], groups=4, steps=1)
    asyncio.run(panel.compute())
    expected = zl.screen(faulty, model=model, estimators=("zuna", "spline"), compare=(), groups=4, steps=1,
                         verbose="error")
    assert panel.state.report.decided_by == "zuna" and panel.state.param.shown.objects == ["zuna", "spline"]
    np.testing.assert_array_equal(panel.state.report.scores["badness"].values, expected.scores["badness"].values)
    panel.state.shown = "spline"
    assert "spline" in hv.render(panel.map.object, backend="bokeh").title.text
