"""Reconstruction error metrics: pure functions on labelled results, in volts.

Each takes a ``reconstruct`` result (never mutated) and returns a labelled xarray object with
units; plots convert to µV on their axes only.
"""
from __future__ import annotations

import numpy as np
import xarray as xr

from ..config import TOKEN_SECONDS
from ..errors import ZunaTypeError, ZunaValueError
from ..logs import verbose

__all__ = ["reconstruction_errors"]


def _time_mask(rec):
    """Expand the token mask (epoch, channel, token) to (epoch, channel, time)."""
    mask = rec["mask"]
    if "token" not in mask.dims:
        return mask
    if "token_time" in rec.coords:
        tstart = np.asarray(rec["token_time"].values, dtype=float)
    else:
        tstart = np.arange(rec.sizes["token"]) * TOKEN_SECONDS
    t = np.asarray(rec["time"].values, dtype=float)
    idx = np.clip(np.searchsorted(tstart, t + 1e-9, side="right") - 1, 0, len(tstart) - 1)
    tm = mask.isel(token=xr.DataArray(idx, dims="time"))
    tm = tm.drop_vars([c for c in tm.coords if "token" in tm[c].dims or c == "token"], errors="ignore")
    return tm.assign_coords(time=rec["time"])


@verbose
def reconstruction_errors(rec, *, kind="reconstruction", masked_only=True, verbose=None):
    """Per-channel RMSE and correlation of a reconstruction against the original.

    Parameters
    ----------
    rec : xr.Dataset
        A ``reconstruct`` result (``original``, ``reconstruction``/``hybrid``
        in volts along ``(epoch, channel, time)``, ``mask`` along
        ``(epoch, channel, token)``), optionally with a ``sample`` dim.
    kind : "reconstruction" | "hybrid"
        Which estimate to score.
    masked_only : bool
        Score only the masked (infilled) cells (default); False scores every sample.
    verbose : bool | str | int | None
        The log level of this call, as in MNE (None: the current level; see :func:`zuna_lab.set_log_level`).

    Returns
    -------
    xr.Dataset
        ``rmse`` (volts) and ``correlation`` along ``(epoch, channel)`` (and
        ``sample`` if present), ``n_samples`` scored; NaN where nothing was masked.

    Examples
    --------
    >>> err = reconstruction_errors(rec)               # doctest: +SKIP
    >>> err.rmse.sel(channel="T7") * 1e6               # doctest: +SKIP
    """
    if not isinstance(rec, xr.Dataset):
        raise ZunaTypeError(f"Expected the xarray Dataset from zuna_lab.reconstruct, got {type(rec).__name__}.")
    for v in ("original", kind, "mask"):
        if v not in rec:
            raise ZunaValueError(f"The Dataset has no {v!r} variable; pass the result of zuna_lab.reconstruct.")
    orig, est = rec["original"], rec[kind]
    valid = np.isfinite(orig) & np.isfinite(est)
    if masked_only:
        valid = valid & _time_mask(rec)
    o = orig.where(valid)
    e = est.where(valid)
    n = valid.sum("time")
    rmse = np.sqrt(((e - o) ** 2).sum("time") / n.where(n > 0))
    om = o - o.mean("time")
    em = e - e.mean("time")
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = (om * em).sum("time") / np.sqrt((om**2).sum("time") * (em**2).sum("time"))
    corr = corr.where(n > 1)
    return xr.Dataset(
        {
            "rmse": rmse.assign_attrs(units="V", long_name=f"RMSE of {kind} vs original"),
            "correlation": corr.assign_attrs(units="1", long_name=f"Pearson r of {kind} vs original"),
            "n_samples": n.assign_attrs(long_name="time samples scored"),
        },
        attrs={"kind": kind, "masked_only": bool(masked_only)},
    )
