"""Panel apps: reconstruction explorer, latent health panel, embedding explorer, dashboard.

Structure (HoloViz): state lives in :mod:`zuna_lab.viz.state` (``param``, no Panel); views
are HoloViews objects drawn by :mod:`zuna_lab.viz.plots` as functions of the state's
parameters, bound to them with ``pn.bind`` or as ``hv.DynamicMap`` (redrawn in place; the
Tap, BoundsX and Selection1D streams on them write the user's clicks and selections back
into the state); the ``pn.viewable.Viewer`` classes here lay widgets and views out.  Every
:func:`dashboard` call builds fresh state objects, so each browser session of :func:`serve`
has its own; the recording (read and preprocessed once,
:class:`~zuna_lab.viz.state.Recording`) and the model (:func:`zuna_lab.api.core.cached_model`,
one cache for the library and the apps) are shared.

Each app computes what it shows when it is first viewed (the dashboard's tabs: when the tab
is opened): the reconstruction explorer preprocesses the recording, the health panel embeds
the recordings and computes their health, the embedding explorer embeds its recording.  Long
computations run in a worker thread (``asyncio.to_thread``) with a progress bar so the page
stays responsive; results are applied back on the session's event loop.
"""

from .dashboard import Dashboard, dashboard, serve
from .embedding import EmbeddingExplorer
from .health import HealthPanel
from .reconstruction import ReconstructionExplorer
from .screening import ScreeningPanel

__all__ = ["ReconstructionExplorer", "HealthPanel", "EmbeddingExplorer", "ScreeningPanel", "Dashboard", "dashboard",
           "serve"]
