"""2-D coordinates the views draw and the apps select on: electrodes on the scalp, token latents on a map.

Pure NumPy / xarray (no HoloViews, no Panel): :mod:`zuna_lab.viz.plots` draws these coordinates and
:mod:`zuna_lab.viz.state` selects on them.
"""

from __future__ import annotations

import re

import numpy as np
import xarray as xr

from ..errors import ZunaTypeError, ZunaValueError
from ..logs import verbose

__all__ = ["REGIONS", "SPHERE_ORIGIN", "channel_region", "scalp_coords", "nearest_channel", "embedding_coords",
           "coords_frame"]

REGIONS = ("frontal", "central", "temporal", "parietal", "occipital", "other")
#: Sphere origin (head frame, m) for the scalp projection: least-squares sphere of the
#: standard_1020 montage in MNE's head frame, x set to 0 (left-right symmetric).
SPHERE_ORIGIN = np.array([0.0, 0.0144, 0.037])

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


def positions_from(data):
    """channel names and (n, 3) positions from a Dataset/DataArray/Raw/Info/dict."""
    if isinstance(data, (xr.Dataset, xr.DataArray)):
        from ..pipeline.results import channel_positions

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


@verbose
def scalp_coords(data, *, origin=None, verbose=None):
    """Top-view 2-D electrode coordinates (azimuthal equidistant projection).

    Parameters
    ----------
    data : xr.Dataset | xr.DataArray | mne.io.Raw | mne.Info | dict
        Anything with electrode positions in metres in the head frame.
    origin : array-like of 3 floats | None
        Projection centre (default :data:`SPHERE_ORIGIN`).
    verbose : bool | str | int | None
        The log level of this call, as in MNE (None: the current level; see :func:`zuna_lab.set_log_level`).

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
    names, pos = positions_from(data)
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


def nearest_channel(xy, x, y, *, radius=0.15):
    """The channel drawn nearest to the point ``(x, y)`` of a :func:`scalp_coords` map, None beyond ``radius``.

    Examples
    --------
    >>> nearest_channel(scalp_coords(rec), 0.0, 0.1)   # doctest: +SKIP
    'Cz'
    """
    if x is None or y is None:
        return None
    d = np.hypot(xy.sel(axis="x").values - x, xy.sel(axis="y").values - y)
    if not np.isfinite(d).any():
        return None
    i = int(np.nanargmin(d))
    return str(xy.channel.values[i]) if d[i] <= radius else None


#: What to install for ``method="umap"`` (a sentence for messages and tooltips).
UMAP_HINT = "UMAP needs the umap-learn package: pip install umap-learn (or zuna_lab[notebook])"


def umap_available():
    """Whether umap-learn can be imported, without importing it (its first import takes ~11 s)."""
    import importlib.util

    try:
        return importlib.util.find_spec("umap") is not None
    except (ImportError, ValueError):
        return False


@verbose
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
        The log level of this call, as in MNE (None: the current level; see :func:`zuna_lab.set_log_level`).

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
    from ..trust.health import latent_samples

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
            import umap  # lazy: ~11 s the first time
        except ImportError:
            if method == "umap":
                raise ZunaValueError(f"{UMAP_HINT}; use method='pca'.") from None
            use = "pca"
        else:
            use = "umap"
    if use == "umap":
        xy = umap.UMAP(n_components=2, random_state=int(seed), n_jobs=1).fit_transform(v)   # seeded: one job
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


def coords_frame(xy):
    """An :func:`embedding_coords` result as a DataFrame: x, y, its point labels and ``point`` (the row)."""
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

