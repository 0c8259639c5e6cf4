"""The CUDA fast path of the ZUNA model, built from a loaded reference model by one function.

>>> from zuna_lab.fast import FastOptions, build
>>> fast = build(zuna_lab.load_model(source, device="cuda", dtype="fp32"), FastOptions())   # doctest: +SKIP

``zuna_lab.load_model`` does this on CUDA ("mixed" precision). The pieces: :mod:`.options` (the
knobs), :mod:`.kernels` (Triton) and :mod:`.eager` (their PyTorch twins), :mod:`.blocks` (fused
attention, SwiGLU and transformer blocks), :mod:`.model` (fast encoder, decoder and
:class:`FastZunaModel`), :mod:`.runner` (the sampling loop and its CUDA-graph replay),
:mod:`.warmup` and :mod:`.precompile` (the kernels compiled in a background process on a
machine's first use, the twins running meanwhile).
"""
from .model import FastZunaModel, available, build
from .options import FastOptions

__all__ = ["FastOptions", "FastZunaModel", "available", "build"]
