"""HoloViews views of zuna_lab results (bokeh backend; PNG through matplotlib).

Every function takes data (result Datasets/DataArrays, volts inside) and
keyword options, and returns a HoloViews object; nothing here holds state.
Amplitudes are shown in µV.  Options are set for both the bokeh backend
(interactive, notebooks and Panel) and the matplotlib backend (used by
:func:`save_png`, which needs no browser or webdriver).

By subject: :mod:`.signals` (``traces``), :mod:`.electrodes` (``scalp``),
:mod:`.latents` (``latent_histogram``, ``latent_moments``, ``drift_matrix``),
:mod:`.embedding` (``embedding_map``); the coordinates they draw
(``scalp_coords``, ``embedding_coords``, ``channel_region``) come from
:mod:`zuna_lab.viz.projections`, which needs no HoloViews.
"""

from .._offline import register as _register_offline
from ..projections import REGIONS, SPHERE_ORIGIN, channel_region, coords_frame, embedding_coords, scalp_coords
from ._style import COLORS, REGION_COLORS, save_png
from .electrodes import channel_status, scalp
from .embedding import embedding_map
from .latents import drift_matrix, latent_histogram, latent_moments
from .signals import TOKEN_S, minmax_downsample, traces

__all__ = [
    "channel_region",
    "channel_status",
    "minmax_downsample",
    "traces",
    "scalp_coords",
    "scalp",
    "latent_histogram",
    "latent_moments",
    "drift_matrix",
    "embedding_coords",
    "embedding_map",
    "coords_frame",
    "save_png",
    "REGIONS",
    "REGION_COLORS",
    "COLORS",
    "SPHERE_ORIGIN",
    "TOKEN_S",
]

# Trust on your own recording (issue #16): evaluate_dropout scores and the montage doctor's report.
from .trust import dropout_curve, montage_map, reliability_diagram, winners_map  # noqa: E402

__all__ += ["dropout_curve", "winners_map", "reliability_diagram", "montage_map"]

# Screening (issue O): zl.screen's report as a channels x time map.
from .screening import screen_map  # noqa: E402

__all__ += ["screen_map"]

_register_offline()   # Panel's stylesheets inlined with its JavaScript (pn.extension(inline=True))
