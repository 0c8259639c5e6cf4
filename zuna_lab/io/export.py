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

from ..errors import ZunaTypeError, ZunaValueError, preview
from .montage import channel_positions
from ..pipeline.seams import seam_correct
from ..config import SAMPLES_PER_TOKEN
from .write import replace_atomically, sample_rate_of, output_target

__all__ = ["splice", "eeg_only", "save_fif", "INFILLED_DESCRIPTION", "UNPROCESSED_DESCRIPTION"]

#: Description of the annotations put on cells the model filled in (not ``BAD``: MNE keeps them).
INFILLED_DESCRIPTION = "ZUNA_infilled"

#: Description of the annotations :func:`to_raw` puts where no epoch reached (e.g. ZUNA's tail).
UNPROCESSED_DESCRIPTION = "ZUNA_unprocessed"


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
    """The repaired EEG of ``ds`` written into a copy of the full recording (see :func:`zuna_lab.to_raw`).

    Parameters
    ----------
    ds : xarray.Dataset
        A ``reconstruct`` result.
    full : mne.io.Raw
        The recording it came from, every channel (not modified).
    kind : {"hybrid", "reconstruction"}
    sample : int | None
        The draw, for results with a ``sample`` dim.

    Returns
    -------
    raw : mne.io.Raw

    Examples
    --------
    >>> fixed = splice(rec, mne.io.read_raw_fif("rec_raw.fif", preload=True))  # doctest: +SKIP
    """
    names = [str(c) for c in ds["channel"].values]
    added = np.asarray(ds["added"].values, bool) if "added" in ds.coords else np.zeros(len(names), bool)
    missing = [n for n, a in zip(names, added) if not a and n not in full.ch_names]
    if missing:
        raise ZunaValueError(f"The recording lacks channels {preview(missing)} of the result; pass raw= the recording "
                             "you gave to reconstruct.")
    model_sfreq, sfreq = sample_rate_of(ds), float(full.info["sfreq"])
    n_model = int(ds.attrs.get("model_n_times", 0)) or int(round(full.n_times * model_sfreq / sfreq))
    values = _continuous(ds, "reconstruction", sample, n_model)
    hidden, covered = _continuous_mask(ds, n_model)
    replace = (hidden if kind == "hybrid" else np.broadcast_to(covered, hidden.shape)) & np.isfinite(values)
    if sfreq != model_sfreq or full.n_times != n_model:
        # Back to the recording's rate: the model's samples resampled, each recording sample
        # taking the mask of the model sample it falls in.
        values = mne.filter.resample(_hold_edges(values), up=sfreq / model_sfreq, npad="auto", verbose="error")
        values = _fit_length(values, full.n_times)
        index = np.minimum((np.arange(full.n_times) * model_sfreq / sfreq).astype(np.int64), n_model - 1)
        replace, covered = replace[:, index], covered[index]
    replace = np.array(replace)
    out = full.copy()
    data = out._data
    for row, (name, is_added) in enumerate(zip(names, added)):
        if is_added or not replace[row].any():
            continue
        k = out.ch_names.index(name)
        repaired = np.where(replace[row], values[row], data[k])
        data[k] = seam_correct(repaired[None], replace[row][None])[0] if kind == "hybrid" else repaired
    if added.any():
        _append_added(out, ds, [n for n, a in zip(names, added) if a], np.where(covered, values[added], np.nan))
        replace[added] = covered
    out.info["bads"] = [b for b in out.info["bads"] if b not in names or not replace[names.index(b)].all()]
    _annotate(out, replace, covered, names)
    return out


def _hold_edges(values):
    """NaN samples (no epoch there) filled with the nearest finite sample of their row, so that
    resampling does not ring at the edge of the processed span; all-NaN rows become 0."""
    out = np.array(values, dtype=np.float64, copy=True)
    for row in out:
        finite = np.flatnonzero(np.isfinite(row))
        if finite.size == 0:
            row[:] = 0.0
        elif finite.size < row.size:
            row[:] = row[finite[np.clip(np.searchsorted(finite, np.arange(row.size)), 0, finite.size - 1)]]
    return out


def _fit_length(values, n_times):
    if values.shape[1] >= n_times:
        return values[:, :n_times]
    return np.pad(values, ((0, 0), (0, n_times - values.shape[1])), mode="edge")


def _append_added(out, ds, names, values):
    """Append the upsampled channels (EEG, head-frame positions from ``ds``) to ``out`` in place."""
    from mne.io.constants import FIFF

    info = mne.create_info(names, out.info["sfreq"], "eeg")
    extra = mne.io.RawArray(values, info, first_samp=out.first_samp, verbose="error")
    extra.set_meas_date(out.info["meas_date"])
    out.add_channels([extra], force_update_info=True)
    positions = channel_positions(ds)[[str(c) in names for c in ds["channel"].values]]
    for name, position in zip(names, positions):
        ch = out.info["chs"][out.ch_names.index(name)]
        ch["loc"][:3] = position
        ch["coord_frame"] = FIFF.FIFFV_COORD_HEAD


def _annotate(out, replace, covered, names):
    """Add ZUNA_infilled (per run and channel) and ZUNA_unprocessed annotations to ``out`` in place."""
    sfreq, shift = out.info["sfreq"], out.first_time
    onsets, durations, descriptions, channels = [], [], [], []
    for (start, stop), rows in sorted(_runs(replace).items()):
        onsets.append(start / sfreq + shift)
        durations.append((stop - start) / sfreq)
        descriptions.append(INFILLED_DESCRIPTION)
        channels.append([] if len(rows) == len(out.ch_names) else [names[r] for r in rows])
    for (start, stop), _ in sorted(_runs(~covered[None]).items()):
        onsets.append(start / sfreq + shift)
        durations.append((stop - start) / sfreq)
        descriptions.append(UNPROCESSED_DESCRIPTION)
        channels.append(list(names))
    if onsets:
        out.annotations.append(onsets, durations, descriptions, ch_names=channels)


def _runs(mask):
    """{(start, stop): [rows]} of the runs of True in each row of a (rows, n) bool array."""
    spans = {}
    for row, line in enumerate(mask):
        edges = np.diff(np.r_[0, line.astype(np.int8), 0])
        for start, stop in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)):
            spans.setdefault((int(start), int(stop)), []).append(row)
    return spans


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
        _annotate(raw, hidden & np.isfinite(continuous), np.ones(n_total, bool), ch_names)
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
