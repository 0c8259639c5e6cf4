"""zuna_lab: a Jupyter-first toolkit for ZUNA, Zyphra's EEG foundation model."""
from .config import VERSION as __version__
from .errors import CheckpointError, WeightsUnavailableError, ZunaLabError, ZunaTypeError, ZunaValueError
from .logs import set_log_level
from .api.loading import load_model
from .model import ZunaModel

__all__ = ["__version__", "set_log_level", "load_model", "ZunaModel", "ZunaLabError", "ZunaValueError", "ZunaTypeError",
           "CheckpointError", "WeightsUnavailableError"]
from .io.read import read_raw
from .io.write import write_netcdf, write_zarr, write_safetensors
from .api.core import embed, reconstruct, to_raw, write_fif
from .trust.health import mmd_health
from .trust.evaluation import evaluate_dropout
from .trust.doctor import check_montage
from .trust.screen import screen
from .study.api import embed_many, reconstruct_many
from .study.reading import open_embeddings
from .trust import evaluation, health      # zl.evaluation.summary, zl.health.compare_recordings

__all__ += ["read_raw", "to_raw", "write_fif", "write_netcdf", "write_zarr", "write_safetensors",
            "embed", "reconstruct", "mmd_health", "dashboard", "embed_many", "reconstruct_many",
            "open_embeddings", "evaluate_dropout", "check_montage", "screen"]


def dashboard(data=None, model=None, **kwargs):
    """The Panel dashboard (reconstruction explorer, MMD health, embedding explorer); see zuna_lab.viz.apps."""
    from .viz.apps import dashboard as _dashboard

    return _dashboard(data, model=model, **kwargs)
