"""Refuse to start a study's local cluster from a script's unguarded top level.

A local dask cluster starts its workers with ``multiprocessing``'s *spawn* method: each worker
imports the main script again (as ``__mp_main__``), so a call at the script's top level runs
again in every worker, which tries to start a cluster of its own before it has finished
starting — pages of ``RuntimeError: An attempt has been made to start a new process before
the current process has finished its bootstrapping phase`` and a study that crawls. Python's
documented remedy is the ``if __name__ == "__main__":`` guard; :func:`check_main_guard` says
so in one sentence before any worker starts. Notebooks, ``python -c`` and the interactive
prompt have no script to re-run and pass.
"""
from __future__ import annotations

import ast
import multiprocessing
import sys
from pathlib import Path

from ..errors import UnguardedScriptError

__all__ = ["check_main_guard"]


def _is_main_test(node):
    """``__name__ == "__main__"`` (either way round)."""
    if not (isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], ast.Eq)):
        return False
    sides = [node.left, node.comparators[0]]
    return (any(isinstance(s, ast.Name) and s.id == "__name__" for s in sides)
            and any(isinstance(s, ast.Constant) and s.value == "__main__" for s in sides))


def _guarded_lines(source):
    """The line spans of the bodies under ``if __name__ == "__main__":`` in a script's source."""
    spans = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.If) and _is_main_test(node.test):
            spans.append((node.body[0].lineno, max(getattr(n, "end_lineno", n.lineno) for n in node.body)))
    return spans


def _script_frame():
    """The frame running a script file's top-level code as ``__main__`` or ``__mp_main__``, else None."""
    frame = sys._getframe(1)
    while frame is not None:
        name = frame.f_globals.get("__name__")
        if frame.f_code.co_name == "<module>" and name in ("__main__", "__mp_main__"):
            path = frame.f_globals.get("__file__")
            return frame if path and Path(path).suffix == ".py" and Path(path).is_file() else None
        frame = frame.f_back
    return None


def check_main_guard(function):
    """Raise :class:`~zuna_lab.errors.UnguardedScriptError` when ``function`` is called from a script's top level
    outside ``if __name__ == "__main__":`` (or by a spawned worker re-running the script).

    Examples
    --------
    >>> check_main_guard("embed_many")      # from a notebook, a guarded script or python -c: nothing  # doctest: +SKIP
    """
    frame = _script_frame()
    if frame is None:
        return
    rerun = frame.f_globals.get("__name__") == "__mp_main__" or multiprocessing.parent_process() is not None
    try:
        spans = _guarded_lines(Path(frame.f_globals["__file__"]).read_text())
    except (OSError, SyntaxError, UnicodeDecodeError):
        return                                   # a script we cannot read: let dask say what it says
    if rerun or not any(start <= frame.f_lineno <= end for start, end in spans):
        script = Path(frame.f_globals["__file__"]).name
        raise UnguardedScriptError(
            f"zl.{function} starts worker processes that re-run {script}, so call it under "
            f"'if __name__ == \"__main__\":' in the script (a notebook needs nothing).")
