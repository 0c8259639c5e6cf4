"""The embedding map: token latents in 2-D (PCA or UMAP), coloured by channel, epoch, time or region."""

from __future__ import annotations

import xarray as xr

import holoviews as hv

from ...errors import ZunaValueError
from ..projections import coords_frame, embedding_coords
from ._style import REGION_COLORS, mpl_size, styled
from ...logs import verbose

__all__ = ["embedding_map"]


@verbose
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
        The log level of this call, as in MNE (None: the current level; see :func:`zuna_lab.set_log_level`).

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
    df = coords_frame(xy)
    vdims = [c for c in ("epoch", "channel", "time", "abs_time", "region", "token", "point") if c in df]
    col = "abs_time" if color_by == "time" and "abs_time" in df else color_by
    if col not in df:
        raise ZunaValueError(f"The embedding has no {color_by!r} labels to colour by.")
    pts = hv.Points(df, kdims=["x", "y"], vdims=vdims)
    categorical = color_by in ("channel", "region")
    cmap = REGION_COLORS if color_by == "region" else ("Category20" if categorical else "viridis")
    method_name = xy.attrs.get("method", method).upper()
    n_cat = int(df[col].nunique()) if categorical else 0
    # the legend must fit beside the frame: smaller rows for many categories, two columns beyond ~30
    row_px = 20 if n_cat <= (size - 100) // 20 else 13
    legend_cols = 1 if n_cat * row_px <= size - 100 else 2
    legend_opts = {} if row_px == 20 else {"label_height": row_px, "glyph_height": row_px - 2, "spacing": 0,
                                           "label_text_font_size": "8pt", "padding": 4}
    opts_common = {"color": col, "cmap": cmap, "title": f"embedding map ({method_name}) by {color_by}",
                   "xlabel": f"{method_name} 1", "ylabel": f"{method_name} 2"}
    return styled(
        pts, common=opts_common,
        bokeh={"size": 4, "alpha": 0.7, "width": size + (90 * legend_cols + 40 if categorical else 60),
               "height": size, "responsive": False, **({"legend_cols": legend_cols} if legend_cols > 1 else {}),
               "legend_opts": legend_opts,
               "tools": ["box_select", "lasso_select", "tap", "hover"], "colorbar": not categorical,
               "legend_position": "right", "show_legend": categorical, "nonselection_alpha": 0.1},
        mpl={"s": 6, "alpha": 0.7, **mpl_size(size + 150, size), "colorbar": not categorical,
             "show_legend": categorical},
    )

