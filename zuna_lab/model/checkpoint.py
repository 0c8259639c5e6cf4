"""Upstream checkpoint key names (the only place they are known) and variant detection."""
from __future__ import annotations

import re

from torch import nn

from .layers import RMSNorm

# Our parameter names -> the official ones, applied in order.
_RENAMES = [
    (r"^encoder\.embed\.", "encoder.tok_embeddings."),
    (r"^encoder\.register$", "encoder.registers"),
    (r"^decoder\.embed\.", "decoder.tok_embeddings."),
    (r"^decoder\.time\.freqs$", "decoder.t_embedder.weight"),
    (r"^decoder\.time\.proj\.", "decoder.t_embedder.proj."),
    (r"^decoder\.latent_proj\.", "decoder.encoder_proj."),
    (r"\.blocks\.", ".layers."),
    (r"^(encoder|decoder)\.out\.", r"\1.output."),
    (r"\.cross_x_norm\.gain\.", ".cross_attention_x_norm.weight."),
    (r"\.cross_y_norm\.gain\.", ".cross_attention_y_norm.weight."),
    (r"\.(attention_norm|ffn_norm|norm)\.gain\.", r".\1.weight."),
    (r"\.cross_post_norm\.", ".cross_attention_norm_post."),
    (r"\.attention_post_norm\.", ".attention_norm_post."),
    (r"\.ffn_post_norm\.", ".ffn_norm_post."),
]

# Keys present only in ZUNA1.1 checkpoints (QK-norm and sandwich post-norms).
_ZUNA11_MARKERS = ("q_norm", "k_norm", "norm_post")


def upstream_name(our_name: str, *, variant: str, is_rms_norm: bool) -> str:
    name = our_name
    for pattern, replacement in _RENAMES:
        name = re.sub(pattern, replacement, name)
    if variant == "ZUNA1.1" and is_rms_norm:
        # ZUNA1.1 wraps torch.nn.RMSNorm: ``<norm>.weight`` is stored as ``<norm>.norm.weight``.
        name = name[: -len(".weight")] + ".norm.weight"
    return name


def key_map(model: nn.Module, variant: str) -> dict[str, str]:
    """Map every upstream key of ``model``'s state dict to our parameter/buffer name."""
    mapping = {}
    for module_name, module in model.named_modules():
        local = list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False))
        for local_name, _ in local:
            ours = f"{module_name}.{local_name}" if module_name else local_name
            theirs = upstream_name(ours, variant=variant, is_rms_norm=isinstance(module, RMSNorm))
            mapping[theirs] = ours
    return mapping


def strip_prefix(keys) -> dict[str, str]:
    """Upstream files may store keys as ``model.<name>``; map stored key -> bare upstream key."""
    return {key: key[len("model."):] if key.startswith("model.") else key for key in keys}


def detect_variant(keys) -> str:
    """'ZUNA1.1' when QK-norm or post-norm weights are present, else 'ZUNA'."""
    return "ZUNA1.1" if any(marker in key for key in keys for marker in _ZUNA11_MARKERS) else "ZUNA"


def has_learned_dropout(keys) -> bool:
    return any(key.endswith("encoder.dropout_vec") for key in keys)
