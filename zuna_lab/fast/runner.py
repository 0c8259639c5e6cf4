"""The fast path's sampling loop and its CUDA-graph replay.

:func:`sample` drives :func:`zuna_lab.model.sampling.euler_sample` with the fast decoder: everything
that depends on the flow time alone (the AdaRMSNorm gains of all steps, the cross-attention K/V
weights of :data:`CROSS_KV_CHUNK` steps at a time) is formed outside the per-step work.
:class:`Graphs` captures a whole call once per input shape and replays it.
"""
from __future__ import annotations

from collections import OrderedDict

import torch

from ..model.sampling import euler_sample, flow_times

#: Encodes of at most this many tokens are replayed as CUDA graphs (launch-bound sizes).
GRAPH_ENCODE_TOKENS = 4096
#: Steps whose cross-attention K/V weights (4 MB a step for the full-size model) are formed at once.
CROSS_KV_CHUNK = 64
#: Captured shapes kept (least recently used first out).
MAX_GRAPHS = 8


class gemm_flags:
    """torch's global GEMM flags for the fast path, inside the block only: TF32 for fp32 GEMMs when
    ``tf32``, and fp32 (never 16-bit) reductions in cuBLAS's split-K fp16/bf16 GEMMs."""

    FLAGS = ("allow_tf32", "allow_fp16_reduced_precision_reduction", "allow_bf16_reduced_precision_reduction")

    def __init__(self, tf32: bool):
        self.tf32 = tf32

    def __enter__(self):
        matmul = torch.backends.cuda.matmul
        self.previous = [getattr(matmul, name) for name in self.FLAGS]
        matmul.allow_tf32 = self.tf32 or self.previous[0]
        matmul.allow_fp16_reduced_precision_reduction = False
        matmul.allow_bf16_reduced_precision_reduction = False

    def __exit__(self, *exc):
        for name, value in zip(self.FLAGS, self.previous):
            setattr(torch.backends.cuda.matmul, name, value)


def sample(decoder, latents: torch.Tensor, tok_idx: torch.Tensor, z: torch.Tensor, *, steps: int, cfg: float,
           tf32: bool, callback=None) -> torch.Tensor:
    """Integrate the flow from ``z`` (scaled noise) with :class:`~zuna_lab.fast.model.FastDecoder` ``decoder``.

    ``tf32``: the step's fp32 GEMMs (the 32-wide token projections, the low-rank K/V) may run as
    TF32; the gains and the context factor before the loop stay exact.
    """
    positions = decoder.positions(tok_idx)
    gains = decoder.conditioning(flow_times(steps, device=z.device))
    # The unconditional branch (cfg != 1) sees zeroed latents, i.e. only the projection bias.
    factors = {key: decoder.context_factor(latents if key else torch.zeros_like(latents))
               for key in ([True] if cfg == 1.0 else [True, False])}
    chunk = {}

    def velocity(state, k, conditional):
        first = k - k % CROSS_KV_CHUNK
        with gemm_flags(tf32):
            if first not in chunk:
                chunk.clear()
                chunk[first] = decoder.cross_kv_weights(gains[first:first + CROSS_KV_CHUNK])
            kv = decoder.cross_kv(factors[conditional], chunk[first][k - first], positions)
            return decoder.velocity(state, gains[k], positions, kv)

    return euler_sample(velocity, z, steps=steps, cfg=cfg, callback=callback).float()


class Graphs:
    """CUDA graphs of whole calls, captured on the first call with a key and replayed after."""

    def __init__(self, size: int = MAX_GRAPHS):
        self.size = size
        self._entries = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self):
        self._entries.clear()

    def __call__(self, key, fn, inputs: tuple, warmup=None) -> torch.Tensor:
        """``fn(*inputs)`` through the graph of ``key`` (captured now if new); returns a copy of its output.

        ``warmup``: what runs once before the capture instead of ``fn`` (the same kernels and
        library calls, less work: one sampler step instead of all).
        """
        entry = self._entries.get(key)
        if entry is None:
            static = tuple(t.clone() for t in inputs)
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):      # warm-up: allocator, kernel compilation, off the graph
                (warmup or fn)(*static)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                out = fn(*static)
            entry = (graph, static, out)
            self._entries[key] = entry
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        self._entries.move_to_end(key)
        graph, static, out = entry
        for target, value in zip(static, inputs):
            target.copy_(value)
        graph.replay()
        return out.clone()
