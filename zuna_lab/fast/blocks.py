"""The fast path's attention, SwiGLU and transformer blocks, built from the reference blocks' weights.

Each module holds its fused weights as frozen parameters of its own, created once from the
reference module (``[wq; wk; wv]``, ``[w1; w3]``) in the dtype they are used in; the reference
tensors are not kept. The residual stream ``h`` is fp32 and updated in place; each block's
residual adds are fused with the next norm (:func:`add_norm`), so a block takes ``x``, its first
pre-norm of ``h``, and returns the next one.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ..model.layers import Attention, DecoderBlock, EncoderBlock, RMSNorm, SwiGLU
from . import kernels


def frozen(*tensors: torch.Tensor, dtype: torch.dtype) -> nn.Parameter:
    """A frozen parameter of its own: ``tensors`` concatenated along rows, in ``dtype``."""
    return nn.Parameter(torch.cat([t.detach() for t in tensors]).to(dtype), requires_grad=False)


def norm_copy(norm: RMSNorm | None) -> RMSNorm | None:
    """A copy of a plain RMS norm (its weight and eps; the kernels apply it)."""
    return None if norm is None else copy.deepcopy(norm)


def add_norm(h: torch.Tensor, delta: torch.Tensor, post: RMSNorm | None, gain: torch.Tensor, eps: float,
             out_dtype: torch.dtype, *, earlier: tuple | None = None,
             store_h: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``h += post(delta)`` (or ``+= delta`` without a post-norm), then ``rms_norm(h) * gain``, in one kernel.

    ``earlier``: (branch output, its post-norm) of the call before, added first, because that
    call did not store its residual (``store_h=False``).
    """
    def weights(norm):
        return (None, 0.0) if norm is None else (norm.weight, norm.eps)

    post_weight, post_eps = weights(post)
    return kernels.add_rms_norm(h, delta, gain, eps, out_dtype=out_dtype, post_weight=post_weight,
                                post_eps=post_eps, store_h=store_h,
                                earlier=None if earlier is None else (earlier[0], *weights(earlier[1])))


class FastSwiGLU(nn.Module):
    """One GEMM for w1 and w3, then ``silu(a) * b``: in the GEMM's epilogue, or as a second kernel."""

    def __init__(self, swiglu: SwiGLU, dtype: torch.dtype, *, epilogue: bool):
        super().__init__()
        self.w13 = frozen(swiglu.w1.weight, swiglu.w3.weight, dtype=dtype)
        self.w2 = frozen(swiglu.w2.weight, dtype=dtype)
        self.epilogue = epilogue and kernels.gemm_fusable(self.w13.shape[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.w2.dtype)
        if self.epilogue:
            return F.linear(kernels.matmul_swiglu(x, self.w13), self.w2)
        return F.linear(kernels.swiglu(F.linear(x, self.w13)), self.w2)


class _FastAttention(nn.Module):
    """Shared by self- and cross-attention: heads of a projection, attention, output projection.

    ``heads_dtype``: the dtype of q, k, v for the attention, when it differs from the projection's
    (the encoder's TF32 projections feed bf16 attention); ``epilogue``: QK-norm and RoPE in the
    projection GEMM's epilogue instead of a kernel of their own.
    """

    def __init__(self, attention: Attention, dtype: torch.dtype, heads_dtype: torch.dtype | None, epilogue: bool):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = attention.n_heads, attention.n_kv_heads, attention.head_dim
        self.wo = frozen(attention.wo.weight, dtype=dtype)
        self.q_gain = None if attention.q_norm is None else frozen(attention.q_norm.weight, dtype=torch.float32)
        self.heads_dtype = heads_dtype
        self.epilogue = epilogue and kernels.gemm_fusable(attention.wq.weight.shape[1], self.head_dim)

    def _heads(self, x: torch.Tensor, weight: torch.Tensor, rope: tuple, n_q: int, n_k: int, n_v: int,
               k_gain: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Heads [B, S, heads, head_dim] of ``x @ weight.T``: QK-normed, rotated queries and keys, and values."""
        heads = dict(n_q=n_q, n_k=n_k, n_v=n_v, head_dim=self.head_dim, q_gain=self.q_gain if n_q else None,
                     k_gain=k_gain if n_k else None, out_dtype=self.heads_dtype)
        x = x.to(weight.dtype)
        if self.epilogue:
            return kernels.matmul_rope_heads(x.contiguous(), weight, *rope, **heads)
        projected = F.linear(x, weight)
        if n_v and self.heads_dtype in (None, projected.dtype):
            # values need no rotation: attention reads them in place instead of from a copy
            width = (n_q + n_k) * self.head_dim
            rotated = kernels.rope_heads(projected[..., :width], *rope, **{**heads, "n_v": 0})
            return [*rotated, projected[..., width:].unflatten(-1, (n_v, self.head_dim))]
        return kernels.rope_heads(projected, *rope, **heads)

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask, own: bool) -> torch.Tensor:
        """Attention of heads [B, S, H, D] (the small-tile kernel where it pays, else SDPA), then wo."""
        bsz, q_len = q.shape[:2]
        if own:
            out = kernels.attention(q, k, v)
        else:
            out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                                 attn_mask=attn_mask, enable_gqa=self.n_kv_heads != self.n_heads)
            out = out.transpose(1, 2)
        return self._out(out.reshape(bsz, q_len, self.n_heads * self.head_dim))

    def _out(self, out: torch.Tensor) -> torch.Tensor:
        return F.linear(out.to(self.wo.dtype), self.wo)

    def _own(self, x: torch.Tensor, attn_mask) -> bool:
        """Whether the small-tile attention kernel runs instead of SDPA (no mask, few tiles)."""
        return attn_mask is None and kernels.attention_pays(x.shape[0], x.shape[1], self.n_heads, self.head_dim)


class FastSelfAttention(_FastAttention):
    """Self-attention: one ``[wq; wk; wv]`` GEMM, QK-norm + RoPE (in its epilogue or one kernel), attention."""

    def __init__(self, attention: Attention, dtype: torch.dtype, *, heads_dtype=None, epilogue=False):
        super().__init__(attention, dtype, heads_dtype, epilogue)
        self.wqkv = frozen(attention.wq.weight, attention.wk.weight, attention.wv.weight, dtype=dtype)
        self.k_gain = None if attention.k_norm is None else frozen(attention.k_norm.weight, dtype=torch.float32)

    def forward(self, x: torch.Tensor, rope: tuple, attn_mask: torch.Tensor | None) -> torch.Tensor:
        """x [B, S, dim]; rope (cos, sin), each [B, S, head_dim // 2]."""
        q, k, v = self._heads(x, self.wqkv, rope, self.n_heads, self.n_kv_heads, self.n_kv_heads, self.k_gain)
        return self._attend(q, k, v, attn_mask, self._own(x, attn_mask))


class FastCrossAttention(_FastAttention):
    """Cross-attention to keys and values formed elsewhere (:meth:`FastDecoder.cross_kv`): the query
    projection, QK-norm + RoPE (inside the small-tile attention kernel where it runs), attention."""

    def __init__(self, attention: Attention, dtype: torch.dtype):
        super().__init__(attention, dtype, None, False)
        self.wq = frozen(attention.wq.weight, dtype=dtype)

    def forward(self, x: torch.Tensor, rope: tuple, kv: tuple, attn_mask: torch.Tensor | None) -> torch.Tensor:
        k, v = kv
        if self._own(x, attn_mask):
            # the queries' QK-norm and RoPE happen inside the attention kernel
            bsz, q_len, _ = x.shape
            q = F.linear(x.to(self.wq.dtype), self.wq).view(bsz, q_len, self.n_heads, self.head_dim)
            out = kernels.attention(q, k, v, rope=rope, q_gain=self.q_gain)
            return self._out(out.view(bsz, q_len, -1))
        (q,) = self._heads(x, self.wq, rope, self.n_heads, 0, 0)
        return self._attend(q, k, v, attn_mask, False)


class FastEncoderBlock(nn.Module):
    """Self-attention and SwiGLU. With bf16 (or fp32) operands, the QKV and w1/w3 GEMMs apply QK-norm + RoPE
    and ``silu(a) * b`` in their epilogues, sparing the latents the bf16 rounding of the products; with fp16
    operands that rounding is 8x finer and cuBLAS then a kernel is faster (an hour's batches: 4-5 %, H100;
    latents 1.40 against 1.35e-3 from exact, benchmarks/results/precision.md, sixth session)."""

    def __init__(self, block: EncoderBlock, dtype: torch.dtype, attention_dtype: torch.dtype):
        super().__init__()
        epilogue = dtype != torch.float16
        self.attention_norm = norm_copy(block.attention_norm)
        self.attention = FastSelfAttention(block.attention, attention_dtype, epilogue=epilogue,
                                           heads_dtype=None if attention_dtype == dtype else dtype)
        self.ffn_norm = norm_copy(block.ffn_norm)
        self.feed_forward = FastSwiGLU(block.feed_forward, dtype, epilogue=epilogue)
        self.attention_post_norm = norm_copy(block.attention_post_norm)
        self.ffn_post_norm = norm_copy(block.ffn_post_norm)

    def forward(self, h: torch.Tensor, x: torch.Tensor, rope: tuple, attn_mask: torch.Tensor | None,
                next_gain: torch.Tensor, next_eps: float, next_dtype: torch.dtype):
        """h: fp32 residual (updated in place); x: ``attention_norm(h)``.

        Returns (h, next_norm(h)), the second with ``next_gain`` — the next block's pre-norm or the
        final norm — so that each norm is fused with the residual add before it.
        """
        h, x = add_norm(h, self.attention(x, rope, attn_mask), self.attention_post_norm,
                        self.ffn_norm.weight, self.ffn_norm.eps, self.feed_forward.w13.dtype)
        return add_norm(h, self.feed_forward(x), self.ffn_post_norm, next_gain, next_eps, next_dtype)


class FastDecoderBlock(nn.Module):
    """Cross-attention, self-attention, SwiGLU; the AdaRMSNorm gains come from the caller
    (:meth:`FastDecoder.conditioning`), the cross-attention keys and values too."""

    def __init__(self, block: DecoderBlock, dtype: torch.dtype):
        super().__init__()
        self.cross_x_eps, self.attention_eps, self.ffn_eps = (
            norm.eps for norm in (block.cross_x_norm, block.attention_norm, block.ffn_norm))
        self.cross_attention = FastCrossAttention(block.cross_attention, dtype)
        self.attention = FastSelfAttention(block.attention, dtype)
        self.feed_forward = FastSwiGLU(block.feed_forward, dtype, epilogue=False)
        self.cross_post_norm = norm_copy(block.cross_post_norm)
        self.attention_post_norm = norm_copy(block.attention_post_norm)
        self.ffn_post_norm = norm_copy(block.ffn_post_norm)

    def forward(self, h: torch.Tensor, x: torch.Tensor, cross_kv: tuple, g_attn: torch.Tensor,
                g_ffn: torch.Tensor, rope: tuple, self_mask, cross_mask, next_gain: torch.Tensor,
                next_eps: float, next_dtype: torch.dtype):
        """h: fp32 residual (updated in place); x: ``cross_x_norm(h)``.

        Returns (h, next_norm(h)) with ``next_gain`` (the next block's cross_x gain or the final norm).
        """
        h, x = add_norm(h, self.cross_attention(x, rope, cross_kv, cross_mask), self.cross_post_norm,
                        g_attn, self.attention_eps, self.attention.wqkv.dtype)
        attended = self.attention(x, rope, self_mask)
        # The residual after self-attention is not stored: the next add recomputes it from h and
        # ``attended`` (memory traffic is what the large batches wait on).
        _, x = add_norm(h, attended, self.attention_post_norm, g_ffn, self.ffn_eps, self.feed_forward.w13.dtype,
                        store_h=False)
        return add_norm(h, self.feed_forward(x), self.ffn_post_norm, next_gain, next_eps, next_dtype,
                        earlier=(attended, self.attention_post_norm))
