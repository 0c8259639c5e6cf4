"""The on-disk side of a study: recording ids, source stamps, the store's index, atomic commits, the lock.

A study store (``embed_many``) is a folder::

    study.zarr/
      .zgroup, .zattrs          a zarr group, so zarr tools open it (attrs: format, kind)
      index.json                the index's snapshot: settings + one row per recording
      journal-<g>.jsonl         the rows committed since that snapshot, one line per commit
      pooled-<token>.zarr.zip   the pooled features of every recording (one table, :mod:`.pooled`)
      recordings/<id>@<run>.zarr.zip   one file per complete recording: its zarr group, exactly
                                zl.embed's Dataset, in a zip (:mod:`.archive`), with its per-epoch sums
      .tmp/                     recordings being written (removed by the next run)
      .lock                     held by the running driver (host, pid)

A recording is committed by the driver alone: its zip, written (and fsynced) by a worker under
``.tmp/``, is renamed into ``recordings/`` (a new name: ``<id>@<run>``), then its row is appended to
the journal as one fsynced line (:mod:`.journal`): a commit costs the same at 100 or 100,000
recordings, and the snapshot is rewritten only when the journal is compacted (end of a run, or
when the journal has grown). Readers go through the index, so they never see a half-written
recording; a killed run leaves at most an unfinished journal line and unreferenced files, which
the next run removes. Stores of the older formats (``/1``, ``/2``: one zarr folder per recording,
the whole ``index.json`` rewritten per commit) are read as they are and rewritten in this format
by the next run (their recordings stay folders). ``reconstruct_many`` keeps the same index as
``zuna_lab_index.json`` + ``zuna_lab_journal-<g>.jsonl`` beside its FIF files (each written
atomically by :func:`zuna_lab.write_fif`).
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import uuid
from pathlib import Path

from ..errors import ZunaTypeError, ZunaValueError
from .journal import IndexWriter, now, read_index
from .layout import COMPACT_MIN_LINES, COMPACT_RATIO, FORMAT, INDEX_NAMES, JOURNAL_NAMES, POOLED_TABLE

__all__ = ["StudyStore", "INDEX_COLUMNS", "source_stamp", "source_stamps", "recording_id", "index_frame"]

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


class Folders:
    """Folder listings, each folder read once: the source stamps of a study's recordings.

    Listing a recording's folder for each recording costs O(files in the folder) per recording:
    for 100,000 recordings in one folder, 10^10 names compared (hours, before any work). Here
    each folder is listed once, and the files sharing a recording's stem are found by their
    name's prefix.
    """

    def __init__(self):
        self._files = {}
        self._by_prefix = {}

    def files(self, folder):
        """The names of the regular, not hidden files of ``folder`` (symbolic links followed)."""
        folder = str(folder)
        if folder not in self._files:
            try:
                with os.scandir(folder) as entries:
                    self._files[folder] = sorted(e.name for e in entries if not e.name.startswith(".") and e.is_file())
            except (FileNotFoundError, NotADirectoryError):
                self._files[folder] = []
        return self._files[folder]

    def sharing_stem(self, folder, stem):
        """The files of ``folder`` named ``<stem>.<anything>``."""
        folder = str(folder)
        if folder not in self._by_prefix:
            index = {}
            for name in self.files(folder):
                for dot in (i for i, c in enumerate(name) if c == "."):
                    index.setdefault(name[:dot], []).append(name)
            self._by_prefix[folder] = index
        return self._by_prefix[folder].get(stem, [])


def _companions(path, folders):
    """The files a recording is made of: itself and, in its folder, the files sharing its stem (.eeg/.vmrk, .fdt);
    in a BIDS dataset also the sidecars that apply to it (channels.tsv, electrodes.tsv, …)."""
    from .bids import bids_companions

    path = Path(path)
    in_bids = bids_companions(path, files=folders.files) if path.is_file() else None
    if in_bids is not None:
        return in_bids
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file())
    siblings = [path.parent / name for name in folders.sharing_stem(path.parent, recording_id(path))]
    return sorted(set(siblings) | ({path} if path.exists() else set()))


def source_stamp(path):
    """Size and modification time (ns) of a recording and its companion files: ``"<bytes>:<mtime_ns>"``.

    Two runs see the same stamp when no file of the recording changed (the rerun skips it).

    Examples
    --------
    >>> source_stamp("data/sample_synthetic_raw.fif")     # doctest: +SKIP
    '7383361:1764412800123456789'
    """
    return source_stamps([path])[0]


def source_stamps(paths):
    """:func:`source_stamp` of many recordings, each folder listed once (flat in the number of recordings).

    Examples
    --------
    >>> source_stamps(["data/a.edf", "data/b.edf"])        # doctest: +SKIP
    ['7383361:1764412800123456789', '7383361:1764412800223456789']
    """
    folders = Folders()
    stamps = []
    for path in paths:
        files = _companions(path, folders)
        if not files:
            stamps.append("missing")
            continue
        stats = [f.stat() for f in files]
        stamps.append(f"{sum(s.st_size for s in stats)}:{max(s.st_mtime_ns for s in stats)}")
    return stamps


def index_frame(rows):
    """The index as a pandas DataFrame: one row per recording, :data:`INDEX_COLUMNS` in order, with the
    BIDS entities after ``source`` when some row has them."""
    import pandas as pd

    from .bids import BIDS_COLUMNS
    from .journal import bulk

    columns, defaults = list(INDEX_COLUMNS), dict(_EMPTY_ROW)
    if any(row.get("subject") for row in rows):
        entities = [column for column, _ in BIDS_COLUMNS]
        columns[2:2] = entities
        defaults.update(dict.fromkeys(entities, ""))
    with bulk():
        frame = pd.DataFrame({column: [row.get(column, defaults[column]) for row in rows] for column in columns},
                             columns=columns)
    return frame.astype({"n_epochs": "int64", "n_channels": "int64", "seconds": "float64",
                         "compute_seconds": "float64"}).reset_index(drop=True)


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
        self.index_path = self.path / INDEX_NAMES[kind]
        self.tmp = self.path / ".tmp"
        self.groups = self.path / "recordings"
        self.lock_path = self.path / ".lock"
        self.settings = {}
        self.rows = {}
        #: Columns that name a recording beyond its id (its BIDS entities), added to its row at commit.
        self.labels = {}
        #: Pooled totals committed since the table was written: recording id -> totals (of its current row).
        self.pending = {}
        #: The recordings committed since the table was written (their table rows, if any, are stale).
        self.touched = set()
        #: The pooled table's file name (embeddings), None before the first.
        self.table = None
        self._log = None
        self._locked = False

    # ------------------------------------------------------------------ opening
    def is_store(self):
        return self.index_path.is_file()

    def read(self):
        """The index as it is now (for readers: no lock taken, nothing changed), or None."""
        return read_index(self.path, self.kind)

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
        """Take the lock, read (or create) the index, check the settings, clean up after a killed run.

        The journal a killed run left is folded into a new snapshot here; an unchanged store whose
        last run ended cleanly is only reopened for appending (no rewrite).
        """
        from .pooled import SUM_NAMES, from_payloads

        self.path.mkdir(exist_ok=True)
        self._lock()
        try:
            if overwrite:
                self._clear()
            state = read_index(self.path, self.kind, repair=True)
            self._log = IndexWriter(self.path, self.kind)
            if state is not None:
                old = state.settings
                if old and old != settings:
                    changed = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
                    raise ZunaValueError(
                        f"{str(self.path)!r} was made with other settings ({', '.join(changed)} differ: "
                        f"{', '.join(f'{k}={old.get(k)!r}' for k in changed)}); pass overwrite=True to start it "
                        "again, or use another store.")
                self.rows, self.table, self.touched = state.rows, state.table, set(state.changed)
                totals = from_payloads(state.pooled.values())
                self.pending = {rec: {name: totals[name][i] for name in SUM_NAMES}
                                for i, rec in enumerate(state.pooled)}
            self.settings = settings
            if state is None or state.format != FORMAT or state.lines or state.settings != settings:
                self.compact(generation=state.generation if state is not None else 0)
            else:
                self._log.resume(state)
            if self.kind == "embeddings":
                self._zarr_metadata()
            self._collect_garbage()
        except BaseException:
            self.close(compact=False)
            raise
        return self

    def close(self, *, compact=True):
        """Fold the journal into the snapshot (``compact``), release the lock."""
        try:
            if self._log is not None and compact and self._log.lines:
                self.compact()
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None
            with contextlib.suppress(OSError):
                self.tmp.rmdir()          # only when empty: a finished run leaves no temporary folder
            if self._locked:
                self.lock_path.unlink(missing_ok=True)
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
    def compact(self, *, generation=None):
        """Fold the journal into a new snapshot (and the pending pooled totals into a new table)."""
        table = self.table
        if self.kind == "embeddings" and self.touched:
            table = self._write_table()
        self._log.rewrite(self.settings, self.rows, table=table, generation=generation)
        if self.table and table != self.table:
            (self.path / self.table).unlink(missing_ok=True)
        self.table, self.pending, self.touched = table, {}, set()

    def _write_table(self):
        """The pooled table of every done recording: the current table's rows of the recordings not committed
        since, then the pending totals. Its rows hold for the snapshot written with it (readers rely on it)."""
        import numpy as np

        from .pooled import SUM_NAMES, read_table, write_table

        parts = []
        if self.table:
            old = read_table(self.path / self.table)
            keep = np.array([rec not in self.touched for rec in old["recording"]], dtype=bool)
            parts.append((old["recording"][keep], old["output"][keep], {name: old[name][keep] for name in SUM_NAMES}))
        if self.pending:
            names = list(self.pending)
            parts.append((np.array(names, dtype=object), np.array([self.rows[rec]["output"] for rec in names], object),
                          {name: np.stack([np.asarray(self.pending[rec][name]) for rec in names])
                           for name in SUM_NAMES}))
        if not parts:
            return None
        name = POOLED_TABLE.format(uuid.uuid4().hex[:8])
        write_table(self.path / name, np.concatenate([part[0] for part in parts]),
                    np.concatenate([part[1] for part in parts]),
                    {key: np.concatenate([part[2][key] for part in parts]) for key in SUM_NAMES})
        return name

    def _zarr_metadata(self):
        for folder, attrs in ((self.path, {"zuna_lab": FORMAT, "kind": self.kind, "index": self.index_path.name}),
                              (self.groups, None)):
            folder.mkdir(exist_ok=True)
            if not (folder / ".zgroup").exists():
                (folder / ".zgroup").write_text(json.dumps({"zarr_format": 2}))
            if attrs is not None:
                (folder / ".zattrs").write_text(json.dumps(attrs))

    def _clear(self):
        """overwrite=True: forget every recording of an earlier run (only in a store of ours)."""
        if self.kind == "reconstructions":
            try:
                state = read_index(self.path, self.kind)
            except ZunaValueError:
                state = None
            for row in state.rows.values() if state is not None else ():
                if row.get("output"):
                    (self.path / row["output"]).unlink(missing_ok=True)
        for folder in (self.groups, self.tmp):
            shutil.rmtree(folder, ignore_errors=True)
        for leftover in self._index_files():
            leftover.unlink(missing_ok=True)
        self.index_path.unlink(missing_ok=True)

    def _index_files(self, keep=()):
        """The store's journals, pooled tables and unfinished snapshots, but ``keep``."""
        patterns = [JOURNAL_NAMES[self.kind].replace("{:06d}", "*"), f".{self.index_path.name}.*"]
        if self.kind == "embeddings":
            patterns.append(POOLED_TABLE.format("*"))
        return [path for pattern in patterns for path in self.path.glob(pattern) if path.name not in keep]

    def _collect_garbage(self):
        """Remove what a killed run left: temporary files, journals and tables no snapshot names, recordings
        no index row points at."""
        shutil.rmtree(self.tmp, ignore_errors=True)
        for leftover in self._index_files(keep={self._log.journal.name, self.table}):
            leftover.unlink(missing_ok=True)
        if self.kind == "reconstructions":
            for leftover in self.path.glob(".*.tmp*"):
                leftover.unlink(missing_ok=True)
            return
        self.tmp.mkdir()
        referenced = {row["output"] for row in self.rows.values() if row.get("status") == "done"}
        for entry in self.groups.iterdir():
            if entry.name not in (".zgroup", ".zattrs") and f"recordings/{entry.name}" not in referenced:
                _remove(entry)

    # ------------------------------------------------------------------ rows
    def is_complete(self, rec_id, source, stamp):
        """The recording is done from this very source (same path and stamp) and its output exists."""
        row = self.rows.get(rec_id)
        return bool(row and row.get("status") == "done" and row.get("source") == source
                    and row.get("source_stamp") == stamp and row.get("output")
                    and (self.path / row["output"]).exists())

    def commit(self, row, written=None, pooled=None):
        """Record ``row`` (done or failed): a done embedding's file moves from .tmp/ first, then the row (and
        the recording's pooled totals, ``pooled``) is appended to the journal as one fsynced line.

        The cost does not depend on the number of rows, but for a compaction when the journal has grown
        to half the snapshot (O(rows), so O(1) per commit on average).
        """
        from .pooled import payload

        row = {**_EMPTY_ROW, **self.labels.get(row["recording"], {}), **row}
        rec_id = row["recording"]
        previous = self.rows.get(rec_id, {})
        if written is not None and row["status"] == "done":
            target = self.groups / Path(written).name
            os.replace(written, target)
            row["output"] = f"recordings/{target.name}"
        entry = {"row": row}
        if pooled is not None and row["status"] == "done":
            entry["pooled"] = payload(pooled)
            self.pending[rec_id] = pooled
        else:
            self.pending.pop(rec_id, None)
        self.touched.add(rec_id)
        self.rows[rec_id] = row
        self._log.append(entry)
        old = previous.get("output")
        if self.kind == "embeddings" and old and old != row.get("output"):
            _remove(self.path / old)      # the version this commit replaced
        if self._log.lines >= max(COMPACT_MIN_LINES, COMPACT_RATIO * len(self.rows)):
            self.compact()

    def frame(self):
        return index_frame(sorted(self.rows.values(), key=lambda row: row["recording"]))


def _remove(path):
    """A recording's output: a zip file, or the zarr folder of an older store."""
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _alive(pid):
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError, TypeError):
        return False
    except PermissionError:
        return True
    return True
