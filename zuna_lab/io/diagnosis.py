"""The montage diagnosis: every channel's name, position and problems, what a repair needs, and the
one sentence :func:`zuna_lab.read_raw` warns with (:func:`montage_warning`). The report a user asks
for is :func:`zuna_lab.check_montage` (:mod:`zuna_lab.trust.doctor`), built on these."""
from __future__ import annotations

import re
import types
import warnings
from dataclasses import dataclass

import mne
import numpy as np

from ..config import VARIANT_CONSTANTS, VARIANTS
from ..errors import RecordingError, ZunaValueError, preview
from .montage import apply_positions, clean_channel_name, has_position, position_bins, standard_positions

__all__ = ["Diagnosis", "diagnose", "repair", "verdict", "problem_labels", "check_variant", "montage_warning"]

#: EEG-typed channels whose name says they are something else, and the type they get with fix=True.
_NON_EEG_NAMES = (
    (re.compile(r"^(?:[hv]?eog|eog[hv]?|heog|veog|loc|roc)(?:[\s_\-]*\w*)?$", re.I), "eog"),
    (re.compile(r"^(?:ecg|ekg)(?:[\s_\-]*\w*)?$", re.I), "ecg"),
    (re.compile(r"^(?:emg|chin|leg)(?:[\s_\-]*\w*)?$", re.I), "emg"),
    (re.compile(r"^(?:sti|stim|trig|trigger|status|event|marker|ttl)(?:[\s_\-]*\w*)?$", re.I), "stim"),
    (re.compile(r"^(?:resp|spo2|sao2|pulse|pleth|photic|gsr|eda|temp|aux|misc|light|snore|audio)\w*$", re.I), "misc"),
)
_BIPOLAR = re.compile(r"^\s*([A-Za-z]+\d*[hHzZ]?)\s*-\s*([A-Za-z]+\d*[hHzZ]?)\s*$")
#: Median distance of electrodes from their centroid, in metres, for real heads (a 10-20 cap: ~0.08 m).
_HEAD_SPREAD_M = (0.02, 0.25)
_UNITS = ((1e-2, "centimetres", (2.0, 20.0)), (1e-3, "millimetres", (20.0, 250.0)))
#: A fit to the standard cap that needs more than this rotation (degrees) or shift (m) means another frame.
_FRAME_ROTATION_DEG, _FRAME_SHIFT_M = 20.0, 0.03
#: A position within this distance (m) of a standard 10-05 position is where ZUNA's training put electrodes.
_NEAR_STANDARD_M = 0.02
#: What read_raw's one warning mentions (it already warns about dropped channels and identical positions).
_WARNED_BY_READ_RAW = {"dropped", "same"}
_LABELS = {
    "units": "positions in {unit}, not metres", "frame": "positions in a device frame, not the MNE head frame",
    "missing": "{n} position(s) missing or NaN in the file", "range": "{n} position(s) outside ZUNA's ±0.12 m grid",
    "bin": "{n} channels sharing a ZUNA position bin", "same": "{n} channels at one position",
    "type": "{n} non-EEG channel(s) typed EEG", "dropped": "{n} channel(s) without a usable position (dropped)",
}


@dataclass(frozen=True, eq=False)
class Diagnosis:
    """What :func:`diagnose` found, and what :func:`repair` needs."""

    table: object          # pandas.DataFrame, one row per channel (MontageReport.table)
    retype: dict           # channel index -> the type its name says (eog, ecg, ...)
    brain: list            # indices of the EEG channels that stay EEG
    have: list             # ... of those with a finite position in the file
    factor: float          # the unit factor to metres (1.0 when the file is in metres)
    unit: str              # "centimetres", "millimetres" or ""
    frame: object          # the rigid fit to the head frame (None: none needed)
    scaled: object         # file positions times factor (n, 3)
    standard: object       # the matched standard positions (n, 3), NaN where none
    match: list            # per channel: (standard name, how it matched, note)
    codes: list            # per channel: its problem codes
    eeg: list              # indices of the EEG-typed channels


def montage_warning(raw, montage="standard_1005"):
    """The one sentence :func:`zuna_lab.read_raw` warns with, or None when the montage looks right.

    Leaves out what read_raw already says (channels dropped for lack of a position, channels at
    one identical position).

    Examples
    --------
    >>> montage_warning(mne.io.read_raw_fif("data/sample_synthetic_raw.fif", verbose="error")) is None  # doctest: +SKIP
    True
    """
    try:
        diagnosis = diagnose(raw, "ZUNA", montage if isinstance(montage, str) else "standard_1005")
    except (ValueError, np.linalg.LinAlgError):
        return None
    labels = problem_labels(diagnosis, skip=_WARNED_BY_READ_RAW)
    if not labels:
        return None
    return (f"The montage looks off ({'; '.join(labels)}); zl.check_montage(...) lists what is wrong channel by "
            "channel and fix=True returns a corrected copy.")


def check_variant(variant):
    if variant is None:
        return "ZUNA"
    variant = getattr(variant, "variant", variant)
    if variant not in VARIANTS:
        raise ZunaValueError(f"model must be a ZunaModel, a variant name ({', '.join(map(repr, VARIANTS))}), "
                             f"a model source or None, got {variant!r}.")
    return variant


def _match(name, table):
    """(standard name or "", how: recognised / cleaned / bipolar / unrecognised, note)."""
    entry = table.get(str(name).strip().lower())
    if entry is not None:
        if entry[0] == name:
            return entry[0], "recognised", ""
        return entry[0], "cleaned", f"read as {entry[0]} (case or spacing differs)"
    cleaned = clean_channel_name(name)
    entry = table.get(cleaned.lower())
    if entry is not None:
        return entry[0], "cleaned", f"read as {entry[0]} (prefix or reference suffix removed)"
    parts = _BIPOLAR.match(cleaned)
    if parts and parts.group(1).lower() in table and parts.group(2).lower() in table:
        return "", "bipolar", f"a bipolar derivation ({parts.group(1)} − {parts.group(2)}), not one electrode"
    return "", "unrecognised", "not a name of the 10-05 system"


def _non_eeg_type(name):
    for pattern, kind in _NON_EEG_NAMES:
        if pattern.match(clean_channel_name(name)) or pattern.match(str(name).strip()):
            return kind
    return None


def _units(positions):
    """(factor to metres, unit name) from the spread of the electrodes; (1, "") when already metres."""
    if len(positions) < 3:
        return 1.0, ""
    spread = float(np.median(np.linalg.norm(positions - positions.mean(0), axis=1)))
    if _HEAD_SPREAD_M[0] <= spread <= _HEAD_SPREAD_M[1]:
        return 1.0, ""
    for factor, unit, (low, high) in _UNITS:
        if low <= spread < high:
            return factor, unit
    return 1.0, ""


def _rigid_fit(source, target):
    """Rotation R and translation t with target ≈ source @ R.T + t (Kabsch), and the rms residual."""
    cs, ct = source.mean(0), target.mean(0)
    u, _, vt = np.linalg.svd((source - cs).T @ (target - ct))
    d = np.sign(np.linalg.det(vt.T @ u.T))
    rotation = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    shift = ct - cs @ rotation.T
    residual = float(np.sqrt(np.mean(np.sum((source @ rotation.T + shift - target) ** 2, axis=1))))
    return rotation, shift, residual


def _frame(positions, standard):
    """(rotation, shift, residual, needed) of the rigid fit of file positions to the standard cap."""
    if len(positions) < 4:
        return None
    rotation, shift, residual = _rigid_fit(positions, standard)
    angle = float(np.degrees(np.arccos(np.clip((np.trace(rotation) - 1) / 2, -1, 1))))
    moved = float(np.linalg.norm(standard.mean(0) - positions.mean(0)))
    return rotation, shift, residual, angle > _FRAME_ROTATION_DEG or moved > _FRAME_SHIFT_M


def _effective(raw, picks, montage):
    """The positions read_raw gives the EEG channels ``picks`` (its own rule, on a copy of their Info)."""
    info = mne.pick_info(raw.info, picks)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        apply_positions(types.SimpleNamespace(info=info, set_montage=info.set_montage), montage, "error")
    return np.array([ch["loc"][:3] if has_position(ch["loc"]) else [np.nan] * 3 for ch in info["chs"]], float)


def diagnose(raw, variant, montage):
    """Every channel's name, position and problems; plus what the repair needs."""
    import pandas as pd

    table, names, kinds = standard_positions(montage), list(raw.ch_names), raw.get_channel_types()
    n = len(names)
    eeg = [i for i in range(n) if kinds[i] == "eeg"]
    match = [_match(name, table) if i in eeg else ("", "not EEG", f"{kinds[i]} channel: ZUNA leaves it out, to_raw "
                                                     "keeps it") for i, name in enumerate(names)]
    retype = {i: _non_eeg_type(names[i]) for i in eeg if match[i][1] == "unrecognised" and _non_eeg_type(names[i])}
    brain = [i for i in eeg if i not in retype]
    standard = np.array([table[m[0].lower()][1] if m[0] else [np.nan] * 3 for m in match], float).reshape(n, 3)
    file_pos = np.array([ch["loc"][:3] if has_position(ch["loc"]) else [np.nan] * 3 for ch in raw.info["chs"]], float)
    codes, say, todo = ([[] for _ in range(n)] for _ in range(3))

    def flag(i, code, sentence, fix=""):
        codes[i].append(code)
        say[i].append(sentence)
        if fix:
            todo[i].append(fix)

    for i, kind in retype.items():
        flag(i, "type", f"named like an {kind.upper()} channel but typed EEG", f"type set to {kind}")
    have = [i for i in brain if np.isfinite(file_pos[i]).all()]
    eff = np.full((n, 3), np.nan)
    eff[eeg] = _effective(raw, eeg, montage)
    used = {i for i in have if np.allclose(eff[i], file_pos[i])}        # read_raw keeps the file position
    notes, cap = [m[2] for m in match], np.array([entry[1] for entry in table.values()])

    def position_issue(i, code, sentence, fix):
        if i in used:
            flag(i, code, sentence, fix)
        else:       # read_raw replaces it with the standard position: worth knowing, harmless for ZUNA
            notes[i] = "; ".join(filter(None, [notes[i], f"file {sentence}; the standard position is used"]))

    factor, unit = _units(file_pos[have])
    for i in have if unit else ():
        position_issue(i, "units", f"position in {unit}, not metres", f"scaled by {factor:g}")
    scaled = file_pos * factor
    known = [i for i in have if match[i][0]]
    frame = _frame(scaled[known], standard[known])
    for i in have if frame is not None and frame[3] else ():
        position_issue(i, "frame", "position in a device frame, not the MNE head frame (a fit to the standard cap "
                                   "rotates or shifts it)", "moved into the head frame")
    for i in brain if have and len(have) < len(brain) else ():
        if i not in have and match[i][0]:
            flag(i, "missing", "no position in the file (NaN) while other channels have one", "standard position")
    for i in brain:
        if not np.isfinite(eff[i]).all():
            why = match[i][2] if match[i][1] == "bipolar" else "no position and not a 10-05 name"
            flag(i, "dropped", f"{why}, so read_raw drops it", "dropped")
    extreme = float(VARIANT_CONSTANTS[variant]["position_extreme"])
    usable = [i for i in brain if np.isfinite(eff[i]).all() and not {"units", "frame"} & set(codes[i])]
    for i in usable:
        outside = [f"{axis} = {value:.3f} m" for axis, value in zip("xyz", eff[i]) if abs(value) > extreme]
        if outside and np.linalg.norm(cap - eff[i], axis=1).min() < _NEAR_STANDARD_M:
            notes[i] = "; ".join(filter(None, [notes[i], f"{outside[0]} is past ZUNA's ±0.12 m grid: the edge bin, "
                                                         "as in ZUNA's training"]))
        elif outside:
            flag(i, "range", f"{', '.join(outside)} lies outside ZUNA's ±{extreme:g} m grid (it gets the edge bin)",
                 "standard position" if match[i][0] else "")
    _flag_shared_positions(usable, eff, names, match, variant, flag)
    source = ["none" if not np.isfinite(eff[i]).all() else "file" if np.allclose(eff[i], file_pos[i], equal_nan=False)
              else "standard" for i in range(n)]
    status = ["not EEG" if i not in eeg else "dropped" if "dropped" in codes[i] else "problem" if codes[i]
              else "cleaned" if match[i][1] == "cleaned" else "ok" for i in range(n)]
    frame_df = pd.DataFrame({
        "channel": names, "type": kinds, "standard": [m[0] for m in match], "name": [m[1] for m in match],
        "note": notes, "position": [s if i in eeg else "" for i, s in enumerate(source)],
        "x": eff[:, 0], "y": eff[:, 1], "z": eff[:, 2], "status": status, "issue": [",".join(c) for c in codes],
        "problem": ["; ".join(p) + ("." if p else "") for p in say], "fix": ["; ".join(t) for t in todo]})
    return Diagnosis(table=frame_df, retype=retype, brain=brain, have=have, factor=factor, unit=unit, frame=frame,
                     scaled=scaled, standard=standard, match=match, codes=codes, eeg=eeg)


def _flag_shared_positions(usable, eff, names, match, variant, flag):
    """Channels at one identical position ("same"; a repeat of a standard name is dropped by the
    repair) or sharing one of ZUNA's position bins ("bin")."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bins = position_bins(eff[usable], variant=variant) if usable else np.zeros((0, 3), int)
    groups = {}
    for i, key in zip(usable, map(tuple, bins)):
        groups.setdefault(key, []).append(i)
    seen = set()
    for key, members in groups.items():
        for i in members if len(members) > 1 else ():
            others = ", ".join(names[j] for j in members if j != i)
            if all(np.allclose(eff[i], eff[j], atol=1e-6) for j in members):
                repeat = match[i][0] and match[i][0] in seen
                flag(i, "same", f"at the same position as {others}", "dropped (a repeat)" if repeat else "")
                seen.add(match[i][0])
            else:
                flag(i, "bin", f"shares ZUNA's position bin {tuple(int(b) for b in key)} with {others}: the model "
                               "sees them at one place")


def problem_labels(diagnosis, skip=()):
    counts = {}
    for codes in diagnosis.codes:
        for code in set(codes):
            counts[code] = counts.get(code, 0) + 1
    return [_LABELS[code].format(n=counts[code], unit=diagnosis.unit) for code in _LABELS
            if code in counts and code not in skip]


def repair(raw, d, montage, verbose):
    """The corrected copy and the list of what changed."""
    fixed, names, fixes = raw.copy(), list(raw.ch_names), []
    if d.retype:
        fixed.set_channel_types({names[i]: kind for i, kind in d.retype.items()}, verbose="error")
        fixes.append(f"set the type of {preview(names[i] + ' (' + k + ')' for i, k in d.retype.items())}")
    positions = d.scaled.copy()
    if d.unit:
        fixes.append(f"scaled the positions from {d.unit} to metres (×{d.factor:g})")
    frame = d.frame
    if frame is not None and frame[3]:
        rotation, shift, residual, _ = frame
        positions[d.have] = positions[d.have] @ rotation.T + shift
        fixes.append(f"moved the positions into the MNE head frame by a rigid fit to the standard cap "
                     f"(rms residual {residual * 1000:.1f} mm)")
    for i in d.brain:
        if {"missing", "range"} & set(d.codes[i]):
            positions[i] = np.nan
    brain = d.brain
    lacking = [i for i in brain if not np.isfinite(positions[i]).all()]
    recognised = [i for i in brain if d.match[i][0]]
    if lacking and any(i in recognised for i in lacking):
        positions[recognised] = d.standard[recognised]
        fixes.append(f"took the standard 10-05 positions of all {len(recognised)} recognised channels, as "
                     f"{preview(names[i] for i in lacking if i in recognised)} had none usable (as read_raw does)")
    drop = [names[i] for i in brain if not np.isfinite(positions[i]).all()]
    seen, repeats = set(), []
    for i in brain:
        key = d.match[i][0]
        if key and names[i] not in drop and key in seen:
            repeats.append(names[i])
        seen.add(key)
    if drop:
        fixes.append(f"dropped {preview(drop)} (no usable position)")
    if repeats:
        fixes.append(f"dropped {preview(repeats)} (the same electrode again)")
    if len(set(drop + repeats)) == len(fixed.ch_names):
        raise RecordingError(f"No channel of the recording has a usable position or a standard 10-05 name "
                             f"({preview(names)}), so fix=True would drop them all; rename the channels to 10-05 "
                             "names or set their positions with raw.set_montage(...).")
    if drop or repeats:
        fixed.drop_channels(drop + repeats)
    keep = {names[i]: positions[i] for i in brain if names[i] in fixed.ch_names}
    if keep:
        fixed.set_montage(mne.channels.make_dig_montage(ch_pos=keep, coord_frame="head"), on_missing="ignore",
                          verbose=verbose if verbose is not None else "error")
    return fixed, fixes


def verdict(d, fix, fixes, remaining):
    table = d.table
    labels = problem_labels(d)
    eeg = int((table["status"] != "not EEG").sum())
    if not labels:
        standard = int((table["position"] == "standard").sum())
        extra = [f"{int((table['status'] == 'cleaned').sum())} name(s) cleaned" if (table["status"] == "cleaned").any()
                 else "", f"{standard} position(s) from the standard 10-05 cap" if standard else "",
                 f"{len(table) - eeg} non-EEG channel(s) left out" if len(table) > eeg else ""]
        extra = ", ".join(filter(None, extra))
        return f"OK for ZUNA: {eeg} EEG channels with head-frame positions in metres" + (f" ({extra})" if extra else "") + "."
    n = int(table["problem"].astype(bool).sum())
    if not fix:
        return f"{n} channel(s) need attention: {'; '.join(labels)}; fix=True returns a corrected copy."
    left = "nothing is left" if remaining == 0 else f"{remaining} channel problem(s) remain (they cannot be repaired)"
    return f"{n} channel(s) needed attention: {'; '.join(labels)}; fix=True made {len(fixes)} change(s) and {left}."
