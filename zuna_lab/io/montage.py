"""Electrode names and positions: cleaning recorders' labels, the standard 10-05 cap, positions of a recording.

A utility below every stage: :mod:`zuna_lab.io.read` gives channels positions through it,
:mod:`zuna_lab.pipeline.masks` places added channels on the standard cap, results read their
``ch_x``/``ch_y``/``ch_z`` back with :func:`channel_positions`.
"""
from __future__ import annotations

import functools
import math
import re
import warnings

import mne
import numpy as np

from ..config import VARIANT_CONSTANTS, check_variant
from ..errors import ZunaTypeError, ZunaValueError, warn

__all__ = ["clean_channel_name", "channel_positions", "standard_positions", "position_bins"]

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
def standard_positions(montage_name="standard_1005"):
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
        if has_position(ch["loc"]):
            positions.setdefault(ch["ch_name"].lower(), (ch["ch_name"], np.asarray(ch["loc"][:3], dtype=float)))
    return positions


def has_position(loc):
    """Whether a channel's ``loc`` holds a 3-D position: finite, and not all zero (``np.allclose(loc[:3], 0)``,
    whose tolerance is 1e-8 m; in plain Python, as it runs once per channel)."""
    xyz = [float(v) for v in loc[:3]]
    return all(math.isfinite(v) for v in xyz) and any(abs(v) > 1e-8 for v in xyz)

#: The coordinates of a result that hold electrode positions (x, y, z in metres, MNE head frame).
POSITION_COORDS = ("ch_x", "ch_y", "ch_z")


def channel_positions(inst):
    """Electrode positions in metres, MNE head frame, of a Raw, an Info or a zuna_lab result.

    The one place positions are read: a Raw/Info from ``info["chs"][i]["loc"][:3]``, a result
    Dataset/DataArray from its ``channel`` coordinates ``ch_x``, ``ch_y``, ``ch_z`` (three
    coordinates rather than one (channel, space) array, so that ``.to_dataframe()`` stays one
    row per value).

    Parameters
    ----------
    inst : mne.io.Raw | mne.Info | xarray.Dataset | xarray.DataArray

    Returns
    -------
    ch_pos : ndarray, shape (n_channels, 3)
        NaN rows for channels without a position.

    Examples
    --------
    >>> import zuna_lab as zl  # doctest: +SKIP
    >>> channel_positions(zl.read_raw("data/sample_synthetic_raw.fif")).shape  # doctest: +SKIP
    (19, 3)
    """
    info = inst if isinstance(inst, mne.Info) else getattr(inst, "info", None)
    if isinstance(info, mne.Info):
        pos = np.array([np.asarray(ch["loc"][:3], dtype=float) for ch in info["chs"]]).reshape(-1, 3)
        missing = ~np.array([has_position(ch["loc"]) for ch in info["chs"]], dtype=bool)
        pos[missing] = np.nan
        return pos
    coords = getattr(inst, "coords", {})
    if all(name in coords for name in POSITION_COORDS):
        return np.stack([np.asarray(inst[name].values, dtype=np.float64) for name in POSITION_COORDS], axis=1)
    if "ch_pos" in getattr(inst, "variables", coords):       # an older result layout: one (channel, space) array
        return np.asarray(inst["ch_pos"].transpose("channel", ...).values, dtype=np.float64)
    raise ZunaValueError("This object has no electrode positions (an mne Raw, or a zuna_lab result with "
                         "ch_x, ch_y, ch_z coordinates); pass one of those.")


def apply_positions(raw, montage, verbose):
    """Give channels without a file position one from ``montage``, by cleaned name.

    When every channel already has a position from the file, the file wins. Otherwise every
    channel the montage knows takes the montage position (one consistent head geometry, as the
    official ZUNA1.1 loader does); channels it does not know keep their file position if any.
    """
    has_pos = np.array([has_position(ch["loc"]) for ch in raw.info["chs"]], dtype=bool)
    if has_pos.all() or montage is None:
        return
    if isinstance(montage, str):
        try:
            table = standard_positions(montage)
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


def warn_shared_positions(raw):
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
    warn(f"Channels {'; '.join(described)} get the same electrode position, so ZUNA cannot tell them apart; "
        "drop the duplicates with raw.drop_channels([...]) or rename them.")


#: Metres from the head origin beyond which a position cannot be an electrode (wrong units).
_IMPLAUSIBLE_POSITION = 0.25


def position_bins(ch_pos, *, variant):
    """Discretise electrode positions into the integer bins of ``tok_idx``.

    Each axis is mapped linearly from ``[-0.12, 0.12]`` m onto ``[0, n_bins)`` and truncated;
    positions outside the range land in the first or last bin, as in the official code — which
    happens to real electrodes: in the MNE head frame the vertex (Cz, CPz, Pz, C1, …) lies at
    z = 0.12–0.14 m, so those channels share the top z bin. A warning is raised only for
    positions more than 0.25 m from the origin (wrong units). The arithmetic runs in float32, as
    the official code does, so bin edges fall exactly where theirs do.

    Parameters
    ----------
    ch_pos : array-like, shape (n_channels, 3)
        Positions in metres, MNE head frame.
    variant : str
        ``"ZUNA"`` (50 bins) or ``"ZUNA1.1"`` (100 bins).

    Returns
    -------
    bins : ndarray of int64, shape (n_channels, 3)

    Examples
    --------
    >>> position_bins([[0.0, 0.0, 0.0]], variant="ZUNA")
    array([[25, 25, 25]])
    """
    check_variant(variant)
    constants = VARIANT_CONSTANTS[variant]
    n_bins, extreme = int(constants["n_position_bins"]), float(constants["position_extreme"])
    pos = np.asarray(ch_pos, dtype=np.float32)
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise ZunaValueError(f"ch_pos must have shape (n_channels, 3), got {pos.shape}.")
    if not np.isfinite(pos).all():
        raise ZunaValueError("ch_pos contains NaN or Inf; every channel needs a finite 3-D position.")
    lo = np.float32(-extreme)
    hi = np.float32(extreme)
    # Vertex electrodes (Cz sits at z ≈ 0.14 m in the MNE head frame) exceed 0.12 m and share
    # the top bin, exactly as in the official code; only positions no head has are worth a warning.
    far = np.abs(pos) > _IMPLAUSIBLE_POSITION
    if far.any():
        warn(f"{int(far.any(axis=1).sum())} channel position(s) lie more than {_IMPLAUSIBLE_POSITION} m from the "
            "head origin and are put in the edge bins; are the positions in metres, MNE head frame?")
    scaled = (pos - lo) / (hi - lo) * np.float32(n_bins)
    return np.clip(np.trunc(scaled).astype(np.int64), 0, n_bins - 1)
