"""The only place result Datasets are built: one constructor per result kind.

Every Dataset carries the same coordinates (``channel`` names, electrode positions ``ch_x``,
``ch_y``, ``ch_z`` (channel) in metres, ``added`` (channel), ``epoch_start`` in seconds) and provenance attrs, so results from ``embed`` and
``reconstruct`` line up and ``.to_dataframe()`` gives tidy, labelled rows.
"""
from __future__ import annotations

import datetime as _dt

import numpy as np
import xarray as xr

from ..config import VERSION
from ..io.montage import POSITION_COORDS, channel_positions  # noqa: F401  (channel_positions: read them back)

SPACE = ["x", "y", "z"]


def provenance(model, pre, *, source=None, extra=None) -> dict:
    """Attrs shared by every result: model, preprocessing, versions, source file."""

    attrs = {
        "model_source": str(getattr(model, "source", None) or "in-memory model"),
        "model_revision": str(getattr(model, "revision", None) or "unknown"),
        "model_variant": model.variant,
        "model_precision": getattr(model, "precision", "fp32"),
        "source_sfreq": float(pre.source_sfreq),
        "sfreq": float(pre.sfreq),
        "segment_duration": float(pre.params.get("segment_duration", np.nan)),
        "highpass_hz": float(pre.params.get("highpass_hz", np.nan)),
        "data_norm": float(pre.data_norm),
        "data_clip": float(pre.data_clip),
        "preprocessing": str(pre.params.get("reference", "")),
        "units": "V",
        "zuna_lab_version": VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "source_file": str(source) if source else "",
    }
    attrs.update(extra or {})
    return attrs


def _coords(ch_names, ch_pos, epoch_start, added=None, epoch_index=None, epoch_coords=None):
    coords = {
        "epoch": np.arange(len(epoch_start)) if epoch_index is None else np.asarray(epoch_index, dtype=np.int64),
        "channel": list(ch_names),
        "epoch_start": ("epoch", np.asarray(epoch_start, dtype=np.float64), {"units": "s"}),
    }
    for name, values in (epoch_coords or {}).items():     # e.g. a trial's event name, code and time
        coords[name] = ("epoch", np.asarray(values), {"units": "s"} if name.endswith("_time") else {})
    pos = np.asarray(ch_pos, dtype=np.float64)
    for axis, name in enumerate(POSITION_COORDS):
        coords[name] = ("channel", pos[:, axis], {"units": "m", "frame": "MNE head", "long_name": f"electrode {SPACE[axis]}"})
    coords["added"] = ("channel", np.zeros(len(ch_names), bool) if added is None else np.asarray(added, bool))
    return coords


def embedding_dataset(embedding, mask, *, padding, ch_names, ch_pos, epoch_start, samples_per_token, sfreq, attrs,
                      added=None, epoch_coords=None, token_t0=0.0) -> xr.Dataset:
    """``embed`` result: embedding (epoch, channel, token, latent) float32 and mask (epoch, channel, token).

    Tokens past the end of a short last segment are NaN in ``embedding`` and True in ``padding`` (from the
    epochs' lengths: :func:`zuna_lab.pipeline.embedding.padding_grid`).
    ``epoch_coords``: further coordinates along ``epoch`` (an event-locked trial's event);
    ``token_t0``: the time of the first token (a trial's start relative to its event).
    """
    n_epochs, n_channels, n_tokens, n_latent = embedding.shape
    coords = _coords(ch_names, ch_pos, epoch_start, added, epoch_coords=epoch_coords)
    coords.update(token=np.arange(n_tokens), latent=np.arange(n_latent))
    coords["token_time"] = ("token", token_t0 + np.arange(n_tokens) * samples_per_token / sfreq, {"units": "s"})
    ds = xr.Dataset(
        {
            "embedding": (("epoch", "channel", "token", "latent"), embedding.astype(np.float32),
                          {"long_name": "ZUNA latent", "units": "1"}),
            "mask": (("epoch", "channel", "token"), np.asarray(mask, bool),
                     {"long_name": "token hidden from the encoder"}),
            "padding": (("epoch", "channel", "token"), np.asarray(padding, bool),
                        {"long_name": "token beyond the end of the segment"}),
        },
        coords=coords,
        attrs=dict(attrs, result="embedding"),
    )
    return ds


def reconstruction_dataset(original, reconstruction, hybrid, mask, *, ch_names, ch_pos, epoch_start, sfreq,
                           samples_per_token, attrs, added=None, epoch_index=None, epoch_coords=None,
                           t0=0.0) -> xr.Dataset:
    """``reconstruct`` result in volts.

    ``reconstruction``/``hybrid`` are (sample, epoch, channel, time); with one sample the
    ``sample`` dim is dropped, with several a ``reconstruction_std`` spread is added.
    ``epoch_coords`` and ``t0`` as in :func:`embedding_dataset` (event-locked trials).
    """
    n_samples_drawn, n_epochs, n_channels, n_times = reconstruction.shape
    n_tokens = n_times // samples_per_token
    coords = _coords(ch_names, ch_pos, epoch_start, added, epoch_index, epoch_coords)
    coords.update(time=("time", t0 + np.arange(n_times) / sfreq, {"units": "s"}), token=np.arange(n_tokens))
    coords["token_time"] = ("token", t0 + np.arange(n_tokens) * samples_per_token / sfreq, {"units": "s"})
    volts = {"units": "V"}
    data_vars = {
        "original": (("epoch", "channel", "time"), original, dict(volts, long_name="original (filtered)")),
        "mask": (("epoch", "channel", "token"), np.asarray(mask, bool), {"long_name": "token hidden and infilled"}),
    }
    if n_samples_drawn == 1:
        data_vars["reconstruction"] = (("epoch", "channel", "time"), reconstruction[0], dict(volts, long_name="ZUNA reconstruction"))
        data_vars["hybrid"] = (("epoch", "channel", "time"), hybrid[0], dict(volts, long_name="original with masked cells infilled"))
    else:
        coords["sample"] = np.arange(n_samples_drawn)
        dims = ("sample", "epoch", "channel", "time")
        data_vars["reconstruction"] = (dims, reconstruction, dict(volts, long_name="ZUNA reconstruction"))
        data_vars["hybrid"] = (dims, hybrid, dict(volts, long_name="original with masked cells infilled"))
        data_vars["reconstruction_std"] = (("epoch", "channel", "time"), reconstruction.std(axis=0, ddof=1),
                                           dict(volts, long_name="spread over samples"))
    return xr.Dataset(data_vars, coords=coords, attrs=dict(attrs, result="reconstruction"))


def embedding_template(n_epochs, n_channels, n_tokens, n_latent, *, chunk_epochs, ch_names, ch_pos, epoch_start,
                       samples_per_token, sfreq, attrs, added=None) -> xr.Dataset:
    """The ``embed`` result of a recording too long for memory, before any value: the same variables,
    coordinates and attrs as :func:`embedding_dataset`, its variables lazy (dask, ``chunk_epochs`` epochs
    a chunk), so that it can be written to zarr first and filled chunk by chunk (``zl.embed(..., out=)``)."""
    import dask.array as da

    coords = _coords(ch_names, ch_pos, epoch_start, added)
    coords.update(token=np.arange(n_tokens), latent=np.arange(n_latent))
    coords["token_time"] = ("token", np.arange(n_tokens) * samples_per_token / sfreq, {"units": "s"})
    shape, chunks = (n_epochs, n_channels, n_tokens), (chunk_epochs, n_channels, n_tokens)
    return xr.Dataset(
        {
            "embedding": (("epoch", "channel", "token", "latent"),
                          da.full(shape + (n_latent,), np.nan, dtype=np.float32, chunks=chunks + (n_latent,)),
                          {"long_name": "ZUNA latent", "units": "1"}),
            "mask": (("epoch", "channel", "token"), da.zeros(shape, dtype=bool, chunks=chunks),
                     {"long_name": "token hidden from the encoder"}),
            "padding": (("epoch", "channel", "token"), da.zeros(shape, dtype=bool, chunks=chunks),
                        {"long_name": "token beyond the end of the segment"}),
        },
        coords=coords,
        attrs=dict(attrs, result="embedding"),
    )


def reconstruction_template(n_draws, n_epochs, n_channels, n_times, *, chunk_epochs, ch_names, ch_pos, epoch_start,
                            sfreq, samples_per_token, attrs, added=None) -> xr.Dataset:
    """The ``reconstruct`` result of a recording too long for memory, before any value: the variables,
    coordinates and attrs of :func:`reconstruction_dataset`, lazy (dask, ``chunk_epochs`` epochs a chunk),
    to be written to zarr first and filled chunk by chunk (``zl.reconstruct(..., out=)``)."""
    import dask.array as da

    n_tokens = n_times // samples_per_token
    coords = _coords(ch_names, ch_pos, epoch_start, added)
    coords.update(time=("time", np.arange(n_times) / sfreq, {"units": "s"}), token=np.arange(n_tokens))
    coords["token_time"] = ("token", np.arange(n_tokens) * samples_per_token / sfreq, {"units": "s"})
    shape, chunks = (n_epochs, n_channels, n_times), (chunk_epochs, n_channels, n_times)

    def lazy(draws=None):
        full = shape if draws is None else (draws,) + shape
        return da.full(full, np.nan, chunks=chunks if draws is None else (draws,) + chunks)

    volts = {"units": "V"}
    signal = ("epoch", "channel", "time")
    data_vars = {
        "original": (signal, lazy(), dict(volts, long_name="original (filtered)")),
        "mask": (("epoch", "channel", "token"), da.zeros((n_epochs, n_channels, n_tokens), dtype=bool,
                                                          chunks=(chunk_epochs, n_channels, n_tokens)),
                 {"long_name": "token hidden and infilled"}),
    }
    if n_draws == 1:
        data_vars["reconstruction"] = (signal, lazy(), dict(volts, long_name="ZUNA reconstruction"))
        data_vars["hybrid"] = (signal, lazy(), dict(volts, long_name="original with masked cells infilled"))
    else:
        coords["sample"] = np.arange(n_draws)
        data_vars["reconstruction"] = (("sample",) + signal, lazy(n_draws), dict(volts, long_name="ZUNA reconstruction"))
        data_vars["hybrid"] = (("sample",) + signal, lazy(n_draws),
                               dict(volts, long_name="original with masked cells infilled"))
        data_vars["reconstruction_std"] = (signal, lazy(), dict(volts, long_name="spread over samples"))
    return xr.Dataset(data_vars, coords=coords, attrs=dict(attrs, result="reconstruction"))
