"""One plot style for notebooks (zuna_lab/viz/plots/_style.py), checked on the returned HoloViews objects
as Bokeh renders them: wheel zoom available but not active, no plot wider than a notebook column,
every line named in a legend, axes and ticks that say what the tutorials say, markers and labels
not cut or crossed."""
import pytest

import zuna_lab
from zuna_lab.synthetic import make_synthetic_raw
from zuna_lab.trust import health
from builders import make_embedding, make_reconstruction
from oracle_support import require_module

hv = require_module("holoviews")
import zuna_lab.viz.plots as zp  # noqa: E402  (after the check that HoloViews is there)
from zuna_lab.viz.plots._style import COLUMN_WIDTH as COLUMN  # noqa: E402


@pytest.fixture(scope="module")
def rec():
    return make_reconstruction(masked_channels=("C3", "T7"))


@pytest.fixture(scope="module")
def emb():
    return make_embedding()


@pytest.fixture(scope="module")
def field():
    return make_synthetic_raw(duration=10.0, seed=2)


@pytest.fixture(scope="module")
def views(rec, emb, field):
    """Every plot function's view, as a tutorial draws it."""
    h = health.mmd_health(emb, n_permutations=5)
    cmp = health.compare_recordings({"a": emb, "b": make_embedding(seed=4)}, n_permutations=5)
    scores = zuna_lab.evaluate_dropout(field, estimators=("spline",), fraction=[0.1, 0.25, 0.5], n_repeats=2,
                                       verbose="error")
    one = zuna_lab.evaluate_dropout(field, estimators=("spline",), bad_channels=["Cz", "O1", "Pz"], verbose="error")
    return {
        "traces": zp.traces(rec, kinds=("original", "hybrid")),
        "scalp": zp.scalp(rec),
        "latent_histogram": zp.latent_histogram(emb),
        "latent_moments": zp.latent_moments(h),
        "drift_matrix": zp.drift_matrix(cmp),
        "embedding_map": zp.embedding_map(emb),
        "dropout_curve": zp.dropout_curve(scores),
        "winners_map": zp.winners_map(one),
        "montage_map": zp.montage_map(zuna_lab.check_montage(field, verbose="error")),
    }


def _width(fig):
    """The widest the figure is drawn: its max_width when it stretches, else its width (or frame + margins)."""
    if fig.sizing_mode in ("stretch_width", "stretch_both", "scale_width"):
        return fig.max_width
    return fig.width if fig.width is not None else fig.frame_width + 300


def test_every_view_fits_a_column_and_scrolls_the_page(views):
    for name, view in views.items():
        fig = hv.render(view, backend="bokeh")
        tools = [type(t).__name__ for t in fig.toolbar.tools]
        assert "WheelZoomTool" in tools, name                       # available in the toolbar
        assert fig.toolbar.active_scroll is None, name              # not active: the page scrolls on
        assert _width(fig) <= COLUMN, (name, _width(fig))


def test_tutorial_layouts_fit_a_column(emb):
    """03's histogram and moments, one under the other, fit the column."""
    h = health.mmd_health(emb, n_permutations=5)
    layout = (zp.latent_histogram(emb) + zp.latent_moments(h)).cols(1)
    for plot in layout:
        assert _width(hv.render(plot, backend="bokeh")) <= COLUMN


def test_traces_name_every_line_and_keep_the_original_visible(rec):
    ov = zp.traces(rec, kinds=("original", "hybrid"))
    fig = hv.render(ov, backend="bokeh")
    labels = [item.label["value"] for legend in fig.legend for item in legend.items]
    assert labels == ["masked", "original", "hybrid"]
    # the original is drawn after (on top of) the hybrid, thinner, so an infill never hides it
    paths = [e for e in ov if isinstance(e, hv.Path)]
    assert [p.label for p in paths] == ["hybrid", "original"]
    assert fig.sizing_mode == "stretch_width" and fig.max_width == COLUMN
    fixed = hv.render(zp.traces(rec, responsive=False, width=600), backend="bokeh")
    assert fixed.width == 600 and fixed.sizing_mode == "fixed"
    # the app's view (legend off): no legend, titles say what is shaded
    assert not [item for legend in hv.render(zp.traces(rec, legend=False), backend="bokeh").legend
                for item in legend.items]


def test_drift_matrix_zeros_on_the_diagonal_from_the_top_left(emb):
    cmp = health.compare_recordings({"a": emb, "b": make_embedding(seed=4), "c": make_embedding(seed=5)},
                                    n_permutations=5)
    view = zp.drift_matrix(cmp)
    fig = hv.render(view, backend="bokeh")
    names = ["a", "b", "c"]
    assert list(fig.x_range.factors) == names
    # a categorical y axis runs bottom to top: inverted, the first recording is on top
    assert list(fig.y_range.factors) == names and fig.y_range.start > fig.y_range.end \
        or list(fig.y_range.factors) == names[::-1]
    labels = [e for e in view if isinstance(e, hv.Labels)][0].dframe()
    diagonal = labels[labels["compared with"] == labels["recording"]]
    assert len(diagonal) == 3 and set(diagonal["text"]) == {"0"}
    assert fig.frame_width >= 260 and fig.frame_height == fig.frame_width   # readable square cells
    assert "diagonal" in fig.title.text and fig.xaxis.axis_label == "compared with"


def test_dropout_curve_end_points_whole_and_log_ticks_labelled(field):
    scores = zuna_lab.evaluate_dropout(field, estimators=("spline",), fraction=[0.1, 0.25, 0.5], n_repeats=2,
                                       verbose="error")
    view = zp.dropout_curve(scores)
    opts = hv.Store.lookup_options("bokeh", view, "plot").kwargs
    assert opts["padding"] > 0
    assert [v for v, _ in opts["xticks"]] == [0.1, 0.25, 0.5]
    fig = hv.render(view, backend="bokeh")
    values = (scores["nmse"].mean("channel")).values
    lo, hi = fig.x_range.start, fig.x_range.end
    assert lo < 0.1 and hi > 0.5                                       # markers at the ends drawn whole
    ticks = [v for v, _ in opts["yticks"]]
    assert min(ticks) <= values.min() * 1.5 and max(ticks) >= values.max() / 1.5
    assert len([t for t in ticks if values.min() / 1.5 <= t <= values.max() * 1.5]) >= 2   # labelled inside


def test_log_ticks():
    from zuna_lab.viz.plots.trust import log_ticks

    assert [v for v, _ in log_ticks(0.3, 1.8)] == [0.2, 0.5, 1.0, 2.0]
    assert [label for _, label in log_ticks(0.004, 40)] == ["0.01", "0.1", "1", "10"]   # decades only
    assert [v for v, _ in log_ticks(1.1, 1.9)] == [1.0, 2.0]


def test_electrode_names_sit_inside_their_markers(rec, field):
    for view in (zp.scalp(rec), zp.montage_map(zuna_lab.check_montage(field, verbose="error"))):
        labels = [e for e in view if isinstance(e, hv.Labels)][0]
        opts = hv.Store.lookup_options("bokeh", labels, "style").kwargs
        assert opts["text_align"] == "center" and opts["text_baseline"] == "middle" and "yoffset" not in \
            hv.Store.lookup_options("bokeh", labels, "plot").kwargs
        points = [e for e in view if isinstance(e, hv.Points)][0]
        assert hv.Store.lookup_options("bokeh", points, "style").kwargs["size"] >= 21   # a name fits inside
        fig = hv.render(view, backend="bokeh")
        xy = labels.dframe()[["x", "y"]].to_numpy()
        # the outline (unit circle) and every marker inside the axes: nothing cut at the edges
        assert fig.x_range.start < min(-1.05, xy[:, 0].min()) and fig.x_range.end > max(1.05, xy[:, 0].max())
