"""Latent-space health of ZUNA embeddings (reconstruction errors: :mod:`zuna_lab.trust.metrics`).

ZUNA's encoder is trained with an MMD bottleneck that pulls every token latent
towards a standard normal ``N(0, I)`` in 32 dimensions.  On data that resembles
the training distribution the visible-token latents should therefore look like
``N(0, I)``: per-dimension mean near 0, standard deviation near 1, little skew
and excess kurtosis.  Recordings the model was not trained for (odd montages,
wrong units, heavy artefacts, a broken preprocessing step) show up as shifted
or collapsed latent dimensions.

Every function here is pure: it takes labelled xarray objects (an ``embed``
result Dataset, or any DataArray with a ``latent`` dimension), never mutates
them, and returns labelled xarray objects.

The MMD statistic and its permutation test are described in :mod:`zuna_lab.trust.mmd`.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..errors import ZunaTypeError, ZunaValueError
from .mmd import check_kernel, mmd_core, subsample_rows
from .metrics import reconstruction_errors  # noqa: F401  (where the dashboard has always found it)
from ..logs import logger, verbose
from ..validation import check_bool, check_int

__all__ = [
    "latent_samples",
    "latent_stats",
    "gaussian_kl",
    "mmd",
    "mmd_health",
    "embedding_drift",
    "compare_recordings",
    "HEALTH_THRESHOLDS",
]

#: Thresholds of the verdict of :func:`mmd_health` (also stored in its attrs).
HEALTH_THRESHOLDS = {
    # a latent dimension whose visible-token std is below this is "collapsed"
    "collapse_std": 0.1,
    # permutation p-value below this means the MMD test rejects N(0, I) / the reference
    "alpha": 0.01,
    # |mean shift| above this (in units of the N(0, 1) std) flags a dimension as shifted
    "mean_tol": 0.25,
    # a std outside this range (ratio to the reference std) flags a dimension as shifted
    "std_low": 0.5,
    "std_high": 2.0,
}


# --------------------------------------------------------------------------- input
@verbose
def latent_samples(emb, *, include_masked=False, verbose=None):
    """Stack the token latents of an embedding into a 2-D ``(point, latent)`` array.

    Parameters
    ----------
    emb : xr.Dataset | xr.DataArray
        An ``embed`` result (variables ``embedding`` and ``mask``) or any
        DataArray with a ``latent`` dimension (all of its points are visible).
    include_masked : bool
        Keep tokens that were hidden from the encoder (``mask`` True).  By
        default they are dropped: their latents describe zeros, not EEG.
    verbose : bool | str | int | None
        The log level of this call, as in MNE (None: the current level; see :func:`zuna_lab.set_log_level`).

    Returns
    -------
    xr.DataArray
        Dimensions ``(point, latent)``; ``point`` carries the original labels
        (e.g. ``epoch``, ``channel``, ``token``) as coordinates.  Points with
        NaN (padding of variable-length segments) are dropped.

    Examples
    --------
    >>> x = latent_samples(emb)          # doctest: +SKIP
    >>> x.sizes["latent"]                # doctest: +SKIP
    32
    """
    da, mask = _embedding_and_mask(emb)
    other = [d for d in da.dims if d != "latent"]
    if not other:
        da = da.expand_dims("point")
        other = ["point"]
    da = da.transpose(*other, "latent")
    values = np.asarray(da.values, dtype=np.float64).reshape(-1, da.sizes["latent"])
    keep = np.all(np.isfinite(values), axis=1)
    if mask is not None and not include_masked:
        m = mask.broadcast_like(da.isel(latent=0, drop=True)).transpose(*other)
        keep &= ~np.asarray(m.values, dtype=bool).reshape(-1)
    coords = {"latent": da["latent"].values}
    grids = np.meshgrid(*[np.arange(da.sizes[d]) for d in other], indexing="ij")
    for d, g in zip(other, grids):
        flat = g.reshape(-1)[keep]
        lab = da[d].values if d in da.coords else np.arange(da.sizes[d])
        coords[d] = ("point", np.asarray(lab)[flat])
    out = xr.DataArray(values[keep], dims=("point", "latent"), coords=coords, name="embedding")
    return out


def _embedding_and_mask(emb):
    if isinstance(emb, xr.Dataset):
        if "embedding" not in emb:
            raise ZunaValueError(
                "The Dataset has no 'embedding' variable; pass the result of zuna_lab.embed "
                "or a DataArray with a 'latent' dimension."
            )
        da = emb["embedding"]
        mask = emb["mask"] if "mask" in emb else None
    elif isinstance(emb, xr.DataArray):
        da, mask = emb, None
    else:
        raise ZunaTypeError(
            f"Expected an xarray Dataset from zuna_lab.embed or a DataArray with a 'latent' "
            f"dimension, got {type(emb).__name__}."
        )
    if "latent" not in da.dims:
        raise ZunaValueError(
            f"The embedding has no 'latent' dimension (dimensions: {tuple(da.dims)}); "
            "pass the result of zuna_lab.embed."
        )
    if mask is not None:
        extra = set(mask.dims) - set(da.dims)
        if extra:
            raise ZunaValueError(
                f"The mask has dimensions {sorted(extra)} that the embedding lacks; "
                "mask and embedding must come from the same embed result."
            )
    return da, mask


def _as_points(emb, include_masked=False):
    if isinstance(emb, xr.DataArray) and emb.dims == ("point", "latent"):
        x = emb
    else:
        x = latent_samples(emb, include_masked=include_masked)
    if x.sizes["point"] < 2:
        raise ZunaValueError(
            f"The embedding has {x.sizes['point']} visible token(s); health statistics need "
            "at least 2 (are all tokens masked?)."
        )
    return x


# --------------------------------------------------------------------------- moments
@verbose
def latent_stats(emb, *, include_masked=False, verbose=None):
    """Per-latent-dimension moments of the visible token latents.

    Parameters
    ----------
    emb : xr.Dataset | xr.DataArray
        An ``embed`` result or a DataArray with a ``latent`` dimension.
    include_masked : bool
        Also use tokens hidden from the encoder (default False).
    verbose : bool | str | int | None
        The log level of this call, as in MNE (None: the current level; see :func:`zuna_lab.set_log_level`).

    Returns
    -------
    xr.Dataset
        Variables ``mean``, ``std`` (ddof=1), ``skew``, ``kurtosis`` (excess,
        0 for a Gaussian) and ``kl`` (nats, see :func:`gaussian_kl`), each
        along ``latent``; attr ``n_points``.

    Examples
    --------
    >>> stats = latent_stats(emb)                # doctest: +SKIP
    >>> stats["std"].sel(latent=3).item()        # doctest: +SKIP
    0.98
    """
    x = _as_points(emb, include_masked)
    mean = x.mean("point")
    c = x - mean
    m2 = (c**2).mean("point")
    safe = m2.where(m2 > 0)
    skew = (c**3).mean("point") / safe**1.5
    kurt = (c**4).mean("point") / safe**2 - 3.0
    std = x.std("point", ddof=1)
    kl = gaussian_kl(mean, std)
    ds = xr.Dataset(
        {
            "mean": mean.assign_attrs(long_name="mean of the latent"),
            "std": std.assign_attrs(long_name="standard deviation of the latent (ddof=1)"),
            "skew": skew.assign_attrs(long_name="skewness"),
            "kurtosis": kurt.assign_attrs(long_name="excess kurtosis (0 for a Gaussian)"),
            "kl": kl,
        },
        attrs={"n_points": int(x.sizes["point"])},
    )
    return ds


def gaussian_kl(mean, std, *, ref_mean=0.0, ref_std=1.0):
    """KL divergence ``KL(N(mean, std^2) || N(ref_mean, ref_std^2))`` in nats, elementwise.

    Parameters
    ----------
    mean, std : xr.DataArray | array-like
        Moments of the Gaussian fit (e.g. from :func:`latent_stats`).
    ref_mean, ref_std : float | xr.DataArray
        Moments of the reference (default the standard normal).

    Returns
    -------
    xr.DataArray | ndarray
        Same labels as ``mean``; ``inf`` where ``std`` is 0.

    Examples
    --------
    >>> float(gaussian_kl(0.0, 1.0))
    0.0
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (std / ref_std) ** 2
        kl = 0.5 * (r + ((mean - ref_mean) / ref_std) ** 2 - 1.0 - np.log(r))
    if isinstance(kl, xr.DataArray):
        kl = kl.rename("kl").assign_attrs(
            long_name="KL of the per-dimension Gaussian fit to the reference", units="nat"
        )
    return kl


# --------------------------------------------------------------------------- MMD


def _test_options(kernel, bandwidth, n_permutations, max_points, seed, include_masked):
    """The MMD test's options checked (one sentence each); returns (n_permutations, max_points, seed)."""
    check_kernel(kernel)
    if not (bandwidth in (None, "median") or isinstance(bandwidth, (int, float, np.integer, np.floating))):
        raise ZunaTypeError(f"bandwidth must be 'median' or a positive number, got {bandwidth!r}.")
    check_bool(include_masked, "include_masked")
    return (check_int(n_permutations, "n_permutations", minimum=0, maximum=100_000, allow_none=True) or 0,
            check_int(max_points, "max_points", minimum=2, allow_none=True),
            check_int(seed, "seed", minimum=0))


@verbose
def mmd(x, y=None, *, kernel="imq", bandwidth="median", n_permutations=200, max_points=1000,
        seed=0, include_masked=False, verbose=None):
    """Maximum mean discrepancy between two latent sets, with a permutation p-value.

    Parameters
    ----------
    x : xr.Dataset | xr.DataArray
        An ``embed`` result or a DataArray with a ``latent`` dimension.
    y : xr.Dataset | xr.DataArray | None
        The second set; None compares with ``N(0, I)`` samples (as many as the
        subsampled ``x``, drawn from ``seed``).
    kernel : "imq" | "gaussian"
        ``(1 + d^2/c^2)^-1/2`` (default) or ``exp(-d^2 / (2 c^2))``.
    bandwidth : "median" | float
        ``c^2``; "median" is the median squared pairwise distance of the pooled sample.
    n_permutations : int
        Permutations of the test (0 skips it; the p-value is then NaN).
    max_points : int | None
        Each set is subsampled (seeded) to at most this many points.
    seed : int
        Seeds subsampling, reference draws and permutations.
    include_masked : bool
        Also use tokens hidden from the encoder (default False).
    verbose : bool | str | int | None
        The log level of this call, as in MNE (None: the current level; see :func:`zuna_lab.set_log_level`).

    Returns
    -------
    xr.Dataset
        Scalars ``mmd2`` (unbiased MMD^2) and ``p_value``, and ``mmd2_null``
        along ``permutation``; attrs give kernel, bandwidth and sizes.

    Examples
    --------
    >>> res = mmd(emb_a, emb_b, n_permutations=100)     # doctest: +SKIP
    >>> float(res.p_value) < 0.01                       # doctest: +SKIP
    True
    """
    n_permutations, max_points, seed = _test_options(kernel, bandwidth, n_permutations, max_points, seed,
                                                     include_masked)
    rng = np.random.default_rng(seed)
    xa = _as_points(x, include_masked)
    xv = subsample_rows(xa.values, max_points, rng)
    if y is None:
        yv = rng.standard_normal(xv.shape)
        ref = "N(0, I)"
    else:
        ya = _as_points(y, include_masked)
        if ya.sizes["latent"] != xa.sizes["latent"]:
            raise ZunaValueError(
                f"The two embeddings have {xa.sizes['latent']} and {ya.sizes['latent']} latent "
                "dimensions; they must match."
            )
        yv = subsample_rows(ya.values, max_points, rng)
        ref = "embedding"
    observed, null, bw = mmd_core(xv, yv, kernel=kernel, bandwidth=bandwidth,
                                   n_permutations=n_permutations, rng=rng)
    p = float((1 + np.sum(null >= observed)) / (1 + len(null))) if len(null) else np.nan
    return xr.Dataset(
        {
            "mmd2": xr.DataArray(observed, attrs={"long_name": "unbiased MMD^2"}),
            "p_value": xr.DataArray(p, attrs={"long_name": "permutation p-value"}),
            "mmd2_null": xr.DataArray(null, dims="permutation",
                                      attrs={"long_name": "MMD^2 under label permutations"}),
        },
        attrs={
            "kernel": kernel,
            "kernel_formula": "(1 + d^2/c^2)^-1/2" if kernel == "imq" else "exp(-d^2/(2 c^2))",
            "bandwidth": bw,
            "bandwidth_rule": "median heuristic (pooled)" if bandwidth in (None, "median") else "fixed",
            "n_points": int(len(xv)),
            "n_reference_points": int(len(yv)),
            "n_permutations": n_permutations,
            "seed": int(seed),
            "reference": ref,
        },
    )


# --------------------------------------------------------------------------- verdict
@verbose
def mmd_health(emb, *, reference=None, n_permutations=200, max_points=1000, seed=0,
               kernel="imq", bandwidth="median", include_masked=False, thresholds=None,
               verbose=None):
    """Latent-space health of an embedding: moments, KL, MMD test and a verdict.

    The visible-token latents are compared with ``N(0, I)`` (what the MMD
    bottleneck trained them towards) or, with ``reference``, with another
    recording's embedding (drift).  The verdict in ``attrs["verdict"]`` is

    - ``"collapsed dims"`` if any dimension's std is below ``collapse_std`` (0.1);
      ``attrs["collapsed_dims"]`` names them;
    - else ``"shifted"`` if the MMD permutation p-value is below ``alpha`` (0.01)
      or any dimension has ``|mean - ref_mean| > mean_tol`` (0.25) or
      ``std / ref_std`` outside ``[std_low, std_high]`` ([0.5, 2]);
      ``attrs["shifted_dims"]`` names the offending dimensions (empty when only
      the joint distribution differs);
    - else ``"healthy"``.

    Parameters
    ----------
    emb : xr.Dataset | xr.DataArray
        An ``embed`` result (masked tokens are excluded) or a DataArray with a
        ``latent`` dimension.
    reference : xr.Dataset | xr.DataArray | None
        None compares with ``N(0, I)``; an embedding compares two recordings.
    n_permutations : int
        Permutations of the MMD test (default 200).
    max_points : int | None
        Subsample each set to at most this many tokens for the MMD (default 1000);
        moments use every visible token.
    seed : int
        Seeds subsampling, reference draws and permutations.
    kernel : "imq" | "gaussian"
        MMD kernel, see :func:`mmd`.
    bandwidth : "median" | float
        Kernel scale ``c^2``; "median" = median heuristic on the pooled sample.
    include_masked : bool
        Also use tokens hidden from the encoder (default False).
    thresholds : dict | None
        Overrides of :data:`HEALTH_THRESHOLDS`.
    verbose : bool | str | int | None
        The log level of this call, as in MNE (None: the current level; see :func:`zuna_lab.set_log_level`).

    Returns
    -------
    xr.Dataset
        Along ``latent``: ``mean``, ``std``, ``skew``, ``kurtosis``, ``kl``
        (KL of the Gaussian fit to the reference's), ``mean_shift`` (mean minus
        the reference mean), ``std_ratio``; scalars ``mmd2``, ``p_value``;
        ``mmd2_null`` along ``permutation``.  Attrs: ``verdict``, ``summary``,
        ``collapsed_dims``, ``shifted_dims``, the thresholds, kernel and bandwidth.

    Examples
    --------
    >>> import zuna_lab as zl
    >>> health = zl.mmd_health(emb)                      # doctest: +SKIP
    >>> health.attrs["verdict"], float(health.p_value)   # doctest: +SKIP
    ('healthy', 0.43)
    """
    _test_options(kernel, bandwidth, n_permutations, max_points, seed, include_masked)   # before any work
    th = dict(HEALTH_THRESHOLDS)
    if thresholds:
        unknown = set(thresholds) - set(th)
        if unknown:
            raise ZunaValueError(
                f"Unknown health thresholds {sorted(unknown)}; known: {sorted(th)}."
            )
        th.update(thresholds)
    x = _as_points(emb, include_masked)
    stats = latent_stats(x)
    if reference is None:
        ref_mean = xr.zeros_like(stats["mean"])
        ref_std = xr.ones_like(stats["std"])
    else:
        rx = _as_points(reference, include_masked)
        if rx.sizes["latent"] != x.sizes["latent"]:
            raise ZunaValueError(
                f"The embedding and the reference have {x.sizes['latent']} and "
                f"{rx.sizes['latent']} latent dimensions; they must match."
            )
        rstats = latent_stats(rx)
        ref_mean, ref_std = rstats["mean"], rstats["std"]
    test = mmd(x, None if reference is None else rx, kernel=kernel, bandwidth=bandwidth,
               n_permutations=n_permutations, max_points=max_points, seed=seed)
    ds = stats.copy()
    ds["kl"] = gaussian_kl(stats["mean"], stats["std"], ref_mean=ref_mean, ref_std=ref_std)
    ds["mean_shift"] = (stats["mean"] - ref_mean).assign_attrs(long_name="mean minus reference mean")
    with np.errstate(divide="ignore", invalid="ignore"):
        ds["std_ratio"] = (stats["std"] / ref_std).assign_attrs(long_name="std / reference std")
    ds = ds.merge(test[["mmd2", "p_value", "mmd2_null"]])

    lat = ds["latent"].values
    collapsed = [_py(v) for v in lat[(stats["std"] < th["collapse_std"]).values]]
    shifted_mask = (
        (np.abs(ds["mean_shift"]) > th["mean_tol"])
        | (ds["std_ratio"] < th["std_low"])
        | (ds["std_ratio"] > th["std_high"])
    ).values
    shifted = [_py(v) for v in lat[shifted_mask] if _py(v) not in collapsed]
    p = float(ds["p_value"])
    rejected = bool(np.isfinite(p) and p < th["alpha"])
    ref_name = "N(0, I)" if reference is None else "the reference embedding"
    if collapsed:
        verdict = "collapsed dims"
        summary = (f"collapsed dims: {_fmt(collapsed)} have std < {th['collapse_std']:g} "
                   f"(MMD^2 = {float(ds.mmd2):.4g}, p = {p:.3g} vs {ref_name})")
    elif rejected or shifted:
        verdict = "shifted"
        why = []
        if rejected:
            why.append(f"MMD^2 = {float(ds.mmd2):.4g} with p = {p:.3g} < {th['alpha']:g}")
        if shifted:
            why.append(f"dims {_fmt(shifted)} beyond |mean shift| > {th['mean_tol']:g} or "
                       f"std ratio outside [{th['std_low']:g}, {th['std_high']:g}]")
        summary = f"shifted from {ref_name}: " + "; ".join(why)
    else:
        verdict = "healthy"
        summary = (f"healthy: MMD^2 = {float(ds.mmd2):.4g}, p = {p:.3g} vs {ref_name}; all dims "
                   f"within |mean| <= {th['mean_tol']:g}, std in [{th['std_low']:g}, {th['std_high']:g}]")
    ds.attrs = {
        "verdict": verdict,
        "summary": summary,
        "collapsed_dims": collapsed,
        "shifted_dims": shifted,
        **{f"threshold_{k}": v for k, v in th.items()},
        "verdict_rule": (
            "collapsed dims if any std < collapse_std; else shifted if p_value < alpha or any "
            "|mean_shift| > mean_tol or std_ratio outside [std_low, std_high]; else healthy"
        ),
        **test.attrs,
        "n_points_moments": int(x.sizes["point"]),
    }
    logger.info("mmd_health: %s", summary)
    return ds


def _py(v):
    return v.item() if hasattr(v, "item") else v


def _fmt(dims):
    return ", ".join(str(d) for d in dims)


# --------------------------------------------------------------------------- drift
@verbose
def embedding_drift(emb_a, emb_b, *, n_permutations=200, max_points=1000, seed=0,
                    kernel="imq", bandwidth="median", include_masked=False, verbose=None):
    """Drift between two recordings' embeddings: MMD test and per-dimension shift.

    Parameters
    ----------
    emb_a, emb_b : xr.Dataset | xr.DataArray
        ``embed`` results (masked tokens excluded) or DataArrays with ``latent``.
    n_permutations, max_points, seed, kernel, bandwidth, include_masked
        As in :func:`mmd`.
    verbose : bool | str | int | None
        The log level of this call, as in MNE (None: the current level; see :func:`zuna_lab.set_log_level`).

    Returns
    -------
    xr.Dataset
        ``mean_shift`` (mean of a minus mean of b), ``std_ratio`` (a / b) and
        ``standardized_shift`` (shift / pooled std) along ``latent``; scalars
        ``mmd2`` and ``p_value``.

    Examples
    --------
    >>> drift = embedding_drift(emb_day1, emb_day2)       # doctest: +SKIP
    >>> drift["mean_shift"].to_series().abs().nlargest(3) # doctest: +SKIP
    """
    a = _as_points(emb_a, include_masked)
    b = _as_points(emb_b, include_masked)
    sa, sb = latent_stats(a), latent_stats(b)
    test = mmd(a, b, kernel=kernel, bandwidth=bandwidth, n_permutations=n_permutations,
               max_points=max_points, seed=seed)
    pooled = np.sqrt((sa["std"] ** 2 + sb["std"] ** 2) / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        ds = xr.Dataset({
            "mean_shift": (sa["mean"] - sb["mean"]).assign_attrs(long_name="mean(a) - mean(b)"),
            "std_ratio": (sa["std"] / sb["std"]).assign_attrs(long_name="std(a) / std(b)"),
            "standardized_shift": ((sa["mean"] - sb["mean"]) / pooled).assign_attrs(
                long_name="mean shift / pooled std"),
            "mmd2": test["mmd2"],
            "p_value": test["p_value"],
        }, attrs=dict(test.attrs))
    return ds


@verbose
def compare_recordings(embeddings, *, n_permutations=100, max_points=500, seed=0,
                       kernel="imq", bandwidth="median", include_masked=False, verbose=None):
    """Pairwise drift and per-recording latent moments for several recordings.

    Parameters
    ----------
    embeddings : dict of str -> xr.Dataset
        Recording name to its ``embed`` result.
    n_permutations, max_points, seed, kernel, bandwidth, include_masked
        As in :func:`mmd` (defaults smaller: there are n^2/2 pairs).
    verbose : bool | str | int | None
        The log level of this call, as in MNE (None: the current level; see :func:`zuna_lab.set_log_level`).

    Returns
    -------
    xr.Dataset
        ``mmd2`` and ``p_value`` along ``(recording, other)`` (diagonal 0 and 1),
        ``mean`` and ``std`` along ``(recording, latent)``.

    Examples
    --------
    >>> cmp = compare_recordings({"s1": emb1, "s2": emb2})   # doctest: +SKIP
    >>> cmp.mmd2.sel(recording="s1", other="s2")              # doctest: +SKIP
    """
    if not isinstance(embeddings, dict) or not embeddings:
        raise ZunaTypeError("embeddings must be a non-empty dict of recording name -> embed Dataset.")
    names = list(embeddings)
    pts = {k: _as_points(v, include_masked) for k, v in embeddings.items()}
    n = len(names)
    m2 = np.zeros((n, n))
    pv = np.ones((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            r = mmd(pts[names[i]], pts[names[j]], kernel=kernel, bandwidth=bandwidth,
                    n_permutations=n_permutations, max_points=max_points, seed=seed)
            m2[i, j] = m2[j, i] = float(r.mmd2)
            pv[i, j] = pv[j, i] = float(r.p_value)
    stats = [latent_stats(pts[k]) for k in names]
    rec = xr.DataArray(names, dims="recording")
    return xr.Dataset(
        {
            "mmd2": (("recording", "other"), m2, {"long_name": "unbiased MMD^2"}),
            "p_value": (("recording", "other"), pv, {"long_name": "permutation p-value"}),
            "mean": xr.concat([s["mean"] for s in stats], dim=rec),
            "std": xr.concat([s["std"] for s in stats], dim=rec),
        },
        coords={"recording": names, "other": names},
        attrs={"kernel": kernel, "n_permutations": int(n_permutations), "max_points": max_points,
               "seed": int(seed)},
    )
