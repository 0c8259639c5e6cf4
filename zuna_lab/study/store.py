"""The on-disk side of a study: recording ids, source stamps, the store's index, atomic commits, the lock.

A study store (``embed_many``) is a folder::

    study.zarr/
      .zgroup, .zattrs          a zarr group, so zarr tools open it (attrs: format, kind)
      index.json                THE index: settings + one row per recording (the single source of truth)
      recordings/<id>@<run>/    one zarr group per complete recording: exactly zl.embed's Dataset
      .tmp/                     groups being written (removed by the next run)
      .lock                     held by the running driver (host, pid)

A recording is committed in two steps by the driver alone: its group, written by a worker under
``.tmp/``, is renamed into ``recordings/`` (a new name: ``<id>@<run>``), then ``index.json`` is
replaced atomically (written beside it, ``os.replace``d) with the row pointing at it. Readers go
through the index, so they never see a half-written recording; a killed run leaves at most
unreferenced groups, which the next run removes. ``reconstruct_many`` keeps the same index as
``zuna_lab_index.json`` beside its FIF files (each written atomically by :func:`zuna_lab.write_fif`).
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import re
import shutil
import socket
import uuid
from pathlib import Path

from ..errors import ZunaTypeError, ZunaValueError

__all__ = ["StudyStore", "INDEX_COLUMNS", "source_stamp", "recording_id", "index_frame"]

FORMAT = "zuna_lab.study.api/2"
#: Earlier formats this version reads (and rewrites in its own on the next run).
_OLD_FORMATS = ("zuna_lab.study.api/1",)
#: Columns of the index, in order (the DataFrame ``embed_many`` returns and ``Study.index``); a BIDS
#: study adds its entities after ``source`` (:data:`zuna_lab.study.bids.BIDS_COLUMNS`).
INDEX_COLUMNS = ("recording", "source", "status", "n_epochs", "n_channels", "seconds", "error", "warnings",
                 "output", "source_stamp", "run_id", "computed_at", "compute_seconds", "worker")
_EMPTY_ROW = dict(recording="", source="", status="", n_epochs=0, n_channels=0, seconds=0.0, error="",
                  warnings="", output="", source_stamp="", run_id="", computed_at="", compute_seconds=0.0, worker="")
_BAD_ID = re.compile(r"[/\\@\x00-\x1f]")


def recording_id(path):
    """The default id of a recording file: its name without the extension (``sub-01.fif.gz`` -> ``sub-01``).

    Examples
    --------
    >>> recording_id("data/sub-01_task-rest.edf")
    'sub-01_task-rest'
    """
    name = Path(path).name
    for double in (".fif.gz", ".nii.gz"):
        if name.lower().endswith(double):
            return _BAD_ID.sub("_", name[: -len(double)]) or "recording"
    stem = Path(name).stem if Path(name).suffix else name
    return _BAD_ID.sub("_", stem).lstrip(".") or "recording"


def check_id(value):
    """A user-given recording id: a non-empty string usable as a folder name."""
    if not isinstance(value, str):
        raise ZunaTypeError(f"A recording id must be a string, got {value!r} ({type(value).__name__}).")
    if not value or value.startswith(".") or _BAD_ID.search(value):
        raise ZunaValueError(f"Recording id {value!r} cannot name a folder; use letters, digits, '-' and '_' "
                             "(no '/', '@' or leading '.').")
    return value


def _companions(path):
    """The files a recording is made of: itself and, in its folder, the files sharing its stem (.eeg/.vmrk, .fdt);
    in a BIDS dataset also the sidecars that apply to it (channels.tsv, electrodes.tsv, …)."""
    from .bids import bids_companions

    path = Path(path)
    in_bids = bids_companions(path) if path.is_file() else None
    if in_bids is not None:
        return in_bids
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file())
    stem = recording_id(path)
    siblings = [p for p in path.parent.glob(f"{glob_escape(stem)}.*") if p.is_file()] if path.parent.is_dir() else []
    return sorted(set(siblings) | ({path} if path.exists() else set()))


def glob_escape(text):
    return re.sub(r"([*?\[])", r"[\1]", text)


def source_stamp(path):
    """Size and modification time (ns) of a recording and its companion files: ``"<bytes>:<mtime_ns>"``.

    Two runs see the same stamp when no file of the recording changed (the rerun skips it).

    Examples
    --------
    >>> source_stamp("data/sample_synthetic_raw.fif")     # doctest: +SKIP
    '7383361:1764412800123456789'
    """
    files = _companions(path)
    if not files:
        return "missing"
    stats = [f.stat() for f in files]
    return f"{sum(s.st_size for s in stats)}:{max(s.st_mtime_ns for s in stats)}"


def index_frame(rows):
    """The index as a pandas DataFrame: one row per recording, :data:`INDEX_COLUMNS` in order, with the
    BIDS entities after ``source`` when some row has them."""
    import pandas as pd

    from .bids import BIDS_COLUMNS

    columns = list(INDEX_COLUMNS)
    if any(row.get("subject") for row in rows):
        entities = [column for column, _ in BIDS_COLUMNS]
        columns[2:2] = entities
        rows = [{**dict.fromkeys(entities, ""), **row} for row in rows]
    frame = pd.DataFrame([{**_EMPTY_ROW, **row} for row in rows], columns=columns)
    return frame.astype({"n_epochs": "int64", "n_channels": "int64", "seconds": "float64",
                         "compute_seconds": "float64"}).reset_index(drop=True)


def now():
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


class StudyStore:
    """A study folder: its index, lock, temporary area and atomic commits (driver side only).

    Parameters
    ----------
    path : path-like
        The store (``embed_many``) or output folder (``reconstruct_many``).
    kind : {"embeddings", "reconstructions"}
    """

    def __init__(self, path, kind):
        self.path = Path(path).expanduser().resolve()
        self.kind = kind
        self.index_path = self.path / ("index.json" if kind == "embeddings" else "zuna_lab_index.json")
        self.tmp = self.path / ".tmp"
        self.groups = self.path / "recordings"
        self.lock_path = self.path / ".lock"
        self.settings = {}
        self.rows = {}
        #: Columns that name a recording beyond its id (its BIDS entities), added to its row at commit.
        self.labels = {}
        self._locked = False

    # ------------------------------------------------------------------ opening
    def is_store(self):
        return self.index_path.is_file()

    def check_target(self, overwrite):
        """Before any work: the folder can be a store of this kind (new, empty, or one of ours)."""
        from ..validation import check_bool

        check_bool(overwrite, "overwrite")
        if self.path.exists() and not self.path.is_dir():
            raise ZunaValueError(f"{str(self.path)!r} is a file; pass a folder for the {self.kind}.")
        if not self.path.parent.is_dir():
            raise ZunaValueError(f"Folder {str(self.path.parent)!r} does not exist; create it first.")
        if not os.access(self.path if self.path.exists() else self.path.parent, os.W_OK | os.X_OK):
            raise ZunaValueError(f"Cannot write to {str(self.path)!r} (permission denied); choose a writable folder.")
        ours = (self.path / "dataset_description.json").is_file()     # a BIDS derivative (checked by the caller)
        if self.kind == "embeddings" and self.path.is_dir() and any(self.path.iterdir()) and not self.is_store() \
                and not ours:
            raise ZunaValueError(f"{str(self.path)!r} exists and is not a zuna_lab study store (no index.json); "
                                 "choose a new path for the store.")

    def open(self, settings, *, overwrite=False):
        """Take the lock, read (or create) the index, check the settings, clean up after a killed run."""
        self.path.mkdir(exist_ok=True)
        self._lock()
        try:
            if overwrite:
                self._clear()
            stored = self._read_index()
            if stored is not None:
                old = stored.get("settings", {})
                if old and old != settings:
                    changed = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
                    raise ZunaValueError(
                        f"{str(self.path)!r} was made with other settings ({', '.join(changed)} differ: "
                        f"{', '.join(f'{k}={old.get(k)!r}' for k in changed)}); pass overwrite=True to start it "
                        "again, or use another store.")
                self.rows = {row["recording"]: row for row in stored.get("rows", [])}
            self.settings = settings
            self._write_index()
            if self.kind == "embeddings":
                self._zarr_metadata()
            self._collect_garbage()
        except BaseException:
            self.close()
            raise
        return self

    def close(self):
        with contextlib.suppress(OSError):
            self.tmp.rmdir()          # only when empty: a finished run leaves no temporary folder
        if self._locked:
            try:
                self.lock_path.unlink()
            except FileNotFoundError:
                pass
            self._locked = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------ lock
    def _lock(self):
        me = {"host": socket.gethostname(), "pid": os.getpid(), "since": now()}
        for _ in range(3):
            try:
                fd = os.open(self.lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._lock_holder()
                if holder is not None and holder.get("host") == me["host"] and not _alive(holder.get("pid")):
                    self.lock_path.unlink(missing_ok=True)     # left by a run that was killed
                    continue
                if holder is None:      # being written right now, or unreadable: look again
                    continue
                raise ZunaValueError(
                    f"{str(self.path)!r} is in use by another run (pid {holder.get('pid')} on {holder.get('host')} "
                    f"since {holder.get('since')}); wait for it, or delete {self.lock_path.name} there if that run is gone.")
            with os.fdopen(fd, "w") as handle:
                json.dump(me, handle)
            self._locked = True
            return
        raise ZunaValueError(f"Cannot take the lock {str(self.lock_path)!r}; delete it if no run uses the store.")

    def _lock_holder(self):
        try:
            return json.loads(self.lock_path.read_text())
        except (OSError, ValueError):
            return None

    # ------------------------------------------------------------------ index
    def _read_index(self):
        if not self.index_path.is_file():
            return None
        try:
            content = json.loads(self.index_path.read_text())
        except (OSError, ValueError) as err:
            raise ZunaValueError(f"{str(self.index_path)!r} is unreadable ({err}); the store is damaged.") from None
        if not isinstance(content, dict) or content.get("format") not in (FORMAT, *_OLD_FORMATS) \
                or content.get("kind") != self.kind:
            raise ZunaValueError(f"{str(self.index_path)!r} is not the index of zuna_lab {self.kind}; "
                                 "choose another path.")
        if content["format"] == "zuna_lab.study.api/1":     # its run counter was "run", now a BIDS entity's name
            content["rows"] = [{("run_id" if k == "run" else k): v for k, v in row.items()}
                               for row in content.get("rows", [])]
        return content

    def _write_index(self):
        content = {"format": FORMAT, "kind": self.kind, "settings": self.settings, "updated": now(),
                   "rows": sorted(self.rows.values(), key=lambda row: row["recording"])}
        tmp = self.index_path.with_name(f".{self.index_path.name}.{uuid.uuid4().hex[:8]}")
        with open(tmp, "w") as handle:
            json.dump(content, handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.index_path)

    def _zarr_metadata(self):
        for folder, attrs in ((self.path, {"zuna_lab": FORMAT, "kind": self.kind, "index": "index.json"}),
                              (self.groups, None)):
            folder.mkdir(exist_ok=True)
            if not (folder / ".zgroup").exists():
                (folder / ".zgroup").write_text(json.dumps({"zarr_format": 2}))
            if attrs is not None:
                (folder / ".zattrs").write_text(json.dumps(attrs))

    def _clear(self):
        """overwrite=True: forget every recording of an earlier run (only in a store of ours)."""
        for folder in (self.groups, self.tmp):
            shutil.rmtree(folder, ignore_errors=True)
        if self.kind == "reconstructions":
            for row in self._read_rows():
                if row.get("output"):
                    (self.path / row["output"]).unlink(missing_ok=True)
        self.index_path.unlink(missing_ok=True)

    def _read_rows(self):
        try:
            return (self._read_index() or {}).get("rows", [])
        except ZunaValueError:
            return []

    def _collect_garbage(self):
        """Remove what a killed run left: temporary groups/files and groups no index row points at."""
        shutil.rmtree(self.tmp, ignore_errors=True)
        if self.kind == "reconstructions":
            for leftover in self.path.glob(".*.tmp*"):
                leftover.unlink(missing_ok=True)
            return
        self.tmp.mkdir()
        referenced = {row["output"] for row in self.rows.values() if row.get("status") == "done"}
        for group in self.groups.iterdir():
            if group.is_dir() and f"recordings/{group.name}" not in referenced:
                shutil.rmtree(group, ignore_errors=True)

    # ------------------------------------------------------------------ rows
    def is_complete(self, rec_id, source, stamp):
        """The recording is done from this very source (same path and stamp) and its output exists."""
        row = self.rows.get(rec_id)
        return bool(row and row.get("status") == "done" and row.get("source") == source
                    and row.get("source_stamp") == stamp and row.get("output")
                    and (self.path / row["output"]).exists())

    def temporary(self, rec_id, run):
        """Where a worker writes the group of ``rec_id`` before its commit."""
        return self.tmp / f"{rec_id}@{run}"

    def commit(self, row, written=None):
        """Record ``row`` (done or failed) atomically; a done embedding's group moves from .tmp/ first."""
        row = {**_EMPTY_ROW, **self.labels.get(row["recording"], {}), **row}
        previous = self.rows.get(row["recording"], {})
        if written is not None and row["status"] == "done":
            target = self.groups / Path(written).name
            os.replace(written, target)
            row["output"] = f"recordings/{target.name}"
        self.rows[row["recording"]] = row
        self._write_index()
        old = previous.get("output")
        if self.kind == "embeddings" and old and old != row.get("output"):
            shutil.rmtree(self.path / old, ignore_errors=True)      # the version this commit replaced

    def frame(self):
        return index_frame(sorted(self.rows.values(), key=lambda row: row["recording"]))


def _alive(pid):
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError, TypeError):
        return False
    except PermissionError:
        return True
    return True
