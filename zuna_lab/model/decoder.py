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
        self.gain_stack = None  # (weight, bias) of all AdaRMSNorm gain layers at once (see fuse())

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
        if self.gain_stack is not None:         # one GEMM for all of them (see fuse())
            gains = torch.nn.functional.linear(t_emb, *self.gain_stack).unflatten(-1, (-1, self.config.dim))
        else:
            gains = torch.stack([linear(t_emb) for linear in self._gain_layers()], dim=-2)
        return gains.reshape(*t.shape, *gains.shape[-2:]).float()

    def _gain_layers(self) -> list:
        return [linear for block in self.blocks for linear in block.gain_layers()] + [self.norm.gain]

    def fuse(self):
        """Stack the 4 n_layers + 1 gain layers' weights, for one GEMM in :meth:`conditioning`."""
        layers = self._gain_layers()
        self.gain_stack = (torch.cat([linear.weight for linear in layers]).detach(),
                           torch.cat([linear.bias for linear in layers]).detach())

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
    # The cross-attention context latent_proj(latents) = [latents, 1] @ [W, b].T has rank
    # latent_dim + 1, and an RMS norm only rescales its rows: rms_norm(context) * g ==
    # (r * [latents, 1]) @ (g * [W, b]).T with r = 1 / rms(context). Block l's keys and values at a
    # step are then the 33-wide factor r * [latents, 1] (zero-padded to 64) times
    # P = W_kv @ (g * [W, b]) — a K = 64 product per step instead of re-projecting the 1024-wide
    # context (K = 1024), the same numbers in exact arithmetic, and all blocks' K/V come out of one
    # launch (kernels.lowrank_kv).

    def context_factor(self, latents: torch.Tensor) -> torch.Tensor:
        """F [B, S, width] fp32 with ``rms_norm(context(latents)) == F @ basis.T`` (see :meth:`cross_kv_weights`)."""
        latents = latents.float()
        context = self.context(latents).float()
        scale = torch.rsqrt(context.pow(2).mean(-1, keepdim=True) + self.blocks[0].cross_y_norm.eps)
        n_latent = latents.shape[-1]
        factor = latents.new_zeros(*latents.shape[:-1], _factor_width(n_latent))
        factor[..., :n_latent] = latents * scale
        factor[..., n_latent:n_latent + 1] = scale
        return factor

    def cross_kv_weights(self, gains: torch.Tensor) -> torch.Tensor:
        """P [steps, n_layers, 2 * kv_width, width] fp32: every block's K/V weight for the context factor,
        ``W_kv @ (g * basis)`` with the cross_y gains g of ``conditioning()`` rows [steps, rows, dim]."""
        proj = self.latent_proj
        n_latent = proj.weight.shape[1]
        basis = proj.weight.new_zeros(proj.weight.shape[0], _factor_width(n_latent), dtype=torch.float32)
        basis[:, :n_latent] = proj.weight
        basis[:, n_latent] = proj.bias
        steps, n_layers = gains.shape[0], len(self.blocks)
        scaled = gains[:, 1:4 * n_layers:4, :, None].float() * basis            # [steps, L, dim, width]
        scaled = scaled.permute(1, 2, 0, 3).reshape(n_layers, basis.shape[0], -1)
        wkv = torch.stack([block.cross_attention.wkv for block in self.blocks]).float()
        out = torch.bmm(wkv, scaled)                                             # [L, 2 kv, steps * width]
        return out.view(n_layers, wkv.shape[1], steps, -1).permute(2, 0, 1, 3).contiguous()

    def cross_k_gains(self) -> torch.Tensor | None:
        """The blocks' cross-attention key QK-norm gains [n_layers, head_dim] (None without QK-norm)."""
        if self.blocks[0].cross_attention.k_norm is None:
            return None
        return torch.stack([block.cross_attention.k_norm.weight for block in self.blocks])

    def fused_cross_kv(self, factor: torch.Tensor, weights: torch.Tensor, positions: dict,
                       k_gains: torch.Tensor | None, *, tf32: bool) -> list:
        """Every block's cross-attention (k, v), each [B, S, kv_heads, D], of one step:
        ``factor`` [B, S, width] times that step's ``weights`` [n_layers, 2 * kv_width, width], then
        QK-norm and RoPE of the keys, in one kernel. ``tf32``: the product may run as TF32."""
        c = self.config
        attention = self.blocks[0].cross_attention
        heads = dict(n_q=0, n_k=c.n_kv_heads, n_v=c.n_kv_heads, head_dim=c.head_dim, k_gain=k_gains,
                     out_dtype=attention.sdpa_dtype or attention.wq.weight.dtype)
        rope = positions["rope_flat"]
        if kernels.gemm_fusable(factor.shape[-1], c.head_dim, block_k=16):
            keys, values = kernels.lowrank_kv(factor, weights, *rope, n_kv=c.n_kv_heads, head_dim=c.head_dim,
                                              k_gain=k_gains, out_dtype=heads["out_dtype"], tf32=tf32)
            return list(zip(keys, values))
        # sizes the kernel does not take (head_dim < 16): the product, then the per-block rope kernel
        projected = torch.matmul(factor, weights.transpose(1, 2).unsqueeze(1))   # [L, B, S, 2 kv]
        return [tuple(kernels.rope_heads(projected[layer], *rope,
                                         **{**heads, "k_gain": None if k_gains is None else k_gains[layer]}))
                for layer in range(len(self.blocks))]

    def fused_velocity(self, z: torch.Tensor, gains: torch.Tensor, positions: dict, cross_kv: list) -> torch.Tensor:
        """:meth:`velocity` through the Triton kernels; gains [rows, dim] of one step (shared by the
        batch), cross_kv this step's per-block (k, v) from :meth:`fused_cross_kv`."""
        rope = positions["rope_flat"]
        dtype = self.blocks[0].attention.wq.weight.dtype
        h = self.embed(z.to(self.embed.weight.dtype)).contiguous()
        _, x = kernels.add_rms_norm(h, None, gains[0], self.blocks[0].cross_x_norm.eps, out_dtype=dtype)
        last = len(self.blocks) - 1
        for layer, block in enumerate(self.blocks):
            if layer < last:
                following = (gains[4 * layer + 4], self.blocks[layer + 1].cross_x_norm.eps, dtype)
            else:
                following = (gains[-1], self.norm.eps, torch.float32)
            h, x = block.fused_forward(h, x, cross_kv[layer], gains[4 * layer + 2], gains[4 * layer + 3], rope,
                                       positions["self_mask"], positions["cross_mask"], *following)
        return self.out(x.to(self.out.weight.dtype))


def _factor_width(n_latent: int) -> int:
    """Columns of the context factor: the latents and the bias column, zero-padded to a power of 2
    (at least 16), so that the K/V kernel takes a factor row as one tile."""
    return max(16, 1 << n_latent.bit_length())
