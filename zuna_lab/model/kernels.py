"""Triton kernels of the CUDA fast path, each one pass over memory, all arithmetic in fp32.

- :func:`add_rms_norm` — ``h += post_norm(delta)`` (ZUNA1.1's sandwich norm) or ``h += delta``,
  then the next (Ada)RMS pre-norm of the new residual, cast for the next GEMM. One kernel
  replaces the four to six elementwise passes between two GEMMs.
- :func:`rope_heads` — per-head QK-norm and 4-D RoPE of queries and keys (values copied) from a
  fused projection output, into ``[B, S, H, D]`` buffers that SDPA reads as ``[B, H, S, D]``.
- :func:`swiglu` — ``silu(a) * b`` of the fused w1/w3 output.
- :func:`scale_columns` — a weight times a per-input gain, so that a per-step AdaRMSNorm gain on
  a constant input (the cross-attention context) moves onto the 1024 x 1024 weight instead of
  re-normalising the whole context every step.

The reference (``forward``) path of the blocks is plain PyTorch; these kernels are used only by
the blocks' ``fused_forward`` on CUDA. With ``TRITON_INTERPRET=1`` they also run on CPU tensors,
which is how the tests check them against the reference without a GPU.
"""
from __future__ import annotations

import os

import torch

try:
    import triton
    import triton.language as tl
except ImportError:          # CPU-only installs: the fast path is simply not offered
    triton = None


def available(device: torch.device) -> bool:
    """Whether the kernels can run on tensors of ``device``."""
    if triton is None:
        return False
    return device.type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1"


if triton is not None:

    @triton.jit
    def _add_rms_norm_kernel(h_ptr, delta_ptr, post_w_ptr, gain_ptr, h_out_ptr, x_out_ptr,
                             n_cols, gain_row_stride, rows_per_gain, post_eps, eps,
                             HAS_DELTA: tl.constexpr, HAS_POST: tl.constexpr, BLOCK: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)
        cols = tl.arange(0, BLOCK)
        mask = cols < n_cols
        h = tl.load(h_ptr + row * n_cols + cols, mask=mask, other=0.0).to(tl.float32)
        if HAS_DELTA:
            delta = tl.load(delta_ptr + row * n_cols + cols, mask=mask, other=0.0).to(tl.float32)
            if HAS_POST:
                post_w = tl.load(post_w_ptr + cols, mask=mask, other=0.0).to(tl.float32)
                delta = delta * tl.rsqrt(tl.sum(delta * delta, axis=0) / n_cols + post_eps) * post_w
            h = h + delta
            tl.store(h_out_ptr + row * n_cols + cols, h, mask=mask)
        gain = tl.load(gain_ptr + (row // rows_per_gain) * gain_row_stride + cols, mask=mask, other=0.0)
        x = h * tl.rsqrt(tl.sum(h * h, axis=0) / n_cols + eps) * gain.to(tl.float32)
        tl.store(x_out_ptr + row * n_cols + cols, x.to(x_out_ptr.dtype.element_ty), mask=mask)

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
    def _scale_columns_kernel(w_ptr, gain_ptr, out_ptr, n_cols, BLOCK: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)
        cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        mask = cols < n_cols
        w = tl.load(w_ptr + row * n_cols + cols, mask=mask, other=0.0).to(tl.float32)
        gain = tl.load(gain_ptr + cols, mask=mask, other=0.0).to(tl.float32)
        tl.store(out_ptr + row * n_cols + cols, (w * gain).to(out_ptr.dtype.element_ty), mask=mask)


def _warps(block: int) -> int:
    return 4 if block <= 1024 else 8


def add_rms_norm(h: torch.Tensor, delta: torch.Tensor | None, gain: torch.Tensor, eps: float, *,
                 post_weight: torch.Tensor | None = None, post_eps: float = 0.0,
                 out_dtype: torch.dtype = torch.bfloat16) -> tuple[torch.Tensor, torch.Tensor]:
    """``h += post_norm(delta)`` (or ``+= delta``, or nothing when delta is None), then ``rms_norm(h) * gain``.

    h : fp32 [B, S, N] residual, updated in place when ``delta`` is given.
    gain : [N] (one gain for all rows) or [B, N] (AdaRMSNorm: one gain per batch element).
    Returns ``(h, x)`` with x of ``out_dtype``.
    """
    bsz, seqlen, n_cols = h.shape
    assert h.is_contiguous() and h.dtype == torch.float32
    if delta is not None:
        delta = delta.contiguous()
    gain = gain.contiguous()
    if gain.ndim == 1:
        gain_row_stride, rows_per_gain = 0, 1
    else:
        assert gain.shape == (bsz, n_cols)
        gain_row_stride, rows_per_gain = n_cols, seqlen
    x = torch.empty(h.shape, device=h.device, dtype=out_dtype)
    block = triton.next_power_of_2(n_cols)
    _add_rms_norm_kernel[(bsz * seqlen,)](
        h, delta if delta is not None else h, post_weight if post_weight is not None else gain, gain, h, x,
        n_cols, gain_row_stride, rows_per_gain, float(post_eps), float(eps),
        HAS_DELTA=delta is not None, HAS_POST=post_weight is not None, BLOCK=block, num_warps=_warps(block))
    return h, x


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


def swiglu(ab: torch.Tensor) -> torch.Tensor:
    """``silu(a) * b`` for ``ab = [a, b]`` concatenated on the last axis."""
    ab = ab.contiguous()
    n_cols = ab.shape[-1] // 2
    rows = ab.numel() // ab.shape[-1]
    out = torch.empty(*ab.shape[:-1], n_cols, device=ab.device, dtype=ab.dtype)
    block = 1024
    _swiglu_kernel[(rows, triton.cdiv(n_cols, block))](ab, out, n_cols, BLOCK=block, num_warps=4)
    return out


def scale_columns(weight: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
    """``weight * gain`` [out, in] * [in], rounded once to weight's dtype: ``W (g * x) == (W * g) x``."""
    n_rows, n_cols = weight.shape
    out = torch.empty_like(weight)
    block = 1024
    _scale_columns_kernel[(n_rows, triton.cdiv(n_cols, block))](weight, gain.contiguous(), out, n_cols,
                                                                  BLOCK=block, num_warps=4)
    return out
