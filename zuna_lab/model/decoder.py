"""ZUNA decoder: the rectified-flow velocity field, conditioned on the latents by cross-attention."""
from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from . import kernels
from .layers import AdaRMSNorm, DecoderBlock, FourierTimeEmbedding, rope_angles, window_mask


def _gain(gains: torch.Tensor, row: int) -> torch.Tensor:
    """Row ``row`` of conditioning(): [dim] (shared by the batch) or [B, 1, dim]."""
    gain = gains[..., row, :]
    return gain.unsqueeze(-2) if gain.ndim == 2 else gain


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
        return dict(rope=(cos.unsqueeze(1), sin.unsqueeze(1)), rope_flat=(cos, sin),
                    self_mask=window_mask(seqlen, seqlen, self.config.decoder_window, tok_idx.device),
                    cross_mask=window_mask(seqlen, seqlen, self.config.cross_window, tok_idx.device))

    def conditioning(self, t: torch.Tensor) -> torch.Tensor:
        """AdaRMSNorm gains [..., 4 * n_layers + 1, dim] (fp32) for flow times t [...].

        Row 4 l + j is block l's (cross_x, cross_y, attention, ffn)[j] gain, the last row the
        final norm's. They depend on t alone, so the sampler forms them for every step before
        its loop instead of 65 small GEMMs per step.
        """
        t_emb = self.time(t.reshape(-1, 1))
        layers = [linear for block in self.blocks for linear in block.gain_layers()] + [self.norm.gain]
        gains = torch.stack([linear(t_emb) for linear in layers], dim=-2)
        return gains.reshape(*t.shape, *gains.shape[-2:]).float()

    def velocity(self, z: torch.Tensor, gains: torch.Tensor, context: torch.Tensor, positions: dict) -> torch.Tensor:
        """Velocity at state z [B, S, input_dim] given ``conditioning(t)`` ([rows, dim] or [B, rows, dim])."""
        h = self.embed(z.to(self.embed.weight.dtype))
        for layer, block in enumerate(self.blocks):
            block_gains = tuple(_gain(gains, 4 * layer + j) for j in range(4))
            h = block(h, context, block_gains, positions["rope"], positions["self_mask"], positions["cross_mask"])
        h = self.norm(h, _gain(gains, -1))
        return self.out(h.to(self.out.weight.dtype))

    def forward(self, z: torch.Tensor, t: torch.Tensor, context: torch.Tensor, positions: dict) -> torch.Tensor:
        """Velocity at state z [B, S, input_dim] and flow time t [B] given the projected latents."""
        return self.velocity(z, self.conditioning(t), context, positions)

    # --- Triton fast path (CUDA) ---------------------------------------------------------------

    def fused_cross_kv(self, context: torch.Tensor, gains: torch.Tensor, positions: dict) -> list:
        """Cross-attention (k, v) of every block for every step at once: each [steps, B, S, H, D].

        ``gains`` is conditioning() of all steps [steps, rows, dim]. The keys and values depend on
        the flow time only through the cross_y AdaRMSNorm gain, so when they fit in memory one
        wide GEMM per block replaces ``steps`` narrow ones inside the loop (the latency case).
        """
        steps = gains.shape[0]
        bsz, seqlen, dim = context.shape
        repeated = context.reshape(1, bsz * seqlen, dim).expand(steps, -1, -1).contiguous()
        rope = tuple(a.reshape(1, bsz * seqlen, -1).expand(steps, -1, -1).contiguous() for a in positions["rope_flat"])
        out = []
        for layer, block in enumerate(self.blocks):
            k, v = block.fused_cross_kv(repeated, gains[:, 4 * layer + 1], rope)
            out.append((k.view(steps, bsz, seqlen, *k.shape[2:]), v.view(steps, bsz, seqlen, *v.shape[2:])))
        return out

    def normed_context(self, context: torch.Tensor) -> torch.Tensor:
        """``rms_norm(context)`` without the cross_y gain, in the GEMM dtype (Triton path)."""
        block = self.blocks[0]
        ones = torch.ones(context.shape[-1], device=context.device)
        _, x = kernels.add_rms_norm(context.contiguous(), None, ones, block.cross_y_norm.eps,
                                    out_dtype=block.cross_attention.wkv.dtype)
        return x

    def fused_velocity(self, z: torch.Tensor, gains: torch.Tensor, positions: dict,
                       cross_kv: list | torch.Tensor) -> torch.Tensor:
        """:meth:`velocity` through the Triton kernels; gains [rows, dim] of one step (shared by the batch).

        cross_kv: this step's per-block (k, v) from :meth:`fused_cross_kv`, or ``rms_norm(context)``
        without gain (:meth:`normed_context`), from which they are formed here.
        """
        rope = positions["rope_flat"]
        dtype = self.blocks[0].attention.wq.weight.dtype
        h = self.embed(z.to(self.embed.weight.dtype)).contiguous()
        _, x = kernels.add_rms_norm(h, None, gains[0], self.blocks[0].cross_x_norm.eps, out_dtype=dtype)
        last = len(self.blocks) - 1
        for layer, block in enumerate(self.blocks):
            if isinstance(cross_kv, list):
                kv = cross_kv[layer]
            else:
                kv = block.fused_cross_kv_step(cross_kv, gains[4 * layer + 1], rope)
            if layer < last:
                following = (gains[4 * layer + 4], self.blocks[layer + 1].cross_x_norm.eps, dtype)
            else:
                following = (gains[-1], self.norm.eps, torch.float32)
            h, x = block.fused_forward(h, x, kv, gains[4 * layer + 2], gains[4 * layer + 3], rope,
                                       positions["self_mask"], positions["cross_mask"], *following)
        return self.out(x.to(self.out.weight.dtype))
