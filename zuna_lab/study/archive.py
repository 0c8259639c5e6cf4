"""One recording of a study store as one file: the zip of its zarr group (zarr's ``ZipStore`` layout).

A study of 100,000 recordings kept as one zarr folder each would be ~4 million files (~40 per
recording: an array's metadata, attributes and chunks each are one); cluster file systems often
allow 1-10 million per user and list, copy or delete that many slowly. A zip holds the same keys
as one file: zarr opens it as it is (``zarr.storage.ZipStore``), chunks are read lazily by offset,
and one ``os.replace`` commits it. The group is built in memory and written to the zip in one pass
(a zip cannot replace a member in place: zarr writing a ``ZipStore`` directly would leave duplicates).

- :func:`write_zip`: a zarr ``MemoryStore`` into one zip file, fsynced.
- :func:`write_recording`: a recording's Dataset (exactly :func:`zuna_lab.embed`'s) and its per-epoch
  sums (:mod:`zuna_lab.study.pooled`) into one zip.
- :func:`open_recording`: the Dataset back, lazily, from a zip or from a folder of an older store.
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

__all__ = ["write_zip", "open_zip", "write_recording", "open_recording", "read_epoch_sums", "memory_store"]


def memory_store():
    """An empty zarr store in memory (a group is built there, then :func:`write_zip`)."""
    import zarr

    return zarr.storage.MemoryStore()


def write_zip(store, path):
    """Write every key of the zarr ``MemoryStore`` ``store`` into the zip file ``path`` (stored, not
    compressed again: zarr compressed the chunks), flushed to disk before returning."""
    with open(path, "wb") as handle:
        with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
            for key in sorted(store._store_dict):
                archive.writestr(key, store._store_dict[key].to_bytes())
        handle.flush()
        os.fsync(handle.fileno())
    return Path(path)


def open_zip(path):
    """A read-only zarr store over the zip file ``path``."""
    import zarr

    return zarr.storage.ZipStore(Path(path), mode="r")


def write_recording(ds, path, *, sums, encoding=None):
    """Write the embedding Dataset ``ds`` and its per-epoch sums into the zip ``path``.

    Parameters
    ----------
    ds : xarray.Dataset
        :func:`zuna_lab.embed`'s result for one recording (in memory).
    path : path-like
        The zip file to write (replaced if it exists).
    sums : dict
        Its :func:`zuna_lab.study.pooled.epoch_sums`, kept beside the Dataset in a group of their own.
    encoding : dict | None
        Passed to ``Dataset.to_zarr`` (chunks of the big arrays).

    Returns
    -------
    path : pathlib.Path

    Examples
    --------
    >>> write_recording(ds, "sub-01@run.zarr.zip", sums=epoch_sums(ds))      # doctest: +SKIP
    """
    import zarr

    from ..io.write import netcdf_ready
    from .layout import POOLED_GROUP

    store = memory_store()
    netcdf_ready(ds).to_zarr(store, mode="w", zarr_format=2, consolidated=True, encoding=encoding or {})
    group = zarr.open_group(store, path=POOLED_GROUP, mode="w", zarr_format=2)
    for name, values in sums.items():
        group.create_array(name, data=values, chunks=values.shape)
    zarr.consolidate_metadata(store, zarr_format=2)
    return write_zip(store, path)


def open_recording(path):
    """The Dataset of one stored recording, dask-backed: a zip, or the zarr folder of an older store."""
    import xarray as xr

    path = Path(path)
    if path.is_dir():
        return xr.open_zarr(path, consolidated=True)
    return xr.open_zarr(open_zip(path), consolidated=True)


def read_epoch_sums(path):
    """The per-epoch sums written with a recording (and its ``epoch_start``), or None for a recording of an
    older store (a folder: its sums were never written)."""
    import zarr

    from .layout import POOLED_GROUP

    path = Path(path)
    if path.is_dir():
        return None
    store = open_zip(path)
    try:
        root = zarr.open_group(store, mode="r", zarr_format=2, use_consolidated=True)
        if POOLED_GROUP not in root:
            return None
        group = root[POOLED_GROUP]
        sums = {name: group[name][...] for name in ("sum", "n", "sum_all", "n_all")}
        sums["epoch_start"] = root["epoch_start"][...]
        return sums
    finally:
        store.close()
