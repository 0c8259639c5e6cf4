"""What to hide from the model, in recording time: bad channels, bad segments, BAD_ annotations, added channels.

The second stage of :func:`zuna_lab.embed` / :func:`zuna_lab.reconstruct`, after reading and
before preprocessing. :func:`request` gathers everything the user and the recording say should be
hidden (channel names, spans in seconds from the first sample, a token mask array) and the
electrodes to add; :func:`zuna_lab.pipeline.tokens.epoch_masks` turns the request into token masks once
the recording is cut into epochs.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import ZunaValueError
from ..io.montage import clean_channel_name, standard_positions
from ..validation import check_add_channels, resolve_bad_channels, resolve_segments

__all__ = ["MaskRequest", "request", "hidden_channels", "bad_annotation_spans", "added_channels"]


@dataclass(frozen=True)
class MaskRequest:
    """What to hide and what to add, before the recording is cut into epochs.

    Attributes
    ----------
    bads : tuple of str
        Channels hidden everywhere (``info["bads"]`` and ``bad_channels``).
    spans : list of tuple
        ``(start, stop)`` or ``(start, stop, channel)`` in seconds from the first sample.
    mask : ndarray of bool (epoch, channel, token) | None
        Further tokens to hide, as the user gave them.
    added_names : list of str
    added_positions : ndarray, shape (n_added, 3)
        Head-frame positions (metres) of the electrodes to add.
    """

    bads: tuple
    spans: list
    mask: object = None
    added_names: tuple = ()
    added_positions: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))


def hidden_channels(raw, bad_channels=None):
    """``info["bads"]`` plus ``bad_channels`` (resolved to the recording's names), in order, no repeats."""
    resolved = resolve_bad_channels(bad_channels, raw)    # refuses hiding every channel
    return tuple(dict.fromkeys(list(raw.info["bads"]) + resolved))


def request(raw, *, bads, bad_segments=None, use_annotations=True, mask=None, add_channels=None):
    """Everything to hide (and add) for one call, in recording time.

    Parameters
    ----------
    raw : mne.io.Raw
        From :func:`zuna_lab.read_raw` (its annotations give the ``BAD_`` spans).
    bads : tuple of str
        From :func:`hidden_channels`.
    bad_segments, use_annotations, mask, add_channels
        As in :func:`zuna_lab.reconstruct`.

    Returns
    -------
    request : MaskRequest

    Examples
    --------
    >>> req = request(raw, bads=("T7",), bad_segments=[(2.0, 3.5)])  # doctest: +SKIP
    >>> req.spans  # doctest: +SKIP
    [(2.0, 3.5)]
    """
    duration = raw.n_times / raw.info["sfreq"]
    spans = resolve_segments(bad_segments, raw.ch_names, duration)
    if use_annotations:
        spans += list(bad_annotation_spans(raw))
    if _covers([span for span in spans if len(span) == 2], duration) or (mask is not None and np.all(mask)):
        raise ZunaValueError("Every cell would be hidden (bad_segments, BAD_ annotations or mask cover the whole "
                             "recording on every channel), so ZUNA has nothing to infill from; keep part of the "
                             "recording visible.")
    names, positions = added_channels(raw, add_channels)
    return MaskRequest(bads=tuple(bads), spans=spans, mask=mask, added_names=tuple(names), added_positions=positions)


def _covers(spans, duration):
    """Whether the (start, stop) spans together cover [0, duration)."""
    reached = 0.0
    for start, stop in sorted(spans):
        if start > reached:
            return False
        reached = max(reached, stop)
    return reached >= duration


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
        the format of :func:`zuna_lab.pipeline.tokens.token_mask` and :meth:`Preprocessed.token_mask`.

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
        if not float(annotation["duration"]) >= 0:
            raise ZunaValueError(
                f"The annotation {annotation['description']!r} at {onset:g} s has a negative or undefined duration "
                f"({annotation['duration']:g} s); fix it in raw.annotations (a span runs forward from its onset).")
        shift = raw.first_time if (absolute or onset >= duration) else 0.0
        start, stop = onset - shift, onset - shift + float(annotation["duration"])
        channels = tuple(annotation.get("ch_names", ()) or ())
        if channels:
            spans.extend((start, stop, name) for name in channels if name in raw.ch_names)
        else:
            spans.append((start, stop))
    return spans


def added_channels(raw, add_channels):
    """Names and head-frame positions of channels to add (upsampling), from the standard 10-05 cap."""
    if add_channels is None:
        return [], np.zeros((0, 3))
    # {lower-case name: (name, head-frame position)}, shared with read_raw's montage fallback
    standard = standard_positions("standard_1005")
    add_channels = check_add_channels(add_channels)      # None (also for []), a count, or 10-05 names
    if add_channels is None:
        return [], np.zeros((0, 3))
    # Present by cleaned name ("EEG Fz-REF" is Fz) or by position (T3 sits where T7 would go).
    present = {clean_channel_name(c).lower() for c in raw.ch_names}
    existing = np.array([raw.info["chs"][i]["loc"][:3] for i in range(len(raw.ch_names))]).reshape(-1, 3)

    def occupied(position):
        near = np.flatnonzero(np.linalg.norm(existing - position, axis=1) < 1e-3)
        return raw.ch_names[near[0]] if near.size else None

    if isinstance(add_channels, int):
        candidates = [entry for key, entry in standard.items() if key not in present and occupied(entry[1]) is None]
        if add_channels > len(candidates):
            raise ZunaValueError(f"add_channels={add_channels} but only {len(candidates)} standard 10-05 positions "
                                 f"are free on this cap; ask for at most {len(candidates)}.")
        names = [name for name, _ in candidates]
        positions = np.array([pos for _, pos in candidates])
        chosen = []
        for _ in range(int(add_channels)):
            # Greedy farthest point: each new electrode goes where the cap is sparsest.
            reference = np.vstack([existing] + [positions[chosen]]) if chosen else existing
            distance = np.linalg.norm(positions[:, None] - reference[None], axis=-1).min(axis=1)
            distance[chosen] = -1
            chosen.append(int(distance.argmax()))
        return [names[i] for i in chosen], positions[chosen]
    names, positions = [], []
    for name in add_channels:
        canonical, position = standard[name.lower()]
        if name.lower() in present or occupied(position) is not None:
            where = "" if name.lower() in present else f" as {occupied(position)!r} at the same position"
            raise ZunaValueError(f"add_channels names {name!r}, which the recording already has{where}; "
                                 "mask it with bad_channels instead.")
        names.append(canonical)
        positions.append(position)
    return names, np.array(positions)
