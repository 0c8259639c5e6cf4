"""One recording as the apps see it: read once, preprocessed once per set of hidden channels, embedded once."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import weakref
from collections import OrderedDict
from pathlib import Path

import numpy as np
import xarray as xr

from ...errors import ZunaTypeError, ZunaValueError

__all__ = ["Recording", "as_recording", "SHOWN_EPOCHS"]

#: Epochs of a long recording's embedding that the embedding and health apps hold (evenly spaced): an hour of 5 s
SHOWN_EPOCHS = 720


def check_raw(raw):
    if not (hasattr(raw, "info") and hasattr(raw, "get_data") and hasattr(raw, "times")):
        raise ZunaTypeError(
            f"Expected an mne Raw (use zuna_lab.read_raw to load a file), got {type(raw).__name__}."
        )


class Recording:
    """One recording as the apps see it: read and preprocessed once per set of hidden channels, embedded once.

    Thread-safe, so the apps of a dashboard (and every session of :func:`~zuna_lab.viz.apps.serve`)
    share one.  Preprocessing is :func:`zuna_lab.api.core.prepare`; ZUNA keeps hidden channels out of
    its average reference, so a :class:`~zuna_lab.api.core.Prepared` is kept per set of bad channels
    (the last ``max_prepared`` sets).  The embedding is :func:`zuna_lab.embed`, once per model.

    A long recording — a file path, or a Raw read with ``preload=False`` — is read lazily and
    prepared with ``preload=False``: only the epochs shown are preprocessed (a window of 16 epochs
    around the one selected, the last 4 windows kept; what spans the recording — ZUNA's global
    statistics — in one streamed pass), with the same values as the whole recording's, so memory
    does not grow with its length; the reconstruction app reconstructs those epochs.

    Parameters
    ----------
    raw : mne.io.Raw | path-like
        The recording (never modified); a path is read lazily (``zuna_lab.read_raw(path, preload=False)``).
    name : str
        Shown in the apps.
    segment_duration : float | None
        Epoch length passed to the library (None: the variant's 5 s).
    max_prepared : int
        Preprocessed versions kept (a 1 h x 64 channel recording takes ~0.7 GB each).

    Examples
    --------
    >>> rec = Recording(raw)                                          # doctest: +SKIP
    >>> rec.prepared(model.variant, ["T7"]).pre.n_epochs              # doctest: +SKIP
    """

    def __init__(self, raw, *, name="recording", segment_duration=None, max_prepared=3):
        if isinstance(raw, (str, os.PathLike)):
            from ...io.read import read_raw

            raw = read_raw(raw, preload=False)
        check_raw(raw)
        self.lazy = not getattr(raw, "preload", True)      # a long recording: epochs prepared when shown
        self.raw, self.name, self.segment_duration = raw, str(name), segment_duration
        self.max_prepared = max(2, int(max_prepared))
        self._prepared = OrderedDict()
        self._embeddings = {}
        self._folder = None
        self._prepare_lock = threading.Lock()
        self._embed_lock = threading.Lock()

    def __repr__(self):
        seconds = (self.raw.n_times - 1) / self.raw.info["sfreq"]     # (raw.times of a lazy Raw is a whole array)
        return f"Recording({self.name!r}, {len(self.raw.ch_names)} channels, {seconds:.1f} s)"

    @staticmethod
    def key(bad_channels=()):
        return tuple(sorted(str(c) for c in bad_channels))

    def is_prepared(self, variant, bad_channels=()):
        return (variant, self.key(bad_channels)) in self._prepared

    def prepared(self, variant, bad_channels=()):
        """The recording preprocessed for ``variant`` with ``bad_channels`` hidden (cached)."""
        from ...api.core import prepare

        key = (variant, self.key(bad_channels))
        with self._prepare_lock:
            if key in self._prepared:
                self._prepared.move_to_end(key)
                return self._prepared[key]
            prepared = prepare(self.raw, variant, bad_channels=list(key[1]), segment_duration=self.segment_duration,
                               preload=not self.lazy)
            self._prepared[key] = prepared
            base = (variant, ())
            while len(self._prepared) > self.max_prepared:
                oldest = next(k for k in self._prepared if k not in (base, key))
                del self._prepared[oldest]
            return prepared

    def has_embedding(self, model):
        return id(model) in self._embeddings

    def forget_embedding(self, model):
        """Drop the cached embedding of ``model`` (the next :meth:`embedding` recomputes it)."""
        with self._embed_lock:
            self._embeddings.pop(id(model), None)

    def embedding(self, model):
        """``zuna_lab.embed(raw, model=model)`` (cached per model). A long (lazy) recording is embedded with
        ``out=`` into a temporary folder, in bounded memory, and the apps hold :data:`SHOWN_EPOCHS` evenly
        spaced epochs of it (their ``epoch`` labels the recording's)."""
        import zuna_lab

        with self._embed_lock:
            hit = self._embeddings.get(id(model))
            if hit is None or hit[0] is not model:
                if not self.lazy:
                    emb = zuna_lab.embed(self.raw, model=model, segment_duration=self.segment_duration)
                else:
                    out = self._scratch() / f"embedding-{id(model)}.zarr"
                    whole = zuna_lab.embed(self.raw, model=model, segment_duration=self.segment_duration, out=out,
                                           overwrite=True)
                    n = whole.sizes["epoch"]
                    shown = np.unique(np.linspace(0, n - 1, min(n, SHOWN_EPOCHS)).round().astype(int))
                    emb = whole.isel(epoch=shown).load()
                    emb.attrs["shown_epochs"] = (f"{len(shown)} of {n} epochs, evenly spaced; the whole embedding "
                                                 f"is in {out} while the recording is open")
                self._embeddings[id(model)] = hit = (model, emb)
            return hit[1]

    def _scratch(self):
        """A temporary folder for this recording's streamed results, removed with the recording."""
        if self._folder is None:
            self._folder = Path(tempfile.mkdtemp(prefix="zuna_lab-dashboard-"))
            weakref.finalize(self, shutil.rmtree, self._folder, True)
        return self._folder

    def original(self, variant, epoch):
        """The library's ``original`` of one epoch: preprocessed volts, ``(channel, time)`` at the model rate."""
        pre = self.prepared(variant).pre
        if not 0 <= int(epoch) < pre.n_epochs:
            raise ZunaValueError(f"epoch {epoch} does not exist; the recording has epochs 0 to {pre.n_epochs - 1}.")
        data = np.asarray(pre.original(int(epoch)), np.float64)       # a lazy recording prepares its window
        return xr.DataArray(
            data, dims=("channel", "time"), name="original",
            coords={"channel": list(pre.ch_names), "time": np.arange(data.shape[1]) / pre.sfreq},
            attrs={"units": "V", "epoch": int(epoch), "epoch_start": float(pre.epoch_start[int(epoch)]),
                   "sfreq": float(pre.sfreq)},
        )


def as_recording(raw=None, recording=None, *, name="recording", segment_duration=None):
    """``recording`` when given, ``raw`` when it is a :class:`Recording`, else a new one of ``raw`` (None without either)."""
    if recording is not None:
        if not isinstance(recording, Recording):
            raise ZunaTypeError(f"recording must be a zuna_lab.viz.state.Recording, got {type(recording).__name__}.")
        return recording
    if raw is None:
        return None
    return raw if isinstance(raw, Recording) else Recording(raw, name=str(name), segment_duration=segment_duration)
