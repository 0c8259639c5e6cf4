"""ZUNA embeddings in scikit-learn pipelines: :class:`ZunaEmbedder`, a transformer in MNE's style.

>>> from sklearn.pipeline import make_pipeline
>>> from sklearn.linear_model import LogisticRegression
>>> from sklearn.model_selection import cross_val_score
>>> pipe = make_pipeline(ZunaEmbedder("Zyphra/ZUNA1.1"), LogisticRegression())     # doctest: +SKIP
>>> cross_val_score(pipe, epochs, epochs.events[:, 2], cv=5)                       # doctest: +SKIP

Trials are embedded by :func:`zuna_lab.embed` (the same features as ``zl.embed(epochs)``), and each
trial's embedding is kept in a process-wide cache keyed by its samples, channels, rate, timing and
the model: the folds and grid points of ``cross_val_score`` / ``GridSearchCV`` embed each trial once
(:func:`cache_info` counts). ZUNA1.1 normalises each trial alone; ZUNA normalises over all the
trials given together, so for ZUNA the cache holds whole sets of trials (a trial's features then
depend on the set it came with).
"""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import mne
import numpy as np
import xarray as xr

from .api.cache import get_model
from .api.core import embed
from .errors import ZunaTypeError, ZunaValueError

try:
    from sklearn.base import BaseEstimator, TransformerMixin
    _BASES = (TransformerMixin, BaseEstimator)
except ImportError:          # optional dependency: the class says how to get it when used
    _BASES = (object,)

__all__ = ["ZunaEmbedder", "cache_info", "clear_cache", "POOLS"]

#: How trials' embeddings (channel, token, latent) become features (the dims kept). Tokens hidden from the
#: encoder (bad channels, BAD_ spans) count with the latents the encoder inferred for them, as an
#: interpolated channel would: a trial's features are never NaN. Padding past a trial's end is left out.
POOLS = {"mean": (), "channel": ("channel",), "time": ("token",), "flatten": ("channel", "token")}
#: Trials' embeddings kept (least recently used first out); 64 channels x 40 tokens take 0.33 MB each.
CACHE_TRIALS = 20_000

_cache: OrderedDict = OrderedDict()
_counts = {"hits": 0, "misses": 0}
_lock = threading.Lock()


def cache_info() -> dict:
    """``{"hits": ..., "misses": ..., "trials": ...}``: trials found in the cache, trials embedded, kept."""
    with _lock:
        return dict(_counts, trials=len(_cache))


def clear_cache():
    """Forget every cached trial embedding and reset the counts."""
    with _lock:
        _cache.clear()
        _counts.update(hits=0, misses=0)


class ZunaEmbedder(*_BASES):
    """ZUNA features of trials for scikit-learn pipelines.

    Parameters
    ----------
    model : str | path | ZunaModel | None
        The model's source (a Hub id or a folder: loaded once per process and shared) or a loaded
        model (clones share it; an estimator holding a model object does not pickle: give the
        source for that); None: ``$ZUNA_LAB_MODEL`` or "Zyphra/ZUNA".
    pool : {"mean", "channel", "time", "flatten"}
        "mean": the mean latent over channels and tokens (32 features); "channel": per
        channel (channels x 32); "time": per token, the mean over channels (tokens x 32, time-resolved);
        "flatten": every (channel, token) latent.
    info : mne.Info | None
        Channel names, positions and rate of array input ``(n_trials, n_channels, n_times)`` in volts.
    tmin : float
        Time of an array trial's first sample relative to its event, in seconds.
    batch_size : int | None
        Passed to :func:`zuna_lab.embed`.
    verbose : bool | str | int | None
        MNE verbosity.

    Attributes
    ----------
    feature_names_out_ : ndarray of str
        Set by :meth:`fit`; what :meth:`get_feature_names_out` returns.

    Examples
    --------
    >>> features = ZunaEmbedder("Zyphra/ZUNA1.1", pool="channel").fit_transform(epochs)   # doctest: +SKIP
    """

    def __init__(self, model=None, *, pool="mean", info=None, tmin=0.0, batch_size=None, verbose=None):
        self.model = model
        self.pool = pool
        self.info = info
        self.tmin = tmin
        self.batch_size = batch_size
        self.verbose = verbose

    def __sklearn_clone__(self):
        # the same parameters; a loaded model is shared, not deep-copied (large, and only read here)
        return type(self)(**self.get_params(deep=False))

    def fit(self, X, y=None):
        """Embed ``X`` (kept in the cache) and record the feature names; returns self."""
        embedded = self._embedded(X)
        self.feature_names_out_ = _feature_names(embedded, self.pool)
        self.n_features_out_ = len(self.feature_names_out_)
        return self

    def transform(self, X):
        """Features (n_trials, n_features) of the trials ``X`` (``mne.Epochs`` or an array with ``info``)."""
        features = _pooled(self._embedded(X), self.pool)
        if hasattr(self, "n_features_out_") and features.shape[1] != self.n_features_out_:
            raise ZunaValueError(f"These trials give {features.shape[1]} features, the fitted ones "
                                 f"{self.n_features_out_}: the channels or trial length differ from fit's.")
        return features

    def get_feature_names_out(self, input_features=None):
        """Names such as ``latent3``, ``Cz_latent3``, ``t+0.125_latent3`` or ``Cz_t+0.125_latent3``."""
        if not hasattr(self, "feature_names_out_"):
            raise ZunaValueError("Call fit before get_feature_names_out: the names come from the fitted trials.")
        return self.feature_names_out_.copy()

    def _embedded(self, X):
        """The trials' embedding Dataset, through the cache."""
        if _BASES == (object,):
            raise ZunaValueError("ZunaEmbedder needs scikit-learn: pip install scikit-learn (or zuna_lab[decoding]).")
        if self.pool not in POOLS:
            raise ZunaValueError(f"pool must be one of {sorted(POOLS)}, not {self.pool!r}.")
        epochs = _as_epochs(X, self.info, self.tmin)
        return _embed_cached(epochs, get_model(self.model), self.batch_size, self.verbose)


def _as_epochs(X, info, tmin):
    """``X`` as mne.Epochs: itself, or an EpochsArray of a (n_trials, n_channels, n_times) array with ``info``."""
    if isinstance(X, mne.BaseEpochs):
        return X
    if isinstance(X, (list, tuple)) and X and all(isinstance(part, mne.BaseEpochs) for part in X):
        # scikit-learn's cross-validation indexes Epochs trial by trial: put the folds' trials together
        return mne.concatenate_epochs(list(X), add_offset=False, verbose="error")
    if isinstance(X, np.ndarray):
        if info is None:
            raise ZunaValueError("Array trials need info= (an mne.Info with the channels' names, positions and "
                                 "rate), e.g. ZunaEmbedder(info=epochs.info); or pass the mne.Epochs.")
        if X.ndim != 3 or X.shape[1] != len(info["ch_names"]):
            raise ZunaValueError(f"Array trials must be (n_trials, n_channels={len(info['ch_names'])}, n_times); got "
                                 f"shape {X.shape}.")
        return mne.EpochsArray(X, info, tmin=float(tmin), verbose="error")
    raise ZunaTypeError(f"ZunaEmbedder takes mne.Epochs or an array (n_trials, n_channels, n_times), "
                        f"not {type(X).__name__}.")


def _trial_keys(epochs, model) -> list:
    """One key per trial: its samples, channels, rate, timing, filters and the model."""
    source = getattr(model, "source", None)
    # a model from a source is known by it (a clone's deep copy is the same model); an in-memory one by itself
    which = (str(source), str(getattr(model, "revision", ""))) if source else ("in-memory", id(model))
    context = repr((epochs.ch_names, float(epochs.info["sfreq"]), float(epochs.tmin), epochs.info["highpass"],
                    epochs.info["bads"], which, model.variant, getattr(model, "precision", ""))).encode()
    data = epochs.get_data()
    keys = [hashlib.sha1(context + np.ascontiguousarray(trial).tobytes()).hexdigest() for trial in data]
    if model.variant == "ZUNA":        # normalised over the set: a trial's key is its set's
        whole = hashlib.sha1("".join(keys).encode()).hexdigest()
        keys = [f"{whole}:{key}" for key in keys]
    return keys


def _embed_cached(epochs, model, batch_size, verbose):
    """``zl.embed(epochs)``, embedding only the trials the cache does not hold."""
    keys = _trial_keys(epochs, model)
    with _lock:
        missing = [i for i, key in enumerate(keys) if key not in _cache]
        _counts["hits"] += len(keys) - len(missing)
        _counts["misses"] += len(missing)
    if missing:
        fresh = embed(epochs[missing] if len(missing) < len(keys) else epochs, model, batch_size=batch_size,
                      progress=False, verbose=verbose)
        with _lock:
            for row, index in enumerate(missing):
                _cache[keys[index]] = fresh.isel(epoch=[row])
            while len(_cache) > CACHE_TRIALS:
                _cache.popitem(last=False)
    with _lock:
        parts = [_cache[key] for key in keys]
        for key in keys:
            _cache.move_to_end(key)
    return xr.concat(parts, dim="epoch").assign_coords(epoch=np.arange(len(keys)))


def _pooled(embedded, pool) -> np.ndarray:
    """(n_trials, n_features) from the embedding (padding left out of the means; see :data:`POOLS`)."""
    visible = embedded.embedding.where(~embedded.padding)
    kept = POOLS[pool]
    averaged = visible.mean([dim for dim in ("channel", "token") if dim not in kept], skipna=True)
    values = averaged.transpose("epoch", *kept, "latent").values
    return values.reshape(len(values), -1).astype(np.float32)


def _feature_names(embedded, pool) -> np.ndarray:
    kept = POOLS[pool]
    labels = {"channel": [str(c) for c in embedded.channel.values],
              "token": [f"t{t:+.3f}" for t in embedded.token_time.values]}
    names = [""]
    for dim in kept:
        names = [f"{prefix}{label}_" for prefix in names for label in labels[dim]]
    return np.array([f"{prefix}latent{k}" for prefix in names for k in range(embedded.sizes["latent"])], dtype=object)
