"""ZUNA encoder: a register before every token, bidirectional 4-D RoPE transformer, one latent per token."""
from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from . import kernels
from .layers import EncoderBlock, RMSNorm, rope_angles, window_mask


class Encoder(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        c = config
        self.config = c
        self.embed = nn.Linear(c.input_dim, c.dim)
        self.register = nn.Parameter(torch.zeros(1, c.input_dim))
        self.dropout_vec = nn.Parameter(torch.zeros(1, c.input_dim)) if c.learned_dropout else None
        self.blocks = nn.ModuleList(
            EncoderBlock(c.dim, c.n_heads, c.n_kv_heads, c.head_dim, c.ffn_hidden, c.norm_eps, c.qk_norm, c.post_norm)
            for _ in range(c.n_layers))
        self.norm = RMSNorm(c.dim, c.norm_eps)
        self.out = nn.Linear(c.dim, c.latent_dim, bias=False)

    def _embed(self, tokens: torch.Tensor, tok_idx: torch.Tensor):
        bsz, seqlen, width = tokens.shape
        # Sequence becomes [reg, tok_0, reg, tok_1, ...]; each register reads out its token's latent
        # and shares its token's position.
        registers = self.register.to(tokens.dtype).expand(bsz, seqlen, width)
        x = torch.stack((registers, tokens), dim=2).reshape(bsz, 2 * seqlen, width)
        if self.dropout_vec is not None:
            x = torch.where((x.sum(-1, keepdim=True) == 0), self.dropout_vec.to(x.dtype), x)
        h = self.embed(x.to(self.embed.weight.dtype))
        rope = rope_angles(tok_idx.repeat_interleave(2, dim=1), self.config.head_dim, self.config.rope_theta)
        mask = window_mask(2 * seqlen, 2 * seqlen, self.config.encoder_window, tokens.device)
        return h, rope, mask

    def forward(self, tokens: torch.Tensor, tok_idx: torch.Tensor) -> torch.Tensor:
        """tokens [B, S, input_dim], tok_idx [B, S, 4] -> latents [B, S, latent_dim]."""
        h, (cos, sin), mask = self._embed(tokens, tok_idx)
        rope = (cos.unsqueeze(1), sin.unsqueeze(1))
        for block in self.blocks:
            h = block(h, rope, mask)
        return self.out(self.norm(h[:, 0::2]).to(self.out.weight.dtype))

    def fused_forward(self, tokens: torch.Tensor, tok_idx: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` through the Triton kernels (CUDA fast path)."""
        h, rope, mask = self._embed(tokens, tok_idx)
        h = h.contiguous()
        first = self.blocks[0]
        _, x = kernels.add_rms_norm(h, None, first.attention_norm.weight, first.attention_norm.eps,
                                    out_dtype=first.attention.wq.weight.dtype)
        for layer, block in enumerate(self.blocks):
            if layer + 1 < len(self.blocks):
                following = self.blocks[layer + 1]
                norm, dtype = following.attention_norm, following.attention.wq.weight.dtype
            else:
                norm, dtype = self.norm, self.out.weight.dtype
            h, x = block.fused_forward(h, x, rope, mask, norm.weight, norm.eps, dtype)
        return self.out(x[:, 0::2].to(self.out.weight.dtype))
