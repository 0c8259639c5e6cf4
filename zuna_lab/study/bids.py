"""Studies kept in BIDS: the recordings of a dataset, their entities, participants and derivatives.

- :func:`find_bids_recordings`: the EEG recordings of a BIDS root (through
  :func:`mne_bids.find_matching_paths`; sidecars, ``derivatives/``, ``sourcedata/`` and later
  split parts are not recordings), filtered by subject, session, task and run, each with its id
  (the file's BIDS name without suffix) and its entities as index columns.
- :func:`bids_companions`: the files a recording's results depend on (its data files and every
  sidecar that applies to it by BIDS inheritance), for the source stamp that makes a rerun redo a
  recording whose ``channels.tsv`` changed.
- :func:`read_participants`: ``participants.tsv`` as a DataFrame keyed by ``subject``.
- :func:`derivative_folder`, :func:`write_description`, :func:`derivative_name`: outputs as a
  BIDS derivative dataset (``<root>/derivatives/zuna_lab`` by default), never inside the raw data.

Each recording is read by :func:`zuna_lab.read_raw`, which reads any file of a BIDS dataset
through mne-bids (:mod:`zuna_lab.io.bids`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ZunaTypeError, ZunaValueError
from ..io.bids import BIDS_EEG_EXTENSIONS, bids_entities, is_bids_root

__all__ = ["BIDS_COLUMNS", "FILTERS", "BidsRecording", "find_bids_recordings", "bids_companions", "is_bids_root",
           "read_participants", "derivative_folder", "write_description", "check_derivative_target", "derivative_name", "check_filters",
           "DERIVATIVE_NAME"]

#: The BIDS entities the index carries, as (column, key in file names).
BIDS_COLUMNS = (("subject", "sub"), ("session", "ses"), ("task", "task"), ("acquisition", "acq"), ("run", "run"))
#: The filters ``embed_many``/``reconstruct_many`` take, as (argument, mne-bids argument).
FILTERS = (("subjects", "subjects"), ("sessions", "sessions"), ("tasks", "tasks"), ("runs", "runs"))
#: The derivative dataset's folder under ``<root>/derivatives``.
DERIVATIVE_NAME = "zuna_lab"
#: The ``desc-`` label of a repaired recording, per kind of signal written.
DESCRIPTIONS = {"hybrid": "zuna", "reconstruction": "zunareconstruction", "original": "original"}


@dataclass(frozen=True)
class BidsRecording:
    """One EEG recording of a BIDS dataset: its id, file and entities."""

    rec_id: str
    path: str
    entities: dict = field(hash=False)

    def columns(self):
        """The index columns of this recording (``subject``, ``session``, ``task``, ``acquisition``, ``run``)."""
        return {column: self.entities.get(key, "") for column, key in BIDS_COLUMNS}


def check_filters(filters):
    """``{"subjects": ["01"], ...}`` with every value a list of labels (``sub-01`` taken as ``01``), Nones left out."""
    checked = {}
    for name, value in filters.items():
        if value is None:
            continue
        values = [value] if isinstance(value, (str, int)) else value
        if not isinstance(values, (list, tuple)) or not values:
            raise ZunaTypeError(f"{name} must be a label or a non-empty list of labels, got {value!r}.")
        labels = []
        for item in values:
            if isinstance(item, bool) or not isinstance(item, (str, int)):
                raise ZunaTypeError(f"{name} must hold labels (strings), got {item!r}.")
            text = str(item)
            prefix = {"subjects": "sub-", "sessions": "ses-", "tasks": "task-", "runs": "run-"}[name]
            labels.append(text[len(prefix):] if text.startswith(prefix) else text)
        checked[name] = labels
    return checked


def find_bids_recordings(root, *, subjects=None, sessions=None, tasks=None, runs=None):
    """The EEG recordings of the BIDS dataset at ``root``, sorted by id.

    Parameters
    ----------
    root : path-like
        The dataset's root (it holds ``dataset_description.json``).
    subjects, sessions, tasks, runs : str | list of str | None
        Keep only these labels (``"01"`` or ``"sub-01"``); None keeps all.

    Returns
    -------
    recordings : list of BidsRecording

    Examples
    --------
    >>> [r.rec_id for r in find_bids_recordings("ds004504", subjects=["001"])]   # doctest: +SKIP
    ['sub-001_task-eyesclosed']
    """
    import mne_bids

    root = Path(root).expanduser().absolute()
    filters = check_filters(dict(subjects=subjects, sessions=sessions, tasks=tasks, runs=runs))
    paths = mne_bids.find_matching_paths(root, datatypes="eeg", suffixes="eeg", extensions=list(BIDS_EEG_EXTENSIONS),
                                         ignore_json=True, ignore_nosub=True, **filters)
    found = {}
    for bids_path in paths:
        path = Path(bids_path.fpath)
        relative = path.relative_to(root).parts
        if relative[0] in ("derivatives", "sourcedata", "code") or not path.exists():
            continue
        if bids_path.split not in (None, "01"):        # later split parts are read with the first
            continue
        rec_id = bids_path.copy().update(suffix=None, extension=None, split=None, check=False).basename
        found[rec_id] = BidsRecording(rec_id, str(path), bids_entities(path.name))
    if not found:
        chosen = ", ".join(f"{k}={v}" for k, v in filters.items())
        raise ZunaValueError(f"The BIDS dataset {str(root)!r} holds no EEG recording"
                             + (f" matching {chosen} (its subjects: {', '.join(_labels(root, 'sub')) or 'none'})"
                                if chosen else " (sub-*/[ses-*/]eeg/*_eeg.<vhdr|edf|bdf|set|fif>)")
                             + "; check the root and the filters.")
    return [found[key] for key in sorted(found)]


def _labels(root, key):
    return sorted(p.name[len(key) + 1:] for p in Path(root).glob(f"{key}-*") if p.is_dir())


def bids_companions(path, *, files):
    """The files of one BIDS recording: its data files and every sidecar that applies to it.

    By BIDS inheritance a sidecar applies when its entities are a subset of the recording's
    (``sub-01_ses-a_space-CapTrak_electrodes.tsv`` applies to every recording of that session);
    sidecars are looked for in the recording's folder and at the dataset's root. None for a file
    that is not part of a BIDS dataset. ``files`` lists a folder's regular, not hidden files
    (:meth:`zuna_lab.study.store.Folders.files`: each folder listed once for a whole study).
    """
    from ..io.bids import bids_root_of

    path = Path(path)
    root = bids_root_of(path)
    if root is None:
        return None
    mine = bids_entities(path.name)
    mine.pop("space", None)
    found = []
    for folder in (path.parent, root):
        for name in files(folder):
            candidate = folder / name
            theirs = bids_entities(candidate.name)
            theirs.pop("space", None)
            data_file = candidate.name.split(".")[0] == path.name.split(".")[0]
            if data_file or (candidate.name.endswith((".tsv", ".json")) and theirs
                             and all(mine.get(k) == v for k, v in theirs.items())):
                found.append(candidate)
            elif folder == root and candidate.name.endswith("_eeg.json") and not theirs.get("sub") \
                    and all(mine.get(k) == v for k, v in theirs.items()):
                found.append(candidate)            # task-rest_eeg.json at the root
    return sorted(set(found))


def read_participants(root):
    """``participants.tsv`` of the dataset at ``root`` as a DataFrame with a ``subject`` column (labels, no
    ``sub-``), or None when there is none. ``n/a`` cells are missing values.

    Examples
    --------
    >>> read_participants("ds").columns.tolist()          # doctest: +SKIP
    ['subject', 'age', 'sex', 'group']
    """
    import pandas as pd

    table = Path(root) / "participants.tsv"
    if not table.is_file():
        return None
    try:
        frame = pd.read_csv(table, sep="\t", na_values=["n/a"], keep_default_na=False, dtype={"participant_id": str})
    except (OSError, ValueError) as err:
        raise ZunaValueError(f"{str(table)!r} is not a readable tab-separated table ({err}); fix or remove it.") from None
    if "participant_id" not in frame.columns:
        raise ZunaValueError(f"{str(table)!r} has no participant_id column; BIDS requires one.")
    subject = frame.pop("participant_id").astype(str).str.replace(r"^sub-", "", regex=True)
    frame.insert(0, "subject", subject)
    return frame


def derivative_folder(root, given=None):
    """Where the outputs of a BIDS study go: ``given``, else ``<root>/derivatives/zuna_lab``.

    A folder inside the raw dataset other than under ``derivatives/`` is refused: the raw data
    is never written to.
    """
    root = Path(root).expanduser().absolute()
    folder = root / "derivatives" / DERIVATIVE_NAME if given is None else Path(given).expanduser().absolute()
    try:
        inside = folder.relative_to(root).parts
    except ValueError:
        return folder
    if not inside or inside[0] != "derivatives":
        raise ZunaValueError(f"{str(folder)!r} is inside the raw BIDS dataset {str(root)!r}; write the outputs under "
                             f"{str(root / 'derivatives')!r} (the default) or outside the dataset.")
    return folder


def check_derivative_target(folder):
    """Before any work: ``folder`` is not another pipeline's derivative dataset."""
    import json

    description = Path(folder) / "dataset_description.json"
    if not description.is_file():
        return
    try:
        generated = json.loads(description.read_text()).get("GeneratedBy", [])
    except (OSError, ValueError, AttributeError):
        generated = []
    if not any(isinstance(g, dict) and g.get("Name") == "zuna_lab" for g in generated):
        raise ZunaValueError(f"{str(folder)!r} holds another dataset's dataset_description.json (not zuna_lab's); "
                             "choose another folder for the outputs.")


def write_description(folder, root, *, kind, model, revision, variant):
    """The derivative dataset's ``dataset_description.json`` (``DatasetType: derivative``), via mne-bids.

    ``GeneratedBy`` names zuna_lab and its version, then the model (its source and revision);
    ``SourceDatasets`` the raw dataset (a relative ``file:`` URL). Rewritten on every run.
    """
    import json

    import mne_bids

    from ..config import VERSION

    folder = Path(folder)
    try:
        raw_name = json.loads((Path(root) / "dataset_description.json").read_text()).get("Name", "")
    except (OSError, ValueError, AttributeError):
        raw_name = ""
    folder.mkdir(parents=True, exist_ok=True)
    generated_by = [
        {"Name": "zuna_lab", "Version": VERSION,
         "Description": f"ZUNA {kind} of the EEG recordings (zuna_lab.embed_many / reconstruct_many)"},
        {"Name": variant, "Version": str(revision or "unknown revision"),
         "Description": f"ZUNA model weights from {model}"},
    ]
    source = os.path.relpath(Path(root).absolute(), folder.absolute())
    mne_bids.make_dataset_description(
        path=str(folder), name=f"zuna_lab {kind}" + (f" of {raw_name}" if raw_name else ""),
        dataset_type="derivative", generated_by=generated_by, source_datasets=[{"URL": f"file:{source}"}],
        overwrite=True, verbose="error")
    return folder / "dataset_description.json"


def derivative_name(recording, kind):
    """The repaired recording's path in the derivative dataset, relative to it:
    ``sub-01/ses-a/eeg/sub-01_ses-a_task-rest_desc-zuna_eeg.fif``."""
    entities = dict(recording.entities)
    parts = [f"{k}-{v}" for k, v in entities.items() if k not in ("desc", "split")]
    name = "_".join(parts + [f"desc-{DESCRIPTIONS[kind]}", "eeg"]) + ".fif"
    folders = [f"sub-{entities['sub']}"] + ([f"ses-{entities['ses']}"] if "ses" in entities else []) + ["eeg"]
    return str(Path(*folders, name))
