"""State of the zuna_lab apps as ``param.Parameterized`` classes — no Panel here.

The apps follow the HoloViz structure: these classes hold what the user chose
and what was computed, :mod:`zuna_lab.viz.plots` turns them into views, and
:mod:`zuna_lab.viz.apps` binds the views to their parameters and lays them out.
Everything here runs and is tested without a browser.

Every number the apps show comes from the library functions a user calls:
:func:`zuna_lab.api.core.prepare` + :func:`zuna_lab.api.core.reconstruct_prepared`
(what :func:`zuna_lab.reconstruct` runs), :func:`zuna_lab.embed` and
:func:`zuna_lab.mmd_health`.  A reconstructed epoch therefore equals that
epoch of ``zuna_lab.reconstruct(raw, ...)`` with the same seed and masks.

- :class:`Recording` (:mod:`.recording`): one recording, read and preprocessed once, shared by the apps.
- :class:`ReconstructionState`, :class:`HealthState`, :class:`EmbeddingState`, :class:`ScreeningState`
  (``zuna_lab.screen``): one per app, each a
  :class:`~._task.Task` (one long computation at a time: ``work`` in a thread, ``apply`` after,
  ``compute`` for both; ``running``/``progress``/``status``/``error`` report it).
"""

from .embedding import EmbeddingState
from .health import HealthState
from .recording import Recording
from .reconstruction import ReconstructionState
from .screening import ScreeningState

__all__ = ["Recording", "ReconstructionState", "HealthState", "EmbeddingState", "ScreeningState"]
