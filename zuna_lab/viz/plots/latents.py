"""Latent-space health views: latent histogram, per-dimension moments, pairwise drift."""

from __future__ import annotations

import numpy as np
import xarray as xr

import holoviews as hv

from ...errors import ZunaValueError
from ._style import COLORS, fixed, styled, with_opts
from ...logs import verbose

__all__ = ["latent_histogram", "latent_moments", "drift_matrix"]


@verbose
def latent_histogram(emb, *, latent=None, bins=60, include_masked=False, width=440, height=320, verbose=None):
    """Histogram of visible-token latents against the N(0, 1) density.

    Parameters
    ----------
    emb : xr.Dataset | xr.DataArray
        An ``embed`` result or a DataArray with a ``latent`` dimension.
    latent : int | sequence of int | None
        Dimension(s) to pool (default: all 32).
    bins : int
        Histogram bins over [-5, 5] (values beyond are clipped into the edge bins).
    include_masked : bool
        Also use tokens hidden from the encoder.
    width, height : int
        Plot size in pixels (fixed: the bars stay visible in any layout).
    verbose : bool | str | int | None
        The log level of this call, as in MNE (None: the current level; see :func:`zuna_lab.set_log_level`).

    Returns
    -------
    hv.Overlay
        ``Histogram`` (density) * ``Curve`` of the N(0, 1) pdf.

    Examples
    --------
    >>> latent_histogram(emb, latent=3)       # doctest: +SKIP
    """
    from ...trust.health import latent_samples

    x = latent_samples(emb, include_masked=include_masked)
    if latent is not None:
        x = x.sel(latent=np.atleast_1d(latent))
    v = np.clip(np.asarray(x.values, float).ravel(), -5, 5)
    dens, edges = np.histogram(v, bins=int(bins), range=(-5, 5), density=True)
    grid = np.linspace(-5, 5, 301)
    pdf = np.exp(-0.5 * grid**2) / np.sqrt(2 * np.pi)
    which = "all dims" if latent is None else f"dim {', '.join(str(i) for i in np.atleast_1d(latent))}"
    hist = with_opts(hv.Histogram((edges, dens), kdims=["latent value"], vdims=["density"], label="latents"),
                 common={"alpha": 0.6, "color": COLORS["visible"]}, bokeh={"line_alpha": 0.2})
    curve = with_opts(hv.Curve((grid, pdf), "latent value", "density", label="N(0, 1)"),
                  common={"color": "black"}, bokeh={"line_width": 2}, mpl={"linewidth": 2})
    return fixed(hist * curve, width, height,
                 common={"title": f"latent histogram ({which}, n={v.size})", "xlabel": "latent value",
                         "ylabel": "density"}, bokeh={"xlim": (-5, 5), "legend_position": "top_right"})


@verbose
def latent_moments(data, *, width=660, height=320, verbose=None):
    """Per-dimension mean ± std of the latents, with the N(0, 1) targets.

    Parameters
    ----------
    data : xr.Dataset
        An :func:`~zuna_lab.trust.health.mmd_health` / ``latent_stats`` result
        (``mean``, ``std`` along ``latent``) or an ``embed`` result.
    width, height : int
        Plot size in pixels (fixed).
    verbose : bool | str | int | None
        The log level of this call, as in MNE (None: the current level; see :func:`zuna_lab.set_log_level`).

    Returns
    -------
    hv.Overlay
        Error bars (mean ± std), means coloured red for dimensions the health
        verdict flags, and reference lines at 0 and ±1.

    Examples
    --------
    >>> latent_moments(zl.mmd_health(emb))    # doctest: +SKIP
    """
    from ...trust.health import latent_stats

    if isinstance(data, (xr.Dataset, xr.DataArray)) and "embedding" in getattr(data, "data_vars", {}):
        data = latent_stats(data)
    elif isinstance(data, xr.DataArray):
        data = latent_stats(data)
    if not isinstance(data, xr.Dataset) or "mean" not in data or "std" not in data:
        raise ZunaValueError("latent_moments needs a health/latent_stats Dataset (mean, std) or an embed result.")
    lat = np.asarray(data["latent"].values)
    mean = np.asarray(data["mean"].values, float)
    std = np.asarray(data["std"].values, float)
    flagged = set(data.attrs.get("collapsed_dims", [])) | set(data.attrs.get("shifted_dims", []))
    colors = [COLORS["masked"] if int(d) in flagged else COLORS["hybrid"] for d in lat]
    import pandas as pd

    df = pd.DataFrame({"latent": lat, "mean": mean, "std": std, "color": colors})
    err = with_opts(hv.ErrorBars(df, kdims=["latent"], vdims=["mean", "std"]), common={"color": "#555555"})
    pts = with_opts(hv.Scatter(df, kdims=["latent"], vdims=["mean", "std", "color"]), common={"color": "color"},
                bokeh={"size": 7, "tools": ["hover"]}, mpl={"s": 30})
    ref = [with_opts(hv.HLine(y), common={"color": "#999999"}, bokeh={"line_dash": "dashed", "line_width": 1},
                 mpl={"linestyle": "--", "linewidth": 1}) for y in (-1.0, 0.0, 1.0)]
    title = "latent mean ± std per dimension"
    if "verdict" in data.attrs:
        title += f" — {data.attrs['verdict']}"
    lo = float(np.nanmin(np.r_[mean - std, -1.0]))
    hi = float(np.nanmax(np.r_[mean + std, 1.0]))
    pad = 0.08 * (hi - lo)
    return fixed(hv.Overlay(ref + [err, pts]), width, height,
                 common={"title": title, "ylabel": "latent value", "xlabel": "latent dimension",
                         "xlim": (float(lat.min()) - 1, float(lat.max()) + 1), "ylim": (lo - pad, hi + pad)})


@verbose
def drift_matrix(cmp, *, variable="mmd2", size=None, verbose=None):
    """Heat map of pairwise recording drift from :func:`~zuna_lab.trust.health.compare_recordings`.

    The recordings run in the same order along both axes, top to bottom and left to right, so a
    recording against itself (MMD² 0) is on the diagonal from the top left; each cell is written.

    Parameters
    ----------
    cmp : xr.Dataset
        ``compare_recordings`` result.
    variable : "mmd2" | "p_value"
        What to colour by.
    size : int | None
        Side of the square of cells in pixels (default: 110 per recording, 260 to 520).
    verbose : bool | str | int | None
        The log level of this call, as in MNE (None: the current level; see :func:`zuna_lab.set_log_level`).

    Returns
    -------
    hv.Overlay
        ``HeatMap`` * ``Labels`` (the values).

    Examples
    --------
    >>> drift_matrix(zl.health.compare_recordings({"a": e1, "b": e2}))   # doctest: +SKIP
    """
    if not isinstance(cmp, xr.Dataset) or variable not in cmp:
        raise ZunaValueError(f"drift_matrix needs a compare_recordings Dataset with {variable!r}.")
    names = [str(n) for n in cmp["recording"].values]
    values = np.asarray(cmp[variable].transpose("recording", "other").values, float)
    import pandas as pd

    df = pd.DataFrame([(a, b, values[i, j]) for i, a in enumerate(names) for j, b in enumerate(names)],
                      columns=["recording", "compared with", variable])
    top = np.nanmax(values) if np.isfinite(values).any() else 1.0
    df["text"] = [f"{v:.3g}" for v in df[variable]]
    df["ink"] = ["white" if v < 0.6 * top else "black" for v in df[variable]]   # readable on viridis
    label = {"mmd2": "MMD²", "p_value": "p-value"}.get(variable, variable)
    # HeatMap puts its first category at the bottom: the y axis inverted puts it on top (diagonal from the top left)
    hm = with_opts(hv.HeatMap(df, kdims=["compared with", "recording"], vdims=[hv.Dimension(variable, label=label)]),
                   common={"cmap": "viridis", "colorbar": True}, bokeh={"tools": ["hover"], "xrotation": 20})
    text = with_opts(hv.Labels(df, kdims=["compared with", "recording"], vdims=["text", "ink"]),
                     bokeh={"text_color": "ink", "text_font_size": "11pt"}, mpl={"color": "ink", "size": 10})
    side = int(size or min(520, max(260, 110 * len(names))))
    return styled(hm * text,
                  common={"title": f"pairwise {label} (0 on the diagonal)",
                          "invert_yaxis": True, "xlabel": "compared with", "ylabel": "recording"},
                  bokeh={"frame_width": side, "frame_height": side},
                  mpl={"fig_inches": (side + 260) / 100, "aspect": "equal"})
