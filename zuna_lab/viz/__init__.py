"""Views and apps for zuna_lab results.

- :mod:`zuna_lab.viz.projections`: the 2-D coordinates views draw and apps select on (scalp
  projection, PCA/UMAP map of latents, channel regions); NumPy only.
- :mod:`zuna_lab.viz.plots`: HoloViews views, pure functions of data (``traces``, ``scalp``,
  ``latent_histogram``, ``latent_moments``, ``drift_matrix``, ``embedding_map``, ``save_png``).
- :mod:`zuna_lab.viz.state`: ``param`` state classes (no Panel import), testable without a browser;
  ``Recording`` reads and preprocesses a recording once (``zuna_lab.api.core.prepare``) for the apps.
- :mod:`zuna_lab.viz.apps`: Panel ``Viewer`` apps whose views are bound to the state
  (``pn.bind``, ``hv.DynamicMap`` with linked streams), and :func:`dashboard` / :func:`serve`.

Submodules are imported on first use (``import zuna_lab.viz`` loads neither HoloViews nor Panel).
"""

_PLOTS = (
    "channel_region", "drift_matrix", "embedding_coords", "embedding_map", "latent_histogram",
    "latent_moments", "minmax_downsample", "save_png", "scalp", "scalp_coords", "traces",
)
_STATE = ("Recording", "ReconstructionState", "HealthState", "EmbeddingState")
_APPS = ("ReconstructionExplorer", "HealthPanel", "EmbeddingExplorer", "Dashboard", "dashboard", "serve")

__all__ = [*_PLOTS, *_STATE, *_APPS]


def __getattr__(name):
    if name in _PLOTS:
        from . import plots

        return getattr(plots, name)
    if name in _STATE:
        from . import state

        return getattr(state, name)
    if name in _APPS:
        from . import apps

        return getattr(apps, name)
    raise AttributeError(f"module 'zuna_lab.viz' has no attribute {name!r}")
