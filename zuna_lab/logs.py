"""zuna_lab's log, and ``verbose`` with MNE's meaning in every public function.

``zuna_lab`` logs through the ``"zuna_lab"`` logger (one line per message on stderr, like MNE's).
Its level is WARNING unless ``$ZUNA_LAB_LOGGING_LEVEL`` or :func:`set_log_level` says otherwise:
a notebook stays quiet, ``verbose="info"`` shows what a call did. The :func:`verbose` decorator
gives a public function's ``verbose`` argument the meaning of :func:`mne.utils.verbose`: None
keeps the current levels; True ("info"), False ("warning"), an int level or a level name sets
zuna_lab's and MNE's log level for that call (so ``verbose="error"`` also silences MNE's own
warnings, which MNE gates by its level). zuna_lab's warnings about your data
(:class:`~zuna_lab.errors.ZunaLabWarning`: dropped channels, a montage that looks off) are Python
warnings, shown whatever the level: filter them with :mod:`warnings` if you must.
"""
from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
import inspect
import logging
import os
import sys

from .validation import check_verbose, log_level

__all__ = ["logger", "verbose", "use_log_level", "set_log_level"]


class _Stderr(logging.StreamHandler):
    """A StreamHandler on whatever ``sys.stderr`` is at the time (Jupyter and pytest replace it)."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


logger = logging.getLogger("zuna_lab")
if not any(isinstance(h, _Stderr) for h in logger.handlers):
    _handler = _Stderr()
    _handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(_handler)
logger.propagate = False
logger.setLevel(log_level(check_verbose(os.environ.get("ZUNA_LAB_LOGGING_LEVEL", "warning").lower() or "warning",
                                        "$ZUNA_LAB_LOGGING_LEVEL")))


def set_log_level(verbose=None):
    """Set zuna_lab's log level for what follows (as :func:`mne.set_log_level` sets MNE's).

    Parameters
    ----------
    verbose : bool | str | int | None
        True or "info": what each call did; False or "warning" (the default, also for None);
        "error": errors only; an int logging level.

    Examples
    --------
    >>> import zuna_lab as zl
    >>> zl.set_log_level("info")       # doctest: +SKIP
    """
    logger.setLevel(log_level(check_verbose("warning" if verbose is None else verbose)))


@contextlib.contextmanager
def use_log_level(verbose):
    """zuna_lab's and MNE's log level set from ``verbose`` inside the block (None: left as they are)."""
    if check_verbose(verbose) is None:
        yield
        return
    import mne

    level = log_level(verbose)
    mne_logger = mne.utils.logger
    before = logger.level, mne_logger.level
    logger.setLevel(level)
    mne_logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(before[0])
        mne_logger.setLevel(before[1])


def verbose(function):
    """Give ``function``'s keyword ``verbose`` MNE's meaning: the log level for the call (None: the current one).

    The value is checked before the function runs (a bad one is one sentence, nothing done) and
    still passed on, so the function can hand it to MNE calls of its own. Keyword options given as
    one-shot iterators (e.g. a generator of channel names) are read into lists first.

    Examples
    --------
    >>> @verbose
    ... def work(data, *, verbose=None):
    ...     logger.info("worked")
    """
    if "verbose" not in inspect.signature(function).parameters:
        raise TypeError(f"{function.__qualname__} has no verbose parameter to give a meaning to.")

    @functools.wraps(function)
    def call(*args, **kwargs):
        # an option given as a one-shot iterator (a generator of channel names) is read once here, so
        # that checking it does not consume what the function then uses
        kwargs = {key: list(value) if isinstance(value, Iterator) else value for key, value in kwargs.items()}
        with use_log_level(kwargs.get("verbose")):
            return function(*args, **kwargs)

    return call
