"""Reading a study store back: :func:`open_embeddings` and :class:`Study` (index, lazy Datasets, pooled features).

The store is written by :func:`zuna_lab.study.api.embed_many`; reading needs neither a cluster nor
the model. For a BIDS study the pooled features carry the recordings' entities and the columns of
the dataset's ``participants.tsv``.
"""
from __future__ import annotations

import os
from pathlib import Path

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
        content = self._store._read_index()
        self.settings = content.get("settings", {})
        self._rows = {row["recording"]: row for row in content.get("rows", [])}
        return self

    @property
    def index(self):
        """One row per recording (see :func:`embed_many`), as a pandas DataFrame."""
        from .store import index_frame

        return index_frame(sorted(self._rows.values(), key=lambda row: row["recording"]))

    @property
    def recordings(self):
        """The ids of the complete recordings, sorted."""
        return sorted(rec for rec, row in self._rows.items() if row.get("status") == "done")

    def __len__(self):
        return len(self.recordings)

    def __iter__(self):
        return iter(self.recordings)

    def __contains__(self, recording):
        return recording in self.recordings

    def __getitem__(self, recording):
        import xarray as xr

        row = self._rows.get(recording)
        if row is None:
            raise ZunaValueError(f"The study has no recording {recording!r}; its recordings are "
                                 f"{', '.join(self.recordings[:8])}{' …' if len(self) > 8 else ''}.")
        if row.get("status") != "done":
            raise ZunaValueError(f"Recording {recording!r} failed and has no embedding: {row.get('error')}")
        return xr.open_zarr(self.path / row["output"], consolidated=True)

    def pooled(self, per="recording", *, include_masked=False, recordings=None):
        """Mean latents over channels and tokens, per recording or per epoch, as one tidy DataFrame.

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
            ``n_tokens`` (tokens averaged) and ``latent_0`` … ``latent_31``. Computed with dask
            (on the current client, if any).

        Examples
        --------
        >>> features = study.pooled().merge(groups, on="recording")      # doctest: +SKIP
        >>> zl.open_embeddings(bids_root).pooled().groupby("group").latent_0.mean()   # doctest: +SKIP
        """
        import dask
        import numpy as np
        import pandas as pd

        if per not in ("recording", "epoch"):
            raise ZunaValueError(f"per must be 'recording' or 'epoch', got {per!r}.")
        names = self.recordings if recordings is None else [str(r) for r in recordings]
        lazy = []
        for name in names:
            ds = self[name]
            visible = ~ds["padding"] if include_masked else ~(ds["mask"] | ds["padding"])
            dims = ("channel", "token") if per == "epoch" else ("epoch", "channel", "token")
            total = ds["embedding"].astype("float64").where(visible).sum(dims)
            lazy.append((total.data, visible.sum(dims).data, ds["epoch_start"].values))
        computed = dask.compute(*[(total, count) for total, count, _ in lazy])
        frames = []
        for name, (total, count), (_, _, starts) in zip(names, computed, lazy):
            total, count = np.atleast_2d(np.asarray(total, np.float64)), np.atleast_1d(np.asarray(count))
            with np.errstate(invalid="ignore", divide="ignore"):
                means = total / count[:, None]
            frame = pd.DataFrame(means, columns=[f"latent_{i}" for i in range(means.shape[1])])
            frame.insert(0, "n_tokens", count.astype(np.int64))
            if per == "epoch":
                frame.insert(0, "epoch_start", starts)
                frame.insert(0, "epoch", np.arange(len(starts)))
            frame.insert(0, "recording", name)
            frames.append(frame)
        if not frames:
            return pd.DataFrame(columns=["recording", "n_tokens"])
        return self._labelled(pd.concat(frames, ignore_index=True))

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
