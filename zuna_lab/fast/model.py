"""The fast encoder, decoder and model, built from a loaded reference model (:func:`build`)."""
from __future__ import annotations

import contextlib
import copy
import functools

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ZunaTypeError, ZunaValueError, warn
from ..model import encoder as reference_encoder
from ..model.decoder import Decoder
from ..model.encoder import Encoder
from ..model.layers import rope_angles, window_mask
from ..model.zuna import ZunaModel
from . import kernels, runner, warmup
from .blocks import FastDecoderBlock, FastEncoderBlock, frozen, norm_copy
from .options import PRECISIONS, FastOptions


class FastEncoder(nn.Module):
    """:class:`~zuna_lab.model.encoder.Encoder` through the Triton kernels.

    ``attention_dtype``: the dtype of the attention projections (fp32, run as TF32, in the bf16
    policy: the encoder's rounding errors reach every decoder step through the latents).
    """

    def __init__(self, encoder: Encoder, dtype: torch.dtype, attention_dtype: torch.dtype):
        super().__init__()
        self.config = encoder.config
        self.embed = copy.deepcopy(encoder.embed)
        self.register = frozen(encoder.register, dtype=torch.float32)
        self.dropout_vec = None if encoder.dropout_vec is None else frozen(encoder.dropout_vec, dtype=torch.float32)
        self.blocks = nn.ModuleList(FastEncoderBlock(block, dtype, attention_dtype) for block in encoder.blocks)
        self.norm = norm_copy(encoder.norm)
        self.out = copy.deepcopy(encoder.out)

    def forward(self, tokens: torch.Tensor, tok_idx: torch.Tensor) -> torch.Tensor:
        """tokens [B, S, input_dim], tok_idx [B, S, 4] -> latents [B, S, latent_dim]."""
        x = reference_encoder.with_registers(tokens, self.register, self.dropout_vec)
        h = self.embed(x.to(self.embed.weight.dtype)).contiguous()
        rope, mask = reference_encoder.positions(tok_idx, self.config)
        first = self.blocks[0]
        _, x = kernels.add_rms_norm(h, None, first.attention_norm.weight, first.attention_norm.eps,
                                    out_dtype=first.attention.wqkv.dtype)
        for layer, block in enumerate(self.blocks):
            if layer + 1 < len(self.blocks):
                following = self.blocks[layer + 1]
                norm, dtype = following.attention_norm, following.attention.wqkv.dtype
            else:
                norm, dtype = self.norm, self.out.weight.dtype
            h, x = block(h, x, rope, mask, norm.weight, norm.eps, dtype)
        return self.out(x[:, 0::2].to(self.out.weight.dtype))


class FastDecoder(nn.Module):
    """:class:`~zuna_lab.model.decoder.Decoder` through the Triton kernels, with the conditioning
    of all steps in one GEMM and the cross-attention keys and values from the rank-33 context.

    The context ``latent_proj(latents) = [latents, 1] @ [W, b].T`` has rank latent_dim + 1, and an
    RMS norm only rescales its rows: ``rms_norm(context) * g == (r * [latents, 1]) @ (g * [W, b]).T``
    with ``r = 1 / rms(context)``. Block l's keys and values at a step are then the 33-wide factor
    ``r * [latents, 1]`` (zero-padded to 64) times ``P = W_kv @ (g * [W, b])`` — a K = 64 product
    per step instead of re-projecting the 1024-wide context (K = 1024), the same numbers in exact
    arithmetic, and all blocks' K/V come out of one launch per dtype (:func:`kernels.lowrank_kv`;
    in "mixed" the first ``fp16_blocks`` blocks are fp16, the others bf16).
    """

    def __init__(self, decoder: Decoder, dtype: torch.dtype, *, fp16_blocks: int = 0,
                 kv_weight_dtype: torch.dtype | None = None):
        super().__init__()
        self.config = c = decoder.config
        self.embed = copy.deepcopy(decoder.embed)
        self.time = copy.deepcopy(decoder.time)
        self.latent_proj = copy.deepcopy(decoder.latent_proj)
        self.cross_y_eps = decoder.blocks[0].cross_y_norm.eps
        self.blocks = nn.ModuleList(FastDecoderBlock(block, torch.float16 if layer < fp16_blocks else dtype)
                                    for layer, block in enumerate(decoder.blocks))
        self.norm_eps = decoder.norm.eps
        self.out = copy.deepcopy(decoder.out)
        # every AdaRMSNorm gain layer as one [(4 n_layers + 1) dim, t_dim] GEMM
        layers = decoder.gain_layers()
        self.gain_weight = frozen(*(linear.weight for linear in layers), dtype=torch.float32)
        self.gain_bias = frozen(*(linear.bias for linear in layers), dtype=torch.float32)
        # every block's cross-attention [wk; wv], [n_layers, 2 kv_width, dim], and key QK-norm gain
        cross = [block.cross_attention for block in decoder.blocks]
        # (only ever used in fp32, once per CROSS_KV_CHUNK steps: its storage dtype is its rounding)
        self.cross_wkv = frozen(*(torch.cat([a.wk.weight, a.wv.weight])[None] for a in cross),
                                dtype=kv_weight_dtype or dtype)
        self.cross_k_gain = (None if cross[0].k_norm is None
                             else frozen(*(a.k_norm.weight[None] for a in cross), dtype=torch.float32))
        self.factor_width = max(16, 1 << c.latent_dim.bit_length())    # latents + bias column, a power of 2

    def positions(self, tok_idx: torch.Tensor) -> dict:
        """RoPE angles (cos, sin) [B, S, head_dim // 2] and attention masks; constant over all steps."""
        seqlen = tok_idx.shape[1]
        return dict(rope=rope_angles(tok_idx, self.config.head_dim, self.config.rope_theta),
                    self_mask=window_mask(seqlen, seqlen, self.config.decoder_window, tok_idx.device),
                    cross_mask=window_mask(seqlen, seqlen, self.config.cross_window, tok_idx.device))

    def conditioning(self, t: torch.Tensor) -> torch.Tensor:
        """:meth:`Decoder.conditioning <zuna_lab.model.decoder.Decoder.conditioning>` as one GEMM."""
        t_emb = self.time(t.reshape(-1, 1))
        gains = F.linear(t_emb, self.gain_weight, self.gain_bias).unflatten(-1, (-1, self.config.dim))
        return gains.reshape(*t.shape, *gains.shape[-2:]).float()

    def context_factor(self, latents: torch.Tensor) -> torch.Tensor:
        """F [B, S, factor_width] fp32 with ``rms_norm(latent_proj(latents)) == F @ [W, b, 0].T``."""
        latents = latents.float()
        context = self.latent_proj(latents.to(self.latent_proj.weight.dtype)).float()
        scale = torch.rsqrt(context.pow(2).mean(-1, keepdim=True) + self.cross_y_eps)
        n_latent = latents.shape[-1]
        factor = latents.new_zeros(*latents.shape[:-1], self.factor_width)
        factor[..., :n_latent] = latents * scale
        factor[..., n_latent:n_latent + 1] = scale
        return factor

    def cross_kv_weights(self, gains: torch.Tensor) -> torch.Tensor:
        """P [steps, n_layers, 2 * kv_width, factor_width] fp32: every block's K/V weight for the context
        factor, ``W_kv @ (g * [W, b, 0])`` with the cross_y gains g of ``conditioning()`` rows [steps, rows, dim]."""
        proj = self.latent_proj
        n_latent = proj.weight.shape[1]
        basis = proj.weight.new_zeros(proj.weight.shape[0], self.factor_width, dtype=torch.float32)
        basis[:, :n_latent] = proj.weight
        basis[:, n_latent] = proj.bias
        steps, n_layers = gains.shape[0], len(self.blocks)
        scaled = gains[:, 1:4 * n_layers:4, :, None].float() * basis            # [steps, L, dim, width]
        scaled = scaled.permute(1, 2, 0, 3).reshape(n_layers, basis.shape[0], -1)
        wkv = self.cross_wkv.float()
        out = torch.bmm(wkv, scaled)                                             # [L, 2 kv, steps * width]
        return out.view(n_layers, wkv.shape[1], steps, -1).permute(2, 0, 1, 3).contiguous()

    def heads_dtypes(self) -> list:
        """Each block's dtype of its cross-attention keys and values: that of its query projection."""
        return [block.cross_attention.wq.dtype for block in self.blocks]

    def cross_kv(self, factor: torch.Tensor, weights: torch.Tensor, positions: dict) -> list:
        """Every block's cross-attention (k, v), each [B, S, kv_heads, D], of one step: ``factor``
        [B, S, width] times that step's ``weights`` [n_layers, 2 * kv_width, width], then QK-norm and
        RoPE of the keys, in one kernel per run of blocks of one dtype (fp16 blocks first, then bf16)."""
        c = self.config
        rope = positions["rope"]
        dtypes = self.heads_dtypes()
        gains = self.cross_k_gain
        if kernels.head_fits(c.head_dim):
            pairs, first = [], 0
            while first < len(dtypes):
                stop = first + 1
                while stop < len(dtypes) and dtypes[stop] == dtypes[first]:
                    stop += 1
                keys, values = kernels.lowrank_kv(factor, weights[first:stop], *rope, n_kv=c.n_kv_heads,
                                                  head_dim=c.head_dim, out_dtype=dtypes[first],
                                                  k_gain=None if gains is None else gains[first:stop])
                pairs += zip(keys, values)
                first = stop
            return pairs
        # sizes the kernel does not take (head_dim < 16): the product, then the per-block rope kernel
        projected = torch.matmul(factor, weights.transpose(1, 2).unsqueeze(1))   # [L, B, S, 2 kv]
        return [tuple(kernels.rope_heads(projected[layer], *rope, n_q=0, n_k=c.n_kv_heads, n_v=c.n_kv_heads,
                                         head_dim=c.head_dim, k_gain=None if gains is None else gains[layer],
                                         out_dtype=dtypes[layer]))
                for layer in range(len(self.blocks))]

    def velocity(self, z: torch.Tensor, gains: torch.Tensor, positions: dict, cross_kv: list) -> torch.Tensor:
        """Velocity at state z [B, S, input_dim]; gains [rows, dim] of one step (shared by the batch),
        cross_kv this step's per-block (k, v) from :meth:`cross_kv`."""
        rope = positions["rope"]
        h = self.embed(z.to(self.embed.weight.dtype)).contiguous()
        _, x = kernels.add_rms_norm(h, None, gains[0], self.blocks[0].cross_x_eps,
                                    out_dtype=self.blocks[0].cross_attention.wq.dtype)
        last = len(self.blocks) - 1
        for layer, block in enumerate(self.blocks):
            if layer < last:
                following = self.blocks[layer + 1]
                following = (gains[4 * layer + 4], following.cross_x_eps, following.cross_attention.wq.dtype)
            else:
                following = (gains[-1], self.norm_eps, torch.float32)
            h, x = block(h, x, cross_kv[layer], gains[4 * layer + 2], gains[4 * layer + 3], rope,
                         positions["self_mask"], positions["cross_mask"], *following)
        return self.out(x.to(self.out.weight.dtype))


class FastZunaModel(ZunaModel):
    """A :class:`~zuna_lab.model.ZunaModel` whose encode and sample run the CUDA fast path.

    Built by :func:`build` (``load_model`` does it on CUDA): same API, same parameter count, its
    weights fused and converted once (the reference's copies are not kept). Its precision is fixed
    when it is built.
    """

    def __init__(self, reference: ZunaModel, options: FastOptions):
        encoder_dtype, decoder_dtype = PRECISIONS[options.precision]
        # bf16 keeps the encoder's attention projections in fp32 (run as TF32: bf16's rounding
        # there costs the latents too much); fp16 rounds as finely as TF32 at twice its speed
        attention_dtype = torch.float32 if encoder_dtype == torch.bfloat16 else encoder_dtype
        fp16_blocks = options.decoder_fp16_blocks if options.precision == "mixed" else 0
        kv_weight_dtype = torch.float16 if options.precision in ("mixed", "fp16") else decoder_dtype
        decoder = FastDecoder(reference.decoder, decoder_dtype, fp16_blocks=fp16_blocks,
                              kv_weight_dtype=kv_weight_dtype)
        super().__init__(reference.config, encoder=FastEncoder(reference.encoder, encoder_dtype, attention_dtype),
                         decoder=decoder)
        self.options = options
        self.precision = options.precision
        self.source, self.revision, self.is_random = reference.source, reference.revision, reference.is_random
        self._graphs = runner.Graphs()
        self._warmup = warmup.Warmup()          # build() starts the compilation where it is needed
        self._twin_graphs = False               # graphs captured with the kernels' twins are kept
        self._kv_weights = None                 # the sampler steps' cross-attention K/V weights (runner)

    def _graphed(self) -> bool:
        return self.options.cuda_graphs and self.device.type == "cuda"

    @property
    def encode_bytes_per_token(self) -> int:
        """GPU memory the encoder holds per input token at its peak, a third to spare (what
        :func:`~zuna_lab.pipeline.batching.auto_batch_size` sizes embedding batches by). Measured on an
        H100, full-size ZUNA1.1, 16-bit operands: 124 MiB per epoch of 64 channels (2,560 tokens and as
        many registers), i.e. 24 bytes per position and model dimension (benchmarks/results/precision.md,
        sixth session); fp32 activations take twice that."""
        return 2 * self.config.dim * (64 if self.precision == "fp32" else 32)

    def kernels_ready(self, *, wait: bool = False) -> bool:
        """Whether calls run the Triton kernels, not their PyTorch twins (which stand in while the
        kernels compile in the background on a machine's first use, :mod:`zuna_lab.fast.warmup`);
        ``wait=True`` waits for the compilation to end first."""
        if wait:
            self._warmup.wait()
        return self._warmup.ready()

    @torch.no_grad()
    def prime(self, *, channels: int = 12, tokens_per_channel: int = 40) -> "FastZunaModel":
        """Run the encoder and one sampler step once on zeros (``channels`` x ``tokens_per_channel``
        tokens: one 5 s epoch of 12 channels), eagerly and without CUDA graphs, through the kernels if
        they are compiled, else their twins: what a process's first call would pay once (cuBLAS and
        cuDNN handles, SDPA's backends, torch's lazily imported modules, kernels loaded from Triton's
        cache) is paid here, where :func:`zuna_lab.load_model` calls it while MNE imports on its
        thread. Nothing is kept. Returns the model."""
        seqlen = channels * tokens_per_channel
        tokens = torch.zeros(1, seqlen, self.config.input_dim, device=self.device)
        tok_idx = torch.zeros(1, seqlen, 4, dtype=torch.long, device=self.device)
        tok_idx[0, :, 3] = torch.arange(seqlen, device=self.device) % tokens_per_channel
        tf32 = self.precision != "fp32"
        with runner.gemm_flags(tf32=tf32), self._kernels_or_twins():
            latents = self.encoder(tokens, tok_idx)
            runner.sample(self.decoder, latents.float(), tok_idx, torch.zeros_like(tokens), steps=1, cfg=1.0,
                          tf32=tf32)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return self

    def _encode(self, tokens: torch.Tensor, tok_idx: torch.Tensor) -> torch.Tensor:
        return self._without_overflow(self._encode_once, tokens, tok_idx, fp16=self.precision in ("mixed", "fp16"))

    def _encode_once(self, tokens: torch.Tensor, tok_idx: torch.Tensor) -> torch.Tensor:
        # the encoder's fp32 GEMMs (token embedding and output; bf16's attention projections) run as TF32
        with runner.gemm_flags(tf32=self.precision != "fp32"), self._kernels_or_twins() as tag:
            if self._graphed() and tokens.shape[0] * tokens.shape[1] <= runner.GRAPH_ENCODE_TOKENS:
                return self._graphs(("encode", tag, tuple(tokens.shape)), self.encoder, (tokens, tok_idx))
            return self.encoder(tokens, tok_idx)

    def _sample(self, latents, tok_idx, z, steps: int, cfg: float, callback=None) -> torch.Tensor:
        # a decoder without fp16 blocks (bf16 "mixed"): nothing to check (and no device sync)
        fp16 = torch.float16 in self.decoder.heads_dtypes()
        return self._without_overflow(self._sample_once, latents, tok_idx, z, fp16=fp16,
                                      steps=steps, cfg=cfg, callback=callback)

    def _sample_once(self, latents, tok_idx, z, *, steps: int, cfg: float, callback=None) -> torch.Tensor:
        tf32 = self.precision != "fp32"
        with self._kernels_or_twins() as tag:
            if not self._graphed():
                return runner.sample(self.decoder, latents, tok_idx, z, steps=steps, cfg=cfg, tf32=tf32,
                                     callback=callback)
            whole, step_key = ("sample", tuple(z.shape), steps, cfg), ("step", tag, tuple(z.shape), steps, cfg)
            if tag == "kernels" and (whole in self._graphs or self._graphs.get(step_key) is not None):
                # a shape sampled before: the whole call as one graph, captured on its second call
                # (every step's launches: a second or so, once), which replays faster than the steps
                self._graphs.drop(step_key)
                run = functools.partial(runner.sample, self.decoder, steps=steps, cfg=cfg, tf32=tf32)
                one_step = functools.partial(runner.sample, self.decoder, steps=1, cfg=cfg, tf32=tf32)
                out = self._graphs(whole, run, (latents, tok_idx, z), warmup=one_step)
                if callback is not None:
                    callback(steps, steps)
                return out
            if self._kv_weights is None:
                decoder = self.decoder
                self._kv_weights = torch.empty(runner.CROSS_KV_CHUNK, len(decoder.blocks), decoder.cross_wkv.shape[1],
                                               decoder.factor_width, device=z.device)
            return runner.sample_stepwise(self.decoder, latents, tok_idx, z, steps=steps, cfg=cfg, tf32=tf32,
                                          graphs=self._graphs, kv_weights=self._kv_weights, tag=tag,
                                          callback=callback)

    @contextlib.contextmanager
    def _kernels_or_twins(self):
        """The Triton kernels once compiled (graphs captured with the twins are dropped then), their
        PyTorch twins before (or inside :func:`zuna_lab.fast.kernels.eager`); yields which, for the
        graphs' keys."""
        if kernels.eager_active():
            yield "twins"
            return
        if self._warmup.ready():
            if self._twin_graphs:
                self._graphs.clear()
                self._twin_graphs = False
            yield "kernels"
            return
        self._twin_graphs = True
        with kernels.eager():
            yield "twins"

    def _without_overflow(self, run, values: torch.Tensor, *args, fp16: bool, **kwargs) -> torch.Tensor:
        """``run(values, ...)``; when it ran in fp16 (``fp16``), a non-finite result of finite inputs means that an
        activation overflowed fp16's range: the model turns to bf16 (with a warning) and runs the call again."""
        out = run(values, *args, **kwargs)
        if fp16 and not bool(torch.isfinite(out).all()) and bool(torch.isfinite(values).all()):
            warn("An activation overflowed fp16's range (beyond 65504) on this input: the model now computes "
                          "in bf16, and this call was run again in it. Load the model with dtype='bf16' to start "
                          "there, or dtype='fp32' for the exact path.")
            self._retype(torch.float16, torch.bfloat16)
            self.precision = "bf16"
            out = run(values, *args, **kwargs)
        return out

    def _retype(self, old: torch.dtype, new: torch.dtype):
        """Every weight and head buffer of dtype ``old`` to ``new``, in place (captured graphs are dropped)."""
        self.clear_graphs()
        for module in self.modules():
            for param in module.parameters(recurse=False):
                if param.dtype == old:
                    param.data = param.data.to(new)
            if getattr(module, "heads_dtype", None) == old:
                module.heads_dtype = new

    def clear_graphs(self) -> "FastZunaModel":
        """Release the captured CUDA graphs and their buffers (they are captured again when needed)."""
        self._graphs.clear()
        self._kv_weights = None
        return self

    def set_precision(self, precision: str) -> "FastZunaModel":
        if precision != self.precision:
            raise ZunaValueError(f"The fast model's precision is fixed when it is built ({self.precision}); "
                                 f"load the model again with dtype={precision!r} instead.")
        return self

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        raise ZunaValueError("The fast model holds fused weights and cannot load a state dict; load the checkpoint "
                             "with zuna_lab.load_model (or build a new one from a reference model).")

    def _apply(self, fn, recurse=True):
        # .to() / .cuda() move the weights: graphs captured on the old tensors must not be replayed
        if hasattr(self, "_graphs"):
            self.clear_graphs()
        return super()._apply(fn, recurse)


def available(device) -> bool:
    """Whether the fast path can run on ``device`` (Triton, and CUDA or ``TRITON_INTERPRET=1``)."""
    return kernels.available(torch.device(device))


def build(model: ZunaModel, options: FastOptions | None = None) -> FastZunaModel:
    """The CUDA fast path of a loaded reference model.

    Parameters
    ----------
    model : ZunaModel
        The reference model in fp32 (``load_model(..., dtype="fp32")``), on the device to run on.
        It is left as it was; once it is dropped, only the fast model's weights stay allocated.
    options : FastOptions | None
        None: the defaults (what ``load_model`` builds on CUDA in bf16).

    Returns
    -------
    FastZunaModel

    Examples
    --------
    >>> import zuna_lab as zl
    >>> from zuna_lab.fast import FastOptions, build
    >>> exact = zl.load_model("Zyphra/ZUNA1.1", device="cuda", dtype="fp32")         # doctest: +SKIP
    >>> fast = build(exact, FastOptions(cuda_graphs=False))                          # doctest: +SKIP
    """
    options = FastOptions() if options is None else options
    if not isinstance(options, FastOptions):
        raise ZunaTypeError(f"options must be a FastOptions, not {type(options).__name__}.")
    if not isinstance(model, ZunaModel) or isinstance(model, FastZunaModel):
        raise ZunaTypeError(f"build() takes a reference ZunaModel from zuna_lab.load_model, not {type(model).__name__}.")
    if model.precision != "fp32":
        raise ZunaValueError("build() needs the reference model's exact weights: load it with dtype='fp32'.")
    if not available(model.device):
        raise ZunaValueError(f"The fast path needs Triton and a CUDA device (or TRITON_INTERPRET=1 for tests on "
                             f"the CPU); the model is on {model.device}.")
    with torch.no_grad():
        fast = FastZunaModel(model, options).eval().requires_grad_(False)
    fast._warmup = warmup.start(fast)
    return fast
