"""Encoding in batches, shared by ``embed`` (:mod:`zuna_lab.api.core`) and the study tasks
(:mod:`zuna_lab.study.tasks`): how many epochs go into one forward pass, and the copy of a GPU
result to the host that does not wait for later work."""
from __future__ import annotations

import torch

__all__ = ["auto_batch_size", "to_host_later"]


def auto_batch_size(model, n_tokens):
    """Epochs per forward pass: bounded by a memory budget on GPU, small on CPU."""
    if model.device.type != "cuda":
        return max(1, min(16, 4096 // max(n_tokens, 1)))
    free, _ = torch.cuda.mem_get_info(model.device)
    # activations ~ a few dim-wide fp32 tensors per token plus attention scores for SDPA fallbacks
    per_epoch = n_tokens * model.config.dim * 4 * 24 + (2 * n_tokens) ** 2 * model.config.n_heads * 2
    return int(max(1, min(256, 0.5 * free // max(per_epoch, 1))))


def to_host_later(tensor):
    """Start copying a GPU result to pinned host memory; returns a function that waits for it as NumPy.

    The copy is queued right behind the work that produces ``tensor``, so waiting for it does not
    wait for work queued later (the next batch).
    """
    if tensor.device.type != "cuda":
        return lambda: tensor.numpy()
    host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
    host.copy_(tensor, non_blocking=True)
    done = torch.cuda.Event()
    done.record()

    def wait():
        done.synchronize()
        return host.numpy()

    return wait
