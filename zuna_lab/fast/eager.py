"""PyTorch twins of the Triton kernels (:mod:`.kernels`): the same functions, the same arguments,
the same results up to rounding, from library operations that need no compilation.

The fast model runs them while its kernels are being compiled in the background
(:mod:`.warmup`), so that the first call in a fresh process answers at once instead of waiting
for the compiler; :func:`zuna_lab.fast.kernels.eager` switches a thread over to them. They keep
the kernels' precision: fp32 norms, RoPE and residual, GEMMs in the weights' dtype (cuBLAS
accumulates in fp32). Where a kernel fuses a GEMM with its epilogue, the twin rounds the product
to the weights' dtype first (fp16 there: 2^-11, the rounding the epilogue avoids).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..model.layers import rms_norm, rope


def _branch(delta: torch.Tensor, post_weight, post_eps: float) -> torch.Tensor:
    delta = delta.float()
    return delta if post_weight is None else rms_norm(delta, post_weight, post_eps)


def add_rms_norm(h, delta, gain, eps, *, post_weight=None, post_eps=0.0, out_dtype=torch.bfloat16, earlier=None,
                 store_h=True):
    """:func:`~zuna_lab.fast.kernels.add_rms_norm`."""
    new = h
    if earlier is not None:
        new = new + _branch(*earlier)
    if delta is not None:
        new = new + _branch(delta, post_weight, post_eps)
        if store_h:
            h.copy_(new)
    gain = gain if gain.ndim == 1 else gain[:, None, :]
    return h, rms_norm(new, gain, eps).to(out_dtype)


def _rotated(heads: torch.Tensor, cos, sin, gain, eps: float) -> torch.Tensor:
    """QK-norm (with ``gain``) and RoPE of heads [B, S, H, D], angles [B, S, D // 2]; fp32."""
    heads = heads.float()
    if gain is not None:
        heads = rms_norm(heads, gain, eps)
    return rope(heads, cos.reshape(*heads.shape[:2], 1, -1), sin.reshape(*heads.shape[:2], 1, -1))


def rope_heads(x, cos, sin, *, n_q, n_k, n_v, head_dim, q_gain=None, k_gain=None, qk_eps=1e-5, out_dtype=None):
    """:func:`~zuna_lab.fast.kernels.rope_heads`."""
    out_dtype = out_dtype or x.dtype
    parts = x.split([n_q * head_dim, n_k * head_dim, n_v * head_dim], dim=-1)
    outs = []
    for part, n, gain, rotate in zip(parts, (n_q, n_k, n_v), (q_gain, k_gain, None), (True, True, False)):
        if n:
            heads = part.unflatten(-1, (n, head_dim))
            heads = _rotated(heads, cos, sin, gain, qk_eps) if rotate else heads
            outs.append(heads.to(out_dtype).contiguous())
    return outs


def swiglu(ab):
    """:func:`~zuna_lab.fast.kernels.swiglu`."""
    a, b = ab.float().chunk(2, dim=-1)
    return (F.silu(a) * b).to(ab.dtype)


def attention(q, k, v, *, rope=None, q_gain=None, qk_eps=1e-5):
    """:func:`~zuna_lab.fast.kernels.attention` (SDPA)."""
    if rope is not None:
        q = _rotated(q, *rope, q_gain, qk_eps)
    n_heads, n_kv = q.shape[2], k.shape[2]
    out = F.scaled_dot_product_attention(q.to(k.dtype).transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                         enable_gqa=n_heads != n_kv)
    return out.transpose(1, 2).contiguous()


def matmul_swiglu(x, w13):
    """:func:`~zuna_lab.fast.kernels.matmul_swiglu`: the GEMM, then :func:`swiglu`."""
    return swiglu(F.linear(x, w13))


def matmul_rope_heads(x, weight, cos, sin, **heads):
    """:func:`~zuna_lab.fast.kernels.matmul_rope_heads`: the GEMM, then :func:`rope_heads`."""
    return rope_heads(F.linear(x, weight), cos, sin, **heads)


def lowrank_kv(factor, weights, cos, sin, *, n_kv, head_dim, k_gain=None, qk_eps=1e-5, out_dtype=torch.bfloat16):
    """:func:`~zuna_lab.fast.kernels.lowrank_kv`: every block's product, then :func:`rope_heads`."""
    projected = torch.matmul(factor, weights.transpose(1, 2).unsqueeze(1))       # [n, B, S, 2 kv]
    pairs = [rope_heads(projected[block], cos, sin, n_q=0, n_k=n_kv, n_v=n_kv, head_dim=head_dim,
                        k_gain=None if k_gain is None else k_gain[block], qk_eps=qk_eps, out_dtype=out_dtype)
             for block in range(weights.shape[0])]
    return torch.stack([k for k, _ in pairs]), torch.stack([v for _, v in pairs])
