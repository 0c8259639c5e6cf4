"""Model configuration: the HF ``config.json`` ``"model"`` object, and per-variant constants.

The official checkpoints store the training dataclass of the upstream code under ``"model"``.
:class:`ModelConfig` keeps only what inference needs, under names that say what they are,
and refuses settings whose behaviour zuna_lab does not implement (rather than silently
computing something else).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from .errors import CheckpointError, ZunaValueError

#: The package version (``zuna_lab.__version__``, written into every result's provenance).
VERSION = "0.1.0"

VARIANTS = ("ZUNA", "ZUNA1.1")


def check_variant(variant) -> str:
    """``variant`` when it names a ZUNA variant; else one sentence (ZunaValueError). The one check."""
    if not isinstance(variant, str) or variant not in VARIANTS:
        raise ZunaValueError(f"Unknown model variant {variant!r}; use one of {', '.join(map(repr, VARIANTS))}.")
    return variant

#: Signal-side constants of each variant (the official preprocessing and tokenisation).
#: The data format both variants share: 256 Hz, tokens of 32 samples (0.125 s), 5 s epochs by default.
MODEL_SFREQ = 256.0
SAMPLES_PER_TOKEN = 32
TOKEN_SECONDS = SAMPLES_PER_TOKEN / MODEL_SFREQ
EPOCH_SECONDS = 5.0

VARIANT_CONSTANTS = {
    "ZUNA": dict(sfreq=MODEL_SFREQ, samples_per_token=SAMPLES_PER_TOKEN, data_norm=10.0, data_clip=1.0,
                 n_position_bins=50, position_extreme=0.12, segment_duration=EPOCH_SECONDS,
                 min_segment_duration=EPOCH_SECONDS, max_segment_duration=EPOCH_SECONDS),
    "ZUNA1.1": dict(sfreq=MODEL_SFREQ, samples_per_token=SAMPLES_PER_TOKEN, data_norm=10.0, data_clip=1.0,
                    n_position_bins=100, position_extreme=0.12, segment_duration=EPOCH_SECONDS,
                    min_segment_duration=0.5, max_segment_duration=30.0),
}

# Upstream field -> (our field, default when absent). Defaults are the upstream dataclass
# defaults, except where the upstream inference config overrides them.
_FIELDS = {
    "dim": ("dim", 1024),
    "n_layers": ("n_layers", 16),
    "head_dim": ("head_dim", None),
    "n_heads": ("n_heads", 8),           # upstream DecoderArgs default: 8 heads
    "n_kv_heads": ("n_kv_heads", None),
    "ffn_dim_multiplier": ("ffn_dim_multiplier", None),
    "multiple_of": ("multiple_of", 256),
    "norm_eps": ("norm_eps", 1e-5),
    "rope_theta": ("rope_theta", 10000.0),
    "max_seqlen": ("max_seqlen", None),
    "rope_dim": ("rope_dim", 4),
    "t_dim": ("t_dim", 64),
    "input_dim": ("input_dim", 32),
    "encoder_input_dim": ("encoder_input_dim", None),
    "encoder_output_dim": ("latent_dim", 32),
    "stft_global_sigma": ("sigma", 0.1),
    "encoder_sliding_window": ("encoder_window", 65536),
    "sliding_window": ("decoder_window", 65536),
    "xattn_sliding_window": ("cross_window", 65536),
}

# Upstream fields with a behaviour zuna_lab implements only for one value.
_REQUIRED = {
    "encoder_latent_downsample_factor": (1, "one latent per token"),
    "rope_dim": (4, "4-D RoPE over (x, y, z, t_coarse)"),
    "compression_free_conv_stem": (False, "no convolutional stem"),
    "seqlen_t": (False, "AdaRMSNorm on the cross-attention keys"),
    "ape_dim": (0, "no absolute channel-position embedding"),
    "distill_output_dim": (0, "no distillation head"),
    "zero_spatial": (False, "electrode positions used by RoPE"),
}


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a ZUNA encoder-decoder (frozen).

    Built from the ``"model"`` object of an HF ``config.json`` with :meth:`from_hf`.
    """

    variant: str = "ZUNA"
    dim: int = 1024
    n_layers: int = 16
    n_heads: int = 8
    head_dim: int = 64
    n_kv_heads: int = 8
    ffn_hidden: int = 2816
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    max_seqlen: int = 50           # size of the RoPE table: every tok_idx entry must be below it
    t_dim: int = 64                # width of the Fourier time embedding
    input_dim: int = 32            # samples per token
    latent_dim: int = 32
    sigma: float = 0.1             # std of the rectified-flow noise
    encoder_window: int = 65536    # sliding windows (in sequence positions); huge = unused
    decoder_window: int = 65536
    cross_window: int = 65536
    learned_dropout: bool = False  # zeroed tokens replaced by a learned vector in the encoder

    @property
    def qk_norm(self) -> bool:
        """ZUNA1.1 RMS-normalises queries and keys per head before RoPE."""
        return self.variant == "ZUNA1.1"

    @property
    def post_norm(self) -> bool:
        """ZUNA1.1 RMS-normalises every sub-layer output before the residual add."""
        return self.variant == "ZUNA1.1"

    @property
    def constants(self) -> dict:
        return VARIANT_CONSTANTS[self.variant]

    @classmethod
    def from_hf(cls, model_fields: dict, *, variant: str) -> "ModelConfig":
        """Build from the ``"model"`` object of an HF ``config.json``."""
        if variant not in VARIANTS:
            raise CheckpointError(f"Unknown ZUNA variant {variant!r}; expected one of {VARIANTS}.")
        if not isinstance(model_fields, dict):
            raise CheckpointError("config.json has no \"model\" object; it does not look like a ZUNA checkpoint config.")
        for name, (value, meaning) in _REQUIRED.items():
            if name in model_fields and model_fields[name] != value:
                raise CheckpointError(
                    f"config.json sets {name}={model_fields[name]!r}, but zuna_lab implements only "
                    f"{name}={value!r} ({meaning}), as in the released ZUNA checkpoints.")
        bottleneck = str(model_fields.get("bottleneck_type", "mmd"))
        if any(kind in bottleneck for kind in ("kl", "sim", "fsq")):
            raise CheckpointError(
                f"config.json sets bottleneck_type={bottleneck!r}; zuna_lab implements only the 'mmd' "
                "bottleneck of the released ZUNA checkpoints.")
        values = {ours: model_fields.get(theirs, default) for theirs, (ours, default) in _FIELDS.items()}
        dim = int(values["dim"])
        n_heads = int(values["n_heads"] or 8)
        head_dim = int(values["head_dim"] or dim // n_heads)
        if values["encoder_input_dim"] not in (None, values["input_dim"]):
            raise CheckpointError("config.json has encoder_input_dim != input_dim; ZUNA encodes the same 32-sample tokens it decodes.")
        if head_dim % 8:
            raise CheckpointError(f"head_dim={head_dim} must be a multiple of 8 for 4-D RoPE (4 axes of rotation pairs).")
        max_seqlen = values["max_seqlen"]
        if max_seqlen is None:
            max_seqlen = 50 if variant == "ZUNA" else 256
        dropout_kind = model_fields.get("dropout_vec_type", model_fields.get("dropout_type", "zeros"))
        return cls(
            variant=variant, dim=dim, n_layers=int(values["n_layers"]), n_heads=n_heads, head_dim=head_dim,
            n_kv_heads=int(values["n_kv_heads"] or n_heads),
            ffn_hidden=ffn_hidden_size(dim, int(values["multiple_of"]), values["ffn_dim_multiplier"]),
            norm_eps=float(values["norm_eps"]), rope_theta=float(values["rope_theta"]),
            max_seqlen=int(max_seqlen), t_dim=int(values["t_dim"]), input_dim=int(values["input_dim"]),
            latent_dim=int(values["latent_dim"]), sigma=float(values["sigma"]),
            encoder_window=int(values["encoder_window"]), decoder_window=int(values["decoder_window"]),
            cross_window=int(values["cross_window"]), learned_dropout=dropout_kind == "learnable",
        )

    def to_hf(self, *, multiple_of: int = 256) -> dict:
        """The ``"model"`` object the official code reads (field names of its dataclass)."""
        fields = {
            "dim": self.dim, "n_layers": self.n_layers, "head_dim": self.head_dim, "n_heads": self.n_heads,
            "n_kv_heads": self.n_kv_heads, "multiple_of": multiple_of, "norm_eps": self.norm_eps,
            "rope_theta": self.rope_theta, "max_seqlen": self.max_seqlen, "rope_dim": 4, "t_dim": self.t_dim,
            "input_dim": self.input_dim, "encoder_input_dim": self.input_dim,
            "encoder_output_dim": self.latent_dim, "encoder_latent_downsample_factor": 1,
            "stft_global_sigma": self.sigma, "encoder_sliding_window": self.encoder_window,
            "sliding_window": self.decoder_window, "xattn_sliding_window": self.cross_window,
            "tok_idx_type": "{x,y,z,tc}", "seqlen_t": False, "huber_c": None,
            "num_fine_time_pts": self.input_dim, "bottleneck_type": "mmd",
        }
        dropout = "learnable" if self.learned_dropout else "zeros"
        if self.variant == "ZUNA":
            fields.update(dropout_type=dropout, adaptive_loss_weighting=True)
        else:
            fields.update(dropout_vec_type=dropout, ape_dim=0, adaptive_loss_weighting=False)
        if ffn_hidden_size(self.dim, multiple_of, None) != self.ffn_hidden:
            raise ValueError("ffn_hidden is not reachable with this multiple_of; pass the multiple_of it was built with.")
        return fields

    def replace(self, **changes) -> "ModelConfig":
        return dataclasses.replace(self, **changes)


def ffn_hidden_size(dim: int, multiple_of: int, ffn_dim_multiplier: float | None) -> int:
    """SwiGLU width: 2/3 of 4*dim, optionally scaled, rounded up to a multiple."""
    hidden = int(2 * (4 * dim) / 3)
    if ffn_dim_multiplier is not None:
        hidden = int(ffn_dim_multiplier * hidden)
    return multiple_of * ((hidden + multiple_of - 1) // multiple_of)


def full_size_config(variant: str = "ZUNA") -> ModelConfig:
    """The architecture of the released checkpoints (382 M parameters)."""
    return ModelConfig.from_hf({"dim": 1024, "n_layers": 16, "head_dim": 64}, variant=variant)


def read_config_json(path: str | Path) -> dict:
    """Read ``config.json`` and return its ``"model"`` object, with a clear error when malformed."""
    path = Path(path)
    try:
        content = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"No config.json at {path}; a ZUNA checkpoint directory holds config.json and model-00001-of-00001.safetensors.") from None
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path} is not valid JSON ({err.msg} at line {err.lineno}); re-download or rewrite the checkpoint config.") from None
    if not isinstance(content, dict) or not isinstance(content.get("model"), dict):
        raise CheckpointError(f"{path} has no \"model\" object; a ZUNA config.json keeps the architecture under \"model\".")
    return content["model"]
