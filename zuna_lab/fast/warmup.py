"""Compile the fast path's Triton kernels ahead, on threads, while ``load_model`` reads the weights.

A machine that has never run zuna_lab has no compiled kernels: compiled one after another at the
first call they took ~8 s (H100, 2026-11). :func:`compile_ahead` runs a one-block model of the
checkpoint's widths through the encoder and one sampler step at a short and a long input, with
every kernel call only queueing its compilation on a thread pool (:func:`kernels.compiling`), and
returns at once; the compilations then run side by side (Triton's compiler releases the GIL)
while the weights load. A first call waits only for the kernels it uses that are not ready yet.
The sizes that vary with the input (rows, sequence lengths, batch strides) are not specialised
by the kernels, so one compilation serves every channel count and batch size.
"""
from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor

import torch

from ..config import ModelConfig
from ..model.zuna import ZunaModel
from . import kernels, runner
from .options import FastOptions

#: (epochs, tokens per epoch) of the dry runs: 1 x 12 channels (small GEMM tiles, the small-tile
#: attention kernel) and 8 x 64 channels (large tiles, SDPA); 40 tokens per channel (5 s).
SHAPES = ((1, 12 * 40), (8, 64 * 40))


def compile_ahead(config: ModelConfig, options: FastOptions, device: torch.device, *,
                  workers: int | None = None) -> bool:
    """Queue the compilation of every kernel that a model of ``config`` built with ``options``
    launches; returns False where nothing could be queued (no CUDA, Triton without asynchronous
    compilation)."""
    device = torch.device(device)
    if device.type != "cuda" or not kernels.available(device):
        return False
    with torch.device("meta"):
        reference = ZunaModel(dataclasses.replace(config, n_layers=1))
    reference = reference.to_empty(device=device)     # the widths matter, not the values
    dry = _dry_model(reference, options)
    executor = ThreadPoolExecutor(max_workers=workers or min(16, os.cpu_count() or 1),
                                  thread_name_prefix="zuna_lab-compile")
    with torch.no_grad(), kernels.compiling(executor) as queued:
        if queued:
            for n_epochs, n_tokens in SHAPES:
                _dry_run(dry, n_epochs, n_tokens, tf32=options.precision != "fp32")
    executor.shutdown(wait=False)      # the threads finish the queue; nothing waits for them here
    return queued


def _dry_model(reference: ZunaModel, options: FastOptions):
    from .model import FastZunaModel

    return FastZunaModel(reference, FastOptions(precision=options.precision, cuda_graphs=False))


def _dry_run(model, n_epochs: int, n_tokens: int, *, tf32: bool):
    c = model.config
    device = model.device
    tokens = torch.zeros(n_epochs, n_tokens, c.input_dim, device=device)
    tok_idx = torch.zeros(n_epochs, n_tokens, 4, dtype=torch.long, device=device)
    with runner.gemm_flags(tf32=tf32):
        latents = model.encoder(tokens, tok_idx)
    runner.sample(model.decoder, latents.float(), tok_idx, torch.zeros_like(tokens), steps=1, cfg=1.0, tf32=tf32)
