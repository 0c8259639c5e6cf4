"""Where the fast path's rounding enters, on the GPU: per precision, per block, per weight family.

    python benchmarks/probe_precision.py [--families official,perturbed,random] [--per-block]

For each variant (ZUNA, ZUNA1.1) and weight family (official init written by the official package,
``make_random_checkpoint(full_size=True, seed=11, perturb=0.02)`` as tests/fast/test_gpu.py, and
``make_random_checkpoint(full_size=True)``): the relative L2 distance of latents and 50-step samples
from the exact fp32 model (plain PyTorch, no TF32) at 1 x 12 and 8 x 64 channels, for the fast path
in fp16, in bf16, and in fp32 (its kernels' own error). ``--per-block``: on one family, each encoder
block alone in fp16 / bf16 inside the fast fp32 model (latents), each decoder block's self-attention
and SwiGLU alone in fp16 / bf16 (samples). Official-init checkpoints need the official packages on
``$ZUNA_OFFICIAL_116`` / ``$ZUNA_OFFICIAL_011`` (folders made by ``pip install --target``).
Writes ``$OUT/precision.json`` (or /tmp/zuna_bench/precision.json).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
import bench  # noqa: E402
WORK = Path(os.environ.get("ZUNA_BENCH_WORK", "/tmp/zuna_bench"))
STEPS = 50
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"     # cpu: a smoke test under TRITON_INTERPRET=1
N_BINS = {"ZUNA": 50, "ZUNA1.1": 100}
OFFICIAL_ENV = {"ZUNA1.1": "ZUNA_OFFICIAL_116", "ZUNA": "ZUNA_OFFICIAL_011"}


def checkpoint(variant: str, family: str) -> Path | None:
    """The full-size checkpoint of one weight family (written once under WORK)."""
    from zuna_lab.testing import make_random_checkpoint

    path = WORK / f"{variant}_{family}"
    if (path / "model-00001-of-00001.safetensors").exists():
        return path
    if family == "perturbed":
        return make_random_checkpoint(path, variant=variant, full_size=True, seed=11, perturb=0.02)
    if family == "random":
        return make_random_checkpoint(path, variant=variant, full_size=True, seed=0)
    site = os.environ.get(OFFICIAL_ENV[variant])
    if not site:
        return None
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([site, os.environ.get("PYTHONPATH", "")]),
               TORCHDYNAMO_DISABLE="1", PYTHONWARNINGS="ignore")
    subprocess.run([sys.executable, str(ROOT / "tests" / "oracle" / "official_model.py"), "build", "--out", str(path),
                    "--seed", "0", "--dim", "1024", "--n-layers", "16", "--n-heads", "8", "--head-dim", "64",
                    "--t-dim", "64", "--official-init"], check=True, env=env)
    return path


def make_inputs(variant: str, n_epochs: int, n_channels: int, seed: int = 0):
    """bench.py's inputs (one channel dropped, time-major) with the variant's position bins, on DEVICE."""
    return tuple(x.to(DEVICE) for x in bench.make_inputs(n_epochs, n_channels, seed=seed, n_bins=N_BINS[variant]))


def rel(a, b) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def run_model(model, inputs, steps=STEPS):
    tokens, tok_idx, noise = inputs
    latents = model.encode(tokens, tok_idx)
    return latents, model.sample(latents, tok_idx, noise=noise, steps=steps)


def errors_of(path: Path, per_block: bool) -> dict:
    import zuna_lab
    from zuna_lab.fast import FastOptions, build

    exact = zuna_lab.load_model(path, device=DEVICE, dtype="fp32")
    variant = exact.variant
    cases = {"1x12": make_inputs(variant, 1, 12), "8x64": make_inputs(variant, 8, 64)}
    refs = {name: run_model(exact, inputs) for name, inputs in cases.items()}
    policies = os.environ.get("ZUNA_PROBE_POLICIES", "mixed,fp16,bf16,fp32").split(",")
    models = {p: build(exact, FastOptions(precision=p, cuda_graphs=False)) for p in policies}
    for model in models.values():
        model.kernels_ready(wait=True)     # the kernels, not their twins
    out = {}
    for policy, model in models.items():
        for name, inputs in cases.items():
            latents, samples = run_model(model, inputs)
            out[f"{policy} {name}"] = dict(latents=rel(latents, refs[name][0]), samples=rel(samples, refs[name][1]))
            print(path.name, policy, name, out[f"{policy} {name}"], flush=True)
    if per_block:
        out["per_block"] = per_block_errors(models, cases["1x12"], refs["1x12"])
    return out


def per_block_errors(models: dict, inputs, ref) -> dict:
    """Each block (encoder: whole block; decoder: self-attention + SwiGLU) alone in low precision
    inside the fast fp32 model; the error of the latents (encoder) or samples (decoder)."""
    base = models["fp32"]       # needs the fp32, fp16 and bf16 policies
    tokens, tok_idx, noise = inputs
    found = {}
    for policy in ("fp16", "bf16"):
        low = models[policy]
        enc, dec = [], []
        for k, block in enumerate(base.encoder.blocks):
            kept = (block.attention, block.feed_forward)
            block.attention, block.feed_forward = low.encoder.blocks[k].attention, low.encoder.blocks[k].feed_forward
            enc.append(rel(base.encode(tokens, tok_idx), ref[0]))
            block.attention, block.feed_forward = kept
        latents = base.encode(tokens, tok_idx)
        for k, block in enumerate(base.decoder.blocks):
            kept = (block.attention, block.feed_forward)
            block.attention, block.feed_forward = low.decoder.blocks[k].attention, low.decoder.blocks[k].feed_forward
            dec.append(rel(base.sample(latents, tok_idx, noise=noise, steps=STEPS), ref[1]))
            block.attention, block.feed_forward = kept
        found[policy] = dict(encoder_latents=enc, decoder_samples=dec)
        print("per block", policy, found[policy], flush=True)
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default="official,perturbed,random")
    parser.add_argument("--per-block", default="ZUNA1.1:perturbed", help="VARIANT:FAMILY for the per-block sweep")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    result = dict(gpu=torch.cuda.get_device_name() if DEVICE == "cuda" else "cpu", torch=torch.__version__, date=time.strftime("%Y-%m-%d"), errors={})
    target = Path(os.environ.get("OUT") or WORK) / "precision.json"
    for variant in ("ZUNA", "ZUNA1.1"):
        for family in args.families.split(","):
            path = checkpoint(variant, family)
            if path is None:
                print("no official package for", variant, flush=True)
                continue
            result["errors"][f"{variant} {family}"] = errors_of(path, args.per_block == f"{variant}:{family}")
            target.write_text(json.dumps(result, indent=2))
            if DEVICE == "cuda":
                torch.cuda.empty_cache()
    print(json.dumps(result["errors"], indent=1))


if __name__ == "__main__":
    main()
