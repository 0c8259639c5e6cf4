"""The errors zuna_lab raises for bad input: one clear sentence each, what is wrong and how to fix it."""
import os
import sys
import warnings


class ZunaLabError(Exception):
    """Base class of every error zuna_lab raises on purpose."""


class ZunaValueError(ZunaLabError, ValueError):
    """An argument or a recording has a value zuna_lab cannot use."""


class ZunaTypeError(ZunaLabError, TypeError):
    """An argument has a type zuna_lab does not accept."""


class CheckpointError(ZunaValueError):
    """A checkpoint is missing, malformed, or does not match its config."""


class WeightsUnavailableError(CheckpointError):
    """The weights could not be fetched (offline, unreachable hub, unknown repo)."""


class RecordingError(ZunaValueError):
    """A recording (file, array or Raw) that zuna_lab cannot use as it is."""


class RecordingFileError(RecordingError, FileNotFoundError):
    """A recording file that does not exist or whose type zuna_lab cannot read."""


class ModelOutputError(ZunaLabError, RuntimeError):
    """The model returned NaN or infinite values from finite input (damaged weights, or an overflow)."""


class UnguardedScriptError(ZunaLabError, RuntimeError):
    """A study started at a script's top level, where the workers it spawns would run the script again."""


class ZunaLabWarning(UserWarning):
    """zuna_lab changed or dropped something on the user's behalf (e.g. channels without a position)."""


def warn(message, category=ZunaLabWarning):
    """``warnings.warn`` at the first frame outside zuna_lab (the user's line, as MNE does), however deep
    in the library, and through the ``verbose`` decorator's wrapper, the call is."""
    package = os.path.dirname(os.path.abspath(__file__)) + os.sep
    frame, level = sys._getframe(1), 2
    while frame is not None and frame.f_code.co_filename.startswith(package):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


def preview(names, limit=8):
    """``"a, b, c"``, or the first ``limit`` names and the count, for one-sentence messages."""
    names = [str(name) for name in names]
    shown = ", ".join(names[:limit])
    return shown + (f", … ({len(names)} in all)" if len(names) > limit else "")
