"""The screening map and the dashboard's Screening tab: the library's report drawn, and computed with the
library's function (a tab's numbers are zuna_lab.screen's)."""
import asyncio
import warnings
from pathlib import Path

import numpy as np
import pytest

import zuna_lab as zl
from zuna_lab.errors import ZunaLabWarning, ZunaTypeError, ZunaValueError
from zuna_lab.synthetic import make_synthetic_raw
from zuna_lab.trust.faults import inject_faults

from oracle_support import require_module

hv = require_module("holoviews")
ROOT = Path(__file__).resolve().parents[2]


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


def test_pyprep_says_why_ransac_cannot_run(faulty):
    """pyprep's RANSAC raised an IndexError on the project's recording (its other criteria flag every channel
    of that independent noise) and an OSError on 12 channels: now the other criteria's verdicts stand and one
    plain sentence says why RANSAC was skipped."""
    require_module("pyprep")
    from zuna_lab.trust import detectors

    raw = zl.read_raw(ROOT / "data" / "sample_synthetic_raw.fif", verbose="error")
    with pytest.warns(ZunaLabWarning, match=r"^pyprep's RANSAC was skipped: its other criteria flagged 19 of 19 "
                                            r"channels, leaving 0 to predict from \(it needs 6\)\.$"):
        verdicts = detectors.pyprep_verdicts(raw)
    assert set(verdicts.values()) == {"correlation"}
    few = faulty.copy().pick(faulty.ch_names[:12])
    with pytest.warns(ZunaLabWarning, match="it needs at least 14 usable channels and the recording has 12"):
        verdicts = detectors.pyprep_verdicts(few)
    assert not any(v.startswith("failed") for v in verdicts.values())
    assert set(detectors.ransac_verdicts(few).values()) == {
        "failed: RANSAC cannot run: it needs at least 14 usable channels and the recording has 12."}
    with warnings.catch_warnings():                       # where it can run, it runs (no warning)
        warnings.simplefilter("error", ZunaLabWarning)
        assert set(detectors.ransac_verdicts(faulty).values()) <= {"", "ransac"}
        assert detectors.pyprep_verdicts(faulty)["C3"]                 # the dead channel


def test_screening_tab_says_ransac_was_skipped():
    """The screening tab with pyprep on the project's whole recording: the sentence in the summary, no
    "failed", no class name; the table the tab shows fits a notebook column (fewer, shorter columns)."""
    require_module("pyprep")
    require_module("panel")
    from zuna_lab.viz import apps

    raw = zl.read_raw(ROOT / "data" / "sample_synthetic_raw.fif", verbose="error")
    panel = apps.ScreeningPanel(raw=raw, autostart=False)
    panel.state.compare = ["pyprep", "lof"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", ZunaLabWarning)   # said in the tab, not warned into the notebook
        asyncio.run(panel.compute())
    st = panel.state
    assert st.error == "" and st.status.startswith("done")
    assert st.notes == ["pyprep's RANSAC was skipped: its other criteria flagged 19 of 19 channels, leaving 0 "
                        "to predict from (it needs 6)."]
    text = panel._summary_md(st.report, False, st.status, st.error)
    assert st.notes[0] in text and "failed" not in text
    assert not any(name in text for name in ("IndexError", "OSError", "Traceback"))
    table = panel.table.object
    assert list(table.columns) == ["channel", "status", "spline z", "spline bad epochs", "pyprep", "lof"]
    assert len(table) == 19 and set(table["pyprep"]) == {"correlation"}
    assert set(st.report.table.columns) - set(table.columns) >= {"lof_score", "spline", "spline_badness"}
    np.testing.assert_allclose(table["spline z"], st.report.table["spline_badness"])
