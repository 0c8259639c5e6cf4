"""ZUNA encoder: a register before every token, bidirectional 4-D RoPE transformer, one latent per token."""
from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from .layers import EncoderBlock, RMSNorm, rope_angles, window_mask


def with_registers(tokens: torch.Tensor, register: torch.Tensor, dropout_vec: torch.Tensor | None) -> torch.Tensor:
    """The encoder's input sequence [reg, tok_0, reg, tok_1, ...] [B, 2 S, W] of tokens [B, S, W].

    Each register reads out its token's latent and shares its token's position. With a learned
    ``dropout_vec``, zeroed (masked) entries of the sequence are replaced by it.
    """
    bsz, seqlen, width = tokens.shape
    registers = register.to(tokens.dtype).expand(bsz, seqlen, width)
    x = torch.stack((registers, tokens), dim=2).reshape(bsz, 2 * seqlen, width)
    if dropout_vec is not None:
        x = torch.where((x.sum(-1, keepdim=True) == 0), dropout_vec.to(x.dtype), x)
    return x


def positions(tok_idx: torch.Tensor, config: ModelConfig) -> tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor | None]:
    """RoPE angles (cos, sin) [B, 2 S, head_dim // 2] of the register-interleaved sequence, and its window mask."""
    angles = rope_angles(tok_idx.repeat_interleave(2, dim=1), config.head_dim, config.rope_theta)
    seqlen = 2 * tok_idx.shape[1]
    return angles, window_mask(seqlen, seqlen, config.encoder_window, tok_idx.device)


class Encoder(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = c = config
        self.embed = nn.Linear(c.input_dim, c.dim)
        self.register = nn.Parameter(torch.zeros(1, c.input_dim))
        self.dropout_vec = nn.Parameter(torch.zeros(1, c.input_dim)) if c.learned_dropout else None
        self.blocks = nn.ModuleList(
            EncoderBlock(c.dim, c.n_heads, c.n_kv_heads, c.head_dim, c.ffn_hidden, c.norm_eps, c.qk_norm, c.post_norm)
            for _ in range(c.n_layers))
        self.norm = RMSNorm(c.dim, c.norm_eps)
        self.out = nn.Linear(c.dim, c.latent_dim, bias=False)

    def forward(self, tokens: torch.Tensor, tok_idx: torch.Tensor) -> torch.Tensor:
        """tokens [B, S, input_dim], tok_idx [B, S, 4] -> latents [B, S, latent_dim]."""
        h = self.embed(with_registers(tokens, self.register, self.dropout_vec).to(self.embed.weight.dtype))
        (cos, sin), mask = positions(tok_idx, self.config)
        rope = (cos.unsqueeze(1), sin.unsqueeze(1))
        for block in self.blocks:
            h = block(h, rope, mask)
        return self.out(self.norm(h[:, 0::2]).to(self.out.weight.dtype))
