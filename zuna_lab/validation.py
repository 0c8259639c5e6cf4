"""Argument checks shared by the public functions and the command line.

Small, pure functions: each takes a value and the name the user knows it by (``"batch_size"``,
``"--bad-channels"``), returns it normalised, or raises one of :mod:`zuna_lab.errors`' classes
with one sentence that says what is wrong and how to fix it. They run at the top of
:func:`zuna_lab.embed`, :func:`zuna_lab.reconstruct`, :func:`zuna_lab.read_raw`, the writers and
the ``zuna-lab`` commands, before anything slow (a model load, preprocessing) or anything written.

Conventions, the same everywhere:

- A list of names (``bad_channels``, ``add_channels``, ``ch_names``) must not be a lone string:
  ``bad_channels="O1"`` is refused with a hint to write ``["O1"]`` (a string is iterable, and
  reading it letter by letter hides the mistake). Names are unique; an empty list means none
  (``ch_names`` must not be empty).
- Channel names given by the user resolve to the recording's channels by exact name first,
  then case-insensitively, then by cleaned electrode name (``"Fp1"`` for ``"EEG Fp1-REF"``),
  each only when exactly one channel matches; an ambiguous name is refused.
- Integers are Python or NumPy integers, never floats or bools; numbers are real and finite.
- A bad segment is ``(start, stop)`` or ``(start, stop, channel)`` in seconds from the first
  sample; ``stop`` may be ``float("inf")`` (or lie past the end): the segment then runs to the
  end of the recording.
"""
from __future__ import annotations

import logging
import math
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from .errors import RecordingFileError, ZunaTypeError, ZunaValueError

__all__ = [
    "check_int", "check_number", "check_bool", "check_verbose", "check_names", "resolve_names",
    "resolve_bad_channels", "check_segments", "resolve_segments", "check_add_channels", "check_mask",
    "check_source", "check_writable", "check_sampler", "check_arguments",
]

#: The largest number of sampler steps accepted (the official inference uses 50).
MAX_STEPS = 1000
#: Classifier-free guidance range (1.0 disables it; the dashboard offers 0-20).
CFG_RANGE = (0.0, 20.0)
_MAX_SEED = 2**63 - 1
_LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_real(value):
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _got(value):
    """``1.5 (float)``: the value and its type, for messages."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def _sentence(text):
    return text[:1].upper() + text[1:]


def _preview(names, limit=40):
    names = list(names)
    shown = ", ".join(names[:limit])
    return shown + (f", … ({len(names)} in all)" if len(names) > limit else "")


# ------------------------------------------------------------------------------------ scalars

def check_int(value, name, *, minimum=None, maximum=None, allow_none=False, hint=""):
    """An integer (Python or NumPy, not a bool or a float) in ``[minimum, maximum]``, or None.

    Parameters
    ----------
    value : object
    name : str
        The argument as the user knows it (``"batch_size"``, ``"--steps"``).
    minimum, maximum : int | None
        Inclusive bounds.
    allow_none : bool
        Accept None (returned as None).
    hint : str
        Appended to the description, e.g. ``"(epochs per forward pass)"``.

    Returns
    -------
    value : int | None

    Examples
    --------
    >>> check_int(4, "batch_size", minimum=1)
    4
    >>> check_int(1.5, "batch_size", minimum=1)
    Traceback (most recent call last):
    ...
    zuna_lab.errors.ZunaTypeError: batch_size must be a positive integer, got 1.5 (float).
    """
    if value is None and allow_none:
        return None
    if minimum is not None and maximum is not None:
        describe = f"an integer from {minimum} to {maximum}"
    elif minimum == 1:
        describe = "a positive integer"
    elif minimum == 0:
        describe = "a non-negative integer"
    elif minimum is not None:
        describe = f"an integer of at least {minimum}"
    else:
        describe = "an integer"
    describe += " or None" if allow_none else ""
    describe += f" {hint}" if hint else ""
    if not _is_int(value):
        raise ZunaTypeError(f"{name} must be {describe}, got {_got(value)}.")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ZunaValueError(f"{name} must be {describe}, got {int(value)}.")
    return int(value)


def check_number(value, name, *, low=None, high=None, low_inclusive=True, allow_none=False, unit="", hint=""):
    """A finite real number (not a bool) in the given range, or None; returned as float.

    Examples
    --------
    >>> check_number(1.0, "cfg", low=0, high=20)
    1.0
    >>> check_number(float("nan"), "cfg", low=0, high=20)
    Traceback (most recent call last):
    ...
    zuna_lab.errors.ZunaValueError: cfg must be a finite number from 0 to 20, got nan.
    """
    if value is None and allow_none:
        return None
    unit_text = f" {unit}" if unit else ""
    if low is not None and high is not None:
        describe = f"a finite number from {low:g} to {high:g}{unit_text}"
    elif low == 0 and not low_inclusive:
        describe = f"a positive number{unit_text}" if unit else "a positive number"
    elif low is not None:
        describe = f"a finite number {'of at least' if low_inclusive else 'above'} {low:g}{unit_text}"
    elif high is not None:
        describe = f"a finite number of at most {high:g}{unit_text}"
    else:
        describe = f"a finite number{unit_text}"
    describe += " or None" if allow_none else ""
    describe += f" {hint}" if hint else ""
    if not _is_real(value):
        raise ZunaTypeError(f"{name} must be {describe}, got {_got(value)}.")
    number = float(value)
    if not math.isfinite(number):
        raise ZunaValueError(f"{name} must be {describe}, got {number}.")
    too_low = low is not None and (number < low if low_inclusive else number <= low)
    too_high = high is not None and number > high
    if too_low or too_high:
        raise ZunaValueError(f"{name} must be {describe}, got {number:g}.")
    return number


def check_bool(value, name, *, allow_none=False):
    """True or False (NumPy bools too), or None when allowed; returned as bool / None."""
    if value is None and allow_none:
        return None
    if not isinstance(value, (bool, np.bool_)):
        raise ZunaTypeError(f"{name} must be True or False{' or None' if allow_none else ''}, got {_got(value)}.")
    return bool(value)


def check_verbose(verbose, name="verbose"):
    """MNE's verbosity: None, a bool, an int logging level or a level name ('error', ...)."""
    if verbose is None or isinstance(verbose, (bool, np.bool_)) or _is_int(verbose):
        return verbose
    if isinstance(verbose, str) and verbose.lower() in _LOG_LEVELS:
        return verbose
    raise ZunaValueError(
        f"{name} must be None, True/False, an int logging level or one of {', '.join(map(repr, _LOG_LEVELS))}, "
        f"got {_got(verbose)}."
    )


def log_level(verbose):
    """The ``logging`` level MNE uses for ``verbose`` (None: MNE's current level)."""
    if verbose is None:
        import mne

        return mne.utils.logger.level
    if isinstance(verbose, (bool, np.bool_)):
        return logging.INFO if verbose else logging.WARNING
    if _is_int(verbose):
        return int(verbose)
    return logging.getLevelName(str(verbose).upper())


# ------------------------------------------------------------------------------------ names

def check_names(value, name, *, allow_none=True, allow_empty=True, ordered=False, what="channel names"):
    """A list of unique, non-empty names (str); a lone string is refused.

    Parameters
    ----------
    value : list | tuple | ndarray | None
    name : str
        The argument, for messages.
    allow_none : bool
        Accept None (returned as None).
    allow_empty : bool
        Accept an empty list.
    ordered : bool
        Refuse sets (the order matters, e.g. ``ch_names`` row by row).
    what : str
        What the names are, for messages.

    Returns
    -------
    names : list of str | None

    Examples
    --------
    >>> check_names(("T7", "O1"), "bad_channels")
    ['T7', 'O1']
    >>> check_names("O1", "bad_channels")
    Traceback (most recent call last):
    ...
    zuna_lab.errors.ZunaTypeError: bad_channels must be a list of channel names, not a single string; write bad_channels=['O1'].
    """
    if value is None:
        if allow_none:
            return None
        raise ZunaTypeError(f"{name} must be a list of {what}, got None.")
    if isinstance(value, (str, bytes, np.str_)):
        raise ZunaTypeError(f"{name} must be a list of {what}, not a single string; write {name}=[{str(value)!r}].")
    if isinstance(value, Mapping) or not isinstance(value, Iterable):
        raise ZunaTypeError(f"{name} must be a list of {what} (str), got {_got(value)}.")
    if ordered and isinstance(value, (set, frozenset)):
        raise ZunaTypeError(f"{name} must be an ordered list of {what} (one per row), not a set.")
    if isinstance(value, np.ndarray) and value.ndim != 1:
        raise ZunaValueError(f"{name} must be a flat list of {what}, got an array of shape {value.shape}.")
    items = list(value)
    names = []
    for item in items:
        if not isinstance(item, str):
            raise ZunaTypeError(f"{name} must hold {what} (str), got {_got(item)}.")
        if not item.strip():
            raise ZunaValueError(f"{name} holds an empty name; every entry must be a channel name such as 'Cz'.")
        names.append(str(item))
    seen = set()
    for item in names:
        if item in seen:
            raise ZunaValueError(f"{name} names {item!r} twice; list each one once.")
        seen.add(item)
    if not names and not allow_empty:
        raise ZunaValueError(f"{name} is empty; give at least one name.")
    return names


def resolve_names(requested, available, what):
    """Map user-given channel names onto a recording's channels; one clear error if one does not fit.

    A name resolves by exact match first, then case-insensitively, then by cleaned electrode
    name (:func:`zuna_lab.io.montage.clean_channel_name`: ``"Fp1"`` finds ``"EEG Fp1-REF"``) — each of
    the last two only when exactly one channel matches.

    Parameters
    ----------
    requested : list of str
    available : list of str
        The recording's channel names.
    what : str
        The argument, for messages (``"bad_channels"``, ``"--bad-channels"``).

    Returns
    -------
    resolved : list of str
        Names of the recording, in the order requested.

    Examples
    --------
    >>> resolve_names(["fp1"], ["Fp1", "Fp2"], "bad_channels")
    ['Fp1']
    >>> resolve_names(["Fp1"], ["Fp1", "fp1"], "bad_channels")    # exact wins
    ['Fp1']
    """
    from .io.montage import clean_channel_name

    requested = check_names(requested, what, allow_none=True) or []
    available = [str(name) for name in available]
    resolved = {}
    for name in requested:
        if name in available:
            match = name
        else:
            match = None
            for key in (str.lower, lambda n: clean_channel_name(n).lower()):
                candidates = [ch for ch in available if key(ch) == key(name)]
                if len(candidates) > 1:
                    raise ZunaValueError(
                        f"{what} names {name!r}, which matches several channels ({', '.join(candidates)}); "
                        "use the exact name."
                    )
                if candidates:
                    match = candidates[0]
                    break
            if match is None:
                raise ZunaValueError(
                    f"{what} names {name!r}, which is not a channel of the recording; choose from {_preview(available)}."
                )
        if match in resolved:
            raise ZunaValueError(
                f"{what} names channel {match!r} twice ({resolved[match]!r} and {name!r}); list each channel once."
            )
        resolved[match] = name
    return list(resolved)


def resolve_bad_channels(bad_channels, raw, what="bad_channels"):
    """Resolve ``bad_channels`` on a Raw and refuse hiding every channel (with ``info["bads"]``).

    Returns
    -------
    resolved : list of str
    """
    resolved = resolve_names(bad_channels, raw.ch_names, what)
    hidden = set(raw.info["bads"]) | set(resolved)
    if raw.ch_names and hidden >= set(raw.ch_names):
        raise ZunaValueError(
            f"Every channel would be hidden (info['bads'] {list(raw.info['bads'])} plus {what} {resolved}), "
            f"so ZUNA has nothing to infill from; keep at least one good channel."
        )
    return resolved


# ------------------------------------------------------------------------------------ segments

def check_segments(bad_segments, what="bad_segments"):
    """Check the recording-free part of bad segments: list of (start, stop[, channel]) in seconds.

    ``stop`` may be ``inf`` (to the end of the recording). Returns a list of tuples with float
    times and the channel name (str) when given.

    Examples
    --------
    >>> check_segments([(2, 3.5), [4, float("inf"), "Fz"]])
    [(2.0, 3.5), (4.0, inf, 'Fz')]
    """
    if bad_segments is None:
        return []
    example = f"{what}=[(2.0, 3.5)]" if not what.startswith("-") else f"{what} 2.0:3.5"
    if isinstance(bad_segments, (str, bytes)):
        raise ZunaTypeError(
            f"{what} must be a list of (start, stop) or (start, stop, channel) tuples in seconds, not a string; e.g. {example}."
        )
    if isinstance(bad_segments, Mapping) or not isinstance(bad_segments, Iterable):
        raise ZunaTypeError(f"{what} must be a list of (start, stop) or (start, stop, channel) tuples in seconds, got {_got(bad_segments)}.")
    segments = list(bad_segments)
    if 2 <= len(segments) <= 3 and _is_real(segments[0]):
        raise ZunaTypeError(f"{what} must be a list of segments; write {what}=[{tuple(segments)!r}] for a single one.")
    spans = []
    for segment in segments:
        if isinstance(segment, np.ndarray):
            segment = tuple(segment.tolist())
        if not isinstance(segment, (tuple, list)) or len(segment) not in (2, 3):
            raise ZunaValueError(
                f"{what} entries must be (start, stop) or (start, stop, channel) in seconds, got {segment!r}."
            )
        start, stop = segment[0], segment[1]
        if not (_is_real(start) and _is_real(stop)):
            raise ZunaTypeError(f"bad segment {segment!r} must give start and stop as numbers of seconds, e.g. (2.0, 3.5).")
        start, stop = float(start), float(stop)
        if math.isnan(start) or math.isnan(stop):
            raise ZunaValueError(f"bad segment {segment!r} has a NaN time; give start and stop in seconds.")
        if math.isinf(start) or stop == -math.inf:
            raise ZunaValueError(
                f"bad segment {segment!r} must start at a finite time; only stop may be inf (to the end of the recording)."
            )
        if not 0 <= start < stop:
            raise ZunaValueError(f"bad segment {segment!r} must have 0 <= start < stop (seconds from the first sample).")
        if len(segment) == 3 and segment[2] is not None:
            channel = segment[2]
            if not isinstance(channel, str):
                raise ZunaTypeError(
                    f"bad segment {segment!r} must name one channel (str) as its third item; give one segment per channel."
                )
            spans.append((start, stop, str(channel)))
        else:
            spans.append((start, stop))
    return spans


def resolve_segments(bad_segments, ch_names, duration, what="bad_segments"):
    """Bad segments checked against a recording: start inside it, stop clipped to its end, channel resolved.

    Parameters
    ----------
    bad_segments : list of tuple | None
    ch_names : list of str
    duration : float
        Length of the recording in seconds.
    what : str

    Returns
    -------
    spans : list of tuple
        ``(start, stop)`` / ``(start, stop, channel)`` with ``stop <= duration``.
    """
    if isinstance(bad_segments, Iterable) and not isinstance(bad_segments, (str, bytes, Mapping, list, tuple)):
        bad_segments = list(bad_segments)        # an iterator is read twice below
    spans = []
    for segment, span in zip(list(bad_segments or ()), check_segments(bad_segments, what)):
        start, stop = span[0], min(span[1], float(duration))
        if start >= duration:
            raise ZunaValueError(f"bad segment {segment!r} starts after the recording ends ({duration:.2f} s).")
        if len(span) == 3:
            spans.append((start, stop, resolve_names([span[2]], ch_names, what)[0]))
        else:
            spans.append((start, stop))
    return spans


# ------------------------------------------------------------------------------------ other arguments

def check_add_channels(add_channels, name="add_channels"):
    """None, a positive count, or a list of unique standard 10-05 names (an empty list means none).

    Returns
    -------
    add_channels : None | int | list of str
        The 10-05 spelling of each name (``"fcz"`` -> ``"FCz"``).
    """
    if add_channels is None:
        return None
    if _is_int(add_channels):
        if add_channels < 1:
            raise ZunaValueError(f"{name} must be a positive count or a list of names, got {int(add_channels)}.")
        return int(add_channels)
    if isinstance(add_channels, (bool, np.bool_, float, np.floating)):
        raise ZunaTypeError(
            f"{name} must be a list of standard 10-05 channel names (e.g. ['FCz']) or a count, got {_got(add_channels)}."
        )
    names = check_names(add_channels, name, what="standard 10-05 channel names")
    if not names:
        return None
    from .io.montage import standard_positions as _standard_head_positions

    standard = _standard_head_positions("standard_1005")
    canonical = []
    for entry in names:
        if entry.lower() not in standard:
            raise ZunaValueError(
                f"{name} names {entry!r}, which is not in the standard 10-05 montage; use names like 'FCz' or 'CP3'."
            )
        proper = standard[entry.lower()][0]
        if proper in canonical:
            raise ZunaValueError(f"{name} names {proper!r} twice; list each new electrode once.")
        canonical.append(proper)
    return canonical


def check_mask(mask, name="mask"):
    """None, or a 3-D boolean array (epoch, channel, token); its exact shape is checked later."""
    if mask is None:
        return None
    try:
        array = np.asarray(mask)
    except (ValueError, TypeError):
        raise ZunaTypeError(f"{name} must be a boolean array (epoch, channel, token), got {_got(mask)}.") from None
    if array.dtype != bool:
        raise ZunaTypeError(f"{name} must be a boolean array (epoch, channel, token), got dtype {array.dtype}.")
    if array.ndim != 3:
        raise ZunaValueError(f"{name} must be a 3-D boolean array (epoch, channel, token), got shape {array.shape}.")
    return array


def check_source(data, name="data", *, epochs=False):
    """A path that exists, a NumPy array or an mne Raw (read_raw's sources); ``mne.Epochs`` with ``epochs``."""
    import mne

    if isinstance(data, (mne.io.BaseRaw, np.ndarray)) or (epochs and isinstance(data, mne.BaseEpochs)):
        return data
    if isinstance(data, (str, os.PathLike)):
        path = Path(data).expanduser()
        if not str(data).strip() or not path.exists():
            raise RecordingFileError(f"File {str(path)!r} does not exist; check the path.")
        return data
    raise ZunaTypeError(
        f"Cannot read a recording from {type(data).__name__}; pass a file path, a NumPy array "
        "(n_channels, n_times) with ch_names and sfreq, or an mne.io.Raw" + (" or mne.Epochs." if epochs else ".")
    )


def _check_array(data, sfreq, ch_names):
    """A NumPy recording: 2-D real numbers with ch_names and sfreq that fit it (as read_raw needs)."""
    if ch_names is None or sfreq is None:
        raise ZunaValueError("A NumPy array needs ch_names= and sfreq= (Hz), e.g. read_raw(data, ch_names=names, sfreq=256).")
    if data.ndim != 2:
        raise ZunaValueError(f"The array must have shape (n_channels, n_times), got {data.shape}.")
    if not np.issubdtype(data.dtype, np.number) or np.iscomplexobj(data):
        raise ZunaTypeError(f"The array must hold real numbers (volts), got dtype {data.dtype}.")
    names = check_names(ch_names, "ch_names", allow_empty=False, ordered=True)
    if len(names) != data.shape[0]:
        raise ZunaValueError(
            f"ch_names has {len(names)} names but the array has {data.shape[0]} rows; the array must be (n_channels, n_times)."
        )


def check_writable(path, overwrite, *, flag="overwrite=True", label="", directory=None):
    """Fail before any work if ``path`` cannot be written: missing or read-only folder, existing target.

    The folder is tested by creating (and removing) an empty hidden file in it, which is what
    the atomic writers do; this also catches what permission bits do not tell (a read-only file
    system, or root on a folder the system refuses).

    Parameters
    ----------
    path : path-like
    overwrite : bool
    flag : str
        How the user asks to overwrite (``"overwrite=True"``, ``"--overwrite"``).
    label : str
        Prefix for messages, e.g. ``"output "`` (the command line).
    directory : bool | None
        False: the target is a file, so an existing folder there is refused; None: not checked.

    Returns
    -------
    path : pathlib.Path
    """
    if not isinstance(path, (str, os.PathLike)):
        raise ZunaTypeError(_sentence(f"{label}path must be a str or a pathlib.Path, got {_got(path)}."))
    path = Path(path).expanduser()
    parent = path.parent
    check_bool(overwrite, flag.split("=")[0].lstrip("-"))
    if not parent.exists():
        raise ZunaValueError(_sentence(f"{label}folder {str(parent)!r} does not exist; create it first."))
    if not parent.is_dir():
        raise ZunaValueError(f"{str(parent)!r} is a file, not a folder; choose an output path inside a folder.")
    if directory is False and path.is_dir():
        raise ZunaValueError(_sentence(f"{label}{str(path)!r} is a folder; choose a file name for the output."))
    if path.exists() and not overwrite:
        raise ZunaValueError(_sentence(f"{label}{str(path)!r} already exists; pass {flag} to replace it."))
    reason = None
    if not os.access(parent, os.W_OK | os.X_OK):
        reason = "permission denied"
    else:
        try:
            handle, probe = tempfile.mkstemp(prefix=".zuna_lab_write_test_", dir=parent)
        except OSError as err:
            reason = (err.strerror or type(err).__name__).lower()
        else:
            os.close(handle)
            os.unlink(probe)
    if reason is not None:
        raise ZunaValueError(f"Cannot write to folder {str(parent)!r} ({reason}); choose an output folder you can write to.")
    return path


def check_sampler(*, steps=50, cfg=1.0, seed=None, n_samples=1):
    """The sampler's arguments: steps 1-1000, cfg 0-20 (finite), seed a non-negative int or None, n_samples >= 1."""
    check_int(steps, "steps", minimum=1, maximum=MAX_STEPS, hint="(50 as the official inference)")
    check_number(cfg, "cfg", low=CFG_RANGE[0], high=CFG_RANGE[1], hint="(1.0 disables guidance)")
    check_int(seed, "seed", minimum=0, maximum=_MAX_SEED, allow_none=True)
    check_int(n_samples, "n_samples", minimum=1)


_UNSET = object()


def check_arguments(*, data=_UNSET, segment_duration=None, bad_channels=None, bad_segments=None, use_annotations=True,
                    mask=None, add_channels=None, batch_size=None, sfreq=None, ch_names=None, progress=None,
                    callback=None, verbose=None, steps=_UNSET, cfg=_UNSET, seed=None, n_samples=_UNSET,
                    epochs_allowed=False, **_ignored):
    """Check the arguments of :func:`zuna_lab.embed` / :func:`zuna_lab.reconstruct` / the study entry points.

    Everything that can be checked without the recording or the model: types, finiteness,
    ranges, lists of names, segments. Unknown keywords are ignored. ``epochs_allowed``: mne.Epochs (embed).
    """
    if data is not _UNSET:
        check_source(data, epochs=epochs_allowed)
        if isinstance(data, np.ndarray):
            _check_array(data, sfreq, ch_names)
    check_number(segment_duration, "segment_duration", low=0, low_inclusive=False, allow_none=True, unit="of seconds")
    check_names(bad_channels, "bad_channels")
    check_segments(bad_segments, "bad_segments")
    check_bool(use_annotations, "use_annotations")
    check_mask(mask)
    check_add_channels(add_channels)
    check_int(batch_size, "batch_size", minimum=1, allow_none=True, hint="(epochs per forward pass)")
    check_number(sfreq, "sfreq", low=0, low_inclusive=False, allow_none=True, unit="of Hz")
    check_names(ch_names, "ch_names", allow_empty=False, ordered=True)
    check_bool(progress, "progress", allow_none=True)
    if callback is not None and not callable(callback):
        raise ZunaTypeError(f"callback must be a function callback(done, total) or None, got {_got(callback)}.")
    check_verbose(verbose)
    if steps is not _UNSET:
        check_sampler(steps=steps, cfg=cfg, seed=seed, n_samples=n_samples)
