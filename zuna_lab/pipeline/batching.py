"""Encoding in batches, shared by ``embed`` (:mod:`zuna_lab.api.core`) and the study tasks
(:mod:`zuna_lab.study.tasks`): how many epochs go into one forward pass, the next batches
prepared on a thread while the GPU works (:func:`prefetched`), and the copy of a GPU result to
the host that does not wait for later work."""
from __future__ import annotations

import queue
import threading

import torch

__all__ = ["auto_batch_size", "prefetched", "to_host_later"]


def auto_batch_size(model, n_tokens, *, task="reconstruct"):
    """Epochs per forward pass: bounded by a memory budget on GPU, small on CPU.

    ``task="embed"`` with a model that says what its encoder holds per token at its peak
    (``encode_bytes_per_token``, measured: the CUDA fast path) sizes the batch by that; otherwise a
    generous estimate: a few dim-wide fp32 tensors per token plus attention scores for SDPA fallbacks.
    """
    if model.device.type != "cuda":
        return max(1, min(16, 4096 // max(n_tokens, 1)))
    free, _ = torch.cuda.mem_get_info(model.device)
    measured = getattr(model, "encode_bytes_per_token", None) if task == "embed" else None
    if measured:
        per_epoch = n_tokens * measured
    else:
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


def prefetched(items, depth=2):
    """Iterate over ``items`` (a generator of CPU work: batches to tokenise) with up to ``depth`` items
    made ahead on a thread, so that they are ready when the GPU has finished the current one
    (NumPy releases the GIL). Errors come out where they would have; ``depth=0``: no thread.
    """
    if depth <= 0:
        yield from items
        return
    ahead, end, stop = queue.Queue(depth), object(), threading.Event()

    def work():
        try:
            for item in items:
                if stop.is_set():
                    return
                ahead.put((item, None))
            ahead.put((end, None))
        except BaseException as exc:      # noqa: BLE001 — handed to the consumer, raised there
            ahead.put((end, exc))

    thread = threading.Thread(target=work, name="zuna_lab-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, error = ahead.get()
            if error is not None:
                raise error
            if item is end:
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():          # unblock a worker waiting to put, then let it end
            try:
                ahead.get(timeout=0.05)
            except queue.Empty:
                pass
