"""Reading a study store back: :func:`open_embeddings` and :class:`Study` (index, lazy Datasets, pooled features).

The store is written by :func:`zuna_lab.study.api.embed_many`; reading needs neither a cluster nor
the model. For a BIDS study the pooled features carry the recordings' entities and the columns of
the dataset's ``participants.tsv``.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import ZunaTypeError, ZunaValueError
from .store import StudyStore

__all__ = ["open_embeddings", "Study"]


def open_embeddings(store):
    """Open a store written by :func:`embed_many` (read only, lazy).

    Parameters
    ----------
    store : path-like
        The store; for a BIDS study also the dataset's root (its store in
        ``derivatives/zuna_lab``).

    Returns
    -------
    study : Study
        ``study.index`` (the DataFrame :func:`embed_many` returned), ``study[recording]`` (that
        recording's Dataset, exactly :func:`zuna_lab.embed`'s, dask-backed) and
        ``study.pooled()`` (mean latents per recording or per epoch, one tidy DataFrame; for a
        BIDS study with the entities and the columns of ``participants.tsv``).

    Examples
    --------
    >>> study = zl.open_embeddings("study.zarr")          # doctest: +SKIP
    >>> study["sub-01"].embedding.sizes                    # doctest: +SKIP
    >>> study.pooled(per="epoch").head()                   # doctest: +SKIP
    """
    return Study(store)


def _names(recordings):
    if isinstance(recordings, str) or not hasattr(recordings, "__iter__"):
        raise ZunaTypeError(f"recordings must be a list of recording ids or None, got {recordings!r}.")
    return list(recordings)


class Study:
    """The recordings of a study store: index, lazy per-recording Datasets, pooled views.

    Made by :func:`open_embeddings`. The index is read when the study is opened (``refresh()``
    reads it again); only recordings whose status is "done" can be opened.
    """

    def __init__(self, store):
        from .bids import DERIVATIVE_NAME, is_bids_root

        if not isinstance(store, (str, os.PathLike)):
            raise ZunaTypeError(f"store must be a path to a study store, got {type(store).__name__}.")
        derivative = Path(store).expanduser() / "derivatives" / DERIVATIVE_NAME
        if is_bids_root(Path(store).expanduser()) and not (Path(store).expanduser() / "index.json").is_file():
            store = derivative         # a BIDS dataset's root: its default store
        self._store = StudyStore(store, "embeddings")
        if not self._store.is_store():
            raise ZunaValueError(f"{str(self._store.path)!r} is not a study store written by embed_many "
                                 "(no index.json there); check the path.")
        self.refresh()

    @property
    def path(self):
        return self._store.path

    def refresh(self):
        """Read the index again (a run may have committed more recordings since)."""
        state = self._store.read()
        if state is None:
            raise ZunaValueError(f"{str(self.path)!r} has no index any more (was it deleted?); check the path.")
        self.settings = state.settings
        self._rows = state.rows
        self._state = state
        self._recordings = sorted(rec for rec, row in self._rows.items() if row.get("status") == "done")
        self._done = set(self._recordings)
        self._frame = None
        return self

    @property
    def index(self):
        """One row per recording (see :func:`embed_many`), as a pandas DataFrame."""
        from .store import index_frame

        if self._frame is None:
            self._frame = index_frame(sorted(self._rows.values(), key=lambda row: row["recording"]))
        return self._frame.copy()

    @property
    def recordings(self):
        """The ids of the complete recordings, sorted."""
        return list(self._recordings)

    def __len__(self):
        return len(self._recordings)

    def __iter__(self):
        return iter(self.recordings)

    def __contains__(self, recording):
        return recording in self._done

    def __getitem__(self, recording):
        from .archive import open_recording

        row = self._row(recording)
        return open_recording(self.path / row["output"])

    def _row(self, recording):
        """The row of a complete recording; else one sentence."""
        row = self._rows.get(recording)
        if row is None:
            raise ZunaValueError(f"The study has no recording {recording!r}; its recordings are "
                                 f"{', '.join(self._recordings[:8])}{' …' if len(self) > 8 else ''}.")
        if row.get("status") != "done":
            raise ZunaValueError(f"Recording {recording!r} failed and has no embedding: {row.get('error')}")
        return row

    def pooled(self, per="recording", *, include_masked=False, recordings=None):
        """Mean latents over channels and tokens, per recording or per epoch, as one tidy DataFrame.

        Per recording, the means come from the store's pooled table (sums written with each
        recording, one file for the whole study); per epoch, from the small per-epoch sums kept
        in each recording's file. Recordings of stores written before these sums existed are
        pooled from their embeddings, as before; both ways agree to float64 rounding.

        Parameters
        ----------
        per : {"recording", "epoch"}
            One row per recording, or per (recording, epoch).
        include_masked : bool
            Count the tokens hidden from the encoder too (by default only visible tokens; the
            padding past a short last segment never counts).
        recordings : list of str | None
            Some recordings only (default: every complete one).

        Returns
        -------
        frame : pandas.DataFrame
            ``recording`` (and ``epoch``, ``epoch_start``), for a BIDS study its entities
            (``subject``, ``session``, ``task``, ``acquisition``, ``run``) and the columns of
            ``participants.tsv`` (one already taken gets a ``participant_`` prefix), then
            ``n_tokens`` (tokens averaged) and ``latent_0`` … ``latent_31``.

        Examples
        --------
        >>> features = study.pooled().merge(groups, on="recording")      # doctest: +SKIP
        >>> zl.open_embeddings(bids_root).pooled().groupby("group").latent_0.mean()   # doctest: +SKIP
        """
        import pandas as pd

        from ..validation import check_bool

        if per not in ("recording", "epoch"):
            raise ZunaValueError(f"per must be 'recording' or 'epoch', got {per!r}.")
        check_bool(include_masked, "include_masked")
        names = self._recordings if recordings is None else list(dict.fromkeys(str(r) for r in _names(recordings)))
        for name in names:
            self._row(name)                 # every name is a complete recording, before any reading
        suffix = "_all" if include_masked else ""
        if per == "recording":
            frames, rest = self._from_table(names, suffix)
        else:
            frames, rest = self._from_epoch_sums(names, suffix)
        if rest:
            frames.append(self._from_embeddings(rest, per, include_masked))
        frames = [frame for frame in frames if len(frame)]
        if not frames:
            return pd.DataFrame(columns=["recording", "n_tokens"])
        frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        if len(frames) > 1 or rest:         # back in the order asked for
            order = pd.Series(range(len(names)), index=names)
            keys = [order.reindex(frame["recording"]).to_numpy()]
            if per == "epoch":
                keys.insert(0, frame["epoch"].to_numpy())
            frame = frame.iloc[np.lexsort(keys)].reset_index(drop=True)
        return self._labelled(frame)

    def _from_table(self, names, suffix):
        """Per-recording means of ``names`` from the pooled table and the journal; the names not there.

        The table's rows hold for the snapshot it was written with; the recordings committed since
        (in the journal) take their totals from their journal line instead.
        """
        import pandas as pd

        from .journal import bulk
        from .pooled import from_payloads, means_frame, read_table

        state = self._state
        for _ in range(3):
            try:
                table = read_table(self.path / state.table) if state.table else None
                break
            except FileNotFoundError:       # compacted since the index was read: read it again
                state = self.refresh()._state
        else:
            table = None
        recordings, sums, counts = [], [], []
        if table is not None:
            keep = ~pd.Index(table["recording"]).isin(list(state.changed))
            recordings.append(table["recording"][keep])
            sums.append(table["sum" + suffix][keep])
            counts.append(table["n" + suffix][keep])
        if state.pooled:
            totals = from_payloads(state.pooled.values())
            recordings.append(np.array(list(state.pooled), dtype=object))
            sums.append(totals["sum" + suffix])
            counts.append(totals["n" + suffix])
        if not recordings:
            return [], list(names)
        with bulk():
            position = pd.Index(np.concatenate(recordings)).get_indexer(names)
        found = position >= 0
        rows = position[found]
        frame = means_frame(np.asarray(names, dtype=object)[found], np.concatenate(sums)[rows],
                            np.concatenate(counts)[rows])
        return [frame], [name for name, ok in zip(names, found) if not ok]

    def _from_epoch_sums(self, names, suffix):
        """Per-epoch means of ``names`` from each recording's per-epoch sums; the names without them."""
        from .archive import read_epoch_sums
        from .pooled import means_frame

        frames, rest = [], []
        for name in names:
            sums = read_epoch_sums(self.path / self._rows[name]["output"])
            if sums is None:
                rest.append(name)
                continue
            starts = sums["epoch_start"]
            frames.append(means_frame([name] * len(starts), sums["sum" + suffix], sums["n" + suffix],
                                      epoch=np.arange(len(starts)), epoch_start=starts))
        return frames, rest

    def _from_embeddings(self, names, per, include_masked):
        """Means of ``names`` computed from their embeddings (recordings of older stores)."""
        import pandas as pd

        from .pooled import means_frame, sums_from_datasets

        frames = []
        for name, total, count, starts in sums_from_datasets({name: self[name] for name in names}, per,
                                                              include_masked):
            epochs = dict(epoch=np.arange(len(starts)), epoch_start=starts) if per == "epoch" else {}
            frames.append(means_frame([name] * len(count), total, count, **epochs))
        return pd.concat(frames, ignore_index=True)

    def _labelled(self, frame):
        """``frame`` with the BIDS entities of its recordings and the participants' columns, after ``recording``."""
        from .bids import BIDS_COLUMNS, read_participants

        root = self.settings.get("bids_root")
        if not root:
            return frame
        entities = [column for column, _ in BIDS_COLUMNS]
        labels = self.index.set_index("recording").reindex(frame["recording"])
        position = 1 + ("epoch" in frame.columns) + ("epoch_start" in frame.columns)
        for offset, column in enumerate(entities):
            values = labels[column].to_numpy() if column in labels.columns else [""] * len(frame)
            frame.insert(position + offset, column, values)
        participants = read_participants(root)
        if participants is None:
            return frame
        taken = set(frame.columns)
        participants = participants.rename(columns={c: f"participant_{c}" for c in participants.columns
                                                    if c in taken and c != "subject"})
        extra = [c for c in participants.columns if c != "subject"]
        joined = frame.merge(participants.drop_duplicates("subject"), on="subject", how="left")
        order = list(frame.columns[:position + len(entities)]) + extra + list(frame.columns[position + len(entities):])
        return joined[order]

    def __repr__(self):
        index = self.index
        failed = int((index.status == "failed").sum()) if len(index) else 0
        hours = float(index.loc[index.status == "done", "seconds"].sum()) / 3600 if len(index) else 0.0
        return (f"<Study {str(self.path)!r}: {len(self)} recordings ({hours:.2f} h) embedded with "
                f"{self.settings.get('variant', '?')} from {self.settings.get('model', '?')}, {failed} failed>")
