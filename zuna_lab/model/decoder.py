"""ZUNA decoder: the rectified-flow velocity field, conditioned on the latents by cross-attention."""
from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from .layers import AdaRMSNorm, DecoderBlock, FourierTimeEmbedding, rope_angles, window_mask


class Decoder(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        c = config
        self.config = c
        self.embed = nn.Linear(c.input_dim, c.dim)
        self.time = FourierTimeEmbedding(c.t_dim)
        self.latent_proj = nn.Linear(c.latent_dim, c.dim)
        self.blocks = nn.ModuleList(
            DecoderBlock(c.dim, c.n_heads, c.n_kv_heads, c.head_dim, c.ffn_hidden, c.norm_eps, c.t_dim,
                         c.qk_norm, c.post_norm)
            for _ in range(c.n_layers))
        self.norm = AdaRMSNorm(c.t_dim, c.dim, c.norm_eps)
        self.out = nn.Linear(c.dim, c.input_dim, bias=False)

    def context(self, latents: torch.Tensor) -> torch.Tensor:
        """Project latents [B, S, latent_dim] to the cross-attention context; constant over all steps."""
        return self.latent_proj(latents.to(self.latent_proj.weight.dtype))

    def positions(self, tok_idx: torch.Tensor) -> dict:
        """RoPE angles and attention masks for tok_idx [B, S, 4]; constant over all steps."""
        seqlen = tok_idx.shape[1]
        cos, sin = rope_angles(tok_idx, self.config.head_dim, self.config.rope_theta)
        return dict(rope=(cos.unsqueeze(1), sin.unsqueeze(1)),
                    self_mask=window_mask(seqlen, seqlen, self.config.decoder_window, tok_idx.device),
                    cross_mask=window_mask(seqlen, seqlen, self.config.cross_window, tok_idx.device))

    def forward(self, z: torch.Tensor, t: torch.Tensor, context: torch.Tensor, positions: dict) -> torch.Tensor:
        """Velocity at state z [B, S, input_dim] and flow time t [B] given the projected latents."""
        h = self.embed(z.to(self.embed.weight.dtype))
        t_emb = self.time(t.view(-1, 1, 1))
        for block in self.blocks:
            h = block(h, context, block.gains(t_emb), positions["rope"], positions["self_mask"], positions["cross_mask"])
        h = self.norm(h, self.norm.gain(t_emb))
        return self.out(h.to(self.out.weight.dtype))
