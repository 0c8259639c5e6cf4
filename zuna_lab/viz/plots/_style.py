"""What every view shares: the two HoloViews backends, colours, per-backend options, PNG export."""

from __future__ import annotations

from pathlib import Path

import holoviews as hv
import holoviews.plotting.bokeh  # noqa: F401  (registers the bokeh backend first: it stays current)

from ...errors import ZunaTypeError
from ..projections import REGIONS
from ...logs import verbose

# the matplotlib backend is registered too (for save_png); bokeh stays the current backend
_current = hv.Store.current_backend
import holoviews.plotting.mpl  # noqa: E402,F401

hv.Store.set_current_backend(_current)

#: Colours of the trace kinds and channel states.
COLORS = {
    "original": "#444444",
    "reconstruction": "#d62728",
    "hybrid": "#1f77b4",
    "visible": "#6c8ebf",
    "masked": "#d62728",
    "added": "#ff9f1c",
    "selected": "#2ca02c",
    "mask_fill": "#ffb3b3",
}
REGION_COLORS = dict(zip(REGIONS, ["#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#d62728", "#7f7f7f"]))


#: The widest a plot is drawn in a notebook: JupyterLab's column at a 1400 px window with the file browser open.
COLUMN_WIDTH = 860


def wheel_zoom_off(plot, element):
    """Bokeh hook: wheel zoom stays in the toolbar but is not active, so scrolling the page never zooms a plot."""
    plot.state.toolbar.active_scroll = None


def notebook_tools(bokeh=None):
    """The bokeh options of a plot as a whole, with the notebook style added: pan active (tap too, where a
    tap tool is), wheel zoom in the toolbar but not active (:func:`wheel_zoom_off` after the plot's own hooks)."""
    bokeh = dict(bokeh or {})
    tools = list(bokeh.get("tools", []))
    bokeh["tools"] = tools + [t for t in ("wheel_zoom",) if t not in tools]
    bokeh.setdefault("active_tools", ["pan"] + [t for t in ("tap",) if t in tools])
    bokeh["hooks"] = [h for h in bokeh.get("hooks", []) if h is not wheel_zoom_off] + [wheel_zoom_off]
    return bokeh


def fit_column(width, height, *, min_width=320):
    """Bokeh options of a plot that stretches to the notebook column, up to ``width`` pixels, ``height`` high."""
    return {"responsive": True, "max_width": int(width), "min_width": int(min(min_width, width)),
            "height": int(height)}


def label_points(df):
    """``(marker size px, hv.Labels)`` for electrodes drawn at ``df``'s x, y with their ``channel`` names
    written inside the markers: no name crosses the head outline or hides under a neighbour's marker."""
    n = len(df)
    marker = 26 if n <= 32 else 21 if n <= 64 else 16
    font = "7pt" if n <= 64 else "5pt"
    labels = with_opts(hv.Labels(df, kdims=["x", "y"], vdims=["channel"]),
                       bokeh={"text_font_size": font, "text_color": "#111111", "text_align": "center",
                              "text_baseline": "middle"},
                       mpl={"size": 6 if n <= 64 else 4, "color": "#111111"})
    return marker, labels


def mpl_size(width, height):
    """matplotlib options for a plot of ``width`` x ``height`` bokeh pixels."""
    return {"fig_inches": width / 100, "aspect": width / height}


def with_opts(obj, *, common=None, bokeh=None, mpl=None):
    """Apply options for the bokeh and the matplotlib backend."""
    common = common or {}
    obj = obj.opts(**common, **(bokeh or {}), backend="bokeh")
    return obj.opts(**common, **(mpl or {}), backend="matplotlib")


def styled(obj, *, common=None, bokeh=None, mpl=None):
    """:func:`with_opts` for a plot as a whole, in the notebook style (:func:`notebook_tools`)."""
    return with_opts(obj, common=common, bokeh=notebook_tools(bokeh), mpl=mpl)


def fixed(obj, width, height, *, common=None, bokeh=None, mpl=None):
    """:func:`styled` at a fixed size of ``width`` x ``height`` pixels (no responsive collapse in a layout)."""
    return styled(obj, common=common,
                  bokeh={"width": int(width), "height": int(height), "responsive": False, **(bokeh or {})},
                  mpl={**mpl_size(int(width), int(height)), **(mpl or {})})


@verbose
def save_png(obj, path, *, dpi=100, verbose=None):
    """Save a HoloViews object as a PNG, rendered with the matplotlib backend.

    Bokeh's own PNG export needs selenium and a webdriver; the matplotlib
    backend renders the same HoloViews object without a browser.  Styling
    follows the matplotlib options these functions set (colours, sizes), so
    a PNG looks close to, not identical with, the interactive plot.

    Parameters
    ----------
    obj : HoloViews object
        Any view returned by :mod:`zuna_lab.viz.plots` (or a Layout of them).
    path : str | Path
        Output file; ``.png`` is appended when missing.
    dpi : int
        Resolution (dots per inch).
    verbose : bool | str | int | None
        The log level of this call, as in MNE (None: the current level; see :func:`zuna_lab.set_log_level`).

    Returns
    -------
    Path
        The written file.

    Examples
    --------
    >>> save_png(traces(rec), "report/traces.png")   # doctest: +SKIP
    """
    if not isinstance(obj, hv.core.dimension.ViewableElement) and not isinstance(obj, hv.core.Dimensioned):
        raise ZunaTypeError(f"save_png needs a HoloViews object, got {type(obj).__name__}.")
    path = Path(path)
    if path.suffix.lower() != ".png":
        path = path.with_name(path.name + ".png")
    path.parent.mkdir(parents=True, exist_ok=True)
    renderer = hv.renderer("matplotlib").instance(dpi=int(dpi), fig="png")
    renderer.save(obj, str(path.with_suffix("")), fmt="png")
    import matplotlib.pyplot as plt

    plt.close("all")
    return path
