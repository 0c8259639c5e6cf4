"""Writing results to files atomically: netCDF, zarr, safetensors (the zuna-rs layout).

Each writer checks the target first (folder exists and is writable, no file there unless
``overwrite``), writes to a temporary sibling and moves it into place, so an error never leaves
a half-written file behind. FIF output — the user's recording with the repair in it — is
:func:`zuna_lab.write_fif`.
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import numpy as np

from ..config import VARIANTS
from ..errors import ZunaTypeError, ZunaValueError
from .montage import channel_positions
from ..validation import check_writable

__all__ = ["write_netcdf", "write_zarr", "write_safetensors", "ZarrRegions", "MemoryRegions"]


def sample_rate_of(ds):
    times = np.asarray(ds["time"].values, dtype=float)
    if times.size >= 2:
        return float(round(1.0 / float(np.median(np.diff(times))), 6))
    for key in ("sfreq_model", "model_sfreq"):
        if key in ds.attrs:
            return float(ds.attrs[key])
    return 256.0


def check_reconstruct_dataset(ds, kind):
    try:
        import xarray as xr
    except ImportError as err:  # pragma: no cover - xarray is a dependency
        raise ZunaTypeError("xarray is required to export results.") from err
    if not isinstance(ds, xr.Dataset):
        raise ZunaTypeError(f"Expected the xarray Dataset from zuna_lab.reconstruct, got {type(ds).__name__}.")
    kinds = ("hybrid", "reconstruction", "original")
    if kind not in kinds:
        raise ZunaValueError(f"kind must be one of {', '.join(map(repr, kinds))}, got {kind!r}.")
    if kind not in ds.data_vars:
        raise ZunaValueError(f"The Dataset has no {kind!r} variable; is it the result of zuna_lab.reconstruct?")
    for name in ("channel", "time", "epoch_start"):
        if name not in ds.coords and name not in ds.variables:
            raise ZunaValueError(f"The Dataset lacks the {name!r} coordinate of a zuna_lab.reconstruct result.")


#: What marks a folder as a zarr store (v3, v2, consolidated v2): the only folders overwrite=True replaces.
ZARR_MARKERS = ("zarr.json", ".zgroup", ".zattrs", ".zmetadata")


def output_target(fname, overwrite, *, folder=False):
    """The target path of a writer, checked before any work: its folder exists and is writable, nothing
    is there unless ``overwrite``, and what is there is of the kind written (a file, or a ``folder``
    such as a zarr store) — ``overwrite=True`` never replaces a folder by a file or a file by a folder."""
    path = Path(fname).expanduser()
    if not path.parent.exists():
        raise ZunaValueError(f"Folder {str(path.parent)!r} does not exist; create it first.")
    if path.exists() and not overwrite:
        raise ZunaValueError(f"{str(path)!r} already exists; pass overwrite=True to replace it.")
    if path.is_dir() and not folder:
        raise ZunaValueError(f"{str(path)!r} is a folder; give the name of a file to write (overwrite=True replaces "
                             "files, never folders).")
    if path.exists() and folder and not path.is_dir():
        raise ZunaValueError(f"{str(path)!r} is a file, not a folder; give another name for the zarr store "
                             "(overwrite=True replaces stores, never other files).")
    if path.is_dir() and folder and not any((path / name).exists() for name in ZARR_MARKERS):
        raise ZunaValueError(f"{str(path)!r} is a folder but not a zarr store, and overwrite=True replaces stores "
                             "only (never a folder of other files); give the store a name of its own.")
    return check_writable(path, overwrite)     # a read-only folder fails here, before any work


def _temporary_sibling(path, suffix):
    return path.parent / f".{path.stem}.{uuid.uuid4().hex[:8]}.tmp{suffix}"


def replace_atomically(write, path, suffix):
    """Call ``write(tmp_path)``, then move the temporary file onto ``path``; clean up on error."""
    tmp = _temporary_sibling(path, suffix)
    try:
        write(tmp)
        if tmp.is_dir():
            _replace_directory(tmp, path)
        else:
            os.replace(tmp, path)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
        raise
    return path


def _replace_directory(tmp, path):
    if not path.exists():
        os.replace(tmp, path)
        return
    # A directory cannot be renamed over a non-empty one: move the old one aside first.
    old = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.old"
    os.replace(path, old)
    try:
        os.replace(tmp, path)
    except BaseException:
        os.replace(old, path)
        raise
    shutil.rmtree(old, ignore_errors=True)


def netcdf_ready(ds):
    """A copy whose attrs netCDF can hold: dicts, lists, bools and None become JSON strings."""
    out = ds.copy(deep=False)

    def fix(attrs):
        return {str(key): _storable(value) for key, value in attrs.items()}

    out.attrs = fix(out.attrs)
    for name in out.variables:
        out[name].attrs = fix(out[name].attrs)
    return out


def _storable(value):
    """An attribute value as netCDF (and zarr) can store it: strings, real numbers and 1-D real arrays as
    they are; paths as strings; anything else (dicts, lists, bools, None, dates, complex numbers, sets,
    objects) as JSON text, or its ``str`` where JSON has no form for it."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)):
        return value
    if isinstance(value, np.ndarray) and value.ndim == 1 and value.dtype.kind in "iuf":
        return value
    if isinstance(value, Path):
        return str(value)
    try:
        return json.dumps(value, default=_json_default)
    except (TypeError, ValueError):          # e.g. a dict with tuple keys, a circular structure
        return str(value)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def write_netcdf(ds, fname, *, overwrite=False):
    """Write a result Dataset to netCDF atomically (nested attrs are stored as JSON strings).

    Parameters
    ----------
    ds : xarray.Dataset
    fname : path-like
    overwrite : bool

    Returns
    -------
    path : pathlib.Path

    Examples
    --------
    >>> write_netcdf(emb, "subject01_embedding.nc")  # doctest: +SKIP
    """
    return _write_xarray(ds, fname, overwrite, ".nc", lambda ready, tmp: ready.to_netcdf(tmp))


def write_zarr(ds, store, *, overwrite=False):
    """Write a result Dataset to a zarr directory atomically.

    Parameters
    ----------
    ds : xarray.Dataset
    store : path-like
        Directory to create (conventionally ending in ``.zarr``).
    overwrite : bool

    Returns
    -------
    path : pathlib.Path

    Examples
    --------
    >>> write_zarr(emb, "subject01_embedding.zarr")  # doctest: +SKIP
    """
    # Zarr format 2: readable everywhere, and it has a specification for string coordinates.
    return _write_xarray(ds, store, overwrite, ".zarr",
                         lambda ready, tmp: ready.to_zarr(tmp, mode="w", zarr_format=2, consolidated=True))


def _write_xarray(ds, target, overwrite, suffix, write):
    """Check ``ds`` and the target, then ``write(ready, tmp)`` the netCDF-ready copy atomically."""
    _require_dataset(ds)
    path = output_target(target, overwrite, folder=suffix == ".zarr")
    ready = netcdf_ready(ds)
    return replace_atomically(lambda tmp: write(ready, tmp), path, suffix)


def _require_dataset(ds):
    import xarray as xr

    if not isinstance(ds, xr.Dataset):
        raise ZunaTypeError(f"Expected an xarray Dataset from zuna_lab, got {type(ds).__name__}.")


def write_safetensors(ds, fname, *, kind="reconstruction", overwrite=False):
    """Write a result in the zuna-rs safetensors layout, atomically.

    An ``embed`` Dataset gives ``embeddings_N`` (S, 32) float32, ``tok_idx_N`` (S, 4) int64 in the
    variant's token order, ``chan_pos_N`` (n_channels, 3) float32 per epoch ``N``; a
    ``reconstruct`` Dataset gives ``reconstructed_N`` (n_channels, n_samples) float32 in volts
    (the ``kind`` signal, NaN padding trimmed) and ``chan_pos_N``. Both add ``n_samples``: a
    one-element float32 tensor holding the number of epochs, as zuna-rs writes it. The file
    metadata records the variant, the channel names and the units.

    Parameters
    ----------
    ds : xarray.Dataset
        Result of :func:`zuna_lab.embed` or :func:`zuna_lab.reconstruct`.
    fname : path-like
    kind : {"reconstruction", "hybrid", "original"}
        Signal of a ``reconstruct`` Dataset to write.
    overwrite : bool

    Returns
    -------
    path : pathlib.Path

    Examples
    --------
    >>> write_safetensors(emb, "subject01.safetensors")  # doctest: +SKIP
    """
    from safetensors.numpy import save_file

    from ..pipeline.tokens import mask_to_sequence, position_bins

    _require_dataset(ds)
    path = output_target(fname, overwrite)
    if "sample" in ds.dims:
        ds = ds.isel(sample=0)
    ch_names = [str(name) for name in ds["channel"].values]
    if "ch_pos" not in ds.variables and "ch_x" not in ds.variables:
        raise ZunaValueError("The Dataset has no electrode positions (ch_x, ch_y, ch_z); they are needed for chan_pos_N.")
    ch_pos = channel_positions(ds).astype(np.float32)
    tensors = {}
    metadata = {"channels": json.dumps(ch_names), "producer": "zuna_lab"}
    if "embedding" in ds.data_vars:
        variant = str(ds.attrs.get("model_variant", ds.attrs.get("variant", "")))
        if variant not in VARIANTS:
            raise ZunaValueError("The embed Dataset has no valid attrs['model_variant']; it sets the token order of tok_idx_N.")
        emb = np.asarray(ds["embedding"].transpose("epoch", "channel", "token", "latent").values, dtype=np.float32)
        bins = position_bins(ch_pos, variant=variant)
        for e in range(emb.shape[0]):
            real_tokens = np.isfinite(emb[e]).all(axis=(0, 2))
            n_tokens = int(real_tokens.sum())
            grid = emb[e][:, :n_tokens]
            sequence = mask_to_sequence(np.moveaxis(grid, -1, 0), variant=variant)  # (latent, S)
            channel_of, token_of = np.meshgrid(np.arange(len(ch_names)), np.arange(n_tokens), indexing="ij")
            tok_idx = np.concatenate(
                [bins[mask_to_sequence(channel_of, variant=variant)], mask_to_sequence(token_of, variant=variant)[:, None]],
                axis=1,
            )
            tensors[f"embeddings_{e}"] = np.ascontiguousarray(sequence.T, dtype=np.float32)
            tensors[f"tok_idx_{e}"] = np.ascontiguousarray(tok_idx, dtype=np.int64)
            tensors[f"chan_pos_{e}"] = ch_pos.copy()
        metadata.update(variant=variant, content="embeddings")
        n_epochs = emb.shape[0]
    else:
        check_reconstruct_dataset(ds, kind)
        signal = np.asarray(ds[kind].transpose("epoch", "channel", "time").values, dtype=np.float32)
        for e in range(signal.shape[0]):
            real = np.flatnonzero(np.isfinite(signal[e]).any(axis=0))
            width = int(real[-1]) + 1 if real.size else 0
            tensors[f"reconstructed_{e}"] = np.ascontiguousarray(signal[e][:, :width])
            tensors[f"chan_pos_{e}"] = ch_pos.copy()
        metadata.update(content=kind, units="V", variant=str(ds.attrs.get("model_variant", ds.attrs.get("variant", ""))))
        n_epochs = signal.shape[0]
    tensors["n_samples"] = np.array([n_epochs], dtype=np.float32)
    return replace_atomically(lambda tmp: save_file(tensors, str(tmp), metadata=metadata), path, ".safetensors")


class ZarrRegions:
    """A result written to a zarr folder chunk by chunk along ``epoch``: the template's metadata and
    coordinates first (:func:`zuna_lab.pipeline.results.embedding_template`), then each chunk's values
    as they are computed, so that the whole result is never in memory. Used inside
    :func:`replace_atomically`, so that a reader never sees a half-written result.

    Parameters
    ----------
    folder : path-like
        The (temporary) zarr folder.
    template : xarray.Dataset
        Lazy variables chunked along ``epoch`` as the writes will be.
    """

    def __init__(self, folder, template):
        import zarr

        encoding = {name: {"chunks": template[name].data.chunksize} for name in template.data_vars}
        netcdf_ready(template).to_zarr(folder, mode="w", zarr_format=2, consolidated=True, compute=False,
                                       encoding=encoding)
        self.group = zarr.open_group(str(folder), mode="r+", zarr_format=2)

    def write(self, first, **arrays):
        """Values of epochs ``first …`` for the named variables (on their ``epoch`` axis, wherever it is)."""
        for name, values in arrays.items():
            target = self.group[name]
            index = [slice(None)] * target.ndim
            axis = list(target.attrs["_ARRAY_DIMENSIONS"]).index("epoch")
            index[axis] = slice(first, first + values.shape[axis])
            target[tuple(index)] = values

    def add(self, name, index, values):
        """Add ``values`` to the cells ``index`` of a variable already written (a later correction)."""
        target = self.group[name]
        target[index] = target[index] + values


class MemoryRegions:
    """:class:`ZarrRegions`' twin in memory: the template's variables as NumPy arrays, filled chunk by chunk
    (``zl.embed`` of a long file on a GPU runs the streamed stages into it); ``dataset`` is the result."""

    def __init__(self, template):
        # writable arrays of their own (a computed dask.array.zeros is a read-only broadcast view)
        self.dataset = template.copy(data={name: np.array(template[name].data) for name in template.data_vars})

    def write(self, first, **arrays):
        """Values of epochs ``first …`` for the named variables (on their ``epoch`` axis, wherever it is)."""
        for name, values in arrays.items():
            target = self.dataset[name].variable
            index = [slice(None)] * target.ndim
            index[target.dims.index("epoch")] = slice(first, first + values.shape[target.dims.index("epoch")])
            target.values[tuple(index)] = values

    def add(self, name, index, values):
        """Add ``values`` to the cells ``index`` of a variable already written (a later correction)."""
        self.dataset[name].variable.values[index] += values
