"""Reading a recording: any format MNE reads, a CSV, a NumPy array or an mne Raw, checked and given positions.

:func:`read_raw` returns a preloaded copy with only the EEG channels that have a 3-D position
(from the file, else from the standard 10-05 cap by cleaned name), and refuses — in one sentence —
files and data ZUNA cannot use. :func:`find_source` finds the whole recording a result came from
again (every channel), for :func:`zuna_lab.to_raw`.
"""
from __future__ import annotations

import csv
import logging
import os
import re
import uuid
import warnings
import weakref
import zlib
from pathlib import Path

import mne
import numpy as np

from ..errors import RecordingError, RecordingFileError, ZunaTypeError, ZunaValueError, preview, warn
from .bids import bids_root_of, read_bids_raw
from .diagnosis import montage_warning
from .montage import apply_positions, has_position, warn_shared_positions, standard_positions
from .quality import SpanReader, check_signal
from ..logs import logger, verbose
from ..validation import check_bool, check_names, check_number, check_verbose, log_level

__all__ = ["read_raw", "find_source", "remember_source", "recording_fingerprint", "source_name"]


#: First-column names of a CSV that hold the time in seconds, and in milliseconds.
CSV_TIME_SECONDS = {"time", "times", "t", "time_s", "time (s)", "seconds", "timestamp", "timestamps"}
CSV_TIME_MS = {"time_ms", "time (ms)", "ms", "milliseconds", "timestamp_ms"}


def read_csv_file(path, *, sfreq, ch_names, verbose):
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
    first = header[0].lower()
    in_ms = first in CSV_TIME_MS
    has_time = in_ms or first in CSV_TIME_SECONDS
    names = header[1:] if has_time else header
    data = values[:, 1:].T if has_time else values.T
    if ch_names is not None:
        if len(ch_names) != data.shape[0]:
            raise ZunaValueError(f"ch_names has {len(ch_names)} names but the CSV has {data.shape[0]} channel columns.")
        names = list(ch_names)
    if has_time:
        unit = 1e-3 if in_ms else 1.0
        file_sfreq = _csv_rate(path, values[:, 0] * unit, [row[0] for row in rows[1:]], unit=unit)
        if file_sfreq < 1.0 and not in_ms:
            raise RecordingError(
                f"The time column {header[0]!r} of {path} steps by {np.median(np.diff(values[:, 0])):.6g}, which in "
                f"seconds is {file_sfreq:.4g} Hz — no EEG rate; if its times are in milliseconds, name the column "
                "'time_ms'.")
        if sfreq is not None and abs(file_sfreq - sfreq) > 0.01 * sfreq:
            raise ZunaValueError(
                f"sfreq={sfreq} disagrees with the CSV time column ({file_sfreq:.3f} Hz); drop sfreq or fix the file."
            )
        sfreq = sfreq if sfreq is not None else file_sfreq
    elif sfreq is None:
        raise ZunaValueError(f"CSV file {path} has no time column; pass sfreq= (Hz) or add a first column named 'time'.")
    return raw_from_array(data, sfreq=sfreq, ch_names=names, verbose=verbose)


def _decimal_quantum(cell):
    """The rounding step of a number as written (``"0.003906"`` -> 1e-6); 0 when unknown."""
    import decimal

    try:
        exponent = decimal.Decimal(cell.strip()).as_tuple().exponent
    except (decimal.InvalidOperation, ValueError):
        return 0.0
    return 10.0 ** exponent if isinstance(exponent, int) else 0.0


def _csv_rate(path, times, cells, *, unit=1.0):
    """Sampling rate from a CSV time column: from its whole span, snapped to a whole Hz within 0.1 %.

    Steps that differ from the rate by more than the column's rounding (e.g. 6 decimals) are
    jitter: a warning; a step off by half a sample or more (a gap, a repeated time) is refused.
    ``times`` in seconds; ``unit`` the seconds of the written cells' unit (1e-3 for milliseconds).
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
    quantum = max(_decimal_quantum(cell) for cell in written) * unit       # the cells' rounding, in seconds
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
        warn(f"The time column of {path} is irregular (steps from {step.min():.6g} to {step.max():.6g} s, more than "
            f"its rounding); zuna_lab reads the samples as evenly spaced at {rate:g} Hz.")
    return rate


def raw_from_array(data, *, sfreq, ch_names, verbose):
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


def one_line(err, limit=160):
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


def read_recording_file(path, *, verbose, preload=True):
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
    bids_root = bids_root_of(path)
    try:
        # MNE emits its warnings only when its log level lets them through: read at least at
        # "warning" level to catch those that mean a damaged file, re-emit the rest as asked.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if bids_root is not None:      # channels.tsv, electrodes.tsv and events.tsv count (zuna_lab.io.bids)
                raw = read_bids_raw(path, bids_root, verbose=min(level, logging.WARNING), preload=preload)
            else:
                raw = mne.io.read_raw(path, preload=preload, verbose=min(level, logging.WARNING))
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as err:
        if isinstance(err, ValueError) and "Unsupported file type" in str(err):
            raise RecordingFileError(
                f"Cannot read {path.name!r}: {path.suffix or 'no extension'} is not a recording format MNE reads "
                "(use FIF, EDF, BDF, BrainVision .vhdr, EEGLAB .set, … or a CSV)."
            ) from None
        raise RecordingError(
            f"{'MNE' if bids_root is None else 'mne-bids'} could not read {path.name!r} ({one_line(err)}); check "
            f"that it is a complete, valid {path.suffix or 'recording'} file"
            + ("." if bids_root is None else " and that its BIDS sidecar files (channels.tsv, …) match it.")
        ) from err
    damaged = [str(w.message) for w in caught if _DAMAGED_FILE.search(str(w.message))]
    if damaged:
        raise RecordingError(
            f"{path.name!r} looks truncated or damaged (MNE: {one_line(damaged[0]).split(': ', 1)[1]}); "
            "copy or export the complete recording again."
        )
    if path.suffix.lower() == ".vhdr" and any("outside data range" in str(w.message) for w in caught):
        warn(f"{path.name!r} has markers after the end of its data, so its data file may be cut short; "
            "check that the recording is complete.")
    for w in caught:
        if not issubclass(w.category, RuntimeWarning) or level <= logging.WARNING:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return raw


def load_source(source, *, sfreq=None, ch_names=None, preload=True, verbose=None):
    """The one dispatch on what a recording was given as: a Raw (copied), an array, a CSV or another file.

    Returns the recording as it is (every channel, positions only from the file); :func:`read_raw`
    then picks and places the EEG channels, :func:`zuna_lab.check_montage` diagnoses them.
    """
    if isinstance(source, mne.io.BaseRaw):
        if sfreq is not None or ch_names is not None:
            raise ZunaValueError("sfreq= and ch_names= are only for NumPy or CSV input; a Raw already has them.")
        if source.preload and np.iscomplexobj(source._data):
            raise RecordingError("The Raw holds complex samples (e.g. from a Hilbert transform); pass the real "
                                 "signal, or its real part: raw.copy().apply_function(np.real).")
        raw = source.copy()
        if preload or raw.preload:
            raw.load_data(verbose=verbose if verbose is not None else "error")
    elif isinstance(source, np.ndarray):
        raw = raw_from_array(source, sfreq=sfreq, ch_names=ch_names, verbose=verbose)
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        if path.suffix.lower() in {".csv", ".tsv"}:
            if not path.exists():
                raise RecordingFileError(f"File {str(path)!r} does not exist; check the path.")
            raw = read_csv_file(path, sfreq=sfreq, ch_names=ch_names, verbose=verbose)
        else:
            if sfreq is not None or ch_names is not None:
                raise ZunaValueError("sfreq= and ch_names= are only for NumPy or CSV input; the file already has them.")
            raw = read_recording_file(path, verbose=verbose, preload=preload)
    else:
        raise ZunaTypeError(
            f"Cannot read a recording from {type(source).__name__}; pass a file path, a NumPy array "
            "(n_channels, n_times) with ch_names and sfreq, or an mne.io.Raw."
        )
    return raw


def check_montage_name(montage):
    """A standard montage's name (known to MNE), a DigMontage or None; one sentence otherwise."""
    if isinstance(montage, str):
        try:
            standard_positions(montage)
        except ValueError as err:
            raise ZunaValueError(
                f"Unknown montage {montage!r}; pass a name from mne.channels.get_builtin_montages() or a DigMontage."
            ) from err
    elif montage is not None and not isinstance(montage, mne.channels.DigMontage):
        raise ZunaTypeError(f"montage must be a montage name, a DigMontage or None, got {type(montage).__name__}.")


@verbose
def read_raw(source, *, montage="standard_1005", sfreq=None, ch_names=None, preload=True, verbose=None):
    """Load a recording as an ``mne.io.Raw`` with EEG channels that have a 3-D position.

    Positions come from the file when every EEG channel has one; otherwise they are looked up in
    ``montage`` by cleaned channel name (see :func:`clean_channel_name`: case-insensitive,
    ``EEG`` prefixes and reference suffixes such as ``-REF``/``-A1`` removed). Channels that still
    have no position are dropped with a :class:`~zuna_lab.errors.ZunaLabWarning` naming them.
    Channel names are kept as they are. The input is never modified. A recording file of a BIDS
    dataset (``<root>/sub-…/[ses-…/]eeg/sub-…_eeg.<ext>``) is read through mne-bids, so its
    ``channels.tsv`` (types, bad channels), ``electrodes.tsv`` (measured positions, used before
    ``montage``) and ``events.tsv`` (annotations) count.

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
    preload : bool
        False reads a file's samples only when asked (``raw.get_data(start=, stop=)``), for
        recordings longer than memory: the checks then read the file once, span by span
        (:func:`zuna_lab.embed` with ``out=`` does this). Arrays, CSV files and Raws given
        already loaded are always loaded.
    verbose : bool | str | int | None
        MNE verbosity.

    Returns
    -------
    raw : mne.io.Raw
        A new Raw (preloaded unless ``preload=False`` for a file).

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
    check_bool(preload, "preload")
    check_montage_name(montage)
    sfreq = check_number(sfreq, "sfreq", low=0, low_inclusive=False, allow_none=True, unit="of Hz")
    ch_names = check_names(ch_names, "ch_names", allow_empty=False, ordered=True)
    raw = load_source(source, sfreq=sfreq, ch_names=ch_names, preload=preload, verbose=verbose)
    eeg_names = [raw.ch_names[i] for i in mne.pick_types(raw.info, eeg=True, exclude=())]
    if not eeg_names:
        raise RecordingError(
            "The recording has no EEG channels; set channel types with raw.set_channel_types({...: 'eeg'})."
        )
    note = montage_warning(raw, montage)    # one sentence when names or positions look off (zuna_lab.io.diagnosis)
    if note:
        warn(note)
    raw.pick(eeg_names, verbose="error")

    apply_positions(raw, montage, verbose)
    has_pos = [has_position(ch["loc"]) for ch in raw.info["chs"]]
    dropped = [name for name, ok in zip(raw.ch_names, has_pos) if not ok]
    kept = [name for name, ok in zip(raw.ch_names, has_pos) if ok]
    if not kept:
        raise RecordingError(
            f"No EEG channel has a 3-D position (none of {preview(raw.ch_names)} is in the "
            f"{montage!r} montage); set one with raw.set_montage(...) or rename the channels to 10-05 names."
        )
    if dropped:
        warn(f"Dropped {len(dropped)} EEG channel(s) without a 3-D position: {', '.join(dropped)}.")
        raw.pick(kept, verbose="error")
    warn_shared_positions(raw)
    flat = [name for name in check_signal(raw, warn=True) if name not in raw.info["bads"]]
    if flat:
        raw.info["bads"] = list(raw.info["bads"]) + flat
        many = len(flat) > 1
        warn(f"Channel{'s' if many else ''} {', '.join(flat)} {'are' if many else 'is'} flat (no signal), so "
            f"{'they are' if many else 'it is'} marked bad (info['bads']) and ZUNA infills {'them' if many else 'it'}; "
            "drop flat channels with raw.drop_channels([...]) to leave them out instead.")
    logger.info("read_raw: %d EEG channels, %g s at %g Hz, from %s.", len(raw.ch_names), raw.times[-1] + 1 / raw.info["sfreq"],
                raw.info["sfreq"], source_name(source) or type(source).__name__)
    return raw


#: In-memory recordings given to reconstruct, while the user still holds them (weakly referenced).
_LIVE_SOURCES = weakref.WeakValueDictionary()


def trials_as_raw(epochs):
    """The trials of ``mne.Epochs`` one after the other as a Raw with the epochs' info, so that
    :func:`read_raw` reads, checks and places their channels as any recording's."""
    data = epochs.get_data()
    n_trials, n_channels, n_times = data.shape
    if n_trials == 0:
        raise RecordingError("The Epochs hold no trial (all dropped?); check epochs.drop_log.")
    return mne.io.RawArray(data.transpose(1, 0, 2).reshape(n_channels, n_trials * n_times), epochs.info.copy(),
                           verbose="error")


def remember_source(data):
    """A key under which :func:`to_raw` finds ``data`` again while it lives ("" for files and arrays)."""
    if not isinstance(data, mne.io.BaseRaw):
        return ""
    key = uuid.uuid4().hex
    _LIVE_SOURCES[key] = data
    return key


def recording_fingerprint(raw):
    """A short digest of a Raw's channel names, rate, length and samples (a strided subset).

    ``reconstruct`` stores the fingerprint of the EEG it read (``attrs["source_fingerprint"]``);
    :func:`to_raw` checks that the recording it splices the repair into is that one.

    Examples
    --------
    >>> recording_fingerprint(zl.read_raw("data/sample_synthetic_raw.fif"))  # doctest: +SKIP
    '19x30720@256:5d0f3c2a'
    """
    step = max(1, raw.n_times // 65536)
    if raw.preload:
        strided = raw._data[:, ::step]
    else:       # the same samples, read span by span (a recording longer than memory)
        span = max(step, SpanReader(raw).SPAN // step * step)
        strided = np.concatenate([raw.get_data(start=start, stop=min(start + span, raw.n_times))[:, ::step].copy()
                                  for start in range(0, raw.n_times, span)], axis=1)     # copies: spans freed
    digest = zlib.crc32(np.ascontiguousarray(strided, dtype=np.float64).tobytes())
    digest = zlib.crc32("|".join(raw.ch_names).encode(), digest)
    return f"{len(raw.ch_names)}x{raw.n_times}@{raw.info['sfreq']:g}:{digest:08x}"


def find_source(attrs, raw=None, *, preload=True):
    """The whole recording (every channel) a result came from, checked to hold the EEG it used; None if unknown.

    Parameters
    ----------
    attrs : dict
        The result's attrs: ``source_fingerprint``, ``source_ref`` (an in-memory Raw given to
        ``reconstruct``, while it lives), ``source_file``, ``source_sfreq``.
    raw : mne.io.Raw | path-like | None
        The recording, when the user names it.
    preload : bool
        Load the recording (a copy); False leaves a file unloaded (read span by span: a streamed result's
        recording may not fit in memory).

    Returns
    -------
    recording : mne.io.Raw | None
        A copy, preloaded if asked; None when nothing is known.

    Examples
    --------
    >>> find_source(rec.attrs).ch_names[-3:]  # doctest: +SKIP
    ['STI 014', 'EOG061', 'ECG063']
    """
    expected = attrs.get("source_fingerprint")
    given = raw is not None
    if not given:
        raw = _LIVE_SOURCES.get(str(attrs.get("source_ref", "")))
    if raw is None:
        source = str(attrs.get("source_file", "") or "")
        if not source or not Path(source).expanduser().is_file():
            return None
        raw = source
    if isinstance(raw, mne.io.BaseRaw):
        full = raw.copy().load_data(verbose="error") if preload else raw.copy()
    elif isinstance(raw, (str, os.PathLike)):
        path = Path(raw).expanduser()
        if path.suffix.lower() in {".csv", ".tsv"}:
            full = read_csv_file(path, sfreq=float(attrs.get("source_sfreq", 0)) or None, ch_names=None, verbose="error")
        else:
            full = read_recording_file(path, verbose="error", preload=preload)
    else:
        raise ZunaTypeError(f"raw must be the mne Raw or the file the result came from, got {type(raw).__name__}.")
    if expected:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = recording_fingerprint(read_raw(full, preload=preload, verbose="error"))
        if found != expected:
            what = "raw=" if given else ("The Raw given to reconstruct (changed since?)" if isinstance(raw, mne.io.BaseRaw)
                                         else f"The source file {str(raw)!r}")
            raise ZunaValueError(
                f"{what} does not hold the EEG this result was reconstructed from (it differs in channels, length "
                "or samples); pass raw= the very recording you gave to reconstruct.")
    return full


def source_name(data):
    """The file a recording came from (a path, or the file an MNE Raw was read from), else ""."""
    if isinstance(data, (str,)) or hasattr(data, "__fspath__"):
        return str(data)
    if isinstance(data, mne.io.BaseRaw) and data.filenames and data.filenames[0]:
        return str(data.filenames[0])
    return ""
