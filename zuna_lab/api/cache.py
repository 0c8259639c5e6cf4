"""One loaded model per source and device, shared by the library, the CLI and every dashboard session."""
from __future__ import annotations

import os
import threading

from ..errors import ZunaTypeError

__all__ = ["cached_model", "clear_model_cache", "get_model"]

_MODEL_CACHE: dict = {}
_MODEL_LOCK = threading.Lock()


def cached_model(source=None, *, device="auto", loader=None):
    """Load a model once per process, source and device; later calls return the same object.

    Parameters
    ----------
    source : str | path | None
        Hub repo id or local directory; default ``$ZUNA_LAB_MODEL`` or "Zyphra/ZUNA".
    device : str
        Passed to :func:`zuna_lab.load_model`.
    loader : callable | None
        Replaces :func:`zuna_lab.load_model` (tests).

    Examples
    --------
    >>> cached_model("Zyphra/ZUNA") is cached_model("Zyphra/ZUNA")   # doctest: +SKIP
    True
    """
    from ..model.hub import default_source

    key = (str(source or default_source()), str(device))
    # A lock: dashboard sessions run in threads and must share one model, not load two.
    with _MODEL_LOCK:
        if key not in _MODEL_CACHE:
            if loader is None:
                from .loading import load_model as loader
            _MODEL_CACHE[key] = loader(key[0], device=device)
        return _MODEL_CACHE[key]


def clear_model_cache():
    """Forget the models loaded by :func:`cached_model`."""
    with _MODEL_LOCK:
        _MODEL_CACHE.clear()


def get_model(model=None):
    """``model`` itself, or the cached model of a source (None: ``$ZUNA_LAB_MODEL`` or Zyphra/ZUNA)."""
    from ..model import ZunaModel

    if isinstance(model, ZunaModel):
        return model
    if model is None or isinstance(model, (str, os.PathLike)):
        return cached_model(model)
    raise ZunaTypeError(f"model must be a ZunaModel from zuna_lab.load_model, a source string or None, not {type(model).__name__}.")
