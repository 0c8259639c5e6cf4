"""What the three states share: a model, one long computation at a time, its progress as parameters."""

from __future__ import annotations

import logging
import re
import threading

import param

from ...errors import ZunaLabError, ZunaValueError

log = logging.getLogger("zuna_lab.viz")


def loaded(model):
    """Whether ``model`` is a loaded ZunaModel (not a source string or None)."""
    from ...model import ZunaModel

    return isinstance(model, ZunaModel)


def resolve_model(model):
    """A loaded ZunaModel: ``model`` itself, or the process-wide cached model of a source (None: default)."""
    from ...api.core import get_model

    return get_model(model)


def plain_message(exc):
    """One plain sentence for an app's status line: the message, without a class name or a traceback.

    zuna_lab's own errors are one sentence already; anything else is said to be unexpected.  The
    whole traceback goes to the ``zuna_lab.viz`` logger (debug level: silent unless asked for).
    """
    log.debug("an app's action failed", exc_info=exc)
    text = str(exc).strip().splitlines()[0].strip() if str(exc).strip() else ""
    text = re.sub(r"^(\w+(Error|Exception|Warning)):\s*", "", text)      # a class name the message repeats
    if not text:
        return "The action failed unexpectedly; nothing was changed."
    if not text.endswith((".", "!", "?")):
        text += "."
    return text if isinstance(exc, (ZunaLabError, ValueError, TypeError)) else f"The action failed: {text}"


class Task(param.Parameterized):
    """A state whose long computation runs one call at a time and reports through parameters.

    A subclass writes :meth:`_work` (blocking; it may set ``status`` and ``progress`` and returns
    what :meth:`_apply` stores) and :meth:`_apply`.  :meth:`compute` runs both; an app calls
    :meth:`work` in a worker thread and :meth:`apply` on its event loop, so the page stays responsive.
    """

    model = param.Parameter(default=None, doc="ZunaModel, a source string, or None (the default source).")
    running = param.Boolean(default=False, doc="A computation is in progress.")
    progress = param.Number(default=0.0, bounds=(0.0, 1.0), doc="Fraction done (0 while unknown).")
    status = param.String(default="ready")
    error = param.String(default="")

    busy_message = "A computation is already running; wait for it to finish."

    def __init__(self, **params):
        super().__init__(**params)
        self._work_lock = threading.Lock()

    def _model(self):
        """The loaded model (loading the source once per process on first use)."""
        if not loaded(self.model):
            self.status = "loading the model…"
            self.model = resolve_model(self.model)
        return self.model

    def fail(self, exc):
        """A computation failed: stop, and say why in one sentence (``error``)."""
        self.param.update(running=False, error=plain_message(exc), status="failed")

    def report_error(self, exc):
        """A control's action failed: say why in one sentence (``error``); a computation in progress goes on."""
        self.error = plain_message(exc)

    def work(self, *, raise_errors=True):
        """Compute (blocking, one call at a time); sets only ``running``/``progress``/``status``/``error``.

        Returns what :meth:`apply` stores; None when it failed (or another call is running) and
        ``raise_errors`` is False, with the message in ``error``.
        """
        if not self._work_lock.acquire(blocking=False):
            if raise_errors:
                raise ZunaValueError(self.busy_message)
            return None
        try:
            self.param.update(running=True, progress=0.0, error="")
            return self._work()
        except Exception as exc:  # noqa: BLE001 - shown to the user
            self.fail(exc)
            if raise_errors:
                raise
            return None
        finally:
            self._work_lock.release()

    def apply(self, out):
        """Store the output of :meth:`work` (nothing when it is None); returns the stored result."""
        return None if out is None else self._apply(out)

    def compute(self, *, raise_errors=True):
        """:meth:`work`, then :meth:`apply` (blocking); returns the result."""
        return self.apply(self.work(raise_errors=raise_errors))

    def _work(self):
        raise NotImplementedError

    def _apply(self, out):
        raise NotImplementedError
