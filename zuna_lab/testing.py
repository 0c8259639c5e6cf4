"""Test helpers that ship with the package: random checkpoints in the exact Hugging Face layout.

The real ZUNA weights are not needed to exercise every code path: a random checkpoint has the
official ``config.json`` field names and the official safetensors key names, so the official
implementation loads it too (the parity tests check exactly that).
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from torch import nn

from .config import ModelConfig, full_size_config
from .errors import ZunaValueError
from .model.hub import CONFIG_NAME, WEIGHTS_NAME
from .model import checkpoint as ckpt
from .model.layers import AdaRMSNorm, FourierTimeEmbedding, RMSNorm
from .model.zuna import ZunaModel, build_model


def random_model(config: ModelConfig, *, seed: int = 0, perturb: float = 0.0) -> ZunaModel:
    """A ZunaModel with random weights where every part matters.

    Unlike a fresh training init (AdaRMSNorm gains start at exactly 1, time features near 0),
    norms, time conditioning and biases get non-trivial values so that a port that ignored
    any of them would fail parity. ``perturb`` > 0 then adds ``perturb * N(0, 1)`` to every
    parameter and buffer (the GPU tests use 0.02 at full size). Deterministic in ``seed``.
    """
    generator = torch.Generator().manual_seed(seed)

    def normal(shape, std, mean=0.0):
        return torch.randn(shape, generator=generator) * std + mean

    model = build_model(config)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear):
                module.weight.copy_(normal(module.weight.shape, module.in_features ** -0.5))
                if module.bias is not None:
                    module.bias.copy_(normal(module.bias.shape, 0.02))
            elif isinstance(module, RMSNorm):
                module.weight.copy_(normal(module.weight.shape, 0.1, mean=1.0))
            elif isinstance(module, FourierTimeEmbedding):
                module.freqs.copy_(normal(module.freqs.shape, 2.0))
        for module in model.modules():
            if isinstance(module, AdaRMSNorm):
                # gain = W t_emb + b: b around 1, W large enough that the time really modulates it.
                module.gain.weight.copy_(normal(module.gain.weight.shape, 0.3 * module.gain.in_features ** -0.5))
                module.gain.bias.copy_(normal(module.gain.bias.shape, 0.1, mean=1.0))
        model.encoder.register.copy_(normal(model.encoder.register.shape, 0.5))
        if model.encoder.dropout_vec is not None:
            model.encoder.dropout_vec.copy_(normal(model.encoder.dropout_vec.shape, 0.1))
        if perturb:
            for tensor in [*model.parameters(), *model.buffers()]:
                tensor.add_(normal(tensor.shape, perturb))
    return model.eval()


def upstream_state_dict(model: ZunaModel, *, key_prefix: bool = False) -> dict[str, torch.Tensor]:
    """The model's tensors under the official key names (optionally ``model.``-prefixed)."""
    ours = model.state_dict()
    prefix = "model." if key_prefix else ""
    return {prefix + theirs: ours[name].detach().contiguous()
            for theirs, name in ckpt.key_map(model, model.variant).items()}


def save_checkpoint(model: ZunaModel, path, *, key_prefix: bool = False, dtype=torch.float32) -> Path:
    """Write ``model`` to directory ``path`` in the HF layout, atomically (all or nothing)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.to(dtype) for k, v in upstream_state_dict(model, key_prefix=key_prefix).items()}
    config = {"model": model.config.to_hf(), "zuna_lab": {"variant": model.variant, "random": True}}
    with tempfile.TemporaryDirectory(dir=path, prefix=".partial-") as scratch:
        scratch = Path(scratch)
        save_file(tensors, str(scratch / WEIGHTS_NAME), metadata={"format": "pt"})
        (scratch / CONFIG_NAME).write_text(json.dumps(config, indent=2))
        os.replace(scratch / WEIGHTS_NAME, path / WEIGHTS_NAME)
        os.replace(scratch / CONFIG_NAME, path / CONFIG_NAME)
    return path


def make_random_checkpoint(path, *, variant: str = "ZUNA", dim: int = 64, n_layers: int = 2, n_heads: int = 4,
                           head_dim: int = 16, t_dim: int = 32, max_seqlen: int | None = None, seed: int = 0,
                           full_size: bool = False, key_prefix: bool = False, dtype=torch.float32,
                           perturb: float = 0.0) -> Path:
    """Write a random ZUNA checkpoint (``config.json`` + ``model-00001-of-00001.safetensors``).

    Parameters
    ----------
    path : path
        Directory to write (created if needed).
    variant : "ZUNA" | "ZUNA1.1"
        Architecture variant; decides the key set (ZUNA1.1 adds QK-norm and post-norms).
    dim, n_layers, n_heads, head_dim, t_dim : int
        Small by default (fast tests). ``full_size=True`` ignores them and uses the released
        architecture (1024 wide, 16 layers, 8 heads of 64: 382 M parameters).
    max_seqlen : int | None
        RoPE table size; default that of the variant (50 for ZUNA, 256 for ZUNA1.1).
    seed : int
        Weights are a deterministic function of the seed.
    key_prefix : bool
        Store keys as ``model.<name>`` as some upstream exports do.
    dtype : torch.dtype
        Storage dtype (float32 or bfloat16).
    perturb : float
        Scale of the N(0, 1) noise added to every weight after the init (:func:`random_model`).

    Returns
    -------
    path : pathlib.Path

    Examples
    --------
    >>> from zuna_lab.testing import make_random_checkpoint
    >>> ckpt = make_random_checkpoint(tmp_path / "tiny", variant="ZUNA")     # doctest: +SKIP
    >>> model = zuna_lab.load_model(ckpt)                                     # doctest: +SKIP
    """
    if variant not in ("ZUNA", "ZUNA1.1"):
        raise ZunaValueError(f"variant must be 'ZUNA' or 'ZUNA1.1', not {variant!r}.")
    if full_size:
        config = full_size_config(variant)
    else:
        fields = {"dim": dim, "n_layers": n_layers, "n_heads": n_heads, "head_dim": head_dim, "t_dim": t_dim}
        if max_seqlen is not None:
            fields["max_seqlen"] = max_seqlen
        config = ModelConfig.from_hf(fields, variant=variant)
    return save_checkpoint(random_model(config, seed=seed, perturb=perturb), path, key_prefix=key_prefix, dtype=dtype)
