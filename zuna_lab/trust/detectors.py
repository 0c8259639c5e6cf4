"""Other bad-channel detectors run on the same recording, for :func:`zuna_lab.screen`'s table.

pyprep's ``NoisyChannels`` (the PREP pipeline's criteria: deviation, correlation, high-frequency
noise, SNR, dropout, flat, and RANSAC) when pyprep is installed (``pip install zuna_lab[screen]``),
and MNE's local outlier factor (:func:`mne.preprocessing.find_bad_channels_lof`). Each returns,
per channel, one short text: the criteria that flagged it, ``""`` when none did, ``"not
installed"`` or ``"failed: …"`` (the other detectors and the screening go on).
"""
from __future__ import annotations

import logging
import warnings

import mne
import numpy as np

from ..errors import warn

__all__ = ["DETECTORS", "pyprep_verdicts", "ransac_verdicts", "lof_verdicts", "run_detectors"]

#: The detectors :func:`run_detectors` knows.
DETECTORS = ("pyprep", "lof")
#: High-pass (Hz) applied before LOF, as MNE's example does (pyprep detrends at 1 Hz itself).
LOF_HIGHPASS = 1.0


def _one_line(err):
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def _quiet():
    """MNE's and pyprep's loggers at error level (pyprep logs through MNE's filters and its own logger)."""
    logging.getLogger("pyprep").setLevel(logging.ERROR)
    return mne.utils.use_log_level("error")


def _eeg_copy(raw):
    out = raw.copy().load_data(verbose="error")
    out.info["bads"] = []          # every channel judged, as the screening judges every channel
    return out


def pyprep_verdicts(raw, *, seed=0):
    """pyprep's ``NoisyChannels.find_all_bads(ransac=True)``: per channel, the criteria that flagged it.

    RANSAC runs only where pyprep can run it: on at least 14 usable channels with positions, over
    more than one 5 s window, with enough channels left once its other criteria have flagged theirs
    (a recording of independent noise has none). Otherwise the other criteria's verdicts are
    returned and a :class:`~zuna_lab.errors.ZunaLabWarning` says in one sentence why RANSAC was
    skipped.

    Returns
    -------
    verdicts : dict of str -> str
        ``"ransac, hf_noise"``, ``""``, ``"not installed"`` or ``"failed: …"`` for every channel.

    Examples
    --------
    >>> pyprep_verdicts(raw)["T7"]      # doctest: +SKIP
    'deviation, ransac'
    """
    def find(finder):
        finder.find_all_bads(ransac=False)
        why = ransac_obstacle(finder)
        if why is None:
            try:
                finder.find_bad_by_ransac()
            except Exception as err:  # noqa: BLE001 - the other criteria stand
                why = _one_line(err).rstrip(".")
        return finder.get_bads(as_dict=True), why and f"pyprep's RANSAC was skipped: {why}."

    found = _noisy_channels(raw, seed, find)
    if isinstance(found, str):
        return dict.fromkeys(raw.ch_names, found)
    found, why = found
    if why:
        warn(why)
    out = {}
    for name in raw.ch_names:
        kinds = [key[len("bad_by_"):] for key, names in found.items()
                 if key.startswith("bad_by_") and name in [str(n) for n in names]]
        out[name] = ", ".join(kinds)
    return out


def ransac_verdicts(raw, *, seed=0):
    """pyprep's RANSAC alone (``NoisyChannels.find_bad_by_ransac``, its defaults): ``"ransac"`` or ``""`` per channel.

    RANSAC predicts each channel from random quarters of the others with spherical splines and
    flags those whose correlation with the prediction stays below 0.75 in 40 % of 5 s windows.
    """
    def find(finder):
        why = ransac_obstacle(finder)
        if why is not None:
            return f"failed: RANSAC cannot run: {why}."
        finder.find_bad_by_ransac()
        return {str(n) for n in finder.bad_by_ransac}

    found = _noisy_channels(raw, seed, find)
    if isinstance(found, str):
        return dict.fromkeys(raw.ch_names, found)
    return {name: "ransac" if name in found else "" for name in raw.ch_names}


#: pyprep's RANSAC defaults: the share of channels each prediction uses, the correlation window (s).
RANSAC_SAMPLE_PROP, RANSAC_WINDOW_S = 0.25, 5.0


def ransac_obstacle(finder):
    """Why pyprep's RANSAC cannot run on ``finder`` (a ``NoisyChannels``), as a clause; None when it can.

    pyprep's own checks (pyprep 0.9, ``ransac.find_bad_by_ransac``) fail with an ``OSError`` or, when its
    other criteria flagged every channel, an ``IndexError``; these are said in plain words instead.
    """
    names = list(finder.ch_names_new)
    n = len(names)
    if int(np.around(RANSAC_SAMPLE_PROP * n)) <= 3:
        need = next(k for k in range(1, 1000) if int(np.around(RANSAC_SAMPLE_PROP * k)) > 3)
        return f"it needs at least {need} usable channels and the recording has {n}"
    positions = finder.raw_mne._get_channel_positions(finder.raw_mne.ch_names)[finder.usable_idx, :]
    if np.isnan(positions).any() or not np.abs(positions).sum():
        return "the channels have no positions (set a montage)"
    excluded = set(finder.bad_by_correlation) | set(finder.bad_by_deviation) | set(finder.bad_by_dropout)
    left, used = n - len(excluded & set(names)), int(np.around(RANSAC_SAMPLE_PROP * n))
    if left < used + 1:
        return (f"its other criteria flagged {n - left} of {n} channels, leaving {left} to predict from "
                f"(it needs {used + 1})")
    if finder.raw_mne.n_times <= RANSAC_WINDOW_S * finder.sample_rate:
        return f"the recording is not longer than its {RANSAC_WINDOW_S:g} s window"
    return None


def _noisy_channels(raw, seed, find):
    """``find(finder)`` on pyprep's ``NoisyChannels`` of the EEG of ``raw``; a string instead when pyprep is
    not installed or fails (a detector that fails is reported in the table, not fatal)."""
    try:
        from pyprep import NoisyChannels
    except ImportError:
        return "not installed"
    try:
        with _quiet(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return find(NoisyChannels(_eeg_copy(raw), do_detrend=True, random_state=int(seed)))
    except Exception as err:      # noqa: BLE001 - a detector that fails is reported, not fatal
        return f"failed: {_one_line(err)}"


def lof_verdicts(raw):
    """MNE's ``find_bad_channels_lof`` (its defaults) on the recording high-passed at 1 Hz.

    Returns
    -------
    verdicts : dict of str -> str
        ``"lof"`` or ``""`` per channel (or ``"failed: …"``).
    scores : dict of str -> float
        The local outlier factor of each channel (NaN when it failed).
    """
    try:
        with _quiet(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            filtered = _eeg_copy(raw).filter(LOF_HIGHPASS, None, verbose="error")
            n_neighbors = min(20, len(raw.ch_names) - 1)
            bads, scores = mne.preprocessing.find_bad_channels_lof(filtered, n_neighbors=n_neighbors,
                                                                   return_scores=True, verbose="error")
    except Exception as err:      # noqa: BLE001
        return dict.fromkeys(raw.ch_names, f"failed: {_one_line(err)}"), dict.fromkeys(raw.ch_names, np.nan)
    return ({name: "lof" if name in bads else "" for name in raw.ch_names},
            {name: float(score) for name, score in zip(raw.ch_names, scores)})


def run_detectors(raw, detectors, *, seed=0):
    """The table columns of ``detectors`` (a subset of :data:`DETECTORS`): name -> {channel: text or number}."""
    columns = {}
    if "pyprep" in detectors:
        columns["pyprep"] = pyprep_verdicts(raw, seed=seed)
    if "lof" in detectors:
        columns["lof"], columns["lof_score"] = lof_verdicts(raw)
    return columns
