"""The CPU fast path: the reference model with its costliest GEMMs in bf16 where the CPU has bf16 dot products.

>>> from zuna_lab.fast.cpu import CpuPolicy, build_cpu, native_bf16
>>> model = build_cpu(zuna_lab.load_model(source, device="cpu", dtype="fp32"))   # doctest: +SKIP

``zuna_lab.load_model`` does this on the CPU when :func:`native_bf16` says the processor
multiplies bf16 natively (AVX512-BF16 or AMX: Xeon Sapphire Rapids and later, Zen 4/5); elsewhere
the CPU path stays exact fp32. ``dtype="fp32"`` always gives the exact reference model.

What runs in bf16 (:class:`CpuPolicy`; inputs and weights rounded to bf16, products accumulated in
fp32 by oneDNN, on AMX tiles where there are some): the SwiGLU of the later encoder blocks and of
every decoder block, the attention of the later encoder blocks and of every decoder block.
Everything else stays as in the reference model, in fp32: the first encoder blocks, the norms,
the residual stream, the RoPE angles and the sampler state. Norms, RoPE, the post-norms' residual
adds and the fp32 SwiGLU gate run through faster fp32 forms of the same arithmetic
(:func:`rms_norm`, :func:`add_rms_normed`, :func:`rope`: fewer passes over memory, fewer fresh tensors).

Why the first encoder blocks stay fp32: their rounding reaches the latents amplified by every
block after them. Measured on 2 cores, perturbed full-size ZUNA1.1 weights, the 15 s sample:
- bf16 in encoder block 0 alone gives 1.0e-2 relative L2 on the latents, block 15 alone 1.1e-3;
- the whole encoder in bf16 gives 1.2e-2;
- the policy chosen here gives 4.8e-3.
benchmarks/results/cpu.md has the side-by-side numbers and benchmarks/cpu_notes.md what was tried.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..model.layers import AdaRMSNorm, Attention, DecoderBlock, EncoderBlock, RMSNorm, SwiGLU
from ..model.zuna import ZunaModel

__all__ = ["CpuPolicy", "Bf16SwiGLU", "CpuSwiGLU", "CpuAttention", "CpuRMSNorm", "CpuAdaRMSNorm", "CpuEncoderBlock",
           "CpuDecoderBlock", "build_cpu", "native_bf16"]


@dataclass(frozen=True)
class CpuPolicy:
    """What runs in bf16: the SwiGLU of encoder blocks from ``encoder_ffn_from`` on and of decoder
    blocks from ``decoder_ffn_from`` on; the attention (projections, RoPE'd heads, SDPA) of encoder
    blocks from ``encoder_attention_from`` on and, with ``decoder_attention_bf16``, of the decoder
    blocks from ``decoder_attention_from`` on. A number >= n_layers keeps those blocks fp32. The
    defaults are the fastest measured policy with the latents within 5e-3 and 10-step samples within
    1e-2 relative L2 of the exact path on perturbed full-size weights (benchmarks/results/cpu.md);
    issue #21's tighter margins and what they would cost: benchmarks/cpu_notes.md, fourth round."""

    encoder_ffn_from: int = 4
    encoder_attention_from: int = 8
    decoder_ffn_from: int = 0
    decoder_attention_bf16: bool = True
    decoder_attention_from: int = 0


def native_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (oneDNN's check: AVX512-BF16, AMX or AVX-NE-CONVERT).

    Examples
    --------
    >>> from zuna_lab.fast.cpu import native_bf16
    >>> native_bf16() in (True, False)
    True
    """
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):   # pragma: no cover - builds without oneDNN
        return False


class Bf16SwiGLU(nn.Module):
    """:class:`~zuna_lab.model.layers.SwiGLU` with bf16 weights (``w1`` and ``w3`` as one GEMM);
    takes and returns the caller's dtype (fp32), so the residual stream stays fp32."""

    def __init__(self, ffn: SwiGLU):
        super().__init__()
        w13 = torch.cat([ffn.w1.weight.detach(), ffn.w3.weight.detach()])
        self.w13 = nn.Parameter(w13.to(torch.bfloat16).contiguous(), requires_grad=False)
        self.w2 = nn.Parameter(ffn.w2.weight.detach().to(torch.bfloat16).contiguous(), requires_grad=False)
        self.hidden = ffn.w1.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = F.linear(x.to(torch.bfloat16), self.w13).split(self.hidden, dim=-1)
        return F.linear(F.silu(gate, inplace=True).mul_(up), self.w2).to(x.dtype)


class CpuSwiGLU(SwiGLU):
    """SwiGLU (same weights) with its gate computed in place."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.w1.weight.dtype)
        return self.w2(F.silu(self.w1(x), inplace=True).mul_(self.w3(x)))


def rms_norm(x: torch.Tensor, gain: torch.Tensor, eps: float) -> torch.Tensor:
    """:func:`zuna_lab.model.layers.rms_norm` in three passes over ``x`` instead of five (computed in
    fp32, returned in x's dtype)."""
    x32 = x.float()
    inv_rms = _inv_rms(x32, eps)
    if x32 is x:
        return (x * inv_rms).mul_(gain)
    return x32.mul_(inv_rms).mul_(gain).to(x.dtype)        # x32 is our own copy


def _inv_rms(x: torch.Tensor, eps: float) -> torch.Tensor:
    return torch.linalg.vector_norm(x, dim=-1, keepdim=True).square_().div_(x.shape[-1]).add_(eps).rsqrt_()


def add_rms_normed(h: torch.Tensor, y: torch.Tensor, norm: RMSNorm) -> torch.Tensor:
    """``h + norm(y)`` in two passes over ``y``, a temporary fp32 tensor that is scaled in place."""
    inv_rms = _inv_rms(y, norm.eps)
    return torch.addcmul(h, y.mul_(norm.weight), inv_rms)


def rope(x: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """:func:`zuna_lab.model.layers.rope` as one complex product: ``rotation = cos + i sin``."""
    pairs = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)))
    return torch.view_as_real(pairs * rotation).flatten(-2).type_as(x)


class CpuRMSNorm(RMSNorm):
    """RMSNorm (same weight) through the faster :func:`rms_norm`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight, self.eps)


class CpuAdaRMSNorm(AdaRMSNorm):
    """AdaRMSNorm (same gain layer) through the faster :func:`rms_norm`."""

    def forward(self, x: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, gain, self.eps)


class CpuAttention(Attention):
    """Attention (same weights) with RoPE as one complex product per tensor."""

    def rotate(self, q, k, angles):
        rotation = torch.complex(*angles)
        return rope(q, rotation), rope(k, rotation)


class CpuEncoderBlock(EncoderBlock):
    """EncoderBlock (same modules) whose post-norms are added to the residual stream in one pass."""

    def forward(self, h: torch.Tensor, rope: tuple, attn_mask: torch.Tensor | None) -> torch.Tensor:
        if self.attention_post_norm is None:
            return super().forward(h, rope, attn_mask)
        dtype = self.attention.wq.weight.dtype
        attention = self.attention(self.attention_norm(h).to(dtype), rope, attn_mask=attn_mask)
        h = add_rms_normed(h.float(), attention.float(), self.attention_post_norm)
        return add_rms_normed(h, self.feed_forward(self.ffn_norm(h).to(dtype)).float(), self.ffn_post_norm)


class CpuDecoderBlock(DecoderBlock):
    """DecoderBlock (same modules) whose post-norms are added to the residual stream in one pass."""

    def forward(self, h: torch.Tensor, context: torch.Tensor, gains: tuple, rope: tuple,
                self_mask: torch.Tensor | None, cross_mask: torch.Tensor | None) -> torch.Tensor:
        if self.cross_post_norm is None:
            return super().forward(h, context, gains, rope, self_mask, cross_mask)
        g_x, g_y, g_attn, g_ffn = gains
        dtype = self.attention.wq.weight.dtype
        cross = self.cross_attention(self.cross_x_norm(h, g_x).to(dtype), rope,
                                     context=self.cross_y_norm(context.float(), g_y).to(dtype), attn_mask=cross_mask)
        h = add_rms_normed(h.float(), cross.float(), self.cross_post_norm)
        attention = self.attention(self.attention_norm(h, g_attn).to(dtype), rope, attn_mask=self_mask)
        h = add_rms_normed(h, attention.float(), self.attention_post_norm)
        return add_rms_normed(h, self.feed_forward(self.ffn_norm(h, g_ffn).to(dtype)).float(), self.ffn_post_norm)


#: reference module class -> its CPU fast-path subclass (same parameters; ``forward`` or ``rotate`` differs)
_FASTER = {RMSNorm: CpuRMSNorm, AdaRMSNorm: CpuAdaRMSNorm, Attention: CpuAttention, SwiGLU: CpuSwiGLU,
            EncoderBlock: CpuEncoderBlock, DecoderBlock: CpuDecoderBlock}


def build_cpu(model: ZunaModel, policy: CpuPolicy | None = None, *, copy_model: bool = True) -> ZunaModel:
    """The CPU fast path of an fp32 reference ``model``.

    Parameters
    ----------
    model : ZunaModel
        An exact fp32 model on the CPU (``load_model(..., device="cpu", dtype="fp32")``).
    policy : CpuPolicy | None
        Which blocks' SwiGLU and attention run in bf16 (default: :class:`CpuPolicy`).
    copy_model : bool
        Build on a copy (``model`` unchanged); False changes ``model`` in place (``load_model``
        does, to hold the weights once).

    Returns
    -------
    fast : ZunaModel
        The same model class and config, ``precision == "bf16"``, ``cpu_policy`` set.

    Examples
    --------
    >>> fast = build_cpu(zuna_lab.load_model(source, device="cpu", dtype="fp32"))   # doctest: +SKIP
    >>> fast.encode(tokens, tok_idx)                                                 # doctest: +SKIP
    """
    from ..errors import ZunaValueError

    if model.device.type != "cpu" or model.precision != "fp32":
        raise ZunaValueError("build_cpu takes an fp32 model on the CPU; load it with device='cpu', dtype='fp32'.")
    policy = policy or CpuPolicy()
    fast = model
    if copy_model:
        fast = ZunaModel(model.config, encoder=copy.deepcopy(model.encoder), decoder=copy.deepcopy(model.decoder))
        fast.source, fast.revision, fast.is_random = model.source, model.revision, model.is_random
    for start, blocks in ((policy.encoder_ffn_from, fast.encoder.blocks), (policy.decoder_ffn_from, fast.decoder.blocks)):
        for index, block in enumerate(blocks):
            if index >= start:
                block.feed_forward = Bf16SwiGLU(block.feed_forward)
    # bf16 projections make the whole attention bf16 (the reference casts its input to the weights'
    # dtype): RoPE is computed in fp32 and rounded, the softmax accumulates in fp32
    attentions = [block.attention for index, block in enumerate(fast.encoder.blocks)
                  if index >= policy.encoder_attention_from]
    if policy.decoder_attention_bf16:
        attentions += [a for index, block in enumerate(fast.decoder.blocks) if index >= policy.decoder_attention_from
                       for a in (block.cross_attention, block.attention)]
    for attention in attentions:
        for name in ("wq", "wk", "wv", "wo"):
            getattr(attention, name).to(torch.bfloat16)
    for module in fast.modules():
        if type(module) in _FASTER:
            module.__class__ = _FASTER[type(module)]      # same parameters and buffers, the faster forward
    fast.precision, fast.cpu_policy = "bf16", policy
    return fast.eval()
