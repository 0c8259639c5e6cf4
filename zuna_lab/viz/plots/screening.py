"""The screening map: channels × time, coloured by how badly the other channels predict each cell.

A view of :func:`zuna_lab.screen`'s report: a pure function of it, returning a HoloViews object
(bokeh and matplotlib options). Cells are epochs (``kind="badness"``: the largest robust z of the
criteria) or windows (``kind="window"``: the robust z of the prediction error in each window, what
the suggested segments come from); suggested bad channels are outlined in blue, suggested
``BAD_screen`` segments in black, channels already marked bad are grey.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

import holoviews as hv

from ...errors import ZunaTypeError, ZunaValueError
from ._style import COLUMN_WIDTH, styled, with_opts
from ...logs import verbose

__all__ = ["screen_map", "SCREEN_COLORS"]

#: Colours of the overlays (the cells use the ``YlOrRd`` colour map).
SCREEN_COLORS = {"suggested": "#1f4fd6", "segment": "#111111", "marked": "#9e9e9e"}
_KINDS = {"badness": ("badness", "badness (largest robust z of the criteria)"),
          "window": ("window_z", "prediction error per window (robust z)")}


def _check(report, kind, estimator):
    scores = getattr(report, "scores", report)
    if not isinstance(scores, xr.Dataset) or scores.attrs.get("result") != "screening":
        raise ZunaTypeError("screen_map needs the report of zuna_lab.screen (or its scores Dataset).")
    if kind not in _KINDS:
        raise ZunaValueError(f"kind must be one of {', '.join(map(repr, _KINDS))}, got {kind!r}.")
    estimators = [str(e) for e in scores["estimator"].values]
    estimator = estimators[0] if estimator is None else estimator
    if estimator not in estimators:
        raise ZunaValueError(f"estimator must be one of {', '.join(map(repr, estimators))}, got {estimator!r}.")
    return scores, estimator


def _grid(scores, kind, estimator):
    """(time edges, values (channel, cell)) of the heat map, cells in time order."""
    var, _ = _KINDS[kind]
    values = scores[var].sel({"estimator": estimator})
    starts = np.asarray(scores["epoch_start"].values, float)
    if kind == "badness":
        lengths = np.diff(np.r_[starts, starts[-1] + (starts[1] - starts[0] if len(starts) > 1 else 5.0)])
        return np.r_[starts, starts[-1] + lengths[-1]], np.asarray(values.transpose("channel", "epoch").values, float)
    offsets = np.asarray(scores["window_time"].values, float)
    width = float(scores.attrs.get("segment_window", offsets[1] - offsets[0] if len(offsets) > 1 else 0.5))
    z = np.asarray(values.transpose("channel", "epoch", "window").values, float).reshape(values.sizes["channel"], -1)
    times = (starts[:, None] + offsets[None, :]).ravel()
    order = np.argsort(times, kind="stable")
    times, z = times[order], z[:, order]
    keep = np.isfinite(z).any(axis=0)
    return np.r_[times[keep], times[keep][-1] + width] if keep.any() else np.array([0.0, width]), z[:, keep]


def _outlines(rows, label, color, dash, *, line_width):
    layer = hv.Rectangles(rows, kdims=["time", "row", "time_end", "row_end"], label=label)
    return with_opts(layer, bokeh={"fill_alpha": 0, "line_color": color, "line_width": line_width, "line_dash": dash},
                     mpl={"facecolor": "none", "edgecolor": color, "linewidth": line_width})


@verbose
def screen_map(report, *, estimator=None, kind="badness", vmax=None, max_width=COLUMN_WIDTH, height=None, title=None,
               verbose=None):
    """Channels × time heat map of a screening, with the suggested bad channels and segments drawn on it.

    Parameters
    ----------
    report : ScreenReport | xarray.Dataset
        From :func:`zuna_lab.screen` (a scores Dataset alone draws no suggestions).
    estimator : str | None
        Which estimator's scores (default: the one that decided).
    kind : {"badness", "window"}
        One cell per epoch and channel coloured by its badness (the largest robust z of the
        criteria, what decides bad channels), or one per window coloured by the robust z of its
        prediction error (what decides bad segments).
    vmax : float | None
        Top of the colour scale (default: twice the threshold that applies).
    max_width : int
        The plot stretches to the notebook column up to this many pixels.
    height : int | None
        Pixels (default: 13 per channel + 130, at least 320).
    title : str | None
    verbose : bool | str | int | None
        The log level of this call, as in MNE (None: the current level; see :func:`zuna_lab.set_log_level`).

    Returns
    -------
    hv.Overlay
        ``QuadMesh`` of the scores, blue outlines (suggested bad channels), black dashed outlines
        (suggested ``BAD_screen`` segments), grey rows (already marked bad); wheel zoom available,
        not active.

    Examples
    --------
    >>> import zuna_lab.viz.plots as zp
    >>> zp.screen_map(zl.screen(raw, model=model))            # doctest: +SKIP
    """
    scores, estimator = _check(report, kind, estimator)
    names = [str(c) for c in scores["channel"].values]
    n = len(names)
    edges, values = _grid(scores, kind, estimator)
    threshold = float(scores.attrs["threshold" if kind == "badness" else "segment_threshold"])
    vmax = 2 * threshold if vmax is None else float(vmax)
    rows = np.arange(n + 1) - 0.5
    _, label = _KINDS[kind]
    mesh = hv.QuadMesh((edges, rows, values[::-1]), kdims=["time", "row"], vdims=[label.split(" (")[0]])
    # matplotlib (PNG) places an overlay's colour bar over the axes: there the title gives the scale instead
    layers = [with_opts(mesh, common={"cmap": "YlOrRd", "clim": (0.0, vmax)},
                        bokeh={"tools": ["hover"], "colorbar": True, "colorbar_opts": {"title": label}},
                        mpl={"colorbar": False})]
    row_of = {name: n - 1 - i for i, name in enumerate(names)}
    start, stop = float(edges[0]), float(edges[-1])
    marked = [name for name, m in zip(names, scores["marked"].values) if m] if "marked" in scores.coords else []
    if marked:
        grey = hv.Rectangles([(start, row_of[c] - 0.5, stop, row_of[c] + 0.5) for c in marked],
                             kdims=["time", "row", "time_end", "row_end"], label="already marked bad (not scored)")
        layers.append(with_opts(grey, bokeh={"fill_color": SCREEN_COLORS["marked"], "line_alpha": 0, "fill_alpha": 0.6},
                                mpl={"facecolor": SCREEN_COLORS["marked"], "edgecolor": "none"}))
    suggested = list(getattr(report, "bad_channels", []))
    if suggested:
        layers.append(_outlines([(start, row_of[c] - 0.5, stop, row_of[c] + 0.5) for c in suggested],
                                "suggested bad channel", SCREEN_COLORS["suggested"], "solid", line_width=2.5))
    segments = list(getattr(report, "segments", []))
    if segments:
        layers.append(_outlines([(a, row_of[c] - 0.5, b, row_of[c] + 0.5) for a, b, c in segments],
                                "suggested BAD_screen segment", SCREEN_COLORS["segment"], "dashed", line_width=2))
    height = int(height or max(320, 13 * n + 130))
    decided = scores.attrs.get("decided_by", estimator)
    # the Bokeh title short enough for the plot's width (the colour bar's title spells the scale out)
    head = f"screening, {estimator}" + (" (decides)" if estimator == decided else "")
    short = {"badness": "badness", "window": "window error z"}[kind]
    given, title = title, title or f"{head}: {short} · threshold {threshold:g}"
    ticks = [(float(row_of[name]), name) for name in names]
    return styled(hv.Overlay(layers), common={"xlabel": "time (s)", "ylabel": "channel",
                                              "yticks": ticks, "xlim": (start, stop), "ylim": (-0.5, n - 0.5)},
                  bokeh={"responsive": True, "max_width": int(max_width), "min_width": 360, "height": height,
                         "tools": ["hover", "wheel_zoom"], "show_legend": True,
                         "legend_position": "bottom", "legend_cols": 3, "toolbar": "above", "title": title,
                         "fontsize": {"yticks": "8pt" if n > 32 else "9pt"}},
                  mpl={"fig_inches": (int(max_width) / 100, height / 100), "aspect": "auto", "show_legend": True,
                       "legend_position": "right",
                       "title": given or f"{head}: {label} · threshold {threshold:g} (colour: 0 to {vmax:g}, YlOrRd)"})
