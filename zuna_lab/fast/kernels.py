"""Triton kernels of the CUDA fast path, each one pass over memory, all arithmetic in fp32.

- :func:`add_rms_norm` — ``h += post_norm(delta)`` (ZUNA1.1's sandwich norm) or ``h += delta``,
  then the next (Ada)RMS pre-norm of the new residual, cast for the next GEMM. One kernel
  replaces the four to six elementwise passes between two GEMMs; it can leave the residual
  unstored and recompute it in the next call.
- :func:`rope_heads` — per-head QK-norm and 4-D RoPE of queries and keys (values copied) from a
  fused projection output, into ``[B, S, H, D]`` buffers that SDPA reads as ``[B, H, S, D]``.
- :func:`swiglu` — ``silu(a) * b`` of the fused w1/w3 output.
- :func:`matmul_swiglu`, :func:`matmul_rope_heads` — GEMMs (tiles moved by Hopper's TMA engine)
  that finish in those epilogues from the fp32 accumulator (the encoder's).
- :func:`lowrank_kv` — every decoder block's cross-attention keys (QK-normed, rotated) and values
  of one step, from the rank-33 context factor, in one launch.
- :func:`attention` — flash attention with small query tiles, for the sizes where SDPA's library
  kernels leave most of the GPU idle (:func:`attention_pays`); it can also rotate raw queries.

The reference model (:mod:`zuna_lab.model`) is plain PyTorch; these kernels are used only by the
fast path's blocks (:mod:`zuna_lab.fast.blocks`). With ``TRITON_INTERPRET=1`` they also run on CPU
tensors, which is how the tests check them against the reference without a GPU. Sizes that
vary with the input (rows, sequence lengths) are not specialised (``do_not_specialize``): a
new channel count or batch size compiles nothing new (measured: 0 kernels for 1 x 13 and 3 x 17
after 1 x 12, H100, benchmarks/results/precision.md). Tile shapes are
module constants (tuned on H100/H200, ``benchmarks/results/gpu.md``); fp32 operands of the GEMMs
run as TF32 exactly where torch allows TF32 for its own GEMMs.
"""
from __future__ import annotations

import contextlib
import functools
import os
import threading

import torch

from . import eager as _twins

try:
    import triton
    import triton.language as tl
except ImportError:          # CPU-only installs: the fast path is simply not offered
    triton = None
try:
    from triton.tools.tensor_descriptor import TensorDescriptor
except ImportError:          # older Triton: no epilogue GEMMs (cuBLAS and the separate kernels instead)
    TensorDescriptor = None


_local = threading.local()


@contextlib.contextmanager
def eager():
    """Inside the block, this thread's kernel calls run their PyTorch twins (:mod:`.eager`): what the
    fast model computes while its kernels are compiled in the background (:mod:`.warmup`)."""
    before = getattr(_local, "eager", False)
    _local.eager = True
    try:
        yield
    finally:
        _local.eager = before


def eager_active() -> bool:
    """Whether this thread is inside :func:`eager`."""
    return getattr(_local, "eager", False)


def _with_twin(kernel):
    """``kernel``, or its twin of the same name in :mod:`.eager` inside :func:`eager`."""
    @functools.wraps(kernel)
    def call(*args, **kwargs):
        if eager_active():
            return getattr(_twins, kernel.__name__)(*args, **kwargs)
        return kernel(*args, **kwargs)

    return call


def available(device: torch.device) -> bool:
    """Whether the kernels can run on tensors of ``device``."""
    if triton is None:
        return False
    return device.type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1"


if triton is not None:

    @triton.jit
    def _branch(delta_ptr, post_w_ptr, post_eps, offs, cols, mask, n_cols, HAS_POST: tl.constexpr):
        # one residual branch's output, through ZUNA1.1's post-norm when there is one
        delta = tl.load(delta_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        if HAS_POST:
            post_w = tl.load(post_w_ptr + cols, mask=mask, other=0.0).to(tl.float32)
            delta = delta * tl.rsqrt(tl.sum(delta * delta, axis=0) / n_cols + post_eps) * post_w
        return delta

    @triton.jit(do_not_specialize=['rows_per_gain'])
    def _add_rms_norm_kernel(h_ptr, delta_ptr, post_w_ptr, early_ptr, early_post_w_ptr, gain_ptr, h_out_ptr,
                             x_out_ptr, n_cols, gain_row_stride, rows_per_gain, post_eps, early_post_eps, eps,
                             HAS_DELTA: tl.constexpr, HAS_EARLY: tl.constexpr, HAS_POST: tl.constexpr,
                             STORE_H: tl.constexpr, BLOCK: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)
        cols = tl.arange(0, BLOCK)
        mask = cols < n_cols
        offs = row * n_cols + cols
        h = tl.load(h_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        if HAS_EARLY:
            h = h + _branch(early_ptr, early_post_w_ptr, early_post_eps, offs, cols, mask, n_cols, HAS_POST)
        if HAS_DELTA:
            h = h + _branch(delta_ptr, post_w_ptr, post_eps, offs, cols, mask, n_cols, HAS_POST)
        if STORE_H:
            tl.store(h_out_ptr + offs, h, mask=mask)
        gain = tl.load(gain_ptr + (row // rows_per_gain) * gain_row_stride + cols, mask=mask, other=0.0)
        x = h * tl.rsqrt(tl.sum(h * h, axis=0) / n_cols + eps) * gain.to(tl.float32)
        tl.store(x_out_ptr + offs, x.to(x_out_ptr.dtype.element_ty), mask=mask)

    @triton.jit
    def _rotate_heads(src, dst, cos, sin, gain_ptr, eps, N_HEADS: tl.constexpr, HALF: tl.constexpr,
                      BLOCK_H: tl.constexpr, QK_NORM: tl.constexpr):
        # Whole heads are loaded and stored contiguously; the interleaved (even, odd) pairs are
        # separated in registers, not by strided memory accesses.
        heads = tl.arange(0, BLOCK_H)
        cols = tl.arange(0, 2 * HALF)
        live = (heads < N_HEADS)[:, None]
        offs = heads[:, None] * (2 * HALF) + cols[None, :]
        x = tl.load(src + offs, mask=live, other=0.0).to(tl.float32)
        if QK_NORM:
            inv = tl.rsqrt(tl.sum(x * x, axis=1) / (2 * HALF) + eps)[:, None]
            x = x * inv * tl.load(gain_ptr + cols)[None, :].to(tl.float32)
        even, odd = tl.split(tl.reshape(x, (BLOCK_H, HALF, 2)))
        out = tl.reshape(tl.join(even * cos - odd * sin, even * sin + odd * cos), (BLOCK_H, 2 * HALF))
        tl.store(dst + offs, out.to(dst.dtype.element_ty), mask=live)

    @triton.jit
    def _rope_heads_kernel(x_ptr, x_row_stride, cos_ptr, sin_ptr, q_gain_ptr, k_gain_ptr,
                           q_out_ptr, k_out_ptr, v_out_ptr, eps,
                           NQ: tl.constexpr, NK: tl.constexpr, NV: tl.constexpr, HALF: tl.constexpr,
                           BLOCK_QK: tl.constexpr, BLOCK_V: tl.constexpr, QK_NORM: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)
        src = x_ptr + row * x_row_stride
        pairs = tl.arange(0, HALF)
        cos = tl.load(cos_ptr + row * HALF + pairs)[None, :]
        sin = tl.load(sin_ptr + row * HALF + pairs)[None, :]
        if NQ > 0:
            _rotate_heads(src, q_out_ptr + row * (NQ * 2 * HALF), cos, sin, q_gain_ptr, eps,
                          NQ, HALF, BLOCK_QK, QK_NORM)
        if NK > 0:
            _rotate_heads(src + NQ * 2 * HALF, k_out_ptr + row * (NK * 2 * HALF), cos, sin, k_gain_ptr, eps,
                          NK, HALF, BLOCK_QK, QK_NORM)
        if NV > 0:
            cols = tl.arange(0, BLOCK_V)
            live = cols < NV * 2 * HALF
            values = tl.load(src + (NQ + NK) * 2 * HALF + cols, mask=live)
            tl.store(v_out_ptr + row * (NV * 2 * HALF) + cols, values.to(v_out_ptr.dtype.element_ty), mask=live)

    @triton.jit
    def _swiglu_kernel(ab_ptr, out_ptr, n_cols, BLOCK: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)
        cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        mask = cols < n_cols
        a = tl.load(ab_ptr + row * 2 * n_cols + cols, mask=mask, other=0.0).to(tl.float32)
        b = tl.load(ab_ptr + row * 2 * n_cols + n_cols + cols, mask=mask, other=0.0).to(tl.float32)
        tl.store(out_ptr + row * n_cols + cols, (a * tl.sigmoid(a) * b).to(out_ptr.dtype.element_ty), mask=mask)

    @triton.jit
    def _tile_ids(M, N, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, GROUP_M: tl.constexpr):
        # Grouped order: GROUP_M row tiles share each weight tile while it is in L2.
        pid = tl.program_id(0)
        n_tiles_m = tl.cdiv(M, BLOCK_M)
        n_tiles_n = tl.cdiv(N, BLOCK_N)
        per_group = GROUP_M * n_tiles_n
        first_m = (pid // per_group) * GROUP_M
        group_m = min(n_tiles_m - first_m, GROUP_M)
        pid_m = first_m + (pid % per_group) % group_m
        pid_n = (pid % per_group) // group_m
        return pid_m, pid_n

    @triton.jit(do_not_specialize=['M'])
    def _matmul_swiglu_kernel(x_desc, w_desc, out_desc, M, H, K,
                                  BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                                  GROUP_M: tl.constexpr, PRECISION: tl.constexpr):
        # out[m, n] = silu(x[m] . w[n]) * (x[m] . w[H + n]); w = [w1; w3] as stored by nn.Linear.
        # Tiles are moved by the TMA engine (Hopper); edges are zero-filled on load, clipped on store.
        pid_m, pid_n = _tile_ids(M, H, BLOCK_M, BLOCK_N, GROUP_M)
        off_m = pid_m * BLOCK_M
        off_n = pid_n * BLOCK_N
        acc_a = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        acc_b = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for k in range(0, K, BLOCK_K):
            x = x_desc.load([off_m, k])
            acc_a = tl.dot(x, w_desc.load([off_n, k]).T, acc_a, input_precision=PRECISION)
            acc_b = tl.dot(x, w_desc.load([H + off_n, k]).T, acc_b, input_precision=PRECISION)
        out_desc.store([off_m, off_n], (acc_a * tl.sigmoid(acc_a) * acc_b).to(out_desc.dtype))

    @triton.jit(do_not_specialize=['M'])
    def _matmul_rope_heads_kernel(x_desc, w_desc, cos_ptr, sin_ptr, q_gain_ptr, k_gain_ptr,
                                  q_out_ptr, k_out_ptr, v_out_ptr, M, K, eps,
                                  NQ: tl.constexpr, NK: tl.constexpr, NV: tl.constexpr, HALF: tl.constexpr,
                                  QK_NORM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr,
                                  GROUP_M: tl.constexpr, PRECISION: tl.constexpr):
        # One tile column per head: the projection of rows to head ``head`` of [q; k; v] (TMA
        # loads), then the per-head QK-norm and RoPE in registers, stored straight into the q/k/v buffers.
        HEAD: tl.constexpr = 2 * HALF
        N: tl.constexpr = (NQ + NK + NV) * HEAD
        pid_m, head = _tile_ids(M, N, BLOCK_M, HEAD, GROUP_M)
        off_m = pid_m * BLOCK_M
        acc = tl.zeros((BLOCK_M, HEAD), dtype=tl.float32)
        for k in range(0, K, BLOCK_K):
            acc = tl.dot(x_desc.load([off_m, k]), w_desc.load([head * HEAD, k]).T, acc, input_precision=PRECISION)
        _store_heads(acc, off_m + tl.arange(0, BLOCK_M), head, cos_ptr, sin_ptr, q_gain_ptr, k_gain_ptr,
                     q_out_ptr, k_out_ptr, v_out_ptr, M, eps, NQ, NK, NV, HALF, QK_NORM, BLOCK_M)

    @triton.jit
    def _norm_rotate_store(acc, dst_ptrs, live, gain_ptr, cos, sin, eps, BLOCK_M: tl.constexpr,
                           HALF: tl.constexpr, QK_NORM: tl.constexpr):
        if QK_NORM:
            inv = tl.rsqrt(tl.sum(acc * acc, axis=1) / (2 * HALF) + eps)[:, None]
            acc = acc * inv * tl.load(gain_ptr + tl.arange(0, 2 * HALF))[None, :].to(tl.float32)
        even, odd = tl.split(tl.reshape(acc, (BLOCK_M, HALF, 2)))
        out = tl.reshape(tl.join(even * cos - odd * sin, even * sin + odd * cos), (BLOCK_M, 2 * HALF))
        tl.store(dst_ptrs, out.to(dst_ptrs.dtype.element_ty), mask=live)

    @triton.jit
    def _store_heads(acc, rows, head, cos_ptr, sin_ptr, q_gain_ptr, k_gain_ptr, q_out_ptr, k_out_ptr,
                     v_out_ptr, M, eps, NQ: tl.constexpr, NK: tl.constexpr, NV: tl.constexpr,
                     HALF: tl.constexpr, QK_NORM: tl.constexpr, BLOCK_M: tl.constexpr):
        # Tile ``acc`` [BLOCK_M, head_dim] is head ``head`` of [q; k; v] for ``rows``: QK-norm and
        # RoPE for queries and keys, then stored into its own [rows, heads, head_dim] buffer.
        HEAD: tl.constexpr = 2 * HALF
        cols = tl.arange(0, HEAD)
        live = (rows < M)[:, None]
        row64 = rows.to(tl.int64)[:, None]
        if head < NQ + NK:
            pairs = tl.arange(0, HALF)
            cos = tl.load(cos_ptr + row64 * HALF + pairs[None, :], mask=live, other=0.0)
            sin = tl.load(sin_ptr + row64 * HALF + pairs[None, :], mask=live, other=0.0)
            if head < NQ:
                _norm_rotate_store(acc, q_out_ptr + row64 * (NQ * HEAD) + head * HEAD + cols[None, :], live,
                                   q_gain_ptr, cos, sin, eps, BLOCK_M, HALF, QK_NORM)
            else:
                _norm_rotate_store(acc, k_out_ptr + row64 * (NK * HEAD) + (head - NQ) * HEAD + cols[None, :],
                                   live, k_gain_ptr, cos, sin, eps, BLOCK_M, HALF, QK_NORM)
        else:
            dst = v_out_ptr + row64 * (NV * HEAD) + (head - NQ - NK) * HEAD + cols[None, :]
            tl.store(dst, acc.to(v_out_ptr.dtype.element_ty), mask=live)


    @triton.jit(do_not_specialize=['seq_q', 'seq_k'])
    def _attention_kernel(q_ptr, k_ptr, v_ptr, o_ptr, cos_ptr, sin_ptr, q_gain_ptr, seq_q, seq_k,
                          q_sb, q_ss, q_sh, k_sb, k_ss, k_sh, v_sb, v_ss, v_sh, qk_scale, eps,
                          N_HEADS: tl.constexpr, KV_GROUP: tl.constexpr, HALF: tl.constexpr,
                          ROTATE_Q: tl.constexpr, QK_NORM: tl.constexpr,
                          BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, PRECISION: tl.constexpr):
        # One program: BLOCK_M queries of one head of one batch element, online softmax over all
        # keys in BLOCK_N blocks (exp2 with log2(e) folded into the scale). Small tiles keep every
        # multiprocessor busy when there are few heads x queries. Strides are (batch, seq, head);
        # the output is [B, S, H, D] contiguous, i.e. already the out-projection's [B, S, H * D].
        HEAD: tl.constexpr = 2 * HALF
        pid_m = tl.program_id(0)
        batch = tl.program_id(1) // N_HEADS
        head = tl.program_id(1) % N_HEADS
        kv_head = head // KV_GROUP
        rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        dims = tl.arange(0, HEAD)
        live_q = (rows < seq_q)[:, None]
        q = tl.load(q_ptr + batch.to(tl.int64) * q_sb + rows.to(tl.int64)[:, None] * q_ss
                    + head * q_sh + dims[None, :], mask=live_q, other=0.0)
        if ROTATE_Q:
            # QK-norm and RoPE of the raw projection, here instead of in a kernel of its own
            x = q.to(tl.float32)
            if QK_NORM:
                x = x * tl.rsqrt(tl.sum(x * x, axis=1) / HEAD + eps)[:, None] * tl.load(q_gain_ptr + dims).to(tl.float32)[None, :]
            pairs = (batch.to(tl.int64) * seq_q + rows.to(tl.int64))[:, None] * HALF + tl.arange(0, HALF)[None, :]
            cos = tl.load(cos_ptr + pairs, mask=live_q, other=0.0)
            sin = tl.load(sin_ptr + pairs, mask=live_q, other=0.0)
            even, odd = tl.split(tl.reshape(x, (BLOCK_M, HALF, 2)))
            q = tl.reshape(tl.join(even * cos - odd * sin, even * sin + odd * cos), (BLOCK_M, HEAD)).to(k_ptr.dtype.element_ty)
        k_base = k_ptr + batch.to(tl.int64) * k_sb + kv_head * k_sh
        v_base = v_ptr + batch.to(tl.int64) * v_sb + kv_head * v_sh
        m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
        l_i = tl.zeros([BLOCK_M], tl.float32)
        acc = tl.zeros([BLOCK_M, HEAD], tl.float32)
        for start in range(0, seq_k, BLOCK_N):
            cols = start + tl.arange(0, BLOCK_N)
            live_k = cols < seq_k
            k = tl.load(k_base + cols.to(tl.int64)[:, None] * k_ss + dims[None, :], mask=live_k[:, None], other=0.0)
            scores = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale
            scores = tl.where(live_k[None, :], scores, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(scores, axis=1))
            p = tl.math.exp2(scores - m_new[:, None])
            alpha = tl.math.exp2(m_i - m_new)
            l_i = l_i * alpha + tl.sum(p, axis=1)
            v = tl.load(v_base + cols.to(tl.int64)[:, None] * v_ss + dims[None, :], mask=live_k[:, None], other=0.0)
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
            m_i = m_new
        out = acc / l_i[:, None]
        o_rows = (batch.to(tl.int64) * seq_q + rows.to(tl.int64))[:, None] * (N_HEADS * HEAD)
        tl.store(o_ptr + o_rows + head * HEAD + dims[None, :], out.to(o_ptr.dtype.element_ty), mask=live_q)

    @triton.jit(do_not_specialize=['M'])
    def _lowrank_kv_kernel(x_ptr, w_ptr, cos_ptr, sin_ptr, k_gain_ptr, k_out_ptr, v_out_ptr, M, eps, gain_stride,
                           NK: tl.constexpr, NV: tl.constexpr, HALF: tl.constexpr, WIDTH: tl.constexpr,
                           QK_NORM: tl.constexpr, HEAD_GROUP: tl.constexpr, BLOCK_M: tl.constexpr,
                           PRECISION: tl.constexpr):
        # Rows BLOCK_M of the context factor [M, WIDTH] times HEAD_GROUP heads' weights [head_dim,
        # WIDTH] of one block (program_id(1)): the factor tile and the RoPE angles are read once
        # for all those heads, where a GEMM tile per head would re-read them per head.
        HEAD: tl.constexpr = 2 * HALF
        n_groups = tl.cdiv(NK + NV, HEAD_GROUP)
        pid_m = tl.program_id(0) // n_groups
        first = (tl.program_id(0) % n_groups) * HEAD_GROUP
        layer = tl.program_id(1)
        rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        live = (rows < M)[:, None]
        row64 = rows.to(tl.int64)[:, None]
        cols = tl.arange(0, HEAD)
        x = tl.load(x_ptr + row64 * WIDTH + tl.arange(0, WIDTH)[None, :], mask=live, other=0.0)
        pairs = tl.arange(0, HALF)
        cos = tl.load(cos_ptr + row64 * HALF + pairs[None, :], mask=live, other=0.0)
        sin = tl.load(sin_ptr + row64 * HALF + pairs[None, :], mask=live, other=0.0)
        out_row = row64 + layer.to(tl.int64) * M
        w_layer = w_ptr + layer.to(tl.int64) * ((NK + NV) * HEAD * WIDTH)
        for head in range(first, min(first + HEAD_GROUP, NK + NV)):
            w = tl.load(w_layer + (head * HEAD + cols)[:, None] * WIDTH + tl.arange(0, WIDTH)[None, :])
            acc = tl.dot(x, tl.trans(w), input_precision=PRECISION)
            if head < NK:
                _norm_rotate_store(acc, k_out_ptr + out_row * (NK * HEAD) + head * HEAD + cols[None, :], live,
                                   k_gain_ptr + layer * gain_stride, cos, sin, eps, BLOCK_M, HALF, QK_NORM)
            else:
                tl.store(v_out_ptr + out_row * (NV * HEAD) + (head - NK) * HEAD + cols[None, :],
                         acc.to(v_out_ptr.dtype.element_ty), mask=live)

def _warps(block: int) -> int:
    return 4 if block <= 1024 else 8


@_with_twin
def add_rms_norm(h: torch.Tensor, delta: torch.Tensor | None, gain: torch.Tensor, eps: float, *,
                 post_weight: torch.Tensor | None = None, post_eps: float = 0.0,
                 out_dtype: torch.dtype = torch.bfloat16, earlier: tuple | None = None,
                 store_h: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``h += post_norm(delta)`` (or ``+= delta``, or nothing when delta is None), then ``rms_norm(h) * gain``.

    h : fp32 [B, S, N] residual, updated in place when ``delta`` is given and ``store_h``.
    gain : [N] (one gain for all rows) or [B, N] (AdaRMSNorm: one gain per batch element).
    earlier : (delta, post_weight, post_eps) of a branch added to h before ``delta``: a residual
        that a ``store_h=False`` call did not write is recomputed here (the same fp32 operations,
        so the same bits) instead of being written and read back — 2 of 12 bytes per element.
    Returns ``(h, x)`` with x of ``out_dtype``.
    """
    bsz, seqlen, n_cols = h.shape
    assert h.is_contiguous() and h.dtype == torch.float32
    assert earlier is None or delta is not None
    if delta is not None:
        delta = delta.contiguous()
    early, early_post, early_eps = earlier if earlier is not None else (None, None, 0.0)
    if early is not None:
        early = early.contiguous()
    gain = gain.contiguous()
    if gain.ndim == 1:
        gain_row_stride, rows_per_gain = 0, 1
    else:
        assert gain.shape == (bsz, n_cols)
        gain_row_stride, rows_per_gain = n_cols, seqlen
    x = torch.empty(h.shape, device=h.device, dtype=out_dtype)
    block = triton.next_power_of_2(n_cols)
    _add_rms_norm_kernel[(bsz * seqlen,)](
        h, delta if delta is not None else h, post_weight if post_weight is not None else gain,
        early if early is not None else h, early_post if early_post is not None else gain, gain, h, x,
        n_cols, gain_row_stride, rows_per_gain, float(post_eps), float(early_eps), float(eps),
        HAS_DELTA=delta is not None, HAS_EARLY=early is not None, HAS_POST=post_weight is not None,
        STORE_H=delta is not None and store_h, BLOCK=block, num_warps=_warps(block))
    return h, x


@_with_twin
def rope_heads(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, *, n_q: int, n_k: int, n_v: int,
               head_dim: int, q_gain: torch.Tensor | None = None, k_gain: torch.Tensor | None = None,
               qk_eps: float = 1e-5, out_dtype: torch.dtype | None = None) -> list[torch.Tensor]:
    """Split a fused projection ``x`` [B, S, (n_q + n_k + n_v) * head_dim] into heads.

    Queries and keys are RMS-normed per head (when gains are given) and rotated by 4-D RoPE
    (``cos``/``sin`` [B, S, head_dim // 2] fp32, interleaved pairs); values are copied.
    Returns the non-empty ones of q, k, v, each a contiguous [B, S, heads, head_dim].
    """
    bsz, seqlen, width = x.shape
    assert width == (n_q + n_k + n_v) * head_dim and x.stride(-1) == 1 and x.stride(0) == seqlen * x.stride(1)
    out_dtype = out_dtype or x.dtype
    half = head_dim // 2
    outs = [torch.empty(bsz, seqlen, n, head_dim, device=x.device, dtype=out_dtype) for n in (n_q, n_k, n_v)]
    qk_norm = q_gain is not None or k_gain is not None
    dummy = cos
    _rope_heads_kernel[(bsz * seqlen,)](
        x, x.stride(1), cos.contiguous(), sin.contiguous(),
        q_gain if q_gain is not None else dummy, k_gain if k_gain is not None else dummy,
        outs[0], outs[1], outs[2], float(qk_eps),
        NQ=n_q, NK=n_k, NV=n_v, HALF=half, BLOCK_QK=triton.next_power_of_2(max(n_q, n_k, 1)),
        BLOCK_V=triton.next_power_of_2(max(n_v * head_dim, 1)), QK_NORM=qk_norm, num_warps=4)
    return [out for out, n in zip(outs, (n_q, n_k, n_v)) if n]


@_with_twin
def swiglu(ab: torch.Tensor) -> torch.Tensor:
    """``silu(a) * b`` for ``ab = [a, b]`` concatenated on the last axis."""
    ab = ab.contiguous()
    n_cols = ab.shape[-1] // 2
    rows = ab.numel() // ab.shape[-1]
    out = torch.empty(*ab.shape[:-1], n_cols, device=ab.device, dtype=ab.dtype)
    block = 1024
    _swiglu_kernel[(rows, triton.cdiv(n_cols, block))](ab, out, n_cols, BLOCK=block, num_warps=4)
    return out



#: Attention tiles (BLOCK_M, BLOCK_N, warps, stages) of :func:`attention`; fp32 operands take key tiles of
#: at most 64 (shared memory). H100, 1 x 480 queries and keys, 16 heads of 64, bf16: self-attention 6.93 and
#: cross-attention (queries rotated inside) 8.18 us, against 6.75 and 8.94 with 64-key tiles; fp16 6.95 / 8.20
#: against 7.09 / 9.30; smaller query tiles were slower (benchmarks/results/h2/session7/latency.txt).
ATTENTION_TILES = (64, 128, 4, 3)


@_with_twin
def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, rope: tuple | None = None,
              q_gain: torch.Tensor | None = None, qk_eps: float = 1e-5) -> torch.Tensor:
    """``softmax(q k^T / sqrt(D)) v`` for few queries: q [B, Sq, H, D], k and v [B, Sk, Hkv, D]
    (any strides with D contiguous) -> [B, Sq, H, D] contiguous. No mask.

    Small query tiles spread one epoch's attention over all multiprocessors, where a library
    kernel's 128-query tiles occupy a quarter of them (:func:`attention_pays`).
    ``rope`` (cos, sin [B * Sq, D // 2]): q is the raw projection; its QK-norm (``q_gain``) and
    RoPE are applied here, as :func:`rope_heads` would, instead of in a kernel of their own.
    """
    bsz, seq_q, n_heads, head_dim = q.shape
    seq_k, n_kv = k.shape[1], k.shape[2]
    assert all(t.stride(-1) == 1 for t in (q, k, v)) and v.shape == k.shape and n_heads % n_kv == 0
    block_m, block_n, warps, stages = ATTENTION_TILES
    if k.dtype == torch.float32:
        block_n = min(block_n, 64)
    out = torch.empty(bsz, seq_q, n_heads, head_dim, device=q.device, dtype=k.dtype)
    cos, sin = rope if rope is not None else (q, q)
    grid = (triton.cdiv(seq_q, block_m), bsz * n_heads)
    _attention_kernel[grid](
        q, k, v, out, cos, sin, q_gain if q_gain is not None else q, seq_q, seq_k,
        *q.stride()[:3], *k.stride()[:3], *v.stride()[:3], head_dim ** -0.5 * 1.4426950408889634, float(qk_eps),
        N_HEADS=n_heads, KV_GROUP=n_heads // n_kv, HALF=head_dim // 2, ROTATE_Q=rope is not None,
        QK_NORM=q_gain is not None, BLOCK_M=block_m, BLOCK_N=block_n, PRECISION=_precision(k.dtype),
        num_warps=warps, num_stages=stages)
    return out


#: :func:`attention` is used while a library kernel would run fewer than this many 128-query tiles
#: over at most ATTENTION_MAX_SEQ queries (H100: 6.8 against 10.4 us at 1 x 480, 10.5 against 15.4
#: at 1 x 960, 9.6 against 10.8 at 4 x 480; a 1 x 1280 reconstruction 3 % slower, so cuDNN there).
ATTENTION_MAX_TILES = 132
ATTENTION_MAX_SEQ = 1024


def head_fits(head_dim: int) -> bool:
    """Whether the kernels that hold whole heads in a tile (:func:`attention`, :func:`lowrank_kv`,
    :func:`matmul_rope_heads`) take this head size: a power of 2, at least 16."""
    return head_dim >= 16 and head_dim & (head_dim - 1) == 0


def attention_pays(bsz: int, seq_q: int, n_heads: int, head_dim: int) -> bool:
    """Whether :func:`attention` takes this head size and beats SDPA here."""
    return head_fits(head_dim) and seq_q <= ATTENTION_MAX_SEQ and bsz * n_heads * -(-seq_q // 128) < ATTENTION_MAX_TILES


#: Tile shapes (BLOCK_M, BLOCK_N, BLOCK_K, GROUP_M, warps, stages) of the GEMMs with fused
#: epilogues, for fewer rows than GEMM_LARGE_ROWS and for more; fp32 (TF32) operands take half the
#: K depth to fit shared memory.
GEMM_TILES = {
    ("swiglu", "large"): (128, 128, 64, 8, 8, 3),
    ("swiglu", "small"): (64, 64, 64, 8, 4, 4),
    ("rope", "large"): (128, None, 64, 8, 4, 4),
    ("rope", "small"): (64, None, 64, 8, 4, 4),
}
GEMM_LARGE_ROWS = 4096


def _tiles(kind: str, rows: int, dtype: torch.dtype):
    block_m, block_n, block_k, group_m, warps, stages = GEMM_TILES[kind, "large" if rows >= GEMM_LARGE_ROWS else "small"]
    if dtype == torch.float32:
        block_k, stages = block_k // 2, max(2, stages - 1)
    return block_m, block_n, block_k, group_m, warps, stages


def _precision(dtype: torch.dtype) -> str:
    """``tl.dot``'s input precision: fp32 operands run as TF32 where torch allows it for its own
    GEMMs (``torch.backends.cuda.matmul.allow_tf32``, read when the kernel is launched), else in
    exact fp32."""
    if dtype != torch.float32:
        return "tf32"           # ignored for 16-bit operands
    return "tf32" if torch.backends.cuda.matmul.allow_tf32 else "ieee"


def gemm_fusable(in_features: int, head_dim: int | None = None) -> bool:
    """Whether the GEMMs with fused epilogues take these sizes (whole K tiles of 64, heads that
    :func:`head_fits`), on this Triton (TMA tensor descriptors)."""
    if TensorDescriptor is None or in_features % 64:
        return False
    return head_dim is None or head_fits(head_dim)


@_with_twin
def matmul_swiglu(x: torch.Tensor, w13: torch.Tensor) -> torch.Tensor:
    """``silu(x @ w1.T) * (x @ w3.T)`` with ``w13 = [w1; w3]``, one GEMM; the product is formed from
    the fp32 accumulators (no rounding of the two halves) and rounded once to x's dtype."""
    *lead, k = x.shape
    x2 = x.reshape(-1, k)
    assert x2.is_contiguous() and w13.is_contiguous() and x.dtype == w13.dtype
    rows, hidden = x2.shape[0], w13.shape[0] // 2
    block_m, block_n, block_k, group_m, warps, stages = _tiles("swiglu", rows, x.dtype)
    out = torch.empty(rows, hidden, device=x.device, dtype=x.dtype)
    grid = (triton.cdiv(rows, block_m) * triton.cdiv(hidden, block_n),)
    _matmul_swiglu_kernel[grid](
        TensorDescriptor.from_tensor(x2, [block_m, block_k]), TensorDescriptor.from_tensor(w13, [block_n, block_k]),
        TensorDescriptor.from_tensor(out, [block_m, block_n]), rows, hidden, k, BLOCK_M=block_m, BLOCK_N=block_n,
        BLOCK_K=block_k, GROUP_M=group_m, num_warps=warps, num_stages=stages, PRECISION=_precision(x.dtype))
    return out.view(*lead, hidden)


@_with_twin
def matmul_rope_heads(x: torch.Tensor, weight: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, *,
                      n_q: int, n_k: int, n_v: int, head_dim: int, q_gain: torch.Tensor | None = None,
                      k_gain: torch.Tensor | None = None, qk_eps: float = 1e-5,
                      out_dtype: torch.dtype | None = None) -> list[torch.Tensor]:
    """:func:`rope_heads` of ``x @ weight.T`` (``weight`` [N, K]) in one kernel: the projection,
    QK-norm and RoPE of each head are one GEMM tile and its epilogue, so the fused projection never
    goes to memory."""
    bsz, seqlen, k = x.shape
    assert weight.shape == ((n_q + n_k + n_v) * head_dim, k) and x.is_contiguous() and weight.is_contiguous()
    rows = bsz * seqlen
    out_dtype = out_dtype or x.dtype
    outs = [torch.empty(bsz, seqlen, n, head_dim, device=x.device, dtype=out_dtype) for n in (n_q, n_k, n_v)]
    qk_norm = q_gain is not None or k_gain is not None
    q_gain, k_gain = (g.contiguous() if g is not None else cos for g in (q_gain, k_gain))
    block_m, _, block_k, group_m, warps, stages = _tiles("rope", rows, x.dtype)
    grid = (triton.cdiv(rows, block_m) * (n_q + n_k + n_v),)
    _matmul_rope_heads_kernel[grid](
        TensorDescriptor.from_tensor(x.view(rows, k), [block_m, block_k]),
        TensorDescriptor.from_tensor(weight, [head_dim, block_k]), cos.contiguous(), sin.contiguous(), q_gain,
        k_gain, *outs, rows, k, float(qk_eps), NQ=n_q, NK=n_k, NV=n_v, HALF=head_dim // 2,
        QK_NORM=qk_norm, BLOCK_M=block_m, BLOCK_K=block_k, GROUP_M=group_m,
        num_warps=warps, num_stages=stages, PRECISION=_precision(x.dtype))
    return [out for out, n in zip(outs, (n_q, n_k, n_v)) if n]


#: :func:`lowrank_kv` tiles (BLOCK_M, heads per program, warps, stages) for fewer rows than
#: GEMM_LARGE_ROWS and for more. (Triton 3.6's software pipeliner fails on this loop for
#: BLOCK_M >= 64 with stages > 1; one stage was no slower where it compiles.)
LOWRANK_TILES = {"small": (128, 4, 8, 1), "large": (128, 8, 8, 1)}


@_with_twin
def lowrank_kv(factor: torch.Tensor, weights: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, *,
               n_kv: int, head_dim: int, k_gain: torch.Tensor | None = None, qk_eps: float = 1e-5,
               out_dtype: torch.dtype = torch.bfloat16):
    """Keys and values of n blocks from one context factor: ``factor`` [B, S, W] fp32 (W a power of
    2) times ``weights`` [n, 2 * n_kv * head_dim, W], QK-norm (gains [n, head_dim]) and RoPE of the
    keys. Returns (keys, values), each [n, B, S, n_kv, head_dim] of ``out_dtype``."""
    bsz, seqlen, width = factor.shape
    n_batch = weights.shape[0]
    assert weights.shape == (n_batch, 2 * n_kv * head_dim, width) and width & (width - 1) == 0
    assert factor.is_contiguous() and weights.is_contiguous() and factor.dtype == weights.dtype
    rows = bsz * seqlen
    block_m, group, warps, stages = LOWRANK_TILES["large" if rows >= GEMM_LARGE_ROWS else "small"]
    keys, values = (torch.empty(n_batch, bsz, seqlen, n_kv, head_dim, device=factor.device, dtype=out_dtype)
                    for _ in range(2))
    gain = k_gain.contiguous() if k_gain is not None else cos
    grid = (triton.cdiv(rows, block_m) * triton.cdiv(2 * n_kv, group), n_batch)
    _lowrank_kv_kernel[grid](
        factor, weights, cos.contiguous(), sin.contiguous(), gain, keys, values, rows, float(qk_eps),
        head_dim if k_gain is not None else 0, NK=n_kv, NV=n_kv, HALF=head_dim // 2, WIDTH=width,
        QK_NORM=k_gain is not None, HEAD_GROUP=group, BLOCK_M=block_m, PRECISION=_precision(factor.dtype),
        num_warps=warps, num_stages=stages)
    return keys, values
