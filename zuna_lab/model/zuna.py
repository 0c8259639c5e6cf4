"""ZunaModel: encoder + decoder with the low-level API (encode, sample), and checkpoint loading."""
from __future__ import annotations

import functools
import math
import threading
from pathlib import Path

import torch
from torch import nn

from ..config import ModelConfig, read_config_json
from ..errors import CheckpointError, ModelOutputError, ZunaTypeError, ZunaValueError
from .sampling import euler_sample, flow_times
from . import checkpoint as ckpt
from .decoder import Decoder
from .encoder import Encoder
from .layers import Attention, SwiGLU

PRECISIONS = ("fp32", "bf16")


def _one_call_at_a_time(method):
    """Run ``method`` under the model's lock (threads sharing a model queue up)."""
    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        with self._call_lock:
            return method(self, *args, **kwargs)

    return locked


class ZunaModel(nn.Module):
    """A ZUNA masked diffusion autoencoder: the reference model, exact in fp32.

    Parameters
    ----------
    config : ModelConfig
        Architecture (``config.variant`` is "ZUNA" or "ZUNA1.1").
    encoder, decoder : nn.Module, optional
        Built from ``config`` when not given (:class:`~zuna_lab.fast.FastZunaModel` passes its own).

    Notes
    -----
    ``precision`` is "fp32" (exact, parity-tested) or "bf16" (:meth:`set_precision`): the
    attention and SwiGLU GEMMs in bf16, norms, residuals, RoPE, the sampler state and the 32-wide
    token/latent and time projections in fp32. On CUDA, :func:`zuna_lab.load_model` returns the
    fast path built from this model instead (:mod:`zuna_lab.fast`), unless ``dtype="fp32"``; on a
    CPU with native bf16, this model with faster modules (:mod:`zuna_lab.fast.cpu`).
    Calls are serialised: one ``encode`` or ``sample`` at a time per model.
    """

    def __init__(self, config: ModelConfig, *, encoder: nn.Module | None = None, decoder: nn.Module | None = None):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config) if encoder is None else encoder
        self.decoder = Decoder(config) if decoder is None else decoder
        self.precision = "fp32"
        self.source = None       # provenance, set by load_model
        self.revision = None
        self.is_random = False   # written by zuna_lab.testing: outputs are meaningless
        # One call at a time: the fast path's CUDA-graph buffers and torch's global TF32 flag are
        # per-call state, and dashboard sessions share one model across threads.
        self._call_lock = threading.RLock()

    @property
    def variant(self) -> str:
        return self.config.variant

    @property
    def device(self) -> torch.device:
        return self.encoder.embed.weight.device

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def set_precision(self, precision: str) -> "ZunaModel":
        """Switch between "fp32" and "bf16" in place; returns the model.

        bf16 rounds the attention and SwiGLU weights: switching back to "fp32" keeps them
        rounded (load the checkpoint again for the exact weights).
        """
        if precision not in PRECISIONS:
            raise ZunaValueError(f"precision must be one of {PRECISIONS}, not {precision!r}.")
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        for module in self.modules():
            # all but ~0.1 % of the FLOPs; the 32-wide token and latent projections and the time
            # conditioning stay fp32 for accuracy.
            if isinstance(module, (Attention, SwiGLU)):
                for child in module.children():
                    if isinstance(child, nn.Linear):
                        child.to(dtype)
        self.precision = precision
        return self

    def _check_inputs(self, values: torch.Tensor, tok_idx: torch.Tensor, name: str):
        """Raise on bad shapes or dtypes; returns a function to call before returning results,
        which raises if tok_idx lies outside the RoPE range."""
        if not isinstance(values, torch.Tensor) or not isinstance(tok_idx, torch.Tensor):
            raise ZunaTypeError(f"{name} and tok_idx must be torch tensors, got {type(values).__name__} and {type(tok_idx).__name__}.")
        width = self.config.input_dim if name == "tokens" else self.config.latent_dim
        if values.ndim != 3 or values.shape[-1] != width:
            raise ZunaValueError(f"{name} must have shape [batch, n_tokens, {width}], got {list(values.shape)}.")
        if tok_idx.shape != (*values.shape[:2], 4):
            raise ZunaValueError(f"tok_idx must have shape [batch, n_tokens, 4] = {[*values.shape[:2], 4]}, got {list(tok_idx.shape)}.")
        if tok_idx.dtype.is_floating_point or tok_idx.dtype == torch.bool:
            raise ZunaTypeError(f"tok_idx must hold integer positions (torch.long), got {tok_idx.dtype}.")
        if not tok_idx.numel():
            return lambda: None
        bounds = torch.aminmax(tok_idx)

        def check_range():
            low, high = (int(v) for v in bounds)
            if low < 0 or high >= self.config.max_seqlen:
                raise ZunaValueError(
                    f"tok_idx values must lie in [0, {self.config.max_seqlen - 1}] for this checkpoint "
                    f"(got {low}..{high}); the epoch may be too long or the positions wrongly binned.")

        if tok_idx.device.type == "cpu":
            check_range()
            return lambda: None
        # On a GPU the range is read after the work is queued (positions only enter RoPE angles,
        # never an index, so out-of-range values cannot fault): no device sync in front of it.
        return check_range

    @_one_call_at_a_time
    @torch.no_grad()
    def encode(self, tokens: torch.Tensor, tok_idx: torch.Tensor) -> torch.Tensor:
        """Latents [B, S, 32] (float32) of tokens [B, S, 32] (÷ data_norm, clipped, masked = 0) at tok_idx [B, S, 4]."""
        check_range = self._check_inputs(tokens, tok_idx, "tokens")
        tokens = _to_device(tokens, self.device, torch.float32)
        tok_idx = _to_device(tok_idx, self.device, torch.long)
        latents = self._encode(tokens, tok_idx).float()
        check_range()
        _finite_or_raise(latents, tokens, "latents")
        return latents

    @_one_call_at_a_time
    @torch.no_grad()
    def sample(self, latents: torch.Tensor, tok_idx: torch.Tensor, *, noise: torch.Tensor | None = None,
               steps: int = 50, cfg: float = 1.0, generator: torch.Generator | None = None,
               callback=None) -> torch.Tensor:
        """Decode latents [B, S, 32] by rectified flow; returns tokens [B, S, 32] (normalised units).

        ``noise`` is the standard-normal draw [B, S, 32] (scaled by the model's sigma inside);
        when None it is drawn from ``generator``. ``callback(step, steps)`` reports progress.
        """
        check_range = self._check_inputs(latents, tok_idx, "latents")
        if not isinstance(steps, int) or steps < 1:
            raise ZunaValueError(f"steps must be a positive integer, got {steps!r}.")
        if not math.isfinite(float(cfg)):
            raise ZunaValueError(f"cfg must be a finite number, got {cfg!r}.")
        shape = (*latents.shape[:2], self.config.input_dim)
        if noise is None:
            noise = torch.randn(shape, generator=generator, dtype=torch.float32,
                                device=generator.device if generator is not None else "cpu")
        elif tuple(noise.shape) != shape:
            raise ZunaValueError(f"noise must have shape {list(shape)}, got {list(noise.shape)}.")
        latents = _to_device(latents, self.device, torch.float32)
        tok_idx = _to_device(tok_idx, self.device, torch.long)
        z = self.config.sigma * _to_device(noise, self.device, torch.float32)
        out = self._sample(latents, tok_idx, z, steps, float(cfg), callback)
        check_range()
        _finite_or_raise(out, latents, "samples")
        return out

    def _encode(self, tokens: torch.Tensor, tok_idx: torch.Tensor) -> torch.Tensor:
        return self.encoder(tokens, tok_idx)

    def _sample(self, latents, tok_idx, z, steps: int, cfg: float, callback=None) -> torch.Tensor:
        decoder = self.decoder
        positions = decoder.positions(tok_idx)
        # The AdaRMSNorm gains depend on t alone: all steps at once, before the loop.
        gains = decoder.conditioning(flow_times(steps, device=z.device))
        # The unconditional branch (cfg != 1) sees zeroed latents, i.e. only the projection bias.
        contexts = {key: decoder.context(latents if key else torch.zeros_like(latents))
                    for key in ([True] if cfg == 1.0 else [True, False])}

        def velocity(state, k, conditional):
            return decoder.velocity(state, gains[k], contexts[conditional], positions)

        return euler_sample(velocity, z, steps=steps, cfg=cfg, callback=callback).float()


def _finite_or_raise(out: torch.Tensor, given: torch.Tensor, what: str):
    """Non-finite model output of finite input is never passed on (NaN latents would pass for padding)."""
    if not bool(torch.isfinite(out).all()) and bool(torch.isfinite(given).all()):
        raise ModelOutputError(
            f"The model returned NaN or infinite {what} from finite input, so no result is given; its weights are "
            "damaged or an activation overflowed — load the checkpoint again, with dtype='fp32' to rule out precision.")


def _to_device(tensor: torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``tensor.to(device, dtype)``; host tensors go to a GPU through pinned memory, without waiting
    for the GPU work already queued (a copy from pageable memory would)."""
    if tensor.device.type == "cpu" and device.type == "cuda":
        return tensor.to(dtype).pin_memory().to(device, non_blocking=True)
    return tensor.to(device, dtype)


def build_model(config: ModelConfig, *, device: str | torch.device = "cpu", meta: bool = False) -> ZunaModel:
    with torch.device("meta" if meta else device):
        return ZunaModel(config)


def load_checkpoint(config_path: str | Path, weights_path: str | Path, *, device="cpu",
                    precision: str = "fp32") -> ZunaModel:
    """Build a ZunaModel from an HF-layout ``config.json`` and ``model-*.safetensors`` (strict)."""
    from safetensors import safe_open
    from safetensors import SafetensorError

    model_fields = read_config_json(config_path)
    weights_path = Path(weights_path)
    if not weights_path.is_file():
        raise CheckpointError(f"No weights file at {weights_path}; expected model-00001-of-00001.safetensors next to config.json.")
    try:
        with safe_open(str(weights_path), framework="pt", device="cpu") as handle:
            stored_keys = list(handle.keys())
            bare = ckpt.strip_prefix(stored_keys)
            variant = ckpt.detect_variant(bare.values())
            fields = dict(model_fields)
            if ckpt.has_learned_dropout(bare.values()):
                fields.setdefault("dropout_type", "learnable")
            config = ModelConfig.from_hf(fields, variant=variant)
            model = build_model(config, meta=True)
            expected = ckpt.key_map(model, variant)
            reference = model.state_dict(keep_vars=True)
            unexpected = sorted(set(bare.values()) - set(expected))
            missing = sorted(set(expected) - set(bare.values()))
            if unexpected:
                raise CheckpointError(
                    f"Checkpoint key {unexpected[0]!r} is not part of a {variant} model"
                    + (f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else "")
                    + "; the file was renamed or belongs to another architecture.")
            if missing:
                raise CheckpointError(
                    f"Checkpoint is missing key {missing[0]!r}"
                    + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
                    + f" of a {variant} model; the file is incomplete or its keys were renamed.")
            state = {}
            for stored, theirs in bare.items():
                ours = expected[theirs]
                tensor = handle.get_tensor(stored)
                want = tuple(reference[ours].shape)
                if tuple(tensor.shape) != want:
                    raise CheckpointError(
                        f"Checkpoint tensor {theirs!r} has shape {list(tensor.shape)} but config.json implies {list(want)}; "
                        "config.json and the weights do not belong together.")
                if not tensor.dtype.is_floating_point:
                    raise CheckpointError(f"Checkpoint tensor {theirs!r} has dtype {tensor.dtype}; expected float32 or bfloat16.")
                tensor = tensor.to(torch.float32)
                if not bool(torch.isfinite(tensor).all()):
                    bad = int((~torch.isfinite(tensor)).sum())
                    raise CheckpointError(
                        f"Checkpoint tensor {theirs!r} holds {bad} NaN or infinite value(s), so every result would be "
                        "NaN; the file is damaged or was saved from a diverged training run — download it again.")
                state[ours] = tensor
    except SafetensorError as err:
        raise CheckpointError(
            f"{weights_path} is not a readable safetensors file ({err}); it is probably truncated — download it again.") from None
    model.load_state_dict(state, strict=True, assign=True)
    model = model.to(device).eval()
    model.is_random = bool(_random_marker(config_path))
    model.requires_grad_(False)
    return model.set_precision(precision)


def _random_marker(config_path) -> bool:
    import json

    try:
        return bool(json.loads(Path(config_path).read_text()).get("zuna_lab", {}).get("random", False))
    except (OSError, ValueError, AttributeError):
        return False
