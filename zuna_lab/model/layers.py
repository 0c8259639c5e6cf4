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


def rms_norm(x: torch.Tensor, gain: torch.Tensor, eps: float) -> torch.Tensor:
    """x / rms(x) * gain, computed in fp32, returned in x's dtype."""
    x32 = x.float()
    return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps) * gain.float()).type_as(x)


def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs (x[2j], x[2j+1]) of x [B, H, L, D] by angles [B, 1, L, D // 2]."""
    pairs = x.float().unflatten(-1, (-1, 2))
    even, odd = pairs[..., 0], pairs[..., 1]
    return torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1).flatten(-2).type_as(x)


def rope_angles(tok_idx: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin of 4-D RoPE for integer positions ``tok_idx`` [..., 4] -> two [..., head_dim // 2] fp32.

    Each of the 4 axes (x bin, y bin, z bin, coarse time) rotates head_dim // 8
    interleaved pairs with frequencies theta ** (-2j / (head_dim // 4)).
    """
    axis_dim = head_dim // 4
    inv_freq = 1.0 / (theta ** (torch.arange(0, axis_dim, 2, device=tok_idx.device)[: axis_dim // 2].float() / axis_dim))
    angles = tok_idx.float().unsqueeze(-1) * inv_freq          # [..., 4, axis_dim // 2]
    angles = angles.flatten(-2)                                 # axis-major: x pairs, y pairs, z pairs, t pairs
    if angles.device.type == "cpu":
        # torch 2.13's multi-threaded fp32 CPU cos is sometimes off by up to 1.5e-4 on one thread's
        # share of a large tensor in a process's first forward pass (seen in ~5 % of fresh
        # processes on 2 threads), so the same input could embed differently in two processes.
        # The fp64 cos/sin rounded to fp32 are the correctly rounded values (what CUDA gives too).
        angles = angles.double()
    return angles.cos().float(), angles.sin().float()


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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.w1.weight.dtype)
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


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

    def forward(self, x: torch.Tensor, angles: tuple, context: torch.Tensor | None = None,
                attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, L, dim] attends to ``context`` (cross-attention) or to itself; angles (cos, sin)
        [B, 1, L, head_dim // 2] rotate queries and keys (the context shares the queries' positions)."""
        x = x.to(self.wq.weight.dtype)
        context = x if context is None else context.to(x.dtype)
        bsz, q_len, _ = x.shape
        k_len = context.shape[1]
        q = self.wq(x).view(bsz, q_len, self.n_heads, self.head_dim)
        k = self.wk(context).view(bsz, k_len, self.n_kv_heads, self.head_dim)
        v = self.wv(context).view(bsz, k_len, self.n_kv_heads, self.head_dim)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        q, k = self.rotate(q, k, angles)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, enable_gqa=self.n_kv_heads != self.n_heads)
        return self.wo(out.transpose(1, 2).reshape(bsz, q_len, self.n_heads * self.head_dim))

    def rotate(self, q: torch.Tensor, k: torch.Tensor, angles: tuple) -> tuple[torch.Tensor, torch.Tensor]:
        """RoPE of queries and keys [B, H, L, D] by angles (cos, sin)."""
        return rope(q, *angles), rope(k, *angles)


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
