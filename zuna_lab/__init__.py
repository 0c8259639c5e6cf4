"""zuna_lab: a Jupyter-first toolkit for ZUNA, Zyphra's EEG foundation model."""
__version__ = "0.1.0"

from .errors import CheckpointError, WeightsUnavailableError, ZunaLabError, ZunaTypeError, ZunaValueError
from .loading import load_model
from .model import ZunaModel

__all__ = ["__version__", "load_model", "ZunaModel", "ZunaLabError", "ZunaValueError", "ZunaTypeError",
           "CheckpointError", "WeightsUnavailableError"]
from .recording import read_raw
from .writers import write_netcdf, write_zarr, write_safetensors
from .core import embed, reconstruct, to_raw, write_fif
from .health import mmd_health
from .evaluation import evaluate_dropout
from .doctor import check_montage
from .study import embed_many, open_embeddings, reconstruct_many

__all__ += ["read_raw", "to_raw", "write_fif", "write_netcdf", "write_zarr", "write_safetensors",
            "embed", "reconstruct", "mmd_health", "dashboard", "embed_many", "reconstruct_many",
            "open_embeddings", "evaluate_dropout", "check_montage"]


def dashboard(data=None, model=None, **kwargs):
    """The Panel dashboard (reconstruction explorer, MMD health, embedding explorer); see zuna_lab.viz.apps."""
    from .viz.apps import dashboard as _dashboard

    return _dashboard(data, model=model, **kwargs)
