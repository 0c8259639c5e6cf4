"""What every view shares: the two HoloViews backends, colours, per-backend options, PNG export."""

from __future__ import annotations

from pathlib import Path

import holoviews as hv
import holoviews.plotting.bokeh  # noqa: F401  (registers the bokeh backend first: it stays current)

from ...errors import ZunaTypeError
from ..projections import REGIONS

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


def mpl_size(width, height):
    """matplotlib options for a plot of ``width`` x ``height`` bokeh pixels."""
    return {"fig_inches": width / 100, "aspect": width / height}


def with_opts(obj, *, common=None, bokeh=None, mpl=None):
    """Apply options for the bokeh and the matplotlib backend."""
    common = common or {}
    obj = obj.opts(**common, **(bokeh or {}), backend="bokeh")
    return obj.opts(**common, **(mpl or {}), backend="matplotlib")


def fixed(obj, width, height, *, common=None, bokeh=None, mpl=None):
    """:func:`with_opts` at a fixed size of ``width`` x ``height`` pixels (no responsive collapse in a layout)."""
    return with_opts(obj, common=common,
                     bokeh={"width": int(width), "height": int(height), "responsive": False, **(bokeh or {})},
                     mpl={**mpl_size(int(width), int(height)), **(mpl or {})})


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
        Unused; accepted for MNE-like signatures.

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
