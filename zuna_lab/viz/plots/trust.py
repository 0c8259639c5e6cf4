"""Trust on your own recording: the dropout curve, which estimator wins where, the reliability diagram, the montage map.

Views of :func:`zuna_lab.evaluate_dropout` scores and of a :func:`zuna_lab.check_montage` report;
pure functions of their input, returning HoloViews objects (bokeh and matplotlib options). RMSE
is drawn in µV.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

import holoviews as hv

from ...errors import ZunaTypeError, ZunaValueError
from ..projections import scalp_coords
from ._style import label_points, mpl_size, styled, with_opts
from ...logs import verbose

__all__ = ["dropout_curve", "winners_map", "reliability_diagram", "montage_map", "ESTIMATOR_COLORS", "STATUS_COLORS"]

#: ZUNA in red and the spline in magenta, as in the ZUNA paper's figures.
ESTIMATOR_COLORS = {"zuna": "#d62728", "spline": "#c218c2", "not scored": "#dddddd"}
#: Colours of the montage doctor's channel status.
STATUS_COLORS = {"ok": "#2ca02c", "cleaned": "#1f77b4", "problem": "#ff7f0e", "dropped": "#d62728"}
_METRICS = {"nmse": ("NMSE", 1.0), "correlation": ("correlation", 1.0), "rmse": ("RMSE (µV)", 1e6)}


def _check_scores(scores, metric):
    if not isinstance(scores, xr.Dataset) or "nmse" not in scores or "estimator" not in scores.dims:
        raise ZunaTypeError("Pass the Dataset returned by zuna_lab.evaluate_dropout.")
    if metric not in _METRICS:
        raise ZunaValueError(f"metric must be one of {', '.join(map(repr, _METRICS))}, got {metric!r}.")
    return _METRICS[metric]


def _outline():
    angle = np.linspace(0, 2 * np.pi, 181)
    nose = np.array([[-0.12, 0.992], [0.0, 1.15], [0.12, 0.992]])
    return hv.Path([np.column_stack([np.cos(angle), np.sin(angle)]), nose], kdims=["x", "y"])


def _scalp_overlay(df, *, color, hover, size, title):
    """Outline, points coloured by ``df[color]`` (legend by ``df['label']``), names."""
    layers = [with_opts(_outline(), common={"color": "#333333"}, bokeh={"line_width": 2}, mpl={"linewidth": 2})]
    marker, labels = label_points(df)
    for label, part in df.groupby("label", sort=False):
        points = hv.Points(part, kdims=["x", "y"], vdims=["channel", *hover, color], label=str(label))
        layers.append(with_opts(points, common={"color": color},
                                bokeh={"size": marker, "line_color": "#222222", "tools": ["hover"]},
                                mpl={"s": marker ** 2 / 2}))
    layers.append(labels)
    return styled(hv.Overlay(layers), common={"xlim": (-1.3, 1.3), "ylim": (-1.3, 1.3), "xaxis": None,
                                              "yaxis": None, "title": title},
                  bokeh={"width": size, "height": size, "legend_position": "bottom_right", "toolbar": "above"},
                  mpl={**mpl_size(size, size), "aspect": "equal", "legend_position": "bottom_right"})


@verbose
def dropout_curve(scores, *, metric="nmse", logy=None, width=520, height=340, title=None, verbose=None):
    """Error against the fraction of channels hidden, ZUNA and the spline, with the spread over repeats.

    Parameters
    ----------
    scores : xarray.Dataset
        From :func:`zuna_lab.evaluate_dropout` with ``fraction=[...]``.
    metric : {"nmse", "correlation", "rmse"}
        What to draw (RMSE in µV).
    logy : bool | None
        Log y axis; None: for NMSE and RMSE.
    width, height : int
        Pixels.
    title : str | None
    verbose : bool | str | int | None
        The log level of this call, as in MNE (None: the current level; see :func:`zuna_lab.set_log_level`).

    Returns
    -------
    hv.Overlay
        Per estimator a line through the mean over repeats (each repeat: the mean over its hidden
        channels), a band from the lowest to the highest repeat, and the repeats as dots.

    Examples
    --------
    >>> dropout_curve(zl.evaluate_dropout(raw, model, fraction=[0.1, 0.3, 0.5]))   # doctest: +SKIP
    """
    label, factor = _check_scores(scores, metric)
    if "fraction" not in scores.dims:
        raise ZunaValueError("A dropout curve needs scores over fractions; run evaluate_dropout with fraction=[...].")
    per_repeat = scores[metric].mean("channel") * factor                 # (estimator, fraction, repeat)
    logy = metric != "correlation" if logy is None else bool(logy)
    layers = []
    for estimator in scores["estimator"].values:
        one = per_repeat.sel(estimator=estimator)
        color = ESTIMATOR_COLORS.get(str(estimator), "#444444")
        frame = pd.DataFrame({"fraction": one["fraction"].values, "mean": one.mean("repeat").values,
                              "low": one.min("repeat").values, "high": one.max("repeat").values})
        dots = one.to_dataframe(name=metric).reset_index()[["fraction", metric]].dropna()
        layers += [
            with_opts(hv.Area(frame, kdims=["fraction"], vdims=["low", "high"]),
                      common={"color": color, "alpha": 0.2}, bokeh={"line_alpha": 0}),
            with_opts(hv.Curve(frame, kdims=["fraction"], vdims=["mean"], label=str(estimator)),
                      common={"color": color}, bokeh={"line_width": 3, "tools": ["hover"]}, mpl={"linewidth": 3}),
            with_opts(hv.Scatter(dots, kdims=["fraction"], vdims=[metric]), common={"color": color},
                      bokeh={"size": 5, "alpha": 0.6}, mpl={"s": 12, "alpha": 0.6}),
        ]
    fractions = [float(f) for f in scores["fraction"].values]
    values = per_repeat.values[np.isfinite(per_repeat.values)]
    ticks = {"xticks": [(f, f"{f:g}") for f in fractions]}
    if logy and values.size and (values > 0).all():
        ticks["yticks"] = log_ticks(values.min(), values.max())
    return styled(hv.Overlay(layers), common={"xlabel": "fraction of channels hidden", "ylabel": label,
                                              "logy": logy, "title": title or f"{label} as channels drop",
                                              "padding": 0.08, **ticks},   # end points whole, not cut in half
                  bokeh={"width": width, "height": height, "legend_position": "top_left", "show_grid": True},
                  mpl={**mpl_size(width, height), "legend_position": "top_left", "show_grid": True})


def log_ticks(low, high):
    """Labelled ticks of a log axis from ``low`` to ``high``: 1-2-5 per decade, every decade when they would crowd."""
    lo, hi = np.floor(np.log10(low)), np.ceil(np.log10(high))
    steps = (1, 2, 5) if hi - lo <= 3 else (1,)
    ticks = [m * 10.0 ** e for e in np.arange(lo, hi + 1) for m in steps]
    inside = [t for t in ticks if low / 1.5 <= t <= high * 1.5]
    if len(inside) < 3:   # less than a decade: finer steps
        inside = [t for t in (m * 10.0 ** e for e in np.arange(lo, hi + 1) for m in range(1, 10))
                  if low / 1.2 <= t <= high * 1.2]
    return [(float(t), f"{t:g}") for t in inside]


@verbose
def winners_map(scores, *, metric="nmse", size=420, title=None, verbose=None):
    """Electrodes on the scalp coloured by the estimator with the better mean score there (grey: not scored).

    Parameters
    ----------
    scores : xarray.Dataset
        From :func:`zuna_lab.evaluate_dropout` with both estimators (one channel at a time shows every channel).
    metric : {"nmse", "correlation", "rmse"}
        Lower NMSE / RMSE, higher correlation wins.
    size : int
        Width and height in pixels.
    title : str | None
    verbose : bool | str | int | None
        The log level of this call, as in MNE (None: the current level; see :func:`zuna_lab.set_log_level`).

    Returns
    -------
    hv.Overlay
        Head outline, points (hover: both estimators' mean scores), names.

    Examples
    --------
    >>> winners_map(zl.evaluate_dropout(raw, model))   # doctest: +SKIP
    """
    from ...trust.evaluation import winner

    label, factor = _check_scores(scores, metric)
    best = winner(scores, metric=metric)
    mean = scores[metric].mean([d for d in scores[metric].dims if d not in ("estimator", "channel")]) * factor
    xy = scalp_coords(scores)
    won = [str(b) or "not scored" for b in best.values]
    df = pd.DataFrame({"x": xy.sel(axis="x").values, "y": xy.sel(axis="y").values,
                       "channel": [str(c) for c in scores["channel"].values], "label": won,
                       "color": [ESTIMATOR_COLORS.get(w, "#444444") for w in won]})
    hover = []
    for estimator in scores["estimator"].values:
        df[f"{estimator} {label}"] = mean.sel(estimator=estimator).values
        hover.append(f"{estimator} {label}")
    counts = pd.Series(won).value_counts()
    text = ", ".join(f"{m} {counts.get(m, 0)}" for m in scores["estimator"].values)
    return _scalp_overlay(df, color="color", hover=hover, size=size,
                          title=title or f"lower {label} wins: {text}" if metric != "correlation"
                          else title or f"higher correlation wins: {text}")


@verbose
def reliability_diagram(scores, *, width=420, height=420, title=None, verbose=None):
    """Observed coverage of ZUNA's intervals against their nominal level; calibrated draws lie on the diagonal.

    Parameters
    ----------
    scores : xarray.Dataset
        From :func:`zuna_lab.evaluate_dropout` with ZUNA and ``n_samples >= 2``.
    width, height : int
    title : str | None
    verbose : bool | str | int | None
        The log level of this call, as in MNE (None: the current level; see :func:`zuna_lab.set_log_level`).

    Returns
    -------
    hv.Overlay
        The diagonal, the observed coverage of the raw spread, and after ``calibration_scale``
        (fitted on the same cells: in-sample, so optimistic).

    Examples
    --------
    >>> reliability_diagram(zl.evaluate_dropout(raw, model, fraction=0.2, n_samples=4))   # doctest: +SKIP
    """
    _check_scores(scores, "nmse")
    if "zuna" not in scores["estimator"].values or scores["reliability"].sel(estimator="zuna").isnull().all():
        raise ZunaValueError("A reliability diagram needs ZUNA's spread; run evaluate_dropout with n_samples >= 2.")
    levels = scores["level"].values
    raw = scores["reliability"].sel(estimator="zuna").values
    calibrated = scores["reliability_calibrated"].sel(estimator="zuna").values
    scale = float(scores["calibration_scale"].sel(estimator="zuna"))
    diagonal = with_opts(hv.Curve(([0, 1], [0, 1]), "nominal", "observed", label="calibrated"),
                         common={"color": "#888888"}, bokeh={"line_dash": "dashed"}, mpl={"linestyle": "--"})
    observed = hv.Curve((levels, raw), "nominal", "observed", label="ZUNA's spread")
    after = hv.Curve((levels, calibrated), "nominal", "observed", label=f"× {scale:.2f} (in-sample)")
    layers = [diagonal,
              with_opts(observed, common={"color": ESTIMATOR_COLORS["zuna"]}, bokeh={"line_width": 3}, mpl={"linewidth": 3}),
              with_opts(hv.Scatter((levels, raw), "nominal", "observed"), common={"color": ESTIMATOR_COLORS["zuna"]},
                        bokeh={"size": 7}, mpl={"s": 25}),
              with_opts(after, common={"color": "#1f77b4"}, bokeh={"line_width": 2, "line_dash": "dotted"},
                        mpl={"linewidth": 2, "linestyle": ":"})]
    n = scores.attrs.get("n_samples", "?")
    return styled(hv.Overlay(layers), common={"xlim": (0, 1), "ylim": (0, 1), "xlabel": "nominal coverage",
                                              "ylabel": "observed coverage",
                                              "title": title or f"reliability of ZUNA's spread ({n} draws)"},
                  bokeh={"width": width, "height": height, "legend_position": "top_left", "show_grid": True},
                  mpl={**mpl_size(width, height), "legend_position": "top_left", "show_grid": True})


@verbose
def montage_map(report, *, size=420, title=None, verbose=None):
    """The montage doctor's view: EEG electrodes on the scalp coloured by status (ok, cleaned, problem).

    Positions are those ZUNA would get (``report.table`` x, y, z); channels without one (dropped)
    and non-EEG channels are named in the title instead.

    Parameters
    ----------
    report : zuna_lab.trust.doctor.MontageReport
        From :func:`zuna_lab.check_montage`.
    size : int
    title : str | None
    verbose : bool | str | int | None
        The log level of this call, as in MNE (None: the current level; see :func:`zuna_lab.set_log_level`).

    Returns
    -------
    hv.Overlay
        Head outline, points (hover: standard name, status, problem), names.

    Examples
    --------
    >>> montage_map(zl.check_montage("subject01.edf"))   # doctest: +SKIP
    """
    table = getattr(report, "table", None)
    if not isinstance(table, pd.DataFrame) or not {"channel", "status", "x", "y", "z"} <= set(table.columns):
        raise ZunaTypeError("Pass the report returned by zuna_lab.check_montage.")
    eeg = table[table["status"] != "not EEG"]
    placed = eeg[np.isfinite(eeg[["x", "y", "z"]].to_numpy(float)).all(axis=1)]
    xy = scalp_coords({str(c): p for c, p in zip(placed["channel"], placed[["x", "y", "z"]].to_numpy(float))})
    df = pd.DataFrame({"x": xy.sel(axis="x").values, "y": xy.sel(axis="y").values,
                       "channel": placed["channel"].astype(str).values, "label": placed["status"].values,
                       "standard": placed["standard"].values, "problem": placed["problem"].values,
                       "color": [STATUS_COLORS.get(s, "#444444") for s in placed["status"]]})
    missing = [str(c) for c in eeg["channel"] if str(c) not in set(df["channel"])]
    text = title or f"montage: {int((eeg['status'].isin(['ok', 'cleaned'])).sum())} of {len(eeg)} EEG channels ok"
    if missing and title is None:
        text += f"; not drawn (no position): {', '.join(missing[:6])}{' …' if len(missing) > 6 else ''}"
    return _scalp_overlay(df, color="color", hover=["standard", "label", "problem"], size=size, title=text)
