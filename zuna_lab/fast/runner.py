"""The fast path's sampling loop and its CUDA-graph replay.

:func:`sample` drives :func:`zuna_lab.model.sampling.euler_sample` with the fast decoder: everything
that depends on the flow time alone (the AdaRMSNorm gains of all steps, the cross-attention K/V
weights of :data:`CROSS_KV_CHUNK` steps at a time) is formed outside the per-step work.
:func:`sample_stepwise` is the same loop with one step captured as a CUDA graph and replayed: what a
shape's first call runs (capturing one step costs milliseconds); a shape sampled again is captured
whole (a second or so once: every step's launches), which replays 5 % faster at one epoch.
:class:`Graphs` keeps the captured graphs.
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
    inputs = _call_inputs(decoder, latents, tok_idx, z, steps, cfg)
    positions, gains = inputs["positions"], inputs["gains"]
    factors = dict(zip([True, False], inputs["factors"]))
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


def _call_inputs(decoder, latents, tok_idx, z, steps: int, cfg: float) -> dict:
    """What one sampling call feeds every step: the state, every step's gains, the context factors
    (conditional, and unconditional when cfg != 1: zeroed latents, i.e. only the projection bias),
    the RoPE angles and masks."""
    return dict(z=z, positions=decoder.positions(tok_idx),
                gains=decoder.conditioning(flow_times(steps, device=z.device)),
                factors=[decoder.context_factor(latents if conditional else torch.zeros_like(latents))
                         for conditional in ([True] if cfg == 1.0 else [True, False])])


class StepState:
    """The static tensors of one captured sampler step: :func:`_call_inputs` (copied in by each call;
    the masks depend on the shape alone) and the step index ``k``, on the device: the step advances it."""

    def __init__(self, inputs: dict, steps: int):
        self.z = inputs["z"].clone()
        self.positions, self.gains, self.factors = inputs["positions"], inputs["gains"], inputs["factors"]
        self.k = torch.zeros(1, dtype=torch.long, device=self.z.device)
        self.minus_dt = torch.full((), -1.0 / steps, dtype=torch.float32, device=self.z.device)

    def load(self, inputs: dict):
        """Copy one call's inputs in; the step index back to 0."""
        pairs = [(self.z, inputs["z"]), (self.gains, inputs["gains"]), *zip(self.factors, inputs["factors"]),
                 *zip(self.positions["rope"], inputs["positions"]["rope"])]
        for target, value in pairs:
            target.copy_(value)
        self.k.zero_()


def sample_stepwise(decoder, latents, tok_idx, z, *, steps: int, cfg: float, tf32: bool, graphs: "Graphs",
                    kv_weights: torch.Tensor, tag: str = "", callback=None) -> torch.Tensor:
    """:func:`sample` with one sampler step captured as a CUDA graph (per input shape, ``steps``, ``cfg``
    and ``tag``) and replayed ``steps`` times: capturing costs one step's launches instead of a whole
    call's, so a new shape answers at once, and ``callback`` sees every step.

    ``kv_weights`` [CROSS_KV_CHUNK, n_layers, 2 kv_width, width] fp32: the cross-attention K/V weights
    of up to CROSS_KV_CHUNK steps, filled here before each chunk of steps (shared by all shapes).
    The step reads its gains and weights at its device-side index, so nothing is copied per step.
    """
    key = ("step", tag, tuple(z.shape), steps, cfg)
    inputs = _call_inputs(decoder, latents, tok_idx, z, steps, cfg)
    entry = graphs.get(key)
    if entry is None:
        state = StepState(inputs, steps)

        def step():
            gains = state.gains.index_select(0, state.k)[0]
            weights = kv_weights.index_select(0, torch.remainder(state.k, CROSS_KV_CHUNK))[0]
            with gemm_flags(tf32):
                velocities = [decoder.velocity(state.z, gains, state.positions,
                                               decoder.cross_kv(factor, weights, state.positions))
                              for factor in state.factors]
            v = velocities[0] if cfg == 1.0 else velocities[1] + cfg * (velocities[0] - velocities[1])
            state.z.addcmul_(state.minus_dt, v)
            state.k.add_(1)

        _fill_kv_weights(decoder, state.gains, 0, kv_weights, tf32)
        entry = graphs.put(key, (capture(step), state))
    replay, state = entry
    state.load(inputs)
    for k in range(steps):
        if k % CROSS_KV_CHUNK == 0:
            _fill_kv_weights(decoder, state.gains, k, kv_weights, tf32)
        replay()
        if callback is not None:
            callback(k + 1, steps)
    return state.z.clone()


def _fill_kv_weights(decoder, gains, first, kv_weights, tf32):
    n = min(CROSS_KV_CHUNK, gains.shape[0] - first)
    with gemm_flags(tf32):
        kv_weights[:n].copy_(decoder.cross_kv_weights(gains[first:first + n]))


def capture(fn, warmup=None):
    """``fn`` (no arguments) captured as a CUDA graph after one run of ``warmup or fn`` on a side stream
    (allocator, lazy initialisation and kernel loading off the graph); returns its replay."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        (warmup or fn)()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay


class Graphs:
    """Captured CUDA graphs by key, least recently used first out."""

    def __init__(self, size: int = MAX_GRAPHS):
        self.size = size
        self._entries = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key) -> bool:
        return key in self._entries

    def clear(self):
        self._entries.clear()

    def drop(self, key):
        self._entries.pop(key, None)

    def get(self, key):
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def put(self, key, entry):
        self._entries[key] = entry
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return entry

    def __call__(self, key, fn, inputs: tuple, warmup=None) -> torch.Tensor:
        """``fn(*inputs)`` through the whole-call graph of ``key`` (captured now if new, after one run of
        ``warmup(*inputs)`` if given, else of ``fn``); returns a copy of its output."""
        entry = self.get(key)
        if entry is None:
            static, outputs = tuple(t.clone() for t in inputs), []
            replay = capture(lambda: outputs.append(fn(*static)), None if warmup is None else lambda: warmup(*static))
            del outputs[:-1]            # the captured output only
            entry = self.put(key, (replay, static, outputs))
        replay, static, outputs = entry
        for target, value in zip(static, inputs):
            target.copy_(value)
        replay()
        return outputs[-1].clone()      # a replay rewrites the captured output in place
