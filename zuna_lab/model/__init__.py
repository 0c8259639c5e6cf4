"""The reference ZUNA network: layers, encoder, decoder, the model with its low-level API, and checkpoints.

Plain PyTorch, exact in fp32 (parity-tested against the official packages); the CUDA fast path
is built from it in :mod:`zuna_lab.fast`; :func:`zuna_lab.load_model` (:mod:`zuna_lab.api.loading`) picks one.
"""
from .zuna import ZunaModel, build_model, load_checkpoint

__all__ = ["ZunaModel", "build_model", "load_checkpoint"]
