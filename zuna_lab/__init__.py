"""zuna_lab: a Jupyter-first toolkit for ZUNA, Zyphra's EEG foundation model."""
__version__ = "0.1.0"

from .errors import CheckpointError, WeightsUnavailableError, ZunaLabError, ZunaTypeError, ZunaValueError
from .model import ZunaModel, load_model

__all__ = ["__version__", "load_model", "ZunaModel", "ZunaLabError", "ZunaValueError", "ZunaTypeError",
           "CheckpointError", "WeightsUnavailableError"]
