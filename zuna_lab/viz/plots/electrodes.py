"""Electrodes on a top-view scalp: visible, masked, added and selected channels."""

from __future__ import annotations

import numpy as np
import xarray as xr

import holoviews as hv

from ..projections import scalp_coords
from ._style import COLORS, label_points, mpl_size, styled, with_opts
from ...logs import verbose

__all__ = ["channel_status", "scalp"]


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


@verbose
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
        The log level of this call, as in MNE (None: the current level; see :func:`zuna_lab.set_log_level`).

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
    marker, names_layer = label_points(df)
    pts = hv.Points(df, kdims=["x", "y"], vdims=["channel", "status", "color", "line"])
    pts = with_opts(
        pts,
        common={"color": "color", "alpha": 0.85},
        bokeh={"size": marker, "line_color": "line", "line_width": 2, "tools": ["tap", "hover"],
               "nonselection_alpha": 0.85, "selection_alpha": 0.85},
        mpl={"s": marker ** 2 / 2, "edgecolors": "line"},
    )
    outline = with_opts(hv.Path(_head_outline(), kdims=["x", "y"]), common={"color": "#333333"},
                    bokeh={"line_width": 2}, mpl={"linewidth": 2})
    layers = [outline, pts]
    if labels:
        layers.append(names_layer)
    lim = max(1.25, float(np.nanmax(np.abs(xy.values))) + 0.15) if np.isfinite(xy.values).any() else 1.25
    ov = hv.Overlay(layers)
    return styled(
        ov,
        common={"xlim": (-lim, lim), "ylim": (-lim, lim), "xaxis": None, "yaxis": None, "title": title},
        bokeh={"width": size, "height": size, "toolbar": "above", "show_legend": False},
        mpl={**mpl_size(size, size), "aspect": "equal", "show_legend": False},
    )

