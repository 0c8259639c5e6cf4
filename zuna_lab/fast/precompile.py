"""The background process of :mod:`.warmup`: a random model of the same architecture and precision run
once on every kernel path, which leaves every kernel in Triton's cache, then the marker written.

    python -m zuna_lab.fast.precompile CONFIG_JSON PRECISION DEVICE [DECODER_FP16_BLOCKS]
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from ..config import VERSION, ModelConfig
from ..model.zuna import ZunaModel
from .model import FastZunaModel
from .options import FastOptions
from .warmup import fp16_blocks, marker

#: (epochs, channels) run once each: the kernel paths of every input size — the small-tile
#: attention and small GEMM tiles (1 x 12), SDPA with small and large tiles (1 x 30, 1 x 64, 2 x 64).
SHAPES = ((1, 12), (1, 30), (1, 64), (2, 64))


def compile_kernels(config: ModelConfig, precision: str, device: torch.device, *, shapes=SHAPES,
                    decoder_fp16_blocks: int = 0) -> Path:
    """Run a random model of ``config`` once on each of ``shapes`` (every kernel path), then write the
    marker; returns its path."""
    with torch.device(device), torch.no_grad():
        reference = ZunaModel(config)
        for param in reference.parameters():
            if param.ndim > 1:
                param.normal_(0.0, 0.02)        # small weights: no fp16 overflow, no retyping
        options = FastOptions(precision=precision, cuda_graphs=False, decoder_fp16_blocks=decoder_fp16_blocks)
        fast = FastZunaModel(reference, options).eval()
        del reference
        for n_epochs, n_channels in shapes:
            n_tokens = n_channels * 40
            generator = torch.Generator(device).manual_seed(0)
            tokens = 0.1 * torch.randn(n_epochs, n_tokens, config.input_dim, generator=generator)
            tok_idx = torch.randint(0, config.max_seqlen, (n_epochs, n_tokens, 4), generator=generator)
            latents = fast.encode(tokens, tok_idx)
            fast.sample(latents, tok_idx, noise=torch.randn_like(tokens), steps=1)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    if fast.precision != precision:
        raise RuntimeError("the random model overflowed fp16; its kernels are not those of the real one")
    path = marker(config, precision, device, fp16_blocks(fast))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"version": VERSION, "precision": precision, "shapes": shapes}))
    return path


if __name__ == "__main__":
    compile_kernels(ModelConfig(**json.loads(sys.argv[1])), sys.argv[2], torch.device(sys.argv[3]),
                    decoder_fp16_blocks=int(sys.argv[4]) if len(sys.argv) > 4 else 0)
