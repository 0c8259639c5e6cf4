"""Building blocks: RMS norms, SwiGLU, 4-D rotary attention, encoder and decoder blocks.

Blocks take plain tensors and scalars; all variant differences are two flags
(``qk_norm``, ``post_norm``) read from :class:`~zuna_lab.config.ModelConfig`.
Norms always compute in fp32 and cast back, as the official code does.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from . import kernels


def rms_norm(x: torch.Tensor, gain: torch.Tensor, eps: float) -> torch.Tensor:
    """x / rms(x) * gain, computed in fp32, returned in x's dtype."""
    x32 = x.float()
    return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps) * gain.float()).type_as(x)


def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs (x[2j], x[2j+1]) of x [B, H, L, D] by angles [B, 1, L, D // 2]."""
    pairs = x.float().unflatten(-1, (-1, 2))
    even, odd = pairs[..., 0], pairs[..., 1]
    return torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1).flatten(-2).type_as(x)


def swiglu(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.silu(a) * b


def add_norm(h: torch.Tensor, delta: torch.Tensor, post: "RMSNorm | None", gain: torch.Tensor, eps: float,
             out_dtype: torch.dtype, *, earlier: torch.Tensor | None = None,
             store_h: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Triton path: ``h += post(delta)`` (or ``+= delta`` without a post-norm), then ``rms_norm(h) * gain``.

    ``earlier``: the previous branch's output, added first (through the same post-norm module
    kind) because the call before did not store its residual (``store_h=False``).
    """
    def weights(norm):
        return (None, 0.0) if norm is None else (norm.weight, norm.eps)

    post_weight, post_eps = weights(post)
    return kernels.add_rms_norm(h, delta, gain, eps, out_dtype=out_dtype, post_weight=post_weight,
                                post_eps=post_eps, store_h=store_h,
                                earlier=None if earlier is None else (earlier[0], *weights(earlier[1])))


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight, self.eps)


class AdaRMSNorm(nn.Module):
    """RMSNorm whose per-feature gain is a linear function of the time embedding."""

    def __init__(self, cond_dim: int, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.gain = nn.Linear(cond_dim, dim)

    def forward(self, x: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
        # ``gain`` is self.gain(cond), computed by the caller so it can be reused.
        return rms_norm(x, gain, self.eps)


class SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)
        self.w13 = None     # fused [w1; w3] for one wide GEMM (see fuse())
        self.gemm_epilogue = False  # Triton path: silu(a) * b in the w13 GEMM's epilogue

    def fuse(self):
        self.w13 = torch.cat([self.w1.weight, self.w3.weight]).detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.w1.weight.dtype)
        if self.w13 is not None:
            a, b = F.linear(x, self.w13).chunk(2, dim=-1)
            return self.w2(swiglu(a, b))
        return self.w2(swiglu(self.w1(x), self.w3(x)))

    def fused_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Triton path: one GEMM for w1/w3 and silu(a) * b (fused, or a second kernel)."""
        weight = self.w2.weight
        x = x.to(weight.dtype)
        if self.gemm_epilogue and kernels.gemm_fusable(x.shape[-1]):
            return F.linear(kernels.matmul_swiglu(x, self.w13), weight)
        return F.linear(kernels.swiglu(F.linear(x, self.w13)), weight)


def rope_angles(tok_idx: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin of 4-D RoPE for integer positions ``tok_idx`` [..., 4] -> two [..., head_dim // 2] fp32.

    Each of the 4 axes (x bin, y bin, z bin, coarse time) rotates head_dim // 8
    interleaved pairs with frequencies theta ** (-2j / (head_dim // 4)).
    """
    axis_dim = head_dim // 4
    inv_freq = 1.0 / (theta ** (torch.arange(0, axis_dim, 2, device=tok_idx.device)[: axis_dim // 2].float() / axis_dim))
    angles = tok_idx.float().unsqueeze(-1) * inv_freq          # [..., 4, axis_dim // 2]
    angles = angles.flatten(-2)                                 # axis-major: x pairs, y pairs, z pairs, t pairs
    return angles.cos(), angles.sin()


class Attention(nn.Module):
    """Multi-head attention with 4-D RoPE on queries and keys (self- or cross-)."""

    def __init__(self, dim: int, n_heads: int, n_kv_heads: int, head_dim: int, qk_norm: bool):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = n_heads, n_kv_heads, head_dim
        self.wq = nn.Linear(dim, n_heads * head_dim, bias=False)
        self.wk = nn.Linear(dim, n_kv_heads * head_dim, bias=False)
        self.wv = nn.Linear(dim, n_kv_heads * head_dim, bias=False)
        self.wo = nn.Linear(n_heads * head_dim, dim, bias=False)
        # The official QK-norm uses eps 1e-5 whatever norm_eps is.
        self.q_norm = RMSNorm(head_dim, 1e-5) if qk_norm else None
        self.k_norm = RMSNorm(head_dim, 1e-5) if qk_norm else None
        self.wqkv = None    # fused [wq; wk; wv] for self-attention (see fuse())
        self.wkv = None     # fused [wk; wv] for cross-attention
        self.sdpa_dtype = None  # dtype of q, k, v inside SDPA; None: the projections' dtype
        self.gemm_epilogue = False  # Triton path: QK-norm + RoPE in the projection GEMM's epilogue
        self.small_attention = True  # Triton path: kernels.attention where SDPA's kernels under-fill the GPU
        self.values_as_view = True  # Triton path: self-attention reads V from the fused projection output

    def fuse(self):
        self.wqkv = torch.cat([self.wq.weight, self.wk.weight, self.wv.weight]).detach()
        self.wkv = torch.cat([self.wk.weight, self.wv.weight]).detach()

    def forward(self, x: torch.Tensor, rope_q: tuple, context: torch.Tensor | None = None,
                rope_k: tuple | None = None, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x.to(self.wq.weight.dtype)
        rope_k = rope_q if rope_k is None else rope_k
        bsz, q_len, _ = x.shape
        if context is None and self.wqkv is not None:
            q, k, v = F.linear(x, self.wqkv).split(
                [self.n_heads * self.head_dim, self.n_kv_heads * self.head_dim, self.n_kv_heads * self.head_dim], dim=-1)
            k_len = q_len
        elif context is not None and self.wkv is not None:
            context = context.to(x.dtype)
            k_len = context.shape[1]
            q = self.wq(x)
            k, v = F.linear(context, self.wkv).chunk(2, dim=-1)
        else:
            context = x if context is None else context.to(x.dtype)
            k_len = context.shape[1]
            q, k, v = self.wq(x), self.wk(context), self.wv(context)
        q = q.view(bsz, q_len, self.n_heads, self.head_dim)
        k = k.view(bsz, k_len, self.n_kv_heads, self.head_dim)
        v = v.view(bsz, k_len, self.n_kv_heads, self.head_dim)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        q = rope(q, *rope_q)
        k = rope(k, *rope_k)
        if self.sdpa_dtype is not None:
            q, k, v = (t.to(self.sdpa_dtype) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                             enable_gqa=self.n_kv_heads != self.n_heads)
        return self.wo(out.transpose(1, 2).reshape(bsz, q_len, self.n_heads * self.head_dim).to(x.dtype))

    def _qk_gains(self):
        return (self.q_norm.weight, self.k_norm.weight) if self.q_norm is not None else (None, None)

    def _project_heads(self, x: torch.Tensor, weight: torch.Tensor, rope: tuple, n_q: int, n_k: int, n_v: int):
        """Heads of ``x @ weight.T``: QK-normed, rotated queries/keys and values (Triton path)."""
        q_gain, k_gain = self._qk_gains()
        heads = dict(n_q=n_q, n_k=n_k, n_v=n_v, head_dim=self.head_dim, q_gain=q_gain if n_q else None,
                     k_gain=k_gain if n_k else None, out_dtype=self.sdpa_dtype)
        x = x.to(weight.dtype)
        if self.gemm_epilogue and kernels.gemm_fusable(x.shape[-1], self.head_dim):
            return kernels.matmul_rope_heads(x.contiguous(), weight, *rope, **heads)
        projected = F.linear(x, weight)
        if n_v and self.values_as_view and self.sdpa_dtype in (None, projected.dtype):
            # values need no rotation: attention reads them in place instead of from a copy
            width = (n_q + n_k) * self.head_dim
            rotated = kernels.rope_heads(projected[..., :width], *rope, **{**heads, "n_v": 0})
            return [*rotated, projected[..., width:].unflatten(-1, (n_v, self.head_dim))]
        return kernels.rope_heads(projected, *rope, **heads)

    def fused_forward(self, x: torch.Tensor, rope: tuple, kv: tuple | None = None,
                      attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Triton path: fused projection, one QK-norm + RoPE kernel, SDPA.

        rope: (cos, sin), each [B, S, head_dim // 2]. kv: precomputed cross-attention keys and
        values (``Decoder.fused_cross_kv``); None for self-attention.
        """
        bsz, q_len, _ = x.shape
        own = self.small_attention and attn_mask is None and kernels.attention_pays(bsz, q_len, self.n_heads, self.head_dim)
        if kv is None:
            q, k, v = self._project_heads(x, self.wqkv, rope, self.n_heads, self.n_kv_heads, self.n_kv_heads)
        elif own:
            # the queries' QK-norm and RoPE happen inside the attention kernel
            k, v = kv
            q = F.linear(x.to(self.wq.weight.dtype), self.wq.weight).view(bsz, q_len, self.n_heads, self.head_dim)
            out = kernels.attention(q, k, v, rope=rope, q_gain=self._qk_gains()[0])
            return F.linear(out.view(bsz, q_len, -1).to(self.wo.weight.dtype), self.wo.weight)
        else:
            (q,) = self._project_heads(x, self.wq.weight, rope, self.n_heads, 0, 0)
            k, v = kv
        if own:
            out = kernels.attention(q, k, v)
        else:
            out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                                 attn_mask=attn_mask, enable_gqa=self.n_kv_heads != self.n_heads)
            out = out.transpose(1, 2)
        out = out.reshape(bsz, q_len, self.n_heads * self.head_dim)
        return F.linear(out.to(self.wo.weight.dtype), self.wo.weight)


class EncoderBlock(nn.Module):
    def __init__(self, dim: int, n_heads: int, n_kv_heads: int, head_dim: int, ffn_hidden: int,
                 eps: float, qk_norm: bool, post_norm: bool):
        super().__init__()
        self.attention_norm = RMSNorm(dim, eps)
        self.attention = Attention(dim, n_heads, n_kv_heads, head_dim, qk_norm)
        self.ffn_norm = RMSNorm(dim, eps)
        self.feed_forward = SwiGLU(dim, ffn_hidden)
        self.attention_post_norm = RMSNorm(dim, eps) if post_norm else None
        self.ffn_post_norm = RMSNorm(dim, eps) if post_norm else None

    def forward(self, h: torch.Tensor, rope: tuple, attn_mask: torch.Tensor | None) -> torch.Tensor:
        if self.attention_post_norm is None:
            h = h + self.attention(self.attention_norm(h), rope, attn_mask=attn_mask)
            return h + self.feed_forward(self.ffn_norm(h))
        # ZUNA1.1: sandwich norms, residual stream kept in fp32.
        compute_dtype = self.attention.wq.weight.dtype
        h = h.float() + self.attention_post_norm(
            self.attention(self.attention_norm(h).to(compute_dtype), rope, attn_mask=attn_mask).float())
        return h + self.ffn_post_norm(self.feed_forward(self.ffn_norm(h).to(compute_dtype)).float())

    def fused_forward(self, h: torch.Tensor, x: torch.Tensor, rope: tuple, attn_mask: torch.Tensor | None,
                      next_gain: torch.Tensor, next_eps: float, next_dtype: torch.dtype):
        """Triton path. h: fp32 residual (updated in place); x: ``attention_norm(h)``.

        Returns (h, next_norm(h)), the second with ``next_gain`` — the next block's pre-norm
        or the final norm — so that each norm is fused with the residual add before it.
        """
        h, x = add_norm(h, self.attention.fused_forward(x, rope, attn_mask=attn_mask), self.attention_post_norm,
                        self.ffn_norm.weight, self.ffn_norm.eps, self.feed_forward.w1.weight.dtype)
        return add_norm(h, self.feed_forward.fused_forward(x), self.ffn_post_norm, next_gain, next_eps, next_dtype)


class DecoderBlock(nn.Module):
    """Cross-attention to the latents, then self-attention, then SwiGLU; AdaRMSNorm pre-norms."""

    def __init__(self, dim: int, n_heads: int, n_kv_heads: int, head_dim: int, ffn_hidden: int,
                 eps: float, t_dim: int, qk_norm: bool, post_norm: bool):
        super().__init__()
        self.cross_x_norm = AdaRMSNorm(t_dim, dim, eps)
        self.cross_y_norm = AdaRMSNorm(t_dim, dim, eps)
        self.cross_attention = Attention(dim, n_heads, n_kv_heads, head_dim, qk_norm)
        self.attention_norm = AdaRMSNorm(t_dim, dim, eps)
        self.attention = Attention(dim, n_heads, n_kv_heads, head_dim, qk_norm)
        self.ffn_norm = AdaRMSNorm(t_dim, dim, eps)
        self.feed_forward = SwiGLU(dim, ffn_hidden)
        self.cross_post_norm = RMSNorm(dim, eps) if post_norm else None
        self.attention_post_norm = RMSNorm(dim, eps) if post_norm else None
        self.ffn_post_norm = RMSNorm(dim, eps) if post_norm else None

    #: Triton path: recompute the residual after self-attention instead of storing it.
    recompute_residual = True

    def gain_layers(self) -> tuple[nn.Linear, ...]:
        """The four AdaRMSNorm gain layers (of the time embedding), in the order forward() takes the gains."""
        return (self.cross_x_norm.gain, self.cross_y_norm.gain, self.attention_norm.gain, self.ffn_norm.gain)

    def forward(self, h: torch.Tensor, context: torch.Tensor, gains: tuple, rope: tuple,
                self_mask: torch.Tensor | None, cross_mask: torch.Tensor | None) -> torch.Tensor:
        g_x, g_y, g_attn, g_ffn = gains
        if self.cross_post_norm is None:
            h = h + self.cross_attention(self.cross_x_norm(h, g_x), rope, context=self.cross_y_norm(context, g_y),
                                         attn_mask=cross_mask)
            h = h + self.attention(self.attention_norm(h, g_attn), rope, attn_mask=self_mask)
            return h + self.feed_forward(self.ffn_norm(h, g_ffn))
        compute_dtype = self.attention.wq.weight.dtype
        h = h.float() + self.cross_post_norm(self.cross_attention(
            self.cross_x_norm(h, g_x).to(compute_dtype), rope,
            context=self.cross_y_norm(context.float(), g_y).to(compute_dtype), attn_mask=cross_mask).float())
        h = h + self.attention_post_norm(
            self.attention(self.attention_norm(h, g_attn).to(compute_dtype), rope, attn_mask=self_mask).float())
        return h + self.ffn_post_norm(self.feed_forward(self.ffn_norm(h, g_ffn).to(compute_dtype)).float())

    def fused_forward(self, h: torch.Tensor, x: torch.Tensor, cross_kv: tuple, g_attn: torch.Tensor,
                      g_ffn: torch.Tensor, rope: tuple, self_mask, cross_mask, next_gain: torch.Tensor,
                      next_eps: float, next_dtype: torch.dtype):
        """Triton path. h: fp32 residual (updated in place); x: ``cross_x_norm(h)``.

        Returns (h, next_norm(h)) with ``next_gain`` (the next block's cross_x gain or the final norm).
        """
        h, x = add_norm(h, self.cross_attention.fused_forward(x, rope, kv=cross_kv, attn_mask=cross_mask),
                        self.cross_post_norm, g_attn, self.attention_norm.eps, self.attention.wq.weight.dtype)
        attended = self.attention.fused_forward(x, rope, attn_mask=self_mask)
        # The residual after self-attention is not stored: the next add recomputes it from h and
        # ``attended`` (memory traffic is what the large batches wait on).
        recompute = self.recompute_residual
        _, x = add_norm(h, attended, self.attention_post_norm, g_ffn, self.ffn_norm.eps,
                        self.feed_forward.w1.weight.dtype, store_h=not recompute)
        return add_norm(h, self.feed_forward.fused_forward(x), self.ffn_post_norm, next_gain, next_eps, next_dtype,
                        earlier=(attended, self.attention_post_norm) if recompute else None)


class FourierTimeEmbedding(nn.Module):
    """Random Fourier features of the flow time t in [0, 1], then a linear layer."""

    def __init__(self, t_dim: int):
        super().__init__()
        self.register_buffer("freqs", torch.zeros(t_dim // 2, 1))
        self.proj = nn.Linear(t_dim, t_dim)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        # The phase product runs in the GEMM dtype, as under the official bf16 autocast.
        dtype = self.proj.weight.dtype
        f = ((2 * math.pi * t.float()).to(dtype) @ self.freqs.to(dtype).T).float()
        return self.proj(torch.cat([f.cos(), f.sin()], dim=-1).to(dtype))


def window_mask(q_len: int, k_len: int, window: int, device) -> torch.Tensor | None:
    """Boolean sliding-window mask (True = attend); None when the window covers everything.

    For cross-attention each query is centred on key ``q * k_len // q_len``, as upstream.
    """
    if window >= max(q_len, k_len):
        return None
    q = torch.arange(q_len, device=device).unsqueeze(1)
    k = torch.arange(k_len, device=device).unsqueeze(0)
    centre = q if q_len == k_len else (q * k_len) // q_len
    return (k - centre).abs() <= window
