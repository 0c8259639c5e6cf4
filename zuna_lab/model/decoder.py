"""ZUNA decoder: the rectified-flow velocity field, conditioned on the latents by cross-attention.

The sampler that integrates it lives outside the model (:mod:`zuna_lab.model.sampling`).
"""
from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from .layers import AdaRMSNorm, DecoderBlock, FourierTimeEmbedding, rope_angles, window_mask


def gain_row(gains: torch.Tensor, row: int) -> torch.Tensor:
    """Row ``row`` of :meth:`Decoder.conditioning`: [dim] (shared by the batch) or [B, 1, dim]."""
    gain = gains[..., row, :]
    return gain.unsqueeze(-2) if gain.ndim == 2 else gain


class Decoder(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = c = config
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

    def gain_layers(self) -> list[nn.Linear]:
        """All AdaRMSNorm gain layers in the row order of :meth:`conditioning`."""
        return [linear for block in self.blocks for linear in block.gain_layers()] + [self.norm.gain]

    def conditioning(self, t: torch.Tensor) -> torch.Tensor:
        """AdaRMSNorm gains [..., 4 * n_layers + 1, dim] (fp32) for flow times t [...].

        Row 4 l + j is block l's (cross_x, cross_y, attention, ffn)[j] gain, the last row the
        final norm's. They depend on t alone, so the sampler forms them for every step before
        its loop.
        """
        t_emb = self.time(t.reshape(-1, 1))
        gains = torch.stack([linear(t_emb) for linear in self.gain_layers()], dim=-2)
        return gains.reshape(*t.shape, *gains.shape[-2:]).float()

    def velocity(self, z: torch.Tensor, gains: torch.Tensor, context: torch.Tensor, positions: dict) -> torch.Tensor:
        """Velocity at state z [B, S, input_dim] given ``conditioning(t)`` ([rows, dim] or [B, rows, dim])."""
        h = self.embed(z.to(self.embed.weight.dtype))
        for layer, block in enumerate(self.blocks):
            block_gains = tuple(gain_row(gains, 4 * layer + j) for j in range(4))
            h = block(h, context, block_gains, positions["rope"], positions["self_mask"], positions["cross_mask"])
        h = self.norm(h, gain_row(gains, -1))
        return self.out(h.to(self.out.weight.dtype))

    def forward(self, z: torch.Tensor, t: torch.Tensor, context: torch.Tensor, positions: dict) -> torch.Tensor:
        """Velocity at state z [B, S, input_dim] and flow time t [B] given the projected latents."""
        return self.velocity(z, self.conditioning(t), context, positions)
