"""Reading recordings into MNE, checking them, and writing results back out.

Reading: :func:`read_raw` turns a file of any format MNE reads, a CSV, a NumPy array or an
``mne.io.Raw`` into a preloaded copy with only EEG channels that have a 3-D position, and
refuses — in one sentence — recordings ZUNA cannot use (:func:`check_recording`).

Writing (:mod:`zuna_lab.export` puts a result back into the user's recording and writes FIF):
:func:`write_netcdf`, :func:`write_zarr` and :func:`write_safetensors`
write results atomically (a temporary file in the target folder, then ``os.replace``), so an
error never leaves a half-written file behind.
"""
from __future__ import annotations

import csv
import functools
import json
import logging
import os
import re
import shutil
import uuid
import warnings
from pathlib import Path

import mne
import numpy as np

from .config import VARIANT_CONSTANTS, VARIANTS
from .errors import (
    RecordingError,
    RecordingFileError,
    ZunaLabWarning,
    ZunaTypeError,
    ZunaValueError,
)
from .validation import check_names, check_number, check_verbose, check_writable, log_level

__all__ = [
    "read_raw",
    "check_recording",
    "clean_channel_name",
    "channel_positions",
    "bad_annotation_spans",
    "write_netcdf",
    "write_zarr",
    "write_safetensors",
    "INFILLED_DESCRIPTION",
]

#: One token: the shortest signal the model can read.
_TOKEN_SECONDS = 32 / 256.0
#: Channel std of the first difference above this (in volts) means the data are not in volts.
_MAX_PLAUSIBLE_STD = 1e-2
#: Median channel amplitude (std in ~1 s windows, volts) outside which read_raw refuses the data:
#: scalp EEG is about 5-100 µV, so below 0.1 µV or above 1 mV the units are wrong.
_AMPLITUDE_REFUSED = (1e-7, 1e-3)
#: ... and outside which it warns (possible, but more likely a units mistake).
_AMPLITUDE_WARNED = (1e-6, 2e-4)
#: A channel this many times quieter than the median channel (or constant) is flat: masked as bad.
_FLAT_RATIO = 1e-2
#: Description of the annotations :func:`to_raw` puts on cells the model filled in.
INFILLED_DESCRIPTION = "ZUNA_infilled"


# --------------------------------------------------------------------------------------
# channel names and positions
# --------------------------------------------------------------------------------------

_NAME_PREFIX = re.compile(r"^(?:eeg|pol)(?:[\s_:\-]+|(?=[A-Z]))", re.IGNORECASE)
# Reference tags recorders append to the electrode name ("Fp1-REF", "C3-A2", "Cz_LE", ...).
_NAME_REFERENCE_SUFFIX = re.compile(
    r"(?<=\w)[\s_\-/]+(?:ref\d*|le|re|ar|avg|av|car|a1a2|a12|a1|a2|m1m2|m12|m1|m2|lm|rm|linked|mast(?:oids?)?)$",
    re.IGNORECASE,
)


def clean_channel_name(name):
    """Reduce a recorder's channel label to the electrode name used by standard montages.

    Strips an ``EEG``/``POL`` prefix, a reference suffix (``-REF``, ``-Ref``, ``-LE``, ``-A1``,
    ``-A2``, ``-M1``, ``-M2``, ``-AVG``, …), trailing dots (``Fc5.`` in PhysioNet files) and
    whitespace. Matching against the montage is then case-insensitive. Bipolar labels such
    as ``Fp1-F7`` are left as they are (they have no single position).

    Parameters
    ----------
    name : str

    Returns
    -------
    cleaned : str

    Examples
    --------
    >>> [clean_channel_name(n) for n in ["EEG Fp1-REF", "FP2-Ref", "C3-A2", "Fc5.", "Cz", "Fp1-F7"]]
    ['Fp1', 'FP2', 'C3', 'Fc5', 'Cz', 'Fp1-F7']
    """
    cleaned = str(name).strip()
    cleaned = _NAME_PREFIX.sub("", cleaned).strip()
    cleaned = cleaned.rstrip(". ")
    cleaned = _NAME_REFERENCE_SUFFIX.sub("", cleaned).strip()
    return cleaned.rstrip(". ") or str(name).strip()


@functools.lru_cache(maxsize=8)
def _standard_head_positions(montage_name):
    """Head-frame positions of a named standard montage, keyed by lower-case channel name."""
    with warnings.catch_warnings():
        # mne >= 1.13 renames standard_* to colin27_*; the coordinates are the same.
        warnings.simplefilter("ignore", FutureWarning)
        montage = mne.channels.make_standard_montage(montage_name)
    return _montage_head_positions(montage)


def _montage_head_positions(montage):
    """Positions of a DigMontage in the MNE head frame, keyed by lower-case channel name."""
    names = list(montage.ch_names)
    info = mne.create_info(names, 256.0, "eeg")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        info.set_montage(montage, on_missing="ignore", verbose="error")
    positions = {}
    for ch in info["chs"]:
        loc = np.asarray(ch["loc"][:3], dtype=float)
        if np.isfinite(loc).all() and not np.allclose(loc, 0.0):
            positions.setdefault(ch["ch_name"].lower(), (ch["ch_name"], loc))
    return positions


def _has_position(loc):
    loc = np.asarray(loc[:3], dtype=float)
    return bool(np.isfinite(loc).all() and not np.allclose(loc, 0.0))


def channel_positions(raw):
    """Electrode positions of a Raw, in metres, MNE head frame (``info["chs"][i]["loc"][:3]``).

    Parameters
    ----------
    raw : mne.io.Raw

    Returns
    -------
    ch_pos : ndarray, shape (n_channels, 3)
        NaN rows for channels without a position.

    Examples
    --------
    >>> import zuna_lab as zl  # doctest: +SKIP
    >>> channel_positions(zl.read_raw("../shared/data/sample1_raw.fif")).shape  # doctest: +SKIP
    (12, 3)
    """
    pos = np.array([np.asarray(ch["loc"][:3], dtype=float) for ch in raw.info["chs"]]).reshape(-1, 3)
    missing = ~np.array([_has_position(ch["loc"]) for ch in raw.info["chs"]], dtype=bool)
    pos[missing] = np.nan
    return pos


def _apply_positions(raw, montage, verbose):
    """Give channels without a file position one from ``montage``, by cleaned name.

    When every channel already has a position from the file, the file wins. Otherwise every
    channel the montage knows takes the montage position (one consistent head geometry, as the
    official ZUNA1.1 loader does); channels it does not know keep their file position if any.
    """
    has_pos = np.array([_has_position(ch["loc"]) for ch in raw.info["chs"]], dtype=bool)
    if has_pos.all() or montage is None:
        return
    if isinstance(montage, str):
        try:
            table = _standard_head_positions(montage)
        except ValueError as err:
            raise ZunaValueError(
                f"Unknown montage {montage!r}; pass a name from mne.channels.get_builtin_montages() or a DigMontage."
            ) from err
    elif isinstance(montage, mne.channels.DigMontage):
        table = _montage_head_positions(montage)
    else:
        raise ZunaTypeError(f"montage must be a montage name, a DigMontage or None, got {type(montage).__name__}.")
    ch_pos = {}
    for ch, had in zip(raw.info["chs"], has_pos):
        entry = table.get(clean_channel_name(ch["ch_name"]).lower())
        if entry is not None:
            ch_pos[ch["ch_name"]] = entry[1]
        elif had:
            ch_pos[ch["ch_name"]] = np.asarray(ch["loc"][:3], dtype=float)
    if not ch_pos:
        return
    digitised = mne.channels.make_dig_montage(ch_pos=ch_pos, coord_frame="head")
    raw.set_montage(digitised, on_missing="ignore", verbose=verbose if verbose is not None else "error")


def bad_annotation_spans(raw):
    """The ``BAD…`` annotations of a Raw as spans in seconds from its first sample.

    Onsets are read on MNE's clock: with an ``orig_time`` (or an onset past the end of the
    data) they are absolute and ``raw.first_time`` is subtracted, as the official ZUNA1.1
    loader does. A channel-specific annotation gives one span per channel.

    Parameters
    ----------
    raw : mne.io.Raw

    Returns
    -------
    spans : list of tuple
        ``(start, stop)`` for spans on every channel, ``(start, stop, channel)`` otherwise —
        the format of :func:`zuna_lab.tokens.token_mask` and :meth:`Preprocessed.token_mask`.

    Examples
    --------
    >>> bad_annotation_spans(raw)  # doctest: +SKIP
    [(3.3, 3.8)]
    """
    duration = raw.n_times / raw.info["sfreq"]
    absolute = raw.annotations.orig_time is not None
    spans = []
    for annotation in raw.annotations:
        if not str(annotation["description"]).upper().startswith("BAD"):
            continue
        onset = float(annotation["onset"])
        shift = raw.first_time if (absolute or onset >= duration) else 0.0
        start, stop = onset - shift, onset - shift + float(annotation["duration"])
        channels = tuple(annotation.get("ch_names", ()) or ())
        if channels:
            spans.extend((start, stop, name) for name in channels if name in raw.ch_names)
        else:
            spans.append((start, stop))
    return spans


# --------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------

def _read_csv(path, *, sfreq, ch_names, verbose):
    with open(path, newline="") as handle:
        sample = handle.read(4096)
        handle.seek(0)
        try:
            dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
        except csv.Error:
            dialect = csv.excel
        rows = list(csv.reader(handle, dialect))
    rows = [row for row in rows if any(cell.strip() for cell in row)]
    if len(rows) < 2:
        raise RecordingError(f"CSV file {path} has no data rows; it needs a header and one row per sample.")
    header = [cell.strip() for cell in rows[0]]
    try:
        values = np.array([[float(cell) for cell in row] for row in rows[1:]], dtype=float)
    except ValueError as err:
        raise RecordingError(
            f"CSV file {path} has a non-numeric value below the header ({err}); every data cell must be a number."
        ) from None
    if values.ndim != 2 or values.shape[1] != len(header):
        raise RecordingError(f"CSV file {path} has rows of different lengths; every row needs {len(header)} cells.")
    has_time = header[0].lower() in {"time", "times", "t", "time_s", "time (s)", "seconds", "timestamp", "timestamps"}
    names = header[1:] if has_time else header
    data = values[:, 1:].T if has_time else values.T
    if ch_names is not None:
        if len(ch_names) != data.shape[0]:
            raise ZunaValueError(f"ch_names has {len(ch_names)} names but the CSV has {data.shape[0]} channel columns.")
        names = list(ch_names)
    if has_time:
        file_sfreq = _csv_rate(path, values[:, 0], [row[0] for row in rows[1:]])
        if sfreq is not None and abs(file_sfreq - sfreq) > 0.01 * sfreq:
            raise ZunaValueError(
                f"sfreq={sfreq} disagrees with the CSV time column ({file_sfreq:.3f} Hz); drop sfreq or fix the file."
            )
        sfreq = sfreq if sfreq is not None else file_sfreq
    elif sfreq is None:
        raise ZunaValueError(f"CSV file {path} has no time column; pass sfreq= (Hz) or add a first column named 'time'.")
    return _raw_from_array(data, sfreq=sfreq, ch_names=names, verbose=verbose)


def _decimal_quantum(cell):
    """The rounding step of a number as written (``"0.003906"`` -> 1e-6); 0 when unknown."""
    import decimal

    try:
        exponent = decimal.Decimal(cell.strip()).as_tuple().exponent
    except (decimal.InvalidOperation, ValueError):
        return 0.0
    return 10.0 ** exponent if isinstance(exponent, int) else 0.0


def _csv_rate(path, times, cells):
    """Sampling rate from a CSV time column: from its whole span, snapped to a whole Hz within 0.1 %.

    Steps that differ from the rate by more than the column's rounding (e.g. 6 decimals) are
    jitter: a warning; a step off by half a sample or more (a gap, a repeated time) is refused.
    """
    step = np.diff(times)
    if len(step) == 0 or not np.all(step > 0):
        raise RecordingError(f"The time column of {path} must increase strictly from row to row.")
    def snapped(rate):
        return float(round(rate)) if abs(rate - round(rate)) <= 1e-3 * rate else round(rate, 6)

    # The whole span averages out the rounding of the written times (6 decimals give 256.016 Hz
    # step by step); a gap would bias it, and is refused below against the median step.
    rate = snapped((len(times) - 1) / float(times[-1] - times[0]))
    nominal = 1.0 / rate
    written = cells[:2000] + cells[-2000:]
    quantum = max(_decimal_quantum(cell) for cell in written)
    tolerance = quantum + 1e-12 * max(abs(float(times[0])), abs(float(times[-1])), 1.0)
    deviation = np.abs(step - nominal)
    worst = int(deviation.argmax())
    if deviation[worst] >= 0.5 * nominal + quantum:
        rate = snapped(1.0 / float(np.median(step)))
        nominal = 1.0 / rate
        raise RecordingError(
            f"The time column of {path} steps by {step[worst]:.6g} s at {times[worst]:.6g} s where {rate:g} Hz "
            f"needs {nominal:.6g} s (a gap or a repeated sample); zuna_lab needs evenly sampled data, so fill the "
            "gap or split the file there."
        )
    if deviation[worst] > tolerance:
        warnings.warn(
            f"The time column of {path} is irregular (steps from {step.min():.6g} to {step.max():.6g} s, more than "
            f"its rounding); zuna_lab reads the samples as evenly spaced at {rate:g} Hz.",
            ZunaLabWarning,
            stacklevel=4,
        )
    return rate


def _raw_from_array(data, *, sfreq, ch_names, verbose):
    if ch_names is None or sfreq is None:
        raise ZunaValueError("A NumPy array needs ch_names= and sfreq= (Hz), e.g. read_raw(data, ch_names=names, sfreq=256).")
    data = np.asarray(data)
    if data.ndim != 2:
        raise ZunaValueError(f"The array must have shape (n_channels, n_times), got {data.shape}.")
    if not np.issubdtype(data.dtype, np.number) or np.iscomplexobj(data):
        raise ZunaTypeError(f"The array must hold real numbers (volts), got dtype {data.dtype}.")
    ch_names = [str(name) for name in ch_names]
    if len(ch_names) != data.shape[0]:
        raise ZunaValueError(
            f"ch_names has {len(ch_names)} names but the array has {data.shape[0]} rows; "
            "the array must be (n_channels, n_times)."
        )
    if len(set(ch_names)) != len(ch_names):
        raise ZunaValueError("ch_names contains duplicates; every channel needs its own name.")
    if not np.isscalar(sfreq) or not float(sfreq) > 0:
        raise ZunaValueError(f"sfreq must be a positive number of Hz, got {sfreq!r}.")
    info = mne.create_info(ch_names, float(sfreq), "eeg")
    return mne.io.RawArray(data.astype(np.float64, copy=True), info, verbose=verbose if verbose is not None else "error")


#: MNE warnings that mean the file is cut short or damaged: refused rather than read in part.
_DAMAGED_FILE = re.compile(r"invalid tag|truncat|shorter than|end of file|incomplete|corrupt", re.IGNORECASE)


def _one_line(err, limit=160):
    text = " ".join(str(err).split()) or "no message"
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return f"{type(err).__name__}: {text}"


def _check_edf_length(path):
    """Refuse an EDF/BDF file shorter than its header says (MNE reads what is there and warns)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(256)
            n_header = int(head[184:192].decode("ascii").strip())
            n_records = int(head[236:244].decode("ascii").strip())
            record_seconds = float(head[244:252].decode("ascii").strip())
            n_signals = int(head[252:256].decode("ascii").strip())
            handle.seek(256 + n_signals * 216)
            samples = [int(handle.read(8).decode("ascii").strip()) for _ in range(n_signals)]
    except (ValueError, UnicodeDecodeError, OSError, IndexError):
        return    # not a header we can parse: MNE will say what is wrong
    record_bytes = sum(samples) * (3 if head[:1] == b"\xff" else 2)
    if n_records <= 0 or record_bytes <= 0:
        return    # -1: a recording that was not closed; MNE infers the length from the file size
    held = max(0, path.stat().st_size - n_header) // record_bytes
    if held < n_records:
        raise RecordingError(
            f"{path.name!r} is truncated: its header announces {n_records} records ({n_records * record_seconds:g} s) "
            f"but the file holds {held} ({held * record_seconds:g} s); copy or export the complete recording again."
        )


def _check_brainvision_length(path):
    """Refuse a BrainVision recording whose binary data file ends inside a sample frame (cut short)."""
    try:
        header = path.read_bytes().decode("latin-1")
    except OSError:
        return
    fields = dict(re.findall(r"^\s*(\w+)\s*=\s*(.*?)\s*$", header, re.MULTILINE))
    sizes = {"INT_16": 2, "UINT_16": 2, "INT_32": 4, "IEEE_FLOAT_32": 4}
    try:
        n_channels = int(fields["NumberOfChannels"])
        frame = n_channels * sizes[fields.get("BinaryFormat", "INT_16").upper()]
        data_file = path.parent / fields["DataFile"]
    except (KeyError, ValueError):
        return    # ASCII data or an unusual header: MNE will say what is wrong
    if fields.get("DataFormat", "BINARY").upper() != "BINARY" or not data_file.is_file() or frame <= 0:
        return
    size = data_file.stat().st_size
    if size % frame:
        raise RecordingError(
            f"{data_file.name!r} is truncated: its {size} bytes are not a whole number of {n_channels}-channel samples "
            f"({frame} bytes each); copy or export the complete recording again."
        )


def _read_file(path, *, verbose):
    path = Path(path).expanduser()
    if not path.exists():
        raise RecordingFileError(f"File {str(path)!r} does not exist; check the path.")
    if path.is_dir() and path.suffix.lower() != ".mff":
        raise RecordingFileError(f"{str(path)!r} is a folder, not a recording file; pass the file itself.")
    if path.is_file() and path.stat().st_size == 0:
        raise RecordingError(f"{path.name!r} is empty (0 bytes); copy or export the recording again.")
    if path.suffix.lower() in (".edf", ".bdf"):
        _check_edf_length(path)
    if path.suffix.lower() == ".vhdr":
        _check_brainvision_length(path)
    level = log_level(verbose)
    try:
        # MNE emits its warnings only when its log level lets them through: read at least at
        # "warning" level to catch those that mean a damaged file, re-emit the rest as asked.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            raw = mne.io.read_raw(path, preload=True, verbose=min(level, logging.WARNING))
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as err:
        if isinstance(err, ValueError) and "Unsupported file type" in str(err):
            raise RecordingFileError(
                f"Cannot read {path.name!r}: {path.suffix or 'no extension'} is not a recording format MNE reads "
                "(use FIF, EDF, BDF, BrainVision .vhdr, EEGLAB .set, … or a CSV)."
            ) from None
        raise RecordingError(
            f"MNE could not read {path.name!r} ({_one_line(err)}); check that it is a complete, valid "
            f"{path.suffix or 'recording'} file."
        ) from err
    damaged = [str(w.message) for w in caught if _DAMAGED_FILE.search(str(w.message))]
    if damaged:
        raise RecordingError(
            f"{path.name!r} looks truncated or damaged (MNE: {_one_line(damaged[0]).split(': ', 1)[1]}); "
            "copy or export the complete recording again."
        )
    if path.suffix.lower() == ".vhdr" and any("outside data range" in str(w.message) for w in caught):
        warnings.warn(
            f"{path.name!r} has markers after the end of its data, so its data file may be cut short; "
            "check that the recording is complete.",
            ZunaLabWarning,
            stacklevel=3,
        )
    for w in caught:
        if not issubclass(w.category, RuntimeWarning) or level <= logging.WARNING:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return raw


def read_raw(source, *, montage="standard_1005", sfreq=None, ch_names=None, verbose=None):
    """Load a recording as a preloaded ``mne.io.Raw`` with EEG channels that have a 3-D position.

    Positions come from the file when every EEG channel has one; otherwise they are looked up in
    ``montage`` by cleaned channel name (see :func:`clean_channel_name`: case-insensitive,
    ``EEG`` prefixes and reference suffixes such as ``-REF``/``-A1`` removed). Channels that still
    have no position are dropped with a :class:`~zuna_lab.errors.ZunaLabWarning` naming them.
    Channel names are kept as they are. The input is never modified.

    Parameters
    ----------
    source : path-like | ndarray | mne.io.BaseRaw
        A file MNE reads (FIF, EDF, BDF, BrainVision ``.vhdr``, EEGLAB ``.set``, …), a ``.csv``
        (optional first column ``time`` in seconds, then one column per channel, values in
        volts), an array of shape ``(n_channels, n_times)`` in volts (needs ``ch_names`` and
        ``sfreq``), or an existing Raw (copied).
    montage : str | mne.channels.DigMontage | None
        Where positions come from when the file has none (default ``"standard_1005"``).
        ``None`` keeps only channels with file positions.
    sfreq : float | None
        Sampling frequency in Hz of an array, or of a CSV without a time column.
    ch_names : list of str | None
        Channel names of an array (or to rename CSV columns).
    verbose : bool | str | int | None
        MNE verbosity.

    Returns
    -------
    raw : mne.io.Raw
        A new, preloaded Raw.

    Raises
    ------
    zuna_lab.errors.RecordingFileError
        Missing file, or a type MNE cannot read.
    zuna_lab.errors.RecordingError
        No EEG channel with a position, shorter than one token (0.125 s), NaN/Inf samples,
        flat data, or amplitudes implausible for volts (e.g. µV stored as V).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> raw = read_raw(rng.normal(0, 20e-6, (3, 2560)), ch_names=["Cz", "EEG Pz-REF", "X1"], sfreq=256)  # doctest: +SKIP
    >>> raw.ch_names  # X1 has no standard position and was dropped  # doctest: +SKIP
    ['Cz', 'EEG Pz-REF']
    """
    check_verbose(verbose)
    if isinstance(montage, str):
        try:
            _standard_head_positions(montage)
        except ValueError as err:
            raise ZunaValueError(
                f"Unknown montage {montage!r}; pass a name from mne.channels.get_builtin_montages() or a DigMontage."
            ) from err
    elif montage is not None and not isinstance(montage, mne.channels.DigMontage):
        raise ZunaTypeError(f"montage must be a montage name, a DigMontage or None, got {type(montage).__name__}.")
    sfreq = check_number(sfreq, "sfreq", low=0, low_inclusive=False, allow_none=True, unit="of Hz")
    ch_names = check_names(ch_names, "ch_names", allow_empty=False, ordered=True)
    if isinstance(source, mne.io.BaseRaw):
        if sfreq is not None or ch_names is not None:
            raise ZunaValueError("sfreq= and ch_names= are only for NumPy or CSV input; a Raw already has them.")
        raw = source.copy().load_data(verbose=verbose if verbose is not None else "error")
    elif isinstance(source, np.ndarray):
        raw = _raw_from_array(source, sfreq=sfreq, ch_names=ch_names, verbose=verbose)
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        if path.suffix.lower() in {".csv", ".tsv"}:
            if not path.exists():
                raise RecordingFileError(f"File {str(path)!r} does not exist; check the path.")
            raw = _read_csv(path, sfreq=sfreq, ch_names=ch_names, verbose=verbose)
        else:
            if sfreq is not None or ch_names is not None:
                raise ZunaValueError("sfreq= and ch_names= are only for NumPy or CSV input; the file already has them.")
            raw = _read_file(path, verbose=verbose)
    else:
        raise ZunaTypeError(
            f"Cannot read a recording from {type(source).__name__}; pass a file path, a NumPy array "
            "(n_channels, n_times) with ch_names and sfreq, or an mne.io.Raw."
        )

    eeg_names = [raw.ch_names[i] for i in mne.pick_types(raw.info, eeg=True, exclude=())]
    if not eeg_names:
        raise RecordingError(
            "The recording has no EEG channels; set channel types with raw.set_channel_types({...: 'eeg'})."
        )
    raw.pick(eeg_names, verbose="error")

    _apply_positions(raw, montage, verbose)
    has_pos = [_has_position(ch["loc"]) for ch in raw.info["chs"]]
    dropped = [name for name, ok in zip(raw.ch_names, has_pos) if not ok]
    kept = [name for name, ok in zip(raw.ch_names, has_pos) if ok]
    if not kept:
        raise RecordingError(
            f"No EEG channel has a 3-D position (none of {_preview(raw.ch_names)} is in the "
            f"{montage!r} montage); set one with raw.set_montage(...) or rename the channels to 10-05 names."
        )
    if dropped:
        warnings.warn(
            f"Dropped {len(dropped)} EEG channel(s) without a 3-D position: {', '.join(dropped)}.",
            ZunaLabWarning,
            stacklevel=2,
        )
        raw.pick(kept, verbose="error")
    _warn_shared_positions(raw)
    flat = [name for name in _check_signal(raw, warn=True) if name not in raw.info["bads"]]
    if flat:
        raw.info["bads"] = list(raw.info["bads"]) + flat
        many = len(flat) > 1
        warnings.warn(
            f"Channel{'s' if many else ''} {', '.join(flat)} {'are' if many else 'is'} flat (no signal), so "
            f"{'they are' if many else 'it is'} marked bad (info['bads']) and ZUNA infills {'them' if many else 'it'}; "
            "drop flat channels with raw.drop_channels([...]) to leave them out instead.",
            ZunaLabWarning,
            stacklevel=2,
        )
    return raw


def _warn_shared_positions(raw):
    """Warn (one sentence) about channels that got the same position, e.g. "Fp1", "EEG Fp1-REF", "fp1"."""
    groups = {}
    for ch in raw.info["chs"]:
        key = tuple(np.round(np.asarray(ch["loc"][:3], dtype=float), 6))
        groups.setdefault(key, []).append(ch["ch_name"])
    shared = [names for names in groups.values() if len(names) > 1]
    if not shared:
        return
    described = []
    for names in shared:
        electrodes = {clean_channel_name(name).lower() for name in names}
        same = f" (all {clean_channel_name(names[0])})" if len(electrodes) == 1 else ""
        described.append(f"{', '.join(names)}{same}")
    warnings.warn(
        f"Channels {'; '.join(described)} get the same electrode position, so ZUNA cannot tell them apart; "
        "drop the duplicates with raw.drop_channels([...]) or rename them.",
        ZunaLabWarning,
        stacklevel=3,
    )


def _preview(names, limit=8):
    names = list(names)
    shown = ", ".join(names[:limit])
    return shown + (f", … ({len(names)} in all)" if len(names) > limit else "")


def _window_std(sample, sfreq):
    """Per channel, the median std of ~1 s windows: DC offsets, drift and short artefacts do not count."""
    width = int(min(4096, max(32, 2 ** round(np.log2(max(float(sfreq), 1.0))))))
    n_windows = sample.shape[1] // width
    if n_windows == 0:
        return sample.std(axis=1)
    windows = sample[:, : n_windows * width].reshape(len(sample), n_windows, width)
    return np.median(windows.std(axis=2), axis=1)


def _units_hint(amplitude):
    """``("1e-6", "µV")``: the power of 1000 that brings a median channel amplitude (V) nearest to EEG (~20 µV)."""
    power = int(np.clip(round(np.log10(20e-6 / amplitude) / 3), -3, 3)) * 3
    units = {-3: "mV", -6: "µV", -9: "nV"}
    return f"1e{power}", units.get(power, f"units 1e{-power} V")


def _check_signal(raw, *, warn=False):
    """The variant-free checks: length, finite samples, plausible volts; returns the flat channels.

    A channel is flat when it is constant, or its amplitude (median std of ~1 s windows) is
    below 1 % of the median channel's. Amplitudes are judged on the other channels: refused
    below 0.1 µV or above 1 mV (median channel; scalp EEG is 5-100 µV), and with ``warn``, a
    :class:`ZunaLabWarning` below 1 µV or above 200 µV.
    """
    duration = raw.n_times / raw.info["sfreq"]
    if duration < _TOKEN_SECONDS:
        raise RecordingError(
            f"The recording lasts {duration:.3f} s, shorter than one ZUNA token (0.125 s); use a longer recording."
        )
    # The preloaded buffer itself, no float64 copy: long recordings are hundreds of MB.
    data = raw._data if raw.preload else raw.get_data()
    # One pass: a NaN or Inf makes its channel's sum non-finite (volts never overflow a float64 sum).
    if not np.isfinite(data.sum(axis=1)).all():
        bad = [raw.ch_names[i] for i in np.flatnonzero(~np.isfinite(data).all(axis=1))]
        raise RecordingError(
            f"The data contain NaN or Inf samples (channels {_preview(bad)}); "
            "interpolate or crop them, e.g. with raw.interpolate_bads() or raw.crop()."
        )
    # Amplitude statistics from at most 64 blocks of 4096 samples spread over the recording.
    block, n_blocks = 4096, 64
    if raw.n_times > block * n_blocks:
        starts = np.linspace(0, raw.n_times - block, n_blocks).astype(int)
        sample = np.concatenate([data[:, s:s + block] for s in starts], axis=1).astype(np.float64)
        steps = np.concatenate([np.diff(data[:, s:s + block], axis=1) for s in starts], axis=1)
    else:
        sample = np.asarray(data, dtype=np.float64)
        steps = np.diff(sample, axis=1) if raw.n_times > 1 else np.zeros((len(sample), 1))
    # Flat only if the whole recording is: the sampled blocks settle the usual case.
    if not (sample.max(axis=1) > sample.min(axis=1)).any() and not (data.max(axis=1) > data.min(axis=1)).any():
        raise RecordingError("The recording is flat (every channel is constant); check the file or the channel selection.")
    sfreq = float(raw.info["sfreq"])
    amplitude = _window_std(sample, sfreq)
    moving = amplitude[amplitude > 0]
    typical = float(np.median(moving)) if moving.size else 0.0
    flat = amplitude <= _FLAT_RATIO * typical
    for index in np.flatnonzero(flat):
        # Quiet in the sampled blocks: judge the channel on the whole recording.
        amplitude[index] = _window_std(np.asarray(data[index : index + 1], dtype=np.float64), sfreq)[0]
    flat = amplitude <= _FLAT_RATIO * typical
    live = ~flat if (~flat).any() else np.ones_like(flat)
    level = max(float(np.median(amplitude[live])), 1e-30)
    channel_std = sample.std(axis=1)[live]     # (indexing first would copy the sample)
    # Differences ignore DC offsets and slow drift, which can be large in DC-coupled systems.
    step_std = float(np.median(steps.std(axis=1)[live])) if raw.n_times > 1 else 0.0
    if step_std > _MAX_PLAUSIBLE_STD or float(np.median(channel_std)) > 1.0 or level > _AMPLITUDE_REFUSED[1]:
        factor, unit = _units_hint(max(level, float(np.median(channel_std))))
        raise RecordingError(
            f"Amplitudes look too large for volts (median channel std {max(level, float(np.median(channel_std))):.3g}, "
            f"while scalp EEG is about 5-100 µV); if the data are in {unit}, multiply by {factor} "
            f"(e.g. raw.apply_function(lambda x: x * {factor}))."
        )
    if level < _AMPLITUDE_REFUSED[0]:
        factor, _ = _units_hint(level)
        raise RecordingError(
            f"Amplitudes look too small for volts (median channel std {level:.3g} V, while scalp EEG is about "
            f"5-100 µV); if the data were scaled down twice, multiply by {factor} "
            f"(e.g. raw.apply_function(lambda x: x * {factor}))."
        )
    if warn and not _AMPLITUDE_WARNED[0] <= level <= _AMPLITUDE_WARNED[1]:
        size = "small" if level < _AMPLITUDE_WARNED[0] else "large"
        warnings.warn(
            f"Amplitudes are unusually {size} for scalp EEG in volts (median channel std {level * 1e6:.3g} µV, "
            "typically 5-100 µV); check that the data are in volts and were not scaled twice.",
            ZunaLabWarning,
            stacklevel=3,
        )
    return [raw.ch_names[i] for i in np.flatnonzero(flat)]


def check_recording(raw, variant="ZUNA"):
    """Check that a Raw can go through the preprocessing of ``variant``; raise one clear error if not.

    Parameters
    ----------
    raw : mne.io.Raw
        Usually the output of :func:`read_raw`.
    variant : str
        ``"ZUNA"`` needs at least one full 5 s epoch; ``"ZUNA1.1"`` at least one token (0.125 s).

    Raises
    ------
    zuna_lab.errors.RecordingError

    Examples
    --------
    >>> check_recording(read_raw("../shared/data/sample1_raw.fif"), "ZUNA")  # doctest: +SKIP
    """
    if not isinstance(raw, mne.io.BaseRaw):
        raise ZunaTypeError(f"Expected an mne.io.Raw (e.g. from zuna_lab.read_raw), got {type(raw).__name__}.")
    if variant not in VARIANTS:
        raise ZunaValueError(f"Unknown model variant {variant!r}; use one of {', '.join(map(repr, VARIANTS))}.")
    if not raw.preload:
        raise RecordingError("The Raw is not loaded; call raw.load_data() or read it with zuna_lab.read_raw.")
    non_eeg = [raw.ch_names[i] for i in range(len(raw.ch_names)) if i not in set(mne.pick_types(raw.info, eeg=True, exclude=()))]
    if non_eeg:
        raise RecordingError(f"Channels {_preview(non_eeg)} are not EEG; read the recording with zuna_lab.read_raw first.")
    missing = [ch["ch_name"] for ch in raw.info["chs"] if not _has_position(ch["loc"])]
    if missing:
        raise RecordingError(
            f"Channels {_preview(missing)} have no 3-D position; read the recording with zuna_lab.read_raw "
            "(it finds or drops positions) or call raw.set_montage(...)."
        )
    if len(raw.ch_names) < 2:
        raise RecordingError(
            "ZUNA needs at least 2 EEG channels (the average reference of a single channel is zero); add channels."
        )
    _check_signal(raw)
    constants = VARIANT_CONSTANTS[variant]
    target_sfreq = float(constants["sfreq"])
    n_resampled = int(round(raw.n_times * target_sfreq / raw.info["sfreq"]))
    minimum = float(constants["min_segment_duration"]) if variant == "ZUNA" else _TOKEN_SECONDS
    if n_resampled < int(round(minimum * target_sfreq)):
        raise RecordingError(
            f"The recording lasts {raw.n_times / raw.info['sfreq']:.3f} s but {variant} needs at least "
            f"{minimum:g} s (one {'5 s epoch' if variant == 'ZUNA' else 'token'}); use a longer recording"
            + (" or variant 'ZUNA1.1'." if variant == "ZUNA" else ".")
        )


# --------------------------------------------------------------------------------------
# exporting
# --------------------------------------------------------------------------------------

def _sfreq_of(ds):
    times = np.asarray(ds["time"].values, dtype=float)
    if times.size >= 2:
        return float(round(1.0 / float(np.median(np.diff(times))), 6))
    for key in ("sfreq_model", "model_sfreq"):
        if key in ds.attrs:
            return float(ds.attrs[key])
    return 256.0


def _check_reconstruct_dataset(ds, kind):
    try:
        import xarray as xr
    except ImportError as err:  # pragma: no cover - xarray is a dependency
        raise ZunaTypeError("xarray is required to export results.") from err
    if not isinstance(ds, xr.Dataset):
        raise ZunaTypeError(f"Expected the xarray Dataset from zuna_lab.reconstruct, got {type(ds).__name__}.")
    kinds = ("hybrid", "reconstruction", "original")
    if kind not in kinds:
        raise ZunaValueError(f"kind must be one of {', '.join(map(repr, kinds))}, got {kind!r}.")
    if kind not in ds.data_vars:
        raise ZunaValueError(f"The Dataset has no {kind!r} variable; is it the result of zuna_lab.reconstruct?")
    for name in ("channel", "time", "epoch_start"):
        if name not in ds.coords and name not in ds.variables:
            raise ZunaValueError(f"The Dataset lacks the {name!r} coordinate of a zuna_lab.reconstruct result.")


# --------------------------------------------------------------------------------------
# atomic writers
# --------------------------------------------------------------------------------------

def _target(fname, overwrite):
    path = Path(fname).expanduser()
    if not path.parent.exists():
        raise ZunaValueError(f"Folder {str(path.parent)!r} does not exist; create it first.")
    if path.exists() and not overwrite:
        raise ZunaValueError(f"{str(path)!r} already exists; pass overwrite=True to replace it.")
    return check_writable(path, overwrite)     # a read-only folder fails here, before any work


def _temporary_sibling(path, suffix):
    return path.parent / f".{path.stem}.{uuid.uuid4().hex[:8]}.tmp{suffix}"


def _replace_atomically(write, path, suffix):
    """Call ``write(tmp_path)``, then move the temporary file onto ``path``; clean up on error."""
    tmp = _temporary_sibling(path, suffix)
    try:
        write(tmp)
        if tmp.is_dir():
            _replace_directory(tmp, path)
        else:
            os.replace(tmp, path)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
        raise
    return path


def _replace_directory(tmp, path):
    if not path.exists():
        os.replace(tmp, path)
        return
    # A directory cannot be renamed over a non-empty one: move the old one aside first.
    old = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.old"
    os.replace(path, old)
    try:
        os.replace(tmp, path)
    except BaseException:
        os.replace(old, path)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _netcdf_ready(ds):
    """A copy whose attrs netCDF can hold: dicts, lists, bools and None become JSON strings."""
    out = ds.copy(deep=False)

    def fix(attrs):
        fixed = {}
        for key, value in attrs.items():
            if isinstance(value, (dict, list, tuple, bool, type(None))) or isinstance(value, np.bool_):
                fixed[key] = json.dumps(value, default=_json_default)
            elif isinstance(value, Path):
                fixed[key] = str(value)
            else:
                fixed[key] = value
        return fixed

    out.attrs = fix(out.attrs)
    for name in out.variables:
        out[name].attrs = fix(out[name].attrs)
    return out


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def write_netcdf(ds, fname, *, overwrite=False):
    """Write a result Dataset to netCDF atomically (nested attrs are stored as JSON strings).

    Parameters
    ----------
    ds : xarray.Dataset
    fname : path-like
    overwrite : bool

    Returns
    -------
    path : pathlib.Path

    Examples
    --------
    >>> write_netcdf(emb, "subject01_embedding.nc")  # doctest: +SKIP
    """
    _require_dataset(ds)
    path = _target(fname, overwrite)
    ready = _netcdf_ready(ds)
    return _replace_atomically(lambda tmp: ready.to_netcdf(tmp), path, ".nc")


def write_zarr(ds, store, *, overwrite=False):
    """Write a result Dataset to a zarr directory atomically.

    Parameters
    ----------
    ds : xarray.Dataset
    store : path-like
        Directory to create (conventionally ending in ``.zarr``).
    overwrite : bool

    Returns
    -------
    path : pathlib.Path

    Examples
    --------
    >>> write_zarr(emb, "subject01_embedding.zarr")  # doctest: +SKIP
    """
    _require_dataset(ds)
    path = _target(store, overwrite)
    ready = _netcdf_ready(ds)
    # Zarr format 2: readable everywhere, and it has a specification for string coordinates.
    return _replace_atomically(
        lambda tmp: ready.to_zarr(tmp, mode="w", zarr_format=2, consolidated=True), path, ".zarr"
    )


def _require_dataset(ds):
    import xarray as xr

    if not isinstance(ds, xr.Dataset):
        raise ZunaTypeError(f"Expected an xarray Dataset from zuna_lab, got {type(ds).__name__}.")


def write_safetensors(ds, fname, *, kind="reconstruction", overwrite=False):
    """Write a result in the zuna-rs safetensors layout, atomically.

    An ``embed`` Dataset gives ``embeddings_N`` (S, 32) float32, ``tok_idx_N`` (S, 4) int64 in the
    variant's token order, ``chan_pos_N`` (n_channels, 3) float32 per epoch ``N``; a
    ``reconstruct`` Dataset gives ``reconstructed_N`` (n_channels, n_samples) float32 in volts
    (the ``kind`` signal, NaN padding trimmed) and ``chan_pos_N``. Both add ``n_samples``: a
    one-element float32 tensor holding the number of epochs, as zuna-rs writes it. The file
    metadata records the variant, the channel names and the units.

    Parameters
    ----------
    ds : xarray.Dataset
        Result of :func:`zuna_lab.embed` or :func:`zuna_lab.reconstruct`.
    fname : path-like
    kind : {"reconstruction", "hybrid", "original"}
        Signal of a ``reconstruct`` Dataset to write.
    overwrite : bool

    Returns
    -------
    path : pathlib.Path

    Examples
    --------
    >>> write_safetensors(emb, "subject01.safetensors")  # doctest: +SKIP
    """
    from safetensors.numpy import save_file

    from .tokens import mask_to_sequence, position_bins

    _require_dataset(ds)
    path = _target(fname, overwrite)
    if "sample" in ds.dims:
        ds = ds.isel(sample=0)
    ch_names = [str(name) for name in ds["channel"].values]
    if "ch_pos" not in ds.variables and "ch_x" not in ds.variables:
        raise ZunaValueError("The Dataset has no electrode positions (ch_x, ch_y, ch_z); they are needed for chan_pos_N.")
    ch_pos = channel_positions_of(ds).astype(np.float32)
    tensors = {}
    metadata = {"channels": json.dumps(ch_names), "producer": "zuna_lab"}
    if "embedding" in ds.data_vars:
        variant = str(ds.attrs.get("model_variant", ds.attrs.get("variant", "")))
        if variant not in VARIANTS:
            raise ZunaValueError("The embed Dataset has no valid attrs['model_variant']; it sets the token order of tok_idx_N.")
        emb = np.asarray(ds["embedding"].transpose("epoch", "channel", "token", "latent").values, dtype=np.float32)
        bins = position_bins(ch_pos, variant=variant)
        for e in range(emb.shape[0]):
            real_tokens = np.isfinite(emb[e]).all(axis=(0, 2))
            n_tokens = int(real_tokens.sum())
            grid = emb[e][:, :n_tokens]
            sequence = mask_to_sequence(np.moveaxis(grid, -1, 0), variant=variant)  # (latent, S)
            channel_of, token_of = np.meshgrid(np.arange(len(ch_names)), np.arange(n_tokens), indexing="ij")
            tok_idx = np.concatenate(
                [bins[mask_to_sequence(channel_of, variant=variant)], mask_to_sequence(token_of, variant=variant)[:, None]],
                axis=1,
            )
            tensors[f"embeddings_{e}"] = np.ascontiguousarray(sequence.T, dtype=np.float32)
            tensors[f"tok_idx_{e}"] = np.ascontiguousarray(tok_idx, dtype=np.int64)
            tensors[f"chan_pos_{e}"] = ch_pos.copy()
        metadata.update(variant=variant, content="embeddings")
        n_epochs = emb.shape[0]
    else:
        _check_reconstruct_dataset(ds, kind)
        signal = np.asarray(ds[kind].transpose("epoch", "channel", "time").values, dtype=np.float32)
        for e in range(signal.shape[0]):
            real = np.flatnonzero(np.isfinite(signal[e]).any(axis=0))
            width = int(real[-1]) + 1 if real.size else 0
            tensors[f"reconstructed_{e}"] = np.ascontiguousarray(signal[e][:, :width])
            tensors[f"chan_pos_{e}"] = ch_pos.copy()
        metadata.update(content=kind, units="V", variant=str(ds.attrs.get("model_variant", ds.attrs.get("variant", ""))))
        n_epochs = signal.shape[0]
    tensors["n_samples"] = np.array([n_epochs], dtype=np.float32)
    return _replace_atomically(lambda tmp: save_file(tensors, str(tmp), metadata=metadata), path, ".safetensors")


def channel_positions_of(ds):
    """Electrode positions (n_channels, 3) of a result Dataset (see zuna_lab.datasets.channel_positions)."""
    from .datasets import channel_positions

    return channel_positions(ds)
