"""The index of a study store: a snapshot and an append-only journal of the rows committed since.

Rewriting the whole index at every commit made a commit cost grow with the study (0.72 s at
50,000 rows). Here a commit is **one line appended to the journal and fsynced** — its cost does not
depend on the study's size — and the journal is folded into the snapshot (compacted) at the end of
a run, when a run starts from a journal a killed run left, and when the journal has grown to half
the snapshot's rows (so compaction, O(rows) each time, costs O(1) per commit on average).

Files (names in :mod:`zuna_lab.study.layout`)::

    index.json            the snapshot: format, kind, settings, generation g, its journal, the pooled
                          table, every row (sorted by recording)
    journal-<g>.jsonl     one JSON line per commit since snapshot g: {"row": {...}[, "pooled": {...}]}

Reading: the snapshot, then its journal in order, each line's row replacing the row of the same
recording. A commit is its complete line: a last line without its newline (a run killed while
writing it, or a line being written while a reader reads) is not a commit; the next run cuts it off.
Compaction writes journal g+1 (empty), then the snapshot g+1 beside the old one and renames it over
it, then deletes journal g: a reader that read snapshot g and finds journal g gone reads again.
One writer at a time is the store's lock (:mod:`zuna_lab.study.store`).

Why not SQLite (or another database file): SQLite's locking relies on POSIX advisory locks, which
are broken or missing on many NFS mounts, and its documentation warns that a database on NFS can be
corrupted; cluster studies live on shared file systems (NFS, Lustre, GPFS). A journal needs only
what they all do safely: create, append, fsync and rename, by one writer.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import gc
import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ZunaValueError
from .layout import FORMAT, INDEX_NAMES, JOURNAL_NAMES, OLD_FORMATS

__all__ = ["IndexState", "IndexWriter", "read_index", "now", "bulk"]

#: Times a reader reads again when a compaction replaced the snapshot while it was reading.
_RETRIES = 20


def now():
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


@dataclass
class IndexState:
    """What an index holds when read: settings, one row per recording, the pooled features' places."""

    format: str
    settings: dict
    rows: dict                  # recording id -> row
    pooled: dict = field(default_factory=dict)   # recording id -> its pooled payload (its last journal line's)
    changed: set = field(default_factory=set)    # the recordings with a journal line (their rows changed)
    table: str | None = None    # the pooled table's file name (the snapshot's)
    generation: int = 0
    lines: int = 0              # commits in the journal
    end: int = 0                # bytes of the journal's complete lines
    torn: bool = False          # the journal ends with an unfinished line


def _load_snapshot(path, kind):
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise ZunaValueError(f"{str(path)!r} is unreadable ({err}); the store is damaged.") from None
    try:
        content = json.loads(text)
    except ValueError as err:
        raise ZunaValueError(f"{str(path)!r} is unreadable ({err}); the store is damaged.") from None
    if not isinstance(content, dict) or content.get("format") not in (FORMAT, *OLD_FORMATS) \
            or content.get("kind") != kind:
        raise ZunaValueError(f"{str(path)!r} is not the index of zuna_lab {kind}; choose another path.")
    return content


def _migrated(content):
    """An index of an older format as a state (its rows renamed where the format changed)."""
    rows = content.get("rows", [])
    if content["format"] == "zuna_lab.study.api/1":     # its run counter was "run", now a BIDS entity's name
        rows = [{("run_id" if k == "run" else k): v for k, v in row.items()} for row in rows]
    return IndexState(content["format"], content.get("settings", {}), {row["recording"]: row for row in rows})


def _replay(data, state, journal):
    """Apply the journal's complete lines (bytes ``data``) to ``state``."""
    lines = data.split(b"\n")[:-1]      # what follows the last newline is not a commit
    state.torn = not data.endswith(b"\n") and bool(data)
    try:
        entries = json.loads(b"[" + b",".join(lines) + b"]") if lines else []
    except ValueError:
        entries = []
        for number, line in enumerate(lines):
            try:
                entries.append(json.loads(line))
            except ValueError:
                if any(_parses(later) for later in lines[number + 1:]):
                    raise ZunaValueError(f"Line {number + 1} of {str(journal)!r} is damaged; the store is "
                                         "damaged (restore it, or start again with overwrite=True).") from None
                state.torn = True       # a tail cut short (a crash): not commits
                break
    for entry in entries:
        row = entry["row"]
        state.rows[row["recording"]] = row
        state.changed.add(row["recording"])
        if "pooled" in entry:
            state.pooled[row["recording"]] = entry["pooled"]
        else:
            state.pooled.pop(row["recording"], None)
    state.lines = len(entries)
    state.end = sum(len(line) + 1 for line in lines[:len(entries)])


def _parses(line):
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


@contextlib.contextmanager
def bulk():
    """No garbage collection while loading many small objects at once (rows): the collector would walk
    every object already made, again and again (the index of 100,000 recordings loads twice as fast)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def read_index(folder, kind, *, repair=False):
    """The index of the store ``folder``, or None where there is none.

    Parameters
    ----------
    folder : path-like
        The store.
    kind : {"embeddings", "reconstructions"}
    repair : bool
        Cut an unfinished last line off the journal (only the writer, which holds the lock).

    Returns
    -------
    state : IndexState | None
    """
    with bulk():
        return _read_index(Path(folder), kind, repair)


def _read_index(folder, kind, repair):
    snapshot = folder / INDEX_NAMES[kind]
    for _ in range(_RETRIES):
        content = _load_snapshot(snapshot, kind)
        if content is None:
            return None
        if content["format"] != FORMAT:
            return _migrated(content)
        journal = folder / content["journal"]
        try:
            with open(journal, "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            again = _load_snapshot(snapshot, kind)
            if again is not None and again.get("generation") == content.get("generation"):
                raise ZunaValueError(f"{str(journal)!r} is missing; the store is damaged (restore it, or start "
                                     "again with overwrite=True).") from None
            continue            # compacted while we read: read the new snapshot
        state = IndexState(FORMAT, content.get("settings", {}), {row["recording"]: row for row in content["rows"]},
                           table=content.get("pooled"), generation=int(content["generation"]))
        _replay(data, state, journal)
        if repair and state.end < len(data):
            with open(journal, "r+b") as handle:
                handle.truncate(state.end)
                os.fsync(handle.fileno())
            state.torn = False
        return state
    raise ZunaValueError(f"The index of {str(folder)!r} changed {_RETRIES} times while being read; try again.")


class IndexWriter:
    """The one writer of an index (the store's lock holder): appends commits, writes snapshots."""

    def __init__(self, folder, kind):
        self.folder = Path(folder)
        self.kind = kind
        self.snapshot = self.folder / INDEX_NAMES[kind]
        self.generation = 0
        self.lines = 0
        self._fd = None
        self._journal = None

    def journal_path(self, generation):
        return self.folder / JOURNAL_NAMES[self.kind].format(generation)

    def resume(self, state):
        """Append to the journal of ``state`` (read with ``repair=True``): nothing to rewrite."""
        self.generation, self.lines = state.generation, state.lines
        self._journal = self.journal_path(state.generation)
        self._fd = os.open(self._journal, os.O_WRONLY | os.O_APPEND)

    def rewrite(self, settings, rows, *, table=None, generation=None):
        """Write the snapshot of ``rows`` (the next generation) with an empty journal; drop the old journal."""
        generation = (self.generation if generation is None else generation) + 1
        journal = self.journal_path(generation)
        fd = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC, 0o644)
        tmp = self.snapshot.with_name(f".{self.snapshot.name}.{uuid.uuid4().hex[:8]}")
        try:
            os.fsync(fd)
            content = {"format": FORMAT, "kind": self.kind, "settings": settings, "updated": now(),
                       "generation": generation, "journal": journal.name, "pooled": table,
                       "rows": sorted(rows.values(), key=lambda row: row["recording"])}
            with open(tmp, "w") as handle:
                json.dump(content, handle, separators=(",", ":"))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.snapshot)
        except BaseException:
            os.close(fd)
            journal.unlink(missing_ok=True)
            tmp.unlink(missing_ok=True)          # a snapshot that could not be written leaves nothing behind
            raise
        old, self._journal = self._journal, journal
        if self._fd is not None:
            os.close(self._fd)
        self._fd, self.generation, self.lines = fd, generation, 0
        if old is not None and old != journal:
            old.unlink(missing_ok=True)

    def append(self, entry):
        """One commit: ``entry`` as one line, written at once and fsynced."""
        data = memoryview((json.dumps(entry, separators=(",", ":")) + "\n").encode())
        while data:
            data = data[os.write(self._fd, data):]
        os.fsync(self._fd)
        self.lines += 1

    @property
    def journal(self):
        return self._journal

    def close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
