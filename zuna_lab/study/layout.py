"""The study store's layout in one place: format versions, file names, when the journal is compacted.

See :mod:`zuna_lab.study.store` for what the files are and :mod:`zuna_lab.study.journal` for how
the index is written.
"""
from __future__ import annotations

#: The index format this version writes. /3: a snapshot (``index.json``) plus an append-only journal of
#: the rows committed since, one recording = one zip file, pooled features in one table.
FORMAT = "zuna_lab.study.api/3"
#: Earlier formats this version reads (and a run rewrites in its own): /1 named the run counter "run";
#: /2 rewrote the whole index at every commit and kept one zarr folder (~40 files) per recording.
OLD_FORMATS = ("zuna_lab.study.api/1", "zuna_lab.study.api/2")

#: The snapshot of the index, per kind of study.
INDEX_NAMES = {"embeddings": "index.json", "reconstructions": "zuna_lab_index.json"}
#: The journal of a snapshot's generation ``g``: ``JOURNAL_NAMES[kind].format(g)``.
JOURNAL_NAMES = {"embeddings": "journal-{:06d}.jsonl", "reconstructions": "zuna_lab_journal-{:06d}.jsonl"}
#: A recording of an embeddings store: ``recordings/<id>@<run>`` + this suffix (a zip of its zarr group).
RECORDING_SUFFIX = ".zarr.zip"
#: The pooled-features table of an embeddings store: ``pooled-<token>`` + this suffix (one file, zarr in a zip).
POOLED_TABLE = "pooled-{}.zarr.zip"
#: The group, inside a recording's zip, that holds its per-epoch sums (beside the Dataset's arrays).
POOLED_GROUP = "zuna_lab_pooled"

#: The journal is folded into the snapshot at the end of a run, and during a run once it holds at least
#: this many lines and at least COMPACT_RATIO x the rows of the snapshot: each compaction costs O(rows),
#: so a commit costs O(1) on average whatever the size of the study.
COMPACT_MIN_LINES = 4096
COMPACT_RATIO = 0.5
#: Rows per chunk of the pooled table's arrays.
TABLE_CHUNK_ROWS = 1 << 16
