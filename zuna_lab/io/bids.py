"""Recordings of a BIDS dataset, read as the dataset describes them (through mne-bids).

A file such as ``<root>/sub-01/ses-a/eeg/sub-01_ses-a_task-rest_eeg.vhdr`` in a folder whose root
holds ``dataset_description.json`` is read with :func:`mne_bids.read_raw_bids`, so that what the
lab wrote beside it counts: channel types and the channels marked bad in ``channels.tsv``, the
measured positions of ``electrodes.tsv`` (in the coordinate system of ``coordsystem.json``) and
the events of ``events.tsv`` as annotations. :func:`zuna_lab.read_raw` does this for every such
file, so ``zl.embed(path)`` and ``zl.embed_many(bids_root, ...)`` read a recording alike.
"""
from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

from ..errors import RecordingError, warn

__all__ = ["BIDS_EEG_EXTENSIONS", "bids_entities", "bids_root_of", "read_bids_raw", "is_bids_root"]

#: Extensions of EEG recordings in BIDS (BIDS-EEG's four, and FIF as MNE users also keep EEG).
BIDS_EEG_EXTENSIONS = (".vhdr", ".edf", ".bdf", ".set", ".fif")
#: ``key-value`` pairs of a BIDS file name, then its suffix and extension.
_ENTITY = re.compile(r"^([a-zA-Z]+)-([a-zA-Z0-9]+)$")
_RECORDING = re.compile(r"^sub-[a-zA-Z0-9]+(_[a-zA-Z]+-[a-zA-Z0-9]+)*_eeg\.(vhdr|edf|bdf|set|fif)$", re.IGNORECASE)


def bids_entities(name):
    """The ``key-value`` entities of a BIDS file name, in order (``{"sub": "01", "task": "rest"}``).

    Examples
    --------
    >>> bids_entities("sub-01_ses-a_task-rest_run-02_eeg.vhdr")
    {'sub': '01', 'ses': 'a', 'task': 'rest', 'run': '02'}
    """
    parts = Path(name).name.split(".")[0].split("_")
    found = {}
    for part in parts:
        match = _ENTITY.match(part)
        if match:
            found[match.group(1)] = match.group(2)
    return found


def is_bids_root(folder):
    """``folder`` is the root of a BIDS dataset (it holds ``dataset_description.json``)."""
    folder = Path(folder)
    return folder.is_dir() and (folder / "dataset_description.json").is_file()


def bids_root_of(path):
    """The root of the raw BIDS dataset that holds the EEG recording ``path``, or None.

    The file must be named as a BIDS EEG recording (``sub-<label>[_<key>-<value>…]_eeg.<ext>``),
    sit in an ``eeg`` folder under ``sub-<label>`` (and ``ses-<label>``), and the folder above
    ``sub-<label>`` must hold a ``dataset_description.json`` that does not describe a derivative.
    """
    path = Path(path)
    if not _RECORDING.match(path.name) or path.parent.name != "eeg":
        return None
    subject = "sub-" + bids_entities(path.name).get("sub", "")
    for folder in path.parents[1:4]:
        if folder.name == subject:
            root = folder.parent
            if not is_bids_root(root):
                return None
            try:
                kind = json.loads((root / "dataset_description.json").read_text()).get("DatasetType", "raw")
            except (OSError, ValueError, AttributeError):
                kind = "raw"
            return root if kind != "derivative" else None
    return None


def read_bids_raw(path, root, *, verbose, preload=True):
    """Read one recording of a BIDS dataset with :func:`mne_bids.read_raw_bids` (preloaded unless ``preload=False``).

    Positions of ``electrodes.tsv`` are kept when mne-bids places them in MNE's head frame (the
    coordinate systems it can convert, e.g. CapTrak); otherwise a warning says so and the
    standard cap places the channels by name, as for a file without positions.
    """
    try:
        import mne_bids
    except ImportError:  # pragma: no cover - mne-bids is a dependency
        raise RecordingError(f"{Path(path).name!r} is part of a BIDS dataset, which zuna_lab reads with mne-bids; "
                             "pip install mne-bids.") from None
    bids_path = mne_bids.get_bids_path_from_fname(path, check=False).update(root=root, check=False)
    with warnings.catch_warnings():
        # participants.tsv's own columns (group, …) are the study's, not the recording's: not a problem
        warnings.filterwarnings("ignore", message="Unable to map the following column")
        raw = mne_bids.read_raw_bids(bids_path, verbose=verbose)
    if preload:
        raw.load_data(verbose=verbose)
    montage = raw.get_montage()
    if montage is not None:
        frame = montage.get_positions()["coord_frame"]
        if frame != "head":
            warn(f"The electrode positions of {Path(path).name!r} (electrodes.tsv) are in a coordinate system "
                          f"MNE cannot place in its head frame ({frame!r}); the standard cap's positions are used "
                          "instead, by channel name.")
            raw.set_montage(None, verbose="error")
    return raw
