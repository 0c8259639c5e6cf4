"""Back to the user's recording: a ``reconstruct`` result spliced into the recording it came from.

:func:`to_raw` returns a copy of the user's recording — every channel, annotation, ``meas_date``
and untouched sample kept — with the EEG cells hidden from the model replaced by the
reconstruction (resampled to the recording's rate, seam-corrected against the recording's own
samples) and annotated; :func:`write_fif` writes it atomically.
"""
from __future__ import annotations

import os
import uuid
import warnings
import weakref
import zlib
from pathlib import Path

import mne
import numpy as np

from .errors import ZunaLabWarning, ZunaTypeError, ZunaValueError
from .io import (
    INFILLED_DESCRIPTION,
    _check_reconstruct_dataset,
    _preview,
    _read_csv,
    _read_file,
    _replace_atomically,
    _sfreq_of,
    _target,
    channel_positions_of,
    read_raw,
)
from .seams import seam_correct

__all__ = ["to_raw", "write_fif", "recording_fingerprint", "remember_source", "INFILLED_DESCRIPTION",
           "UNPROCESSED_DESCRIPTION"]

#: Description of the annotations :func:`to_raw` puts where no epoch reached (e.g. ZUNA's tail).
UNPROCESSED_DESCRIPTION = "ZUNA_unprocessed"
#: Samples of one token at the model's rate.
_SAMPLES_PER_TOKEN = 32


def recording_fingerprint(raw):
    """A short digest of a Raw's channel names, rate, length and samples (a strided subset).

    ``reconstruct`` stores the fingerprint of the EEG it read (``attrs["source_fingerprint"]``);
    :func:`to_raw` checks that the recording it splices the repair into is that one.

    Examples
    --------
    >>> recording_fingerprint(zl.read_raw("data/sample_synthetic_raw.fif"))  # doctest: +SKIP
    '19x30720@256:5d0f3c2a'
    """
    data = raw._data if raw.preload else raw.get_data()
    step = max(1, data.shape[1] // 65536)
    digest = zlib.crc32(np.ascontiguousarray(data[:, ::step], dtype=np.float64).tobytes())
    digest = zlib.crc32("|".join(raw.ch_names).encode(), digest)
    return f"{len(raw.ch_names)}x{raw.n_times}@{raw.info['sfreq']:g}:{digest:08x}"


#: In-memory recordings given to reconstruct, while the user still holds them (weakly referenced).
_LIVE_SOURCES = weakref.WeakValueDictionary()


def remember_source(data):
    """A key under which :func:`to_raw` finds ``data`` again while it lives ("" for files and arrays)."""
    if not isinstance(data, mne.io.BaseRaw):
        return ""
    key = uuid.uuid4().hex
    _LIVE_SOURCES[key] = data
    return key


def to_raw(ds, kind="hybrid", *, raw=None, sample=0, verbose=None):
    """Put a ``reconstruct`` result back into the user's recording: the EEG repaired, nothing else lost.

    The result is a copy of the recording it came from — every channel (stim, EOG, ECG, …),
    annotation, ``meas_date``, sampling rate and sample the model did not touch kept as they
    were — with the EEG cells hidden from the model (``mask``) replaced by the reconstruction,
    resampled to the recording's rate and re-anchored to the recording's own samples around
    each run (the seam correction of the official v4 reconstructor). Added channels
    (upsampling) are appended with their positions. Annotations are added: ``ZUNA_infilled`` on
    the cells the model filled (per channel), and ``ZUNA_unprocessed`` where no epoch reached
    (ZUNA's tail after the last full 5 s epoch keeps its original samples). A channel infilled
    over the whole recording leaves ``info["bads"]``. Neither label starts with ``BAD``, so MNE
    keeps the data.

    The recording is ``raw`` when given; else the Raw that was passed to ``reconstruct``, while
    it is still in memory; else the source file named in ``ds.attrs``. Each is checked to hold
    the EEG that was reconstructed. A Dataset with none of them (e.g. from a NumPy array, or
    loaded from netCDF) gives its EEG alone at the model's rate, with a warning.

    Parameters
    ----------
    ds : xarray.Dataset
        Result of :func:`zuna_lab.reconstruct`.
    kind : {"hybrid", "reconstruction", "original"}
        ``"hybrid"`` (default): original where kept, model where hidden; ``"reconstruction"``:
        the model's output on every EEG cell it processed; ``"original"``: the recording as it was.
    raw : mne.io.Raw | path-like | None
        The recording ``ds`` was reconstructed from (what was passed to ``reconstruct``).
    sample : int
        Which draw to use when the Dataset has a ``sample`` dimension.
    verbose : bool | str | int | None
        MNE verbosity.

    Returns
    -------
    raw : mne.io.Raw
        A new Raw; the input recording is not modified.

    Examples
    --------
    >>> rec = zl.reconstruct(raw, model=model, bad_channels=["T7"])  # doctest: +SKIP
    >>> fixed = to_raw(rec, raw=raw)  # doctest: +SKIP
    >>> fixed.annotations.description[-1]  # doctest: +SKIP
    'ZUNA_infilled'
    """
    _check_reconstruct_dataset(ds, kind)
    sample = _check_sample(ds, sample)
    recording = _source_recording(ds, raw)
    if recording is None:
        warnings.warn(
            "The recording this result came from is unknown (no raw= and no readable source file), so the Raw "
            "holds only its EEG at the model's rate, without other channels, annotations or meas_date; pass raw= "
            "to put the repair into your recording.", ZunaLabWarning, stacklevel=2)
        return _model_rate_raw(ds, kind, sample, verbose)
    if kind == "original":
        return recording
    return _splice(ds, kind, sample, recording)


def write_fif(inst, fname, *, kind="hybrid", raw=None, overwrite=False, verbose=None):
    """Write a Raw, or a ``reconstruct`` Dataset (through :func:`to_raw`), to a FIF file atomically.

    A Dataset is written as the user's recording with the EEG repaired and everything else
    kept (see :func:`to_raw`); samples keep the recording's precision (double stays double).

    Parameters
    ----------
    inst : mne.io.Raw | xarray.Dataset
    fname : path-like
        Target file; MNE's convention is a name ending in ``_raw.fif``.
    kind : {"hybrid", "reconstruction", "original"}
        Which signal of a Dataset to write.
    raw : mne.io.Raw | path-like | None
        The recording a Dataset was reconstructed from (see :func:`to_raw`).
    overwrite : bool
        Replace an existing file.
    verbose : bool | str | int | None

    Returns
    -------
    path : pathlib.Path

    Examples
    --------
    >>> write_fif(rec, "subject01_fixed_raw.fif", raw=raw)  # doctest: +SKIP
    """
    path = _target(fname, overwrite)
    out = inst if isinstance(inst, mne.io.BaseRaw) else to_raw(inst, kind=kind, raw=raw, verbose=verbose)
    fmt = "double" if getattr(out, "orig_format", "double") == "double" else "single"
    # The temporary name ends in _raw.fif so that MNE does not warn about naming.
    return _replace_atomically(
        lambda tmp: out.save(tmp, fmt=fmt, overwrite=True, verbose=verbose if verbose is not None else "error"),
        path,
        "_raw.fif",
    )


def _check_sample(ds, sample):
    if "sample" not in ds.dims:
        return None
    if isinstance(sample, bool) or not isinstance(sample, (int, np.integer)):
        raise ZunaTypeError(f"sample must be an integer, got {type(sample).__name__}.")
    if not 0 <= int(sample) < ds.sizes["sample"]:
        raise ZunaValueError(f"sample must be in [0, {ds.sizes['sample']}), got {sample}.")
    return int(sample)


def _source_recording(ds, raw):
    """The full recording ``ds`` came from (every channel), checked against its fingerprint; None if unknown."""
    expected = ds.attrs.get("source_fingerprint")
    given = raw is not None
    if not given:
        raw = _LIVE_SOURCES.get(str(ds.attrs.get("source_ref", "")))
    if raw is None:
        source = str(ds.attrs.get("source_file", "") or "")
        if not source or not Path(source).expanduser().is_file():
            return None
        raw = source
    if isinstance(raw, mne.io.BaseRaw):
        full = raw.copy().load_data(verbose="error")
    elif isinstance(raw, (str, os.PathLike)):
        path = Path(raw).expanduser()
        if path.suffix.lower() in {".csv", ".tsv"}:
            full = _read_csv(path, sfreq=float(ds.attrs.get("source_sfreq", 0)) or None, ch_names=None, verbose="error")
        else:
            full = _read_file(path, verbose="error")
    else:
        raise ZunaTypeError(f"raw must be the mne Raw or the file the result came from, got {type(raw).__name__}.")
    if expected:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = recording_fingerprint(read_raw(full, verbose="error"))
        if found != expected:
            what = "raw=" if given else ("The Raw given to reconstruct (changed since?)" if isinstance(raw, mne.io.BaseRaw)
                                         else f"The source file {str(raw)!r}")
            raise ZunaValueError(
                f"{what} does not hold the EEG this result was reconstructed from (it differs in channels, length "
                "or samples); pass raw= the very recording you gave to reconstruct.")
    return full


def _starts(ds):
    return np.rint(np.asarray(ds["epoch_start"].values, dtype=float) * _sfreq_of(ds)).astype(np.int64)


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
        hidden[:, start:start + width] = np.repeat(tokens[e], _SAMPLES_PER_TOKEN, axis=1)[:, :width]
        covered[start:start + width] = True
    return hidden, covered


def _splice(ds, kind, sample, full):
    """The repaired EEG of ``ds`` written into a copy of the full recording (see :func:`to_raw`)."""
    names = [str(c) for c in ds["channel"].values]
    added = np.asarray(ds["added"].values, bool) if "added" in ds.coords else np.zeros(len(names), bool)
    missing = [n for n, a in zip(names, added) if not a and n not in full.ch_names]
    if missing:
        raise ZunaValueError(f"The recording lacks channels {_preview(missing)} of the result; pass raw= the recording "
                             "you gave to reconstruct.")
    model_sfreq, sfreq = _sfreq_of(ds), float(full.info["sfreq"])
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
    positions = channel_positions_of(ds)[[str(c) in names for c in ds["channel"].values]]
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


def _model_rate_raw(ds, kind, sample, verbose):
    """The EEG of ``ds`` alone as a continuous Raw at the model's rate (no source recording known)."""
    sfreq = _sfreq_of(ds)
    ch_names = [str(name) for name in ds["channel"].values]
    finite = np.isfinite(np.asarray(ds["original"].transpose("epoch", "channel", "time").values)).any(axis=1)
    n_total = max((int(s) + int(np.flatnonzero(f)[-1]) + 1 for s, f in zip(_starts(ds), finite) if f.any()), default=0)
    if n_total == 0:
        raise ZunaValueError(f"The {kind!r} signal holds no finite sample; nothing to export.")
    continuous = _continuous(ds, kind, sample, n_total)
    info = mne.create_info(ch_names, sfreq, "eeg")
    raw = mne.io.RawArray(continuous, info, verbose=verbose if verbose is not None else "error")
    pos = channel_positions_of(ds)
    usable = np.isfinite(pos).all(axis=1)
    if usable.any():
        montage = mne.channels.make_dig_montage(
            ch_pos={name: p for name, p, ok in zip(ch_names, pos, usable) if ok}, coord_frame="head")
        raw.set_montage(montage, on_missing="ignore", verbose="error")
    if kind != "original":
        hidden, _ = _continuous_mask(ds, n_total)
        _annotate(raw, hidden & np.isfinite(continuous), np.ones(n_total, bool), ch_names)
    return raw
