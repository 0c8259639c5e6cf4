"""The ZUNA network: layers, encoder, decoder, the model with its low-level API, and loading."""
from .zuna import ZunaModel, build_model, load_checkpoint, load_model

__all__ = ["ZunaModel", "build_model", "load_checkpoint", "load_model"]
