"""Stacked multi-channel traces: original, reconstruction and hybrid in µV, masked cells shaded."""

from __future__ import annotations

import numpy as np
import xarray as xr

import holoviews as hv

from ...config import TOKEN_SECONDS as TOKEN_S
from ...errors import ZunaTypeError, ZunaValueError
from ._style import COLORS, COLUMN_WIDTH, fit_column, mpl_size, styled, with_opts
from ...logs import verbose

__all__ = ["TOKEN_S", "minmax_downsample", "traces"]


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


def _draw_in_order(plot, element):
    """Bokeh hook: draw the layers in the overlay's order (mask under the traces, the last kind on top).

    A ``hv.DynamicMap`` adds the layers a later frame brings on top of the others; this keeps
    the order of the element shown, frame after frame.
    """
    rank = {}
    for sub in getattr(plot, "subplots", {}).values():
        renderer = sub.handles.get("glyph_renderer")
        if renderer is not None:
            rank[renderer] = next((i for i, el in enumerate(element) if el is sub.current_frame), len(element))
    fig = plot.state
    ordered = sorted(fig.renderers, key=lambda r: rank.get(r, -1))
    if ordered != list(fig.renderers):
        fig.renderers = ordered


def _robust_spacing(values_uv) -> float:
    """Six robust SDs (median absolute deviation) of the channels' values, in µV."""
    med = np.nanmedian(values_uv, axis=-1, keepdims=True)
    mad = np.nanmedian(np.abs(values_uv - med), axis=-1)
    rs = 1.4826 * np.nanmedian(mad) if np.isfinite(mad).any() else 1.0
    return float(6 * rs) if rs > 0 else 1.0


def _mask_rectangles(mask, epoch, names, offsets, spacing) -> list:
    """(t0, y0, t1, y1) of each run of masked tokens, one channel's band high."""
    m = mask.isel(epoch=int(epoch)) if "epoch" in mask.dims else mask
    m = m.sel(channel=names) if "channel" in m.dims else m
    tstart = (np.asarray(m["token_time"].values, float) if "token_time" in m.coords
              else np.arange(m.sizes["token"]) * TOKEN_S)
    mv = np.asarray(m.transpose("channel", "token").values, bool)
    return [(t0, offsets[i] - spacing / 2, t1, offsets[i] + spacing / 2)
            for i in range(len(names)) for t0, t1 in _mask_spans(mv[i], tstart, TOKEN_S)]


def _trace_arrays(data, kinds, mask, show_mask, epoch, sample, channels):
    """:func:`traces`' inputs checked: ({kind: (channel, time) DataArray}, channel names, the first kind as
    given, the mask to shade)."""
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
    return arrays, names, first, mask


@verbose
def traces(data, *, epoch=0, channels=None, kinds=None, sample=0, spacing=None, max_points=2000,
           show_mask=True, mask=None, mask_label="masked", highlight=(), width=COLUMN_WIDTH, height=None, responsive=True,
           title=None, legend=True, verbose=None):
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
        Variables to overlay; default ``("original", "reconstruction")`` for a Dataset (those
        present).  The original is drawn last, thinner, on top: an infill never hides it.  Each
        kind is named in the legend, in its own colour.
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
        Plot size in pixels (height default: 40 px per channel + 80); with ``responsive`` the
        widest it gets (default: a notebook column).
    responsive : bool
        Stretch to the container's width up to ``width`` (bokeh); False: exactly ``width``.
    title : str | None
        Plot title.
    legend : bool
        Show the legend (every kind drawn, the shaded cells).  Without it the shading layer is drawn even when
        empty, so that every frame of a ``hv.DynamicMap`` of traces has it (a layer, and with it
        a legend, that first appears in a later frame breaks BokehJS 3.9); the app's titles say
        what is shaded instead.
    verbose : bool | str | int | None
        The log level of this call, as in MNE (None: the current level; see :func:`zuna_lab.set_log_level`).

    Returns
    -------
    hv.Overlay
        Paths per kind, mask rectangles and channel tick labels.

    Examples
    --------
    >>> import zuna_lab.viz.plots as zp
    >>> zp.traces(rec, epoch=0, kinds=("original", "hybrid"))   # doctest: +SKIP
    """
    arrays, names, first, mask = _trace_arrays(data, kinds, mask, show_mask, epoch, sample, channels)
    t = np.asarray(first["time"].values, dtype=float)
    ref = arrays.get("original", next(iter(arrays.values())))  # spacing and highlight follow the original
    base = np.asarray(ref.values, dtype=float) * 1e6
    if spacing is None:
        spacing = _robust_spacing(base)
    nch = len(names)
    offsets = (nch - 1 - np.arange(nch)) * spacing
    layers = []
    if mask is not None and show_mask:
        rects = _mask_rectangles(mask, epoch, names, offsets, spacing)
        if rects or not legend:  # with a legend, nothing shaded: no empty legend entry
            layers.append(with_opts(
                hv.Rectangles(rects, kdims=["time", "amplitude", "time_end", "amplitude_end"], label=mask_label),
                common={"alpha": 0.5}, bokeh={"color": COLORS["mask_fill"], "line_alpha": 0},
                mpl={"facecolor": COLORS["mask_fill"], "edgecolor": "none"},
            ))
    drawn = sorted(arrays, key=lambda kind: kind == "original")       # the original last: on top
    for kind in drawn:
        vals = np.asarray(arrays[kind].values, dtype=float) * 1e6
        tt, vv = minmax_downsample(t, vals, max_points)
        paths = [np.column_stack([tt, vv[i] + offsets[i]]) for i in range(nch)]
        color = COLORS.get(kind, "#555555")
        lw = 0.9 if kind == "original" else 1.4
        layers.append(with_opts(
            hv.Path(paths, kdims=["time", "amplitude"], label=kind),
            common={"color": color},
            bokeh={"line_width": lw}, mpl={"linewidth": lw},
        ))
    if legend:   # a Path has no legend entry: a one-point curve of each kind (nothing drawn) names it
        layers += [with_opts(hv.Curve([(float(t[0]), float(offsets[0]))], "time", "amplitude", label=kind),
                             common={"color": COLORS.get(kind, "#555555")}, bokeh={"line_width": 3},
                             mpl={"linewidth": 2}) for kind in arrays]
    if highlight:
        hl = [i for i, n in enumerate(names) if n in set(highlight)]
        vals = base[hl]
        tt, vv = minmax_downsample(t, vals, max_points)
        layers.append(with_opts(hv.Path([np.column_stack([tt, vv[j] + offsets[i]]) for j, i in enumerate(hl)],
                                    kdims=["time", "amplitude"], label="selected"),
                            common={"color": COLORS["selected"]}, bokeh={"line_width": 1.5}))
    ticks = [(float(o), n) for o, n in zip(offsets, names)]
    if title is None:
        title = f"epoch {epoch}" if "epoch" in first.dims else ""
        title += f" · channel spacing {spacing:.3g} µV"
    height = height or int(40 * nch + 80)
    ov = hv.Overlay(layers)
    ov = styled(
        ov,
        common={"title": title, "yticks": ticks, "xlabel": "time (s)", "ylabel": "µV (stacked)",
                "padding": (0, 0.05)},          # the epoch edge to edge
        bokeh={**(fit_column(width, height) if responsive else {"width": int(width), "height": height}),
               "show_legend": bool(legend), "legend_position": "right", "framewise": True,
               "hooks": [_draw_in_order]},
        mpl={**mpl_size(width, height), "show_legend": bool(legend)},
    )
    return ov

