"""The reference ZUNA network: layers, encoder, decoder, the model with its low-level API, and loading.

Plain PyTorch, exact in fp32 (parity-tested against the official packages); the CUDA fast path
is built from it in :mod:`zuna_lab.fast`.
"""
from .zuna import ZunaModel, build_model, load_checkpoint, load_model

__all__ = ["ZunaModel", "build_model", "load_checkpoint", "load_model"]
