"""HoloViews views of zuna_lab results (bokeh backend; PNG through matplotlib).

Every function takes data (result Datasets/DataArrays, volts inside) and
keyword options, and returns a HoloViews object; nothing here holds state.
Amplitudes are shown in µV.  Options are set for both the bokeh backend
(interactive, notebooks and Panel) and the matplotlib backend (used by
:func:`save_png`, which needs no browser or webdriver).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import xarray as xr

import holoviews as hv
import holoviews.plotting.bokeh  # noqa: F401  (registers the bokeh backend first: it stays current)

from ..errors import ZunaTypeError, ZunaValueError

__all__ = [
    "channel_region",
    "minmax_downsample",
    "traces",
    "scalp_coords",
    "scalp",
    "latent_histogram",
    "latent_moments",
    "drift_matrix",
    "embedding_coords",
    "embedding_map",
    "save_png",
    "REGIONS",
    "COLORS",
]

TOKEN_S = 0.125
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
REGIONS = ("frontal", "central", "temporal", "parietal", "occipital", "other")
_REGION_COLORS = dict(zip(REGIONS, ["#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#d62728", "#7f7f7f"]))
#: Sphere origin (head frame, m) for the scalp projection: least-squares sphere of the
#: standard_1020 montage in MNE's head frame, x set to 0 (left-right symmetric).
SPHERE_ORIGIN = np.array([0.0, 0.0144, 0.037])

# the matplotlib backend is registered too (for save_png); bokeh stays the current backend
_current = hv.Store.current_backend
import holoviews.plotting.mpl  # noqa: E402,F401

hv.Store.set_current_backend(_current)


def _mpl_size(width, height):
    return {"fig_inches": width / 100, "aspect": width / height}


def _opts(obj, *, common=None, bokeh=None, mpl=None):
    """Apply options for the bokeh and the matplotlib backend."""
    common = common or {}
    obj = obj.opts(**common, **(bokeh or {}), backend="bokeh")
    return obj.opts(**common, **(mpl or {}), backend="matplotlib")


# --------------------------------------------------------------------------- helpers
_REGION_RULES = {
    "FP": "frontal", "AF": "frontal", "F": "frontal", "FT": "temporal", "FC": "central",
    "T": "temporal", "TP": "temporal", "C": "central", "CP": "central", "P": "parietal",
    "PO": "parietal", "O": "occipital", "OI": "occipital", "I": "occipital", "CB": "occipital",
    "A": "temporal", "M": "temporal",
}


def channel_region(name):
    """Scalp region of a 10-20/10-10/10-05 channel name.

    Parameters
    ----------
    name : str
        A channel name such as ``"Fp1"``, ``"EEG T7-REF"``, ``"POz"``.

    Returns
    -------
    str
        One of ``"frontal"``, ``"central"``, ``"temporal"``, ``"parietal"``,
        ``"occipital"`` or ``"other"`` (unrecognised names).  Fronto-central
        (FC) and centro-parietal (CP) count as central, fronto-temporal and
        temporo-parietal as temporal, parieto-occipital as parietal, mastoids
        and ear lobes (A1, M2) as temporal.

    Examples
    --------
    >>> channel_region("Fp1"), channel_region("EEG T7-REF"), channel_region("POz")
    ('frontal', 'temporal', 'parietal')
    """
    s = str(name).strip().upper()
    s = re.sub(r"^(EEG|EXG)[\s_:-]*", "", s)
    s = re.split(r"[-\s/_.]", s)[0]
    m = re.fullmatch(r"([A-Z]+?)(\d+H?|Z|)", s)
    if not m:
        return "other"
    letters = m.group(1)
    for n in (len(letters), 2, 1):
        region = _REGION_RULES.get(letters[:n])
        if region:
            return region
    return "other"


def minmax_downsample(t, y, max_points):
    """Min/max decimation of a trace that keeps every peak visible.

    Parameters
    ----------
    t : array, shape (n,)
        Sample times.
    y : array, shape (..., n)
        Values; leading dimensions (channels) share the same bins.
    max_points : int
        Upper bound on the number of output points (two per bin).

    Returns
    -------
    t2 : array, shape (m,)
    y2 : array, shape (..., m)
        ``m <= max_points``; unchanged when ``n <= max_points``.

    Examples
    --------
    >>> t2, y2 = minmax_downsample(np.arange(10000), np.sin(np.arange(10000)), 1000)
    >>> len(t2) <= 1000
    True
    """
    t = np.asarray(t)
    y = np.asarray(y)
    n = t.shape[0]
    if max_points is None or n <= max_points:
        return t, y
    n_bins = max(1, int(max_points) // 2)
    edges = np.linspace(0, n, n_bins + 1).astype(int)
    lead = y.shape[:-1]
    t_out = np.empty(2 * n_bins)
    y_out = np.empty(lead + (2 * n_bins,), dtype=float)
    for b in range(n_bins):
        s, e = edges[b], max(edges[b + 1], edges[b] + 1)
        seg = y[..., s:e]
        with np.errstate(invalid="ignore"):
            imin = np.nanargmin(np.where(np.isnan(seg), np.inf, seg), axis=-1)
            imax = np.nanargmax(np.where(np.isnan(seg), -np.inf, seg), axis=-1)
        lo = np.take_along_axis(seg, imin[..., None], -1)[..., 0]
        hi = np.take_along_axis(seg, imax[..., None], -1)[..., 0]
        first = imin <= imax
        y_out[..., 2 * b] = np.where(first, lo, hi)
        y_out[..., 2 * b + 1] = np.where(first, hi, lo)
        t_out[2 * b] = t[s]
        t_out[2 * b + 1] = t[e - 1]
    return t_out, y_out


def _mask_spans(row, tstart, tok):
    """Merge consecutive True tokens into (t0, t1) spans."""
    spans = []
    i, n = 0, len(row)
    while i < n:
        if row[i]:
            j = i
            while j + 1 < n and row[j + 1]:
                j += 1
            spans.append((tstart[i], tstart[j] + tok))
            i = j + 1
        else:
            i += 1
    return spans


def _select_epoch(obj, epoch, sample):
    if "epoch" in obj.dims:
        obj = obj.isel(epoch=int(epoch))
    if "sample" in obj.dims:
        obj = obj.mean("sample") if sample == "mean" else obj.isel(sample=int(sample))
    return obj


# --------------------------------------------------------------------------- traces
def traces(data, *, epoch=0, channels=None, kinds=None, sample=0, spacing=None, max_points=2000,
           show_mask=True, mask=None, mask_label="masked", highlight=(), width=900, height=None, responsive=False,
           title=None, verbose=None):
    """Stacked multi-channel traces (µV), original vs reconstruction, masked cells shaded.

    Parameters
    ----------
    data : xr.Dataset | xr.DataArray
        A ``reconstruct`` result, or a DataArray of volts along
        ``(channel, time)`` or ``(epoch, channel, time)``.
    epoch : int
        Epoch index to show (when there is an ``epoch`` dimension).
    channels : list of str | None
        Channels to show, top to bottom (default: all).
    kinds : sequence of str | None
        Variables to overlay, drawn in this order (the last on top); default
        ``("original", "reconstruction")`` for a Dataset (those present).
    sample : int | "mean"
        Which sample to draw when there is a ``sample`` dimension.
    spacing : float | None
        Vertical distance between channels in µV (default: 6 robust SDs of the data).
    max_points : int | None
        Min/max downsampling bound per channel (keeps peaks on long recordings).
    show_mask : bool
        Shade the masked (infilled) token cells.
    mask : xr.DataArray | None
        A ``(channel, token)`` bool mask to shade instead of ``data.mask``
        (e.g. the pending selection before a run); needs ``token_time`` or
        0.125 s tokens.
    mask_label : str
        Legend label of the shaded cells (e.g. "selected" for a selection).
    highlight : sequence of str
        Channel labels drawn in the highlight colour.
    width, height : int
        Plot size in pixels (height default: 40 px per channel + 80).
    responsive : bool
        Stretch to the container's width (bokeh; ``width`` then only sizes PNGs).
    title : str | None
        Plot title.
    verbose : bool | str | int | None
        Unused; accepted for MNE-like signatures.

    Returns
    -------
    hv.Overlay
        Paths per kind, mask rectangles and channel tick labels.

    Examples
    --------
    >>> import zuna_lab.viz.plots as zp
    >>> zp.traces(rec, epoch=0, kinds=("original", "hybrid"))   # doctest: +SKIP
    """
    if isinstance(data, xr.Dataset):
        if kinds is None:
            kinds = tuple(k for k in ("original", "reconstruction") if k in data)
        missing = [k for k in kinds if k not in data]
        if missing or not kinds:
            raise ZunaValueError(
                f"The Dataset has no variable(s) {missing or list(kinds)}; it has {list(data.data_vars)}."
            )
        arrays = {k: data[k] for k in kinds}
        if mask is None and show_mask and "mask" in data:
            mask = data["mask"]
    elif isinstance(data, xr.DataArray):
        arrays = {data.name or "original": data}
    else:
        raise ZunaTypeError(f"traces needs an xarray Dataset or DataArray, got {type(data).__name__}.")
    first = next(iter(arrays.values()))
    for da in arrays.values():
        if "channel" not in da.dims or "time" not in da.dims:
            raise ZunaValueError(f"traces needs 'channel' and 'time' dimensions, got {tuple(da.dims)}.")
    if "epoch" in first.dims and not 0 <= int(epoch) < first.sizes["epoch"]:
        raise ZunaValueError(f"epoch {epoch} is out of range: there are {first.sizes['epoch']} epochs.")
    arrays = {k: _select_epoch(v, epoch, sample).transpose("channel", "time") for k, v in arrays.items()}
    names = [str(c) for c in first["channel"].values]
    if channels is not None:
        unknown = [c for c in channels if c not in names]
        if unknown:
            raise ZunaValueError(f"Unknown channel(s) {unknown}; the data has {names}.")
        names = list(channels)
        arrays = {k: v.sel(channel=names) for k, v in arrays.items()}
    t = np.asarray(first["time"].values, dtype=float)
    ref = arrays.get("original", next(iter(arrays.values())))  # spacing and highlight follow the original
    base = np.asarray(ref.values, dtype=float) * 1e6
    if spacing is None:
        med = np.nanmedian(base, axis=-1, keepdims=True)
        mad = np.nanmedian(np.abs(base - med), axis=-1)
        rs = 1.4826 * np.nanmedian(mad) if np.isfinite(mad).any() else 1.0
        spacing = float(6 * rs) if rs > 0 else 1.0
    nch = len(names)
    offsets = (nch - 1 - np.arange(nch)) * spacing
    layers = []
    if mask is not None and show_mask:
        m = mask
        if "epoch" in m.dims:
            m = m.isel(epoch=int(epoch))
        m = m.sel(channel=names) if "channel" in m.dims else m
        if "token_time" in m.coords:
            tstart = np.asarray(m["token_time"].values, float)
        else:
            tstart = np.arange(m.sizes["token"]) * TOKEN_S
        rects = []
        mv = np.asarray(m.transpose("channel", "token").values, bool)
        for i in range(nch):
            for t0, t1 in _mask_spans(mv[i], tstart, TOKEN_S):
                rects.append((t0, offsets[i] - spacing / 2, t1, offsets[i] + spacing / 2))
        if rects:  # nothing shaded: no empty legend entry
            layers.append(_opts(
                hv.Rectangles(rects, kdims=["time", "amplitude", "time_end", "amplitude_end"], label=mask_label),
                common={"alpha": 0.5}, bokeh={"color": COLORS["mask_fill"], "line_alpha": 0},
                mpl={"facecolor": COLORS["mask_fill"], "edgecolor": "none"},
            ))
    for kind, da in arrays.items():
        vals = np.asarray(da.values, dtype=float) * 1e6
        tt, vv = minmax_downsample(t, vals, max_points)
        paths = [np.column_stack([tt, vv[i] + offsets[i]]) for i in range(nch)]
        color = COLORS.get(kind, "#555555")
        lw = 1.0 if kind == "original" else 1.2
        layers.append(_opts(
            hv.Path(paths, kdims=["time", "amplitude"], label=kind),
            common={"color": color, "linewidth": lw} if False else {"color": color},
            bokeh={"line_width": lw}, mpl={"linewidth": lw},
        ))
    if highlight:
        hl = [i for i, n in enumerate(names) if n in set(highlight)]
        vals = base[hl]
        tt, vv = minmax_downsample(t, vals, max_points)
        layers.append(_opts(hv.Path([np.column_stack([tt, vv[j] + offsets[i]]) for j, i in enumerate(hl)],
                                    kdims=["time", "amplitude"], label="selected"),
                            common={"color": COLORS["selected"]}, bokeh={"line_width": 1.5}))
    ticks = [(float(o), n) for o, n in zip(offsets, names)]
    if title is None:
        title = f"epoch {epoch}" if "epoch" in first.dims else ""
        title += f" · channel spacing {spacing:.3g} µV"
    height = height or int(40 * nch + 80)
    ov = hv.Overlay(layers)
    ov = _opts(
        ov,
        common={"title": title, "yticks": ticks, "xlabel": "time (s)", "ylabel": "µV (stacked)"},
        bokeh={**({"responsive": True} if responsive else {"width": width}), "height": height,
               "show_legend": True, "legend_position": "top_right", "active_tools": ["wheel_zoom"]},
        mpl={**_mpl_size(width, height), "show_legend": True},
    )
    return ov


# --------------------------------------------------------------------------- scalp
def _positions_from(data):
    """channel names and (n, 3) positions from a Dataset/DataArray/Raw/Info/dict."""
    if isinstance(data, (xr.Dataset, xr.DataArray)):
        from ..datasets import channel_positions

        try:
            pos = channel_positions(data)
        except ValueError:
            raise ZunaValueError("The data has no electrode positions (ch_x, ch_y, ch_z channel coordinates).") from None
        return [str(c) for c in data["channel"].values], pos
    if isinstance(data, dict):
        return [str(k) for k in data], np.asarray(list(data.values()), float)
    info = getattr(data, "info", data)
    if hasattr(info, "get") and "chs" in info:
        chs = [c for c in info["chs"]]
        return [c["ch_name"] for c in chs], np.array([c["loc"][:3] for c in chs], float)
    raise ZunaTypeError(
        f"Cannot read electrode positions from {type(data).__name__}; pass a result Dataset, "
        "an mne Raw/Info or a dict of name -> (x, y, z) metres."
    )


def scalp_coords(data, *, origin=None, verbose=None):
    """Top-view 2-D electrode coordinates (azimuthal equidistant projection).

    Parameters
    ----------
    data : xr.Dataset | xr.DataArray | mne.io.Raw | mne.Info | dict
        Anything with electrode positions in metres in the head frame.
    origin : array-like of 3 floats | None
        Projection centre (default :data:`SPHERE_ORIGIN`).
    verbose : bool | str | int | None
        Unused; accepted for MNE-like signatures.

    Returns
    -------
    xr.DataArray
        ``(channel, axis)`` with ``axis = ["x", "y"]``: the head circle has
        radius 1, the nose points to +y, the ear-level ring (90° from the
        vertex) lies on the circle.  Channels without a position are NaN.

    Examples
    --------
    >>> xy = scalp_coords(rec)                 # doctest: +SKIP
    >>> xy.sel(channel="Cz").values            # doctest: +SKIP
    array([0., 0.1])
    """
    names, pos = _positions_from(data)
    o = SPHERE_ORIGIN if origin is None else np.asarray(origin, float)
    p = pos - o
    r = np.linalg.norm(p, axis=1)
    bad = ~np.isfinite(pos).all(axis=1) | (np.abs(pos).sum(axis=1) == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        phi = np.arccos(np.clip(p[:, 2] / r, -1, 1))
        theta = np.arctan2(p[:, 1], p[:, 0])
    rr = phi / (np.pi / 2)
    xy = np.column_stack([rr * np.cos(theta), rr * np.sin(theta)])
    xy[bad] = np.nan
    return xr.DataArray(xy, dims=("channel", "axis"), coords={"channel": names, "axis": ["x", "y"]},
                        name="scalp_xy")


def _head_outline():
    a = np.linspace(0, 2 * np.pi, 181)
    circle = np.column_stack([np.cos(a), np.sin(a)])
    nose = np.array([[-0.12, 0.992], [0.0, 1.15], [0.12, 0.992]])
    ey = np.array([0.15, 0.1, -0.05, -0.2, -0.3, -0.25])
    ex = np.array([0.99, 1.06, 1.09, 1.07, 1.02, 0.98])
    return [circle, nose, np.column_stack([ex, ey]), np.column_stack([-ex, ey])]


def channel_status(names, *, masked=(), added=None, selected=()):
    """Status label of each channel: 'masked' > 'added' > 'visible' (selection separate)."""
    added = set() if added is None else set(added)
    masked = set(masked)
    return ["masked" if n in masked else "added" if n in added else "visible" for n in names]


def scalp(data, *, masked=(), added=None, selected=(), labels=True, size=420, title="electrodes",
          verbose=None):
    """Electrode positions on a top-view scalp: head circle, nose, ears, labels.

    Parameters
    ----------
    data : xr.Dataset | xr.DataArray | mne.io.Raw | mne.Info | dict
        Anything with electrode positions (a result's ``ch_x``/``ch_y``/``ch_z`` coordinates).
    masked : sequence of str
        Channels drawn as masked (red); default: channels whose whole
        ``mask`` is True when ``data`` is a result Dataset.
    added : sequence of str | None
        Channels drawn as added/upsampled (orange); default: the ``added``
        coordinate when present.
    selected : sequence of str
        Channels drawn with a green outline.
    labels : bool
        Write the channel names.
    size : int
        Plot width and height in pixels.
    title : str
        Plot title.
    verbose : bool | str | int | None
        Unused; accepted for MNE-like signatures.

    Returns
    -------
    hv.Overlay
        ``Path`` (outline) * ``Points`` (kdims x, y; vdims channel, status,
        color — the Points support tap selection) * ``Labels``.

    Examples
    --------
    >>> scalp(rec, masked=["T7"])            # doctest: +SKIP
    """
    xy = scalp_coords(data)
    names = [str(c) for c in xy["channel"].values]
    if isinstance(data, xr.Dataset):
        if added is None and "added" in data.coords:
            added = [n for n, a in zip(names, np.asarray(data["added"].values, bool)) if a]
        if not masked and "mask" in data:
            m = data["mask"]
            full = m.all([d for d in m.dims if d != "channel"])
            masked = [str(c) for c in full["channel"].values[np.asarray(full.values, bool)]]
    status = channel_status(names, masked=masked, added=added)
    sel = set(selected)
    import pandas as pd

    df = pd.DataFrame({
        "x": xy.sel(axis="x").values, "y": xy.sel(axis="y").values, "channel": names, "status": status,
        "color": [COLORS[s] for s in status],
        "line": [COLORS["selected"] if n in sel else "#222222" for n in names],
    })
    pts = hv.Points(df, kdims=["x", "y"], vdims=["channel", "status", "color", "line"])
    pts = _opts(
        pts,
        common={"color": "color"},
        bokeh={"size": 16, "line_color": "line", "line_width": 2, "tools": ["tap", "hover"],
               "nonselection_alpha": 1.0, "selection_alpha": 1.0},
        mpl={"s": 150, "edgecolors": "line"},
    )
    outline = _opts(hv.Path(_head_outline(), kdims=["x", "y"]), common={"color": "#333333"},
                    bokeh={"line_width": 2}, mpl={"linewidth": 2})
    layers = [outline, pts]
    if labels:
        lab = hv.Labels(df, kdims=["x", "y"], vdims=["channel"])
        layers.append(_opts(lab, bokeh={"text_font_size": "8pt", "yoffset": -0.1, "text_color": "#111111"},
                            mpl={"size": 7, "yoffset": -0.12, "color": "#111111"}))
    lim = max(1.25, float(np.nanmax(np.abs(xy.values))) + 0.15) if np.isfinite(xy.values).any() else 1.25
    ov = hv.Overlay(layers)
    return _opts(
        ov,
        common={"xlim": (-lim, lim), "ylim": (-lim, lim), "xaxis": None, "yaxis": None, "title": title},
        bokeh={"width": size, "height": size, "toolbar": "above", "show_legend": False},
        mpl={**_mpl_size(size, size), "aspect": "equal", "show_legend": False},
    )


# --------------------------------------------------------------------------- latents
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
        Unused; accepted for MNE-like signatures.

    Returns
    -------
    hv.Overlay
        ``Histogram`` (density) * ``Curve`` of the N(0, 1) pdf.

    Examples
    --------
    >>> latent_histogram(emb, latent=3)       # doctest: +SKIP
    """
    from ..health import latent_samples

    x = latent_samples(emb, include_masked=include_masked)
    if latent is not None:
        x = x.sel(latent=np.atleast_1d(latent))
    v = np.clip(np.asarray(x.values, float).ravel(), -5, 5)
    dens, edges = np.histogram(v, bins=int(bins), range=(-5, 5), density=True)
    grid = np.linspace(-5, 5, 301)
    pdf = np.exp(-0.5 * grid**2) / np.sqrt(2 * np.pi)
    which = "all dims" if latent is None else f"dim {', '.join(str(i) for i in np.atleast_1d(latent))}"
    hist = _opts(hv.Histogram((edges, dens), kdims=["latent value"], vdims=["density"], label="latents"),
                 common={"alpha": 0.6, "color": COLORS["visible"]}, bokeh={"line_alpha": 0.2})
    curve = _opts(hv.Curve((grid, pdf), "latent value", "density", label="N(0, 1)"),
                  common={"color": "black"}, bokeh={"line_width": 2}, mpl={"linewidth": 2})
    return _opts(hist * curve, common={"title": f"latent histogram ({which}, n={v.size})",
                                       "xlabel": "latent value", "ylabel": "density"},
                 bokeh={"width": int(width), "height": int(height), "responsive": False, "xlim": (-5, 5),
                        "legend_position": "top_right"},
                 mpl=_mpl_size(int(width), int(height)))


def latent_moments(data, *, width=660, height=320, verbose=None):
    """Per-dimension mean ± std of the latents, with the N(0, 1) targets.

    Parameters
    ----------
    data : xr.Dataset
        An :func:`~zuna_lab.health.mmd_health` / ``latent_stats`` result
        (``mean``, ``std`` along ``latent``) or an ``embed`` result.
    width, height : int
        Plot size in pixels (fixed).
    verbose : bool | str | int | None
        Unused; accepted for MNE-like signatures.

    Returns
    -------
    hv.Overlay
        Error bars (mean ± std), means coloured red for dimensions the health
        verdict flags, and reference lines at 0 and ±1.

    Examples
    --------
    >>> latent_moments(zl.mmd_health(emb))    # doctest: +SKIP
    """
    from ..health import latent_stats

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
    err = _opts(hv.ErrorBars(df, kdims=["latent"], vdims=["mean", "std"]), common={"color": "#555555"})
    pts = _opts(hv.Scatter(df, kdims=["latent"], vdims=["mean", "std", "color"]), common={"color": "color"},
                bokeh={"size": 7, "tools": ["hover"]}, mpl={"s": 30})
    ref = [_opts(hv.HLine(y), common={"color": "#999999"}, bokeh={"line_dash": "dashed", "line_width": 1},
                 mpl={"linestyle": "--", "linewidth": 1}) for y in (-1.0, 0.0, 1.0)]
    title = "latent mean ± std per dimension"
    if "verdict" in data.attrs:
        title += f" — {data.attrs['verdict']}"
    lo = float(np.nanmin(np.r_[mean - std, -1.0]))
    hi = float(np.nanmax(np.r_[mean + std, 1.0]))
    pad = 0.08 * (hi - lo)
    return _opts(hv.Overlay(ref + [err, pts]),
                 common={"title": title, "ylabel": "latent value", "xlabel": "latent dimension",
                         "xlim": (float(lat.min()) - 1, float(lat.max()) + 1), "ylim": (lo - pad, hi + pad)},
                 bokeh={"width": int(width), "height": int(height), "responsive": False},
                 mpl=_mpl_size(int(width), int(height)))


def drift_matrix(cmp, *, variable="mmd2", width=440, height=380, verbose=None):
    """Heat map of pairwise recording drift from :func:`~zuna_lab.health.compare_recordings`.

    Parameters
    ----------
    cmp : xr.Dataset
        ``compare_recordings`` result.
    variable : "mmd2" | "p_value"
        What to colour by.
    width, height : int
        Plot size in pixels (fixed).
    verbose : bool | str | int | None
        Unused; accepted for MNE-like signatures.

    Returns
    -------
    hv.HeatMap

    Examples
    --------
    >>> drift_matrix(zl.health.compare_recordings({"a": e1, "b": e2}))   # doctest: +SKIP
    """
    if not isinstance(cmp, xr.Dataset) or variable not in cmp:
        raise ZunaValueError(f"drift_matrix needs a compare_recordings Dataset with {variable!r}.")
    df = cmp[variable].to_dataframe().reset_index()
    hm = hv.HeatMap(df, kdims=["recording", "other"], vdims=[variable])
    return _opts(hm, common={"cmap": "viridis", "colorbar": True, "title": f"pairwise {variable}"},
                 bokeh={"width": int(width), "height": int(height), "tools": ["hover"], "responsive": False,
                        "xrotation": 30}, mpl=_mpl_size(int(width), int(height)))


# --------------------------------------------------------------------------- embedding map
def embedding_coords(emb, *, method="pca", max_points=5000, seed=0, include_masked=False, verbose=None):
    """2-D coordinates of token latents by PCA (numpy SVD) or UMAP.

    Parameters
    ----------
    emb : xr.Dataset | xr.DataArray
        An ``embed`` result or a DataArray with a ``latent`` dimension.
    method : "pca" | "umap" | "auto"
        PCA always works; "umap" needs ``umap-learn`` (imported lazily, ~11 s
        the first time); "auto" uses UMAP when importable, else PCA.
    max_points : int | None
        Subsample (seeded) to at most this many tokens.
    seed : int
        Seeds subsampling and UMAP.
    include_masked : bool
        Also map tokens hidden from the encoder.
    verbose : bool | str | int | None
        Unused; accepted for MNE-like signatures.

    Returns
    -------
    xr.Dataset
        ``x``, ``y`` along ``point``, with coordinates ``epoch``, ``channel``,
        ``token``, ``time`` (token start in s within the epoch, when
        ``token_time`` exists), ``abs_time`` (adding ``epoch_start``),
        ``region``; attrs ``method`` and (PCA) ``explained_variance_ratio``.

    Examples
    --------
    >>> xy = embedding_coords(emb)           # doctest: +SKIP
    >>> xy.to_dataframe().head()             # doctest: +SKIP
    """
    from ..health import latent_samples

    if method not in ("pca", "umap", "auto"):
        raise ZunaValueError(f"method must be 'pca', 'umap' or 'auto', got {method!r}.")
    x = latent_samples(emb, include_masked=include_masked)
    rng = np.random.default_rng(seed)
    if max_points is not None and x.sizes["point"] > max_points:
        x = x.isel(point=np.sort(rng.choice(x.sizes["point"], int(max_points), replace=False)))
    if x.sizes["point"] < 3:
        raise ZunaValueError("An embedding map needs at least 3 visible tokens.")
    v = np.asarray(x.values, float)
    attrs = {}
    use = method
    if method in ("umap", "auto"):
        try:
            import umap  # noqa: F401  (lazy: ~11 s import)
        except ImportError:
            if method == "umap":
                raise ZunaValueError("method='umap' needs the umap-learn package (pip install umap-learn); "
                                     "use method='pca'.") from None
            use = "pca"
        else:
            use = "umap"
    if use == "umap":
        import umap

        xy = umap.UMAP(n_components=2, random_state=int(seed)).fit_transform(v)
    else:
        c = v - v.mean(axis=0)
        u, s, vt = np.linalg.svd(c, full_matrices=False)
        # deterministic sign: largest loading positive
        signs = np.sign(vt[np.arange(vt.shape[0]), np.abs(vt).argmax(axis=1)])
        signs[signs == 0] = 1
        xy = (u[:, :2] * s[:2]) * signs[:2]
        attrs["explained_variance_ratio"] = (s[:2] ** 2 / np.sum(s**2)).tolist()
    attrs["method"] = use
    coords = {k: x[k] for k in x.coords if k != "latent"}
    if "token" in coords and "token_time" in getattr(emb, "coords", {}):
        tt = emb["token_time"].values
        coords["time"] = ("point", np.asarray(tt)[np.searchsorted(emb["token"].values, x["token"].values)]
                          if "token" in emb.coords else np.asarray(tt)[x["token"].values])
    if "epoch" in coords and "epoch_start" in getattr(emb, "coords", {}):
        es = np.asarray(emb["epoch_start"].values)
        eidx = (np.searchsorted(emb["epoch"].values, x["epoch"].values) if "epoch" in emb.coords
                else np.asarray(x["epoch"].values))
        coords["abs_time"] = ("point", es[eidx] + (coords["time"][1] if "time" in coords else 0.0))
    if "channel" in coords:
        coords["region"] = ("point", [channel_region(c) for c in x["channel"].values])
    return xr.Dataset({"x": ("point", xy[:, 0]), "y": ("point", xy[:, 1])}, coords=coords, attrs=attrs)


def embedding_map(emb, *, color_by="channel", method="pca", max_points=5000, seed=0, size=500,
                  verbose=None):
    """Scatter of token latents in 2-D (PCA or UMAP), coloured by channel/epoch/time/region.

    Parameters
    ----------
    emb : xr.Dataset
        An ``embed`` result, or an :func:`embedding_coords` result (reused as is).
    color_by : "channel" | "epoch" | "time" | "region"
        Colouring; time is the token start within the epoch plus ``epoch_start``.
    method, max_points, seed
        As in :func:`embedding_coords`.
    size : int
        Plot width/height in pixels.
    verbose : bool | str | int | None
        Unused; accepted for MNE-like signatures.

    Returns
    -------
    hv.Points
        kdims ``x``, ``y``; vdims ``epoch``, ``channel``, ``time``,
        ``region``, ``point`` (row in the coords); box/lasso/tap selection tools.

    Examples
    --------
    >>> embedding_map(emb, color_by="region")   # doctest: +SKIP
    """
    if color_by not in ("channel", "epoch", "time", "region"):
        raise ZunaValueError(f"color_by must be 'channel', 'epoch', 'time' or 'region', got {color_by!r}.")
    xy = emb if (isinstance(emb, xr.Dataset) and "x" in emb and "y" in emb) else embedding_coords(
        emb, method=method, max_points=max_points, seed=seed)
    df = xy.reset_coords().reset_index("point", drop=True).to_dataframe() if False else _coords_frame(xy)
    vdims = [c for c in ("epoch", "channel", "time", "abs_time", "region", "token", "point") if c in df]
    col = "abs_time" if color_by == "time" and "abs_time" in df else color_by
    if col not in df:
        raise ZunaValueError(f"The embedding has no {color_by!r} labels to colour by.")
    pts = hv.Points(df, kdims=["x", "y"], vdims=vdims)
    categorical = color_by in ("channel", "region")
    cmap = _REGION_COLORS if color_by == "region" else ("Category20" if categorical else "viridis")
    method_name = xy.attrs.get("method", method).upper()
    n_cat = int(df[col].nunique()) if categorical else 0
    # the legend must fit beside the frame: smaller rows for many categories, two columns beyond ~30
    row_px = 20 if n_cat <= (size - 100) // 20 else 13
    legend_cols = 1 if n_cat * row_px <= size - 100 else 2
    legend_opts = {} if row_px == 20 else {"label_height": row_px, "glyph_height": row_px - 2, "spacing": 0,
                                           "label_text_font_size": "8pt", "padding": 4}
    opts_common = {"color": col, "cmap": cmap, "title": f"embedding map ({method_name}) by {color_by}",
                   "xlabel": f"{method_name} 1", "ylabel": f"{method_name} 2"}
    return _opts(
        pts, common=opts_common,
        bokeh={"size": 4, "alpha": 0.7, "width": size + (90 * legend_cols + 40 if categorical else 60),
               "height": size, "responsive": False, **({"legend_cols": legend_cols} if legend_cols > 1 else {}),
               "legend_opts": legend_opts,
               "tools": ["box_select", "lasso_select", "tap", "hover"], "colorbar": not categorical,
               "legend_position": "right", "show_legend": categorical, "nonselection_alpha": 0.1},
        mpl={"s": 6, "alpha": 0.7, **_mpl_size(size + 150, size), "colorbar": not categorical,
             "show_legend": categorical},
    )


def _coords_frame(xy):
    import pandas as pd

    cols = {"x": xy["x"].values, "y": xy["y"].values}
    for c in xy.coords:
        if xy[c].dims == ("point",) and c != "point":
            cols[c] = xy[c].values
    df = pd.DataFrame(cols)
    df["point"] = np.arange(len(df))
    if "epoch" in df:
        df["epoch"] = df["epoch"].astype(int)
    return df


# --------------------------------------------------------------------------- export
def save_png(obj, path, *, dpi=100, verbose=None):
    """Save a HoloViews object as a PNG, rendered with the matplotlib backend.

    Bokeh's own PNG export needs selenium and a webdriver; the matplotlib
    backend renders the same HoloViews object without a browser.  Styling
    follows the matplotlib options these functions set (colours, sizes), so
    a PNG looks close to, not identical with, the interactive plot.

    Parameters
    ----------
    obj : HoloViews object
        Any view returned by this module (or a Layout of them).
    path : str | Path
        Output file; ``.png`` is appended when missing.
    dpi : int
        Resolution.
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
