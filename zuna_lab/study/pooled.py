"""Pooled features of a study: mean latents per recording (one table) and per epoch (beside each recording).

``Study.pooled()`` of 100,000 recordings must not open 100,000 recordings. So the worker that
writes a recording also sums its latents (:func:`epoch_sums`): per epoch, the float64 sum of the
latents of its visible tokens (neither hidden from the encoder nor padding) and their count, and
the same over every token but padding (``include_masked=True``). The per-epoch sums go into the
recording's zip (:mod:`zuna_lab.study.archive`); their totals travel with its commit, in the
journal line (:func:`payload`), and are folded into **one table** of every recording's sums when
the journal is compacted (:func:`write_table`: a zarr group in one zip file — zarr, not parquet:
zarr is a dependency, so a store written where pyarrow is installed reads everywhere). Sums, not
means, are kept: the mean is ``sum / count`` when read, the division ``pooled()`` always made,
and sums of several recordings (a subject's) can be combined exactly.

Recordings of older stores (no sums written) are pooled from their Datasets as before
(:func:`sums_from_datasets`); the two ways agree to float64 rounding (the order of the additions).
"""
from __future__ import annotations

import base64
import binascii

import numpy as np

__all__ = ["epoch_sums", "recording_sums", "payload", "from_payloads", "write_table", "read_table",
           "sums_from_datasets", "means_frame", "SUM_NAMES"]

#: The arrays of a recording's sums: visible tokens (sum, n), every token but padding (sum_all, n_all).
SUM_NAMES = ("sum", "n", "sum_all", "n_all")
#: Epochs summed at once by :func:`epoch_sums` (bounded memory for day-long recordings).
_EPOCH_BLOCK_BYTES = 64 << 20


def epoch_sums(ds):
    """Per epoch: float64 sums of the latents of the visible tokens and of every non-padding token; their counts.

    Parameters
    ----------
    ds : xarray.Dataset
        :func:`zuna_lab.embed`'s result (``embedding``, ``mask``, ``padding``).

    Returns
    -------
    sums : dict
        ``sum`` (epoch, latent) float64 and ``n`` (epoch,) int64 over the visible tokens;
        ``sum_all`` and ``n_all`` over every token but padding. NaN latents are skipped, as
        ``xarray``'s ``sum`` skips them.

    Examples
    --------
    >>> sums = epoch_sums(zl.embed(raw, model=model))          # doctest: +SKIP
    >>> sums["sum"] / sums["n"][:, None]                        # mean latents per epoch   # doctest: +SKIP
    """
    embedding = ds["embedding"].values
    hidden, padding = ds["mask"].values, ds["padding"].values
    n_epochs, n_latent = embedding.shape[0], embedding.shape[-1]
    sums = {"sum": np.zeros((n_epochs, n_latent)), "n": np.zeros(n_epochs, np.int64),
            "sum_all": np.zeros((n_epochs, n_latent)), "n_all": np.zeros(n_epochs, np.int64)}
    step = max(1, _EPOCH_BLOCK_BYTES // max(1, embedding[:1].size * 8))
    zero = np.zeros((), embedding.dtype)
    for begin in range(0, n_epochs, step):
        block = slice(begin, begin + step)
        values = embedding[block]
        for suffix, visible in (("", ~(hidden[block] | padding[block])), ("_all", ~padding[block])):
            # summed in float64 without a float64 copy; a NaN among the tokens counted (never seen) is skipped
            total = np.where(visible[..., None], values, zero).sum(axis=(1, 2), dtype=np.float64)
            broken = np.isnan(total).any(axis=1)
            if broken.any():
                picked = np.where(visible[broken][..., None], values[broken].astype(np.float64), np.nan)
                total[broken] = np.nansum(picked, axis=(1, 2))
            sums["sum" + suffix][block] = total
            sums["n" + suffix][block] = visible.sum(axis=(1, 2))
    return sums


def recording_sums(sums):
    """The totals of per-epoch :func:`epoch_sums` over the recording (``n`` and ``n_all`` as ints)."""
    return {"sum": sums["sum"].sum(axis=0), "n": int(sums["n"].sum()),
            "sum_all": sums["sum_all"].sum(axis=0), "n_all": int(sums["n_all"].sum())}


def _record(n_latent):
    """One recording's totals as one binary record (a journal line carries it in base64)."""
    return np.dtype([("n", "<i8"), ("n_all", "<i8"), ("sum", "<f8", (n_latent,)), ("sum_all", "<f8", (n_latent,))])


def payload(totals):
    """A recording's totals for a journal line: one base64 string of their float64 / int64 bytes (exact, and
    decoded for thousands of lines at once by :func:`from_payloads`)."""
    record = np.zeros((), _record(len(totals["sum"])))
    for name in SUM_NAMES:
        record[name] = totals[name]
    return base64.b64encode(record.tobytes()).decode("ascii")


def from_payloads(strings):
    """The totals of many :func:`payload` strings: ``n``, ``n_all`` (k,) int64, ``sum``, ``sum_all`` (k, latent)."""
    buffers = [binascii.a2b_base64(text) for text in strings]
    n_latent = (len(buffers[0]) - 16) // 16 if buffers else 0
    records = np.frombuffer(b"".join(buffers), _record(n_latent))
    return {name: np.array(records[name]) for name in SUM_NAMES}


def write_table(path, recordings, outputs, totals):
    """Write the table of the recordings' totals: one zip holding a zarr group.

    Parameters
    ----------
    path : path-like
        The zip file.
    recordings, outputs : sequence of str
        Each row's recording and the output its sums belong to (a recomputed recording's old row
        is told apart by its output).
    totals : dict
        ``sum`` / ``sum_all`` (rows, latent) float64 and ``n`` / ``n_all`` (rows,) int64.
    """
    import zarr

    from .archive import memory_store, write_zip
    from .layout import TABLE_CHUNK_ROWS

    store = memory_store()
    group = zarr.open_group(store, mode="w", zarr_format=2)
    group.attrs["zuna_lab"] = ("pooled sums per recording: mean = sum / n (visible tokens), "
                               "sum_all / n_all (all but padding)")
    n_rows = len(recordings)
    rows = max(1, min(n_rows, TABLE_CHUNK_ROWS))
    columns = {"recording": np.asarray(recordings, dtype=object), "output": np.asarray(outputs, dtype=object),
               **{name: np.asarray(totals[name]) for name in SUM_NAMES}}
    for name, values in columns.items():
        array = group.create_array(name, shape=values.shape, dtype=str if values.dtype == object else values.dtype,
                                   chunks=(rows,) + values.shape[1:])
        if n_rows:
            array[...] = values
    zarr.consolidate_metadata(store, zarr_format=2)
    return write_zip(store, path)


def read_table(path):
    """The table of :func:`write_table` as a dict of numpy arrays (``recording`` and ``output`` as str)."""
    import zarr

    from .archive import open_zip

    store = open_zip(path)
    try:
        group = zarr.open_group(store, mode="r", zarr_format=2, use_consolidated=True)
        table = {name: group[name][...] for name in ("recording", "output", *SUM_NAMES)}
    finally:
        store.close()
    for name in ("recording", "output"):
        table[name] = table[name].astype(object)
    return table


def sums_from_datasets(datasets, per, include_masked):
    """Pool the recordings' Datasets themselves (stores written before the sums were): as ``pooled()`` did.

    Parameters
    ----------
    datasets : dict
        Recording id -> its lazy Dataset.
    per : {"recording", "epoch"}
    include_masked : bool

    Returns
    -------
    pooled : list of tuple
        Per recording ``(id, total (rows, latent), count (rows,), epoch_start)``; one row per
        recording, or one per epoch. Computed with dask (on the current client, if any).
    """
    import dask

    lazy = []
    for name, ds in datasets.items():
        visible = ~ds["padding"] if include_masked else ~(ds["mask"] | ds["padding"])
        dims = ("channel", "token") if per == "epoch" else ("epoch", "channel", "token")
        total = ds["embedding"].astype("float64").where(visible).sum(dims)
        lazy.append((name, total.data, visible.sum(dims).data, ds["epoch_start"].values))
    computed = dask.compute(*[(total, count) for _, total, count, _ in lazy])
    return [(name, np.atleast_2d(np.asarray(total, np.float64)), np.atleast_1d(np.asarray(count)), starts)
            for (name, _, _, starts), (total, count) in zip(lazy, computed)]


def means_frame(recordings, total, count, *, epoch=None, epoch_start=None):
    """One tidy DataFrame of mean latents: ``recording`` (``epoch``, ``epoch_start``), ``n_tokens``, ``latent_*``."""
    import pandas as pd

    total, count = np.asarray(total, np.float64), np.asarray(count)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = total / count[:, None]
    frame = pd.DataFrame(means, columns=[f"latent_{i}" for i in range(means.shape[1])])
    frame.insert(0, "n_tokens", count.astype(np.int64))
    if epoch is not None:
        frame.insert(0, "epoch_start", np.asarray(epoch_start, np.float64))
        frame.insert(0, "epoch", np.asarray(epoch, np.int64))
    frame.insert(0, "recording", np.asarray(recordings, dtype=object))
    return frame
