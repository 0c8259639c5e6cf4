"""Event-locked trials: MNE events turned into windows of whole tokens at the model's rate.

A trial spans ``[tmin, tmax]`` around its event, widened to whole 0.125 s tokens so that the event
(t = 0) falls on a token boundary: it starts ``floor(tmin / 0.125)`` tokens before the event and
ends ``ceil(tmax / 0.125)`` tokens after it. ZUNA1.1 takes each trial as one segment (0.5–30 s);
ZUNA was trained on 5 s epochs only, so its trials must last 5 s.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..config import TOKEN_SECONDS, VARIANT_CONSTANTS
from ..errors import RecordingError, ZunaTypeError, ZunaValueError, preview

__all__ = ["Trials", "check_event_arguments", "event_trials", "epochs_trials"]


@dataclass(frozen=True, eq=False)
class Trials:
    """Event-locked windows of one recording, at the model's rate.

    Attributes
    ----------
    start : ndarray of int
        First sample of each window, counted from the recording's first sample, at ``sfreq``.
    n_samples : int
        Samples per window (whole tokens).
    tmin : float
        Start of each window relative to its event, in seconds (a whole number of tokens).
    sfreq : float
        The model's rate.
    name, code, sample, time : ndarray
        Per trial: the event's name (from ``event_id``), its code, its sample in MNE's numbering
        (``first_samp`` included) and its time in seconds (from the recording's first sample; for
        ``mne.Epochs``, the sample divided by the rate).
    metadata : dict of str to ndarray
        Further per-trial values (the columns of ``epochs.metadata``).
    """

    start: np.ndarray
    n_samples: int
    tmin: float
    sfreq: float
    name: np.ndarray
    code: np.ndarray
    sample: np.ndarray
    time: np.ndarray
    metadata: dict = field(default_factory=dict)

    def coords(self) -> dict:
        """The ``epoch`` coordinates of a result: event name, code, sample and time, and the metadata
        (a column whose name is taken already gets the prefix ``metadata_``)."""
        coords = {"event": self.name, "event_code": self.code, "event_sample": self.sample, "event_time": self.time}
        for name, values in self.metadata.items():
            taken = name in coords or name in RESERVED_COORDS
            coords[f"metadata_{name}" if taken else name] = values
        return coords


#: Coordinates every result has already (a metadata column of one of these names is renamed).
RESERVED_COORDS = ("epoch", "channel", "token", "latent", "time", "sample", "epoch_start", "token_time", "ch_x",
                   "ch_y", "ch_z", "added")


def epochs_trials(epochs, tmin: float, sfreq: float) -> Trials:
    """The trials of ``mne.Epochs``: event names (from ``epochs.event_id``), codes, samples and times,
    and every ``epochs.metadata`` column; ``tmin`` is the first token's time from the event."""
    names = {int(code): name for name, code in epochs.event_id.items()}
    codes = epochs.events[:, 2].astype(np.int64)
    metadata = {} if epochs.metadata is None else {
        str(column): epochs.metadata[column].to_numpy() for column in epochs.metadata.columns}
    return Trials(start=np.zeros(len(codes), np.int64), n_samples=0, tmin=tmin, sfreq=sfreq,
                  name=np.array([names.get(int(c), str(int(c))) for c in codes], dtype=object), code=codes,
                  sample=epochs.events[:, 0].astype(np.int64), time=epochs.events[:, 0] / float(epochs.info["sfreq"]),
                  metadata=metadata)


def _event_ids(events, event_id) -> dict:
    """``event_id`` as {name: code}, every code present among ``events``."""
    present = sorted({int(code) for code in events[:, 2]})
    if event_id is None:
        return {str(code): code for code in present}
    if isinstance(event_id, (int, np.integer)) and not isinstance(event_id, bool):
        event_id = {str(int(event_id)): int(event_id)}
    if not isinstance(event_id, dict) or not all(isinstance(k, str) and isinstance(v, (int, np.integer))
                                                 and not isinstance(v, bool) for k, v in event_id.items()):
        raise ZunaTypeError("event_id must be a dict of event names to integer codes (as in mne.Epochs), an int, "
                            f"or None for every code; got {event_id!r}.")
    missing = {name: code for name, code in event_id.items() if int(code) not in present}
    if missing:
        raise ZunaValueError(f"event_id {missing} names codes that no event has (the events' codes are {present}); "
                             "drop them from event_id or check the events.")
    return {name: int(code) for name, code in event_id.items()}


def _check_events(events) -> np.ndarray:
    events = np.asarray(events) if isinstance(events, (list, tuple, np.ndarray)) else events
    if not isinstance(events, np.ndarray) or events.ndim != 2 or events.shape[1] != 3 or len(events) == 0 \
            or not np.issubdtype(events.dtype, np.integer):
        raise ZunaTypeError("events must be MNE's integer array of shape (n_events, 3) (sample, previous value, "
                            "code), e.g. from mne.find_events(raw) or mne.events_from_annotations(raw)[0].")
    return events


def _window_tokens(tmin, tmax, variant) -> tuple[int, int]:
    """(first, end) token offsets from the event: [tmin, tmax] widened to whole tokens."""
    for name, value in (("tmin", tmin), ("tmax", tmax)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not np.isfinite(value):
            raise ZunaTypeError(f"{name} must be a number of seconds around the event, got {value!r}.")
    if not tmax > tmin:
        raise ZunaValueError(f"tmax ({tmax:g} s) must be after tmin ({tmin:g} s).")
    first = math.floor(tmin / TOKEN_SECONDS + 1e-9)
    end = math.ceil(tmax / TOKEN_SECONDS - 1e-9)
    seconds = (end - first) * TOKEN_SECONDS
    constants = VARIANT_CONSTANTS[variant]
    if variant == "ZUNA" and not math.isclose(seconds, float(constants["segment_duration"])):
        raise ZunaValueError(
            f"ZUNA was trained on 5 s epochs only, and tmin={tmin:g}, tmax={tmax:g} make {seconds:g} s windows; "
            f"use tmax = tmin + 5 (e.g. tmin={tmin:g}, tmax={tmin + 5:g}), or the ZUNA1.1 model for 0.5–30 s trials.")
    low, high = float(constants["min_segment_duration"]), float(constants["max_segment_duration"])
    if not low <= seconds <= high:
        raise ZunaValueError(f"{variant} takes trials of {low:g} to {high:g} s, and tmin={tmin:g}, tmax={tmax:g} make "
                             f"{seconds:g} s windows (whole 0.125 s tokens); choose tmin and tmax within that.")
    return first, end


def check_event_arguments(events, event_id, tmin, tmax, variant):
    """Everything about the events that can be checked without the recording (before reading it):
    returns (events, {name: code}, first token, end token)."""
    if tmin is None or tmax is None:
        raise ZunaValueError("events need tmin and tmax: the window around each event in seconds "
                             "(e.g. tmin=-0.5, tmax=1.5).")
    events = _check_events(events)
    ids = _event_ids(events, event_id)
    first, end = _window_tokens(tmin, tmax, variant)
    return events, ids, first, end


def event_trials(raw, events, event_id, tmin, tmax, variant) -> Trials:
    """The event-locked windows of ``raw`` (a Raw from :func:`zuna_lab.read_raw`) for ``variant``.

    Parameters
    ----------
    raw : mne.io.Raw
    events : ndarray of int, shape (n_events, 3)
        MNE events (sample numbers include ``raw.first_samp``).
    event_id : dict of str to int | int | None
        The events to keep, by name; None keeps every code (named by the code).
    tmin, tmax : float
        The window around each event, in seconds, widened to whole tokens.
    variant : {"ZUNA", "ZUNA1.1"}

    Returns
    -------
    trials : Trials
        One window per kept event, in the events' order.

    Examples
    --------
    >>> trials = event_trials(raw, mne.find_events(raw), {"left": 1, "right": 2}, -0.5, 1.5, "ZUNA1.1")  # doctest: +SKIP
    """
    events, ids, first, end = check_event_arguments(events, event_id, tmin, tmax, variant)
    names = {code: name for name, code in ids.items()}
    kept = events[np.isin(events[:, 2], list(names))]
    sfreq = float(VARIANT_CONSTANTS[variant]["sfreq"])
    spt = int(VARIANT_CONSTANTS[variant]["samples_per_token"])
    source = float(raw.info["sfreq"])
    time = (kept[:, 0] - raw.first_samp) / source
    at_model_rate = np.round(time * sfreq).astype(np.int64)
    start = at_model_rate + first * spt
    n_samples = (end - first) * spt
    n_model = int(round(raw.n_times * sfreq / source))
    outside = (start < 0) | (start + n_samples > n_model)
    if outside.any():
        where = [f"{t:.3f} s" for t in time[outside]]
        raise RecordingError(
            f"{int(outside.sum())} of {len(kept)} event windows ({first * TOKEN_SECONDS:g} to {end * TOKEN_SECONDS:g} s "
            f"around events at {preview(where)}) reach outside the recording (0 to {raw.n_times / source:.3f} s); "
            "drop those events or shorten tmin/tmax.")
    return Trials(start=start, n_samples=n_samples, tmin=first * TOKEN_SECONDS, sfreq=sfreq,
                  name=np.array([names[int(c)] for c in kept[:, 2]], dtype=object), code=kept[:, 2].astype(np.int64),
                  sample=kept[:, 0].astype(np.int64), time=time)
