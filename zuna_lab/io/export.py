"""Back to the user's recording: a ``reconstruct`` result spliced into the recording it came from.

:func:`splice` returns a copy of the user's recording — every channel, annotation, ``meas_date``
and untouched sample kept — with the EEG cells hidden from the model replaced by the
reconstruction (resampled to the recording's rate, seam-corrected against the recording's own
samples) and annotated; :func:`eeg_only` is the fallback when the recording is unknown.
:func:`zuna_lab.to_raw` and :func:`zuna_lab.write_fif` (in :mod:`zuna_lab.api.core`) find the
recording and call these.
"""
from __future__ import annotations

import mne
import numpy as np

from ..errors import ZunaTypeError, ZunaValueError
from .montage import channel_positions
from ..config import SAMPLES_PER_TOKEN
from .splice import (INFILLED_DESCRIPTION, UNPROCESSED_DESCRIPTION, SplicedRaw, Splicer, annotate_runs, place_added,
                     runs_of)
from .write import replace_atomically, sample_rate_of, output_target

__all__ = ["splice", "eeg_only", "save_fif", "INFILLED_DESCRIPTION", "UNPROCESSED_DESCRIPTION"]

def _starts(ds):
    return np.rint(np.asarray(ds["epoch_start"].values, dtype=float) * sample_rate_of(ds)).astype(np.int64)


def _continuous(ds, name, sample, n_total):
    """(channel, n_total) model-rate signal of ``ds[name]`` with epochs at ``epoch_start``; NaN elsewhere."""
    signal = ds[name]
    if sample is not None and "sample" in signal.dims:
        signal = signal.isel(sample=sample)
    values = np.asarray(signal.transpose("epoch", "channel", "time").values, dtype=np.float64)
    out = np.full((values.shape[1], n_total), np.nan)
    for e, start in enumerate(_starts(ds)):
        stop = min(n_total, start + values.shape[2])
        block = values[e, :, : stop - start]
        np.copyto(out[:, start:stop], block, where=np.isfinite(block))
    return out


def _continuous_mask(ds, n_total):
    """(channel, n_total) cells hidden from the model, and (n_total,) samples some epoch covers."""
    mask = ds["mask"]
    if "sample" in mask.dims:
        mask = mask.any("sample")
    tokens = np.asarray(mask.transpose("epoch", "channel", "token").values, dtype=bool)
    finite = np.isfinite(np.asarray(ds["original"].transpose("epoch", "channel", "time").values)).any(axis=1)
    hidden = np.zeros((tokens.shape[1], n_total), bool)
    covered = np.zeros(n_total, bool)
    for e, start in enumerate(_starts(ds)):
        width = max(0, min(int(finite[e].sum()), n_total - start))
        hidden[:, start:start + width] = np.repeat(tokens[e], SAMPLES_PER_TOKEN, axis=1)[:, :width]
        covered[start:start + width] = True
    return hidden, covered


def splice(ds, full, *, kind="hybrid", sample=None):
    """The repaired EEG of ``ds`` written into the full recording (see :func:`zuna_lab.to_raw`).

    Parameters
    ----------
    ds : xarray.Dataset
        A ``reconstruct`` result, in memory or opened lazily from ``out=``.
    full : mne.io.Raw
        The recording it came from, every channel (not modified); preloaded or not.
    kind : {"hybrid", "reconstruction"}
    sample : int | None
        The draw, for results with a ``sample`` dim.

    Returns
    -------
    raw : mne.io.Raw
        A preloaded copy of ``full`` repaired when ``ds`` and ``full`` are in memory; for a lazy ``ds``
        or a ``full`` that is not loaded, a :class:`~zuna_lab.io.splice.SplicedRaw`, which computes each
        span when MNE reads it (its memory does not grow with the recording's length) — the same samples
        either way.

    Examples
    --------
    >>> fixed = splice(rec, mne.io.read_raw_fif("rec_raw.fif", preload=True))  # doctest: +SKIP
    """
    splicer = Splicer(ds, full, kind=kind, sample=sample)
    if splicer.lazy or not full.preload:            # a lazy result or recording: spans computed when read
        out = SplicedRaw(splicer, ds)
    else:
        data = splicer.read(0, full.n_times)
        out = full.copy().load_data(verbose="error")
        n_full = len(full.ch_names)
        out._data[:] = data[:n_full]
        if splicer.added.any():
            _append_added(out, ds, splicer.added_names(), data[n_full:])
        out.info["bads"] = splicer.bads()
    annotate_runs(out, splicer.replaced, splicer.gaps, splicer.names)
    return out


def _append_added(out, ds, names, values):
    """Append the upsampled channels (EEG, head-frame positions from ``ds``) to ``out`` in place."""
    info = mne.create_info(names, out.info["sfreq"], "eeg")
    extra = mne.io.RawArray(values, info, first_samp=out.first_samp, verbose="error")
    extra.set_meas_date(out.info["meas_date"])
    out.add_channels([extra], force_update_info=True)
    place_added(out.info, ds, names)


def eeg_only(ds, kind, sample=None, verbose=None):
    """The EEG of ``ds`` alone as a continuous Raw at the model's rate (no source recording known)."""
    sfreq = sample_rate_of(ds)
    ch_names = [str(name) for name in ds["channel"].values]
    finite = np.isfinite(np.asarray(ds["original"].transpose("epoch", "channel", "time").values)).any(axis=1)
    n_total = max((int(s) + int(np.flatnonzero(f)[-1]) + 1 for s, f in zip(_starts(ds), finite) if f.any()), default=0)
    if n_total == 0:
        raise ZunaValueError(f"The {kind!r} signal holds no finite sample; nothing to export.")
    continuous = _continuous(ds, kind, sample, n_total)
    info = mne.create_info(ch_names, sfreq, "eeg")
    raw = mne.io.RawArray(continuous, info, verbose=verbose if verbose is not None else "error")
    pos = channel_positions(ds)
    usable = np.isfinite(pos).all(axis=1)
    if usable.any():
        montage = mne.channels.make_dig_montage(
            ch_pos={name: p for name, p, ok in zip(ch_names, pos, usable) if ok}, coord_frame="head")
        raw.set_montage(montage, on_missing="ignore", verbose="error")
    if kind != "original":
        hidden, _ = _continuous_mask(ds, n_total)
        replaced = {}
        for (start, stop), rows in runs_of(hidden & np.isfinite(continuous)).items():
            for row in rows:
                replaced.setdefault(row, []).append((start, stop))
        annotate_runs(raw, replaced, [], ch_names)
    return raw


def check_sample(ds, sample):
    """The draw index to export (None without a ``sample`` dim); one clear error otherwise."""
    if "sample" not in ds.dims:
        return None
    if isinstance(sample, bool) or not isinstance(sample, (int, np.integer)):
        raise ZunaTypeError(f"sample must be an integer, got {type(sample).__name__}.")
    if not 0 <= int(sample) < ds.sizes["sample"]:
        raise ZunaValueError(f"sample must be in [0, {ds.sizes['sample']}), got {sample}.")
    return int(sample)


def save_fif(raw, fname, *, overwrite=False, verbose=None):
    """Write a Raw to FIF atomically, keeping its sample precision (double stays double)."""
    path = output_target(fname, overwrite)
    fmt = "double" if getattr(raw, "orig_format", "double") == "double" else "single"
    # The temporary name ends in _raw.fif so that MNE does not warn about naming.
    return replace_atomically(
        lambda tmp: raw.save(tmp, fmt=fmt, overwrite=True, verbose=verbose if verbose is not None else "error"),
        path, "_raw.fif")
