"""The first k decoder blocks in fp16 (``FastOptions(decoder_fp16_blocks=k)``, "mixed"), on one GPU:
errors against the exact fp32 path and throughput, per k.

    python benchmarks/probe_fp16_blocks.py --part time   [--blocks 0,2,3,4]
    python benchmarks/probe_fp16_blocks.py --part errors [--blocks 0,2,3,4] [--families official,perturbed,random]

``time``: bench.py's checkpoint and inputs; reconstruction (encode + 50 steps, cfg 1) at 1 x 12, 32 x 12
and 8 x 64, CUDA graphs, compiled kernels. Every model is first warmed on the case (its graphs
captured), then timed in three rounds over k — in order, reversed, in order — so that k = 0 runs
first, in the middle and last and drift shows. Writes ``$OUT/fp16_blocks_time.json``.

``errors``: relative L2 distance of the latents and 50-step samples from the exact fp32 model
(plain PyTorch, no TF32) on bench.py's checkpoint at its four cases (its inputs: time-major, one
channel dropped), and on the three weight families of tests/fast/test_gpu.py (both variants, that
file's inputs) at 1 x 12 and 8 x 64, through the kernels and, for the families, through their
PyTorch twins. ``old``: k = 0 with the cross-attention K/V weights rounded to bf16, the default
before decoder_fp16_blocks (on bench.py's checkpoint only). Official-init families need
``$ZUNA_OFFICIAL_116`` / ``$ZUNA_OFFICIAL_011`` (probe_precision.py). Writes
``$OUT/fp16_blocks_errors.json``. Under TRITON_INTERPRET=1 on the CPU (``--smoke``): a rehearsal on
small random checkpoints and shapes.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
import bench  # noqa: E402
import probe_precision  # noqa: E402

DEVICE = probe_precision.DEVICE
STEPS = bench.STEPS
OUT = Path(os.environ.get("OUT") or probe_precision.WORK)


def family_inputs(n_epochs: int, n_channels: int, variant: str, n_coarse: int = 40):
    """tests/fast/test_gpu.py's inputs (its make_inputs with seed = n_channels): channels at random
    positions, channel-major, one channel dropped; tok_idx; noise."""
    g = torch.Generator().manual_seed(n_channels)
    bins = torch.randint(0, probe_precision.N_BINS[variant], (n_channels, 3), generator=g)
    tok_idx = torch.cat([bins.repeat_interleave(n_coarse, 0), torch.arange(n_coarse).repeat(n_channels)[:, None]],
                        dim=1)
    tok_idx = tok_idx.expand(n_epochs, -1, -1).contiguous()
    tokens = (0.1 * torch.randn(n_epochs, n_channels * n_coarse, 32, generator=g)).clamp(-1, 1)
    tokens[:, n_coarse:2 * n_coarse] = 0.0
    return tuple(t.to(DEVICE) for t in (tokens, tok_idx, torch.randn(tokens.shape, generator=g)))


def save(name: str, result: dict):
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / name).write_text(json.dumps(result, indent=2))


def header() -> dict:
    import triton
    return dict(gpu=torch.cuda.get_device_name() if DEVICE == "cuda" else "cpu", torch=torch.__version__,
                triton=triton.__version__, date=time.strftime("%Y-%m-%d %H:%M"))


def fast_models(exact, blocks, *, cuda_graphs: bool, old: bool = False) -> dict:
    """{"k<n>": the fast "mixed" model with n fp16 decoder blocks} (+ "old"), kernels compiled."""
    from zuna_lab.fast import FastOptions, build

    models = {f"k{k}": build(exact, FastOptions(cuda_graphs=cuda_graphs, decoder_fp16_blocks=k)) for k in blocks}
    if old:
        models["old"] = build(exact, FastOptions(cuda_graphs=cuda_graphs, decoder_fp16_blocks=0))
        weights = [torch.cat([b.cross_attention.wk.weight, b.cross_attention.wv.weight])[None]
                   for b in exact.decoder.blocks]
        models["old"].decoder.cross_wkv.data = torch.cat(weights).to(torch.bfloat16)
    for model in models.values():
        model.kernels_ready(wait=True)      # the kernels, not their twins
    return models


def sync():
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def part_time(blocks, cases, checkpoint, repeats_small: int, repeats_large: int):
    import zuna_lab

    exact = zuna_lab.load_model(checkpoint, device=DEVICE, dtype="fp32")
    models = fast_models(exact, blocks, cuda_graphs=DEVICE == "cuda")
    del exact
    gc.collect()
    result = dict(header(), part="time", blocks=list(blocks), cases={})
    labels = list(models)
    for name, n_epochs, n_channels in cases:
        tokens, tok_idx, noise = (t.to(DEVICE) for t in bench.make_inputs(n_epochs, n_channels))

        def run(model):
            return model.sample(model.encode(tokens, tok_idx), tok_idx, noise=noise, steps=STEPS)

        for label in labels:            # a shape's first call captures a step, its second the whole call
            for _ in range(3):
                run(models[label])
        repeats = repeats_small if n_epochs == 1 else repeats_large
        rounds = {label: [] for label in labels}
        for order in (labels, labels[::-1], labels):
            for label in order:
                rounds[label].append(timed(lambda: run(models[label]), repeats))
        found = {}
        for label in labels:
            seconds = statistics.median(rounds[label])
            found[label] = dict(rounds_s=rounds[label], median_s=seconds, ms=1e3 * seconds,
                                epochs_per_s=n_epochs / seconds, precision=models[label].precision)
        base = found[labels[0]]["median_s"]
        for label in labels:
            found[label]["throughput_vs_first"] = base / found[label]["median_s"]
        result["cases"][name] = found
        print(name, {k: (round(v["ms"], 2), round(v["epochs_per_s"], 3), [round(1e3 * s, 2) for s in v["rounds_s"]])
                     for k, v in found.items()}, flush=True)
        save("fp16_blocks_time.json", result)
        for model in models.values():
            model.clear_graphs()
    return result


def checkpoint_errors(path, cases: dict, blocks, *, old: bool, twins: bool) -> dict:
    import zuna_lab
    from zuna_lab.fast import kernels

    exact = zuna_lab.load_model(path, device=DEVICE, dtype="fp32")
    refs = {}
    for name, (tokens, tok_idx, noise) in cases.items():
        latents = exact.encode(tokens, tok_idx)
        refs[name] = (latents, exact.sample(latents, tok_idx, noise=noise, steps=STEPS))
    models = fast_models(exact, blocks, cuda_graphs=False, old=old)
    del exact
    found = {}
    for label, model in models.items():
        for through in ("kernels", "twins") if twins else ("kernels",):
            with kernels.eager() if through == "twins" else contextlib.nullcontext():
                for name, (tokens, tok_idx, noise) in cases.items():
                    latents = model.encode(tokens, tok_idx)
                    samples = model.sample(latents, tok_idx, noise=noise, steps=STEPS)
                    errors = dict(latents=probe_precision.rel(latents, refs[name][0]),
                                  samples=probe_precision.rel(samples, refs[name][1]), precision=model.precision)
                    found[f"{label} {through} {name}"] = errors
                    print(Path(path).name, label, through, name, errors, flush=True)
    del models
    gc.collect()
    if DEVICE == "cuda":
        torch.cuda.empty_cache()
    return found


#: The weight families, closest to the samples' margin first (session 2's figures: benchmarks/results/precision.md).
FAMILY_ORDER = [("ZUNA", "perturbed"), ("ZUNA", "official"), ("ZUNA1.1", "random"), ("ZUNA1.1", "perturbed"),
                ("ZUNA1.1", "official"), ("ZUNA", "random")]


def part_errors(blocks, families, bench_cases, family_cases, checkpoint_of):
    from concurrent.futures import ThreadPoolExecutor

    result = dict(header(), part="errors", blocks=list(blocks), errors={})
    wanted = [(variant, family) for variant, family in FAMILY_ORDER if family in families]
    # the families' checkpoints are written on a thread (CPU work) while the GPU computes
    with ThreadPoolExecutor(1) as pool:
        paths = [pool.submit(checkpoint_of, variant, family) for variant, family in wanted]
        bench_inputs = {name: tuple(t.to(DEVICE) for t in bench.make_inputs(n, c)) for name, n, c in bench_cases}
        result["errors"]["bench ZUNA1.1"] = checkpoint_errors(checkpoint_of("ZUNA1.1", "bench"), bench_inputs, blocks,
                                                              old=True, twins=False)
        save("fp16_blocks_errors.json", result)
        for (variant, family), path in zip(wanted, paths):
            path = path.result()
            if path is None:
                print("no official package for", variant, flush=True)
                continue
            inputs = {f"{n}x{c}": family_inputs(n, c, variant) for n, c in family_cases}
            result["errors"][f"{variant} {family}"] = checkpoint_errors(path, inputs, blocks, old=False, twins=True)
            save("fp16_blocks_errors.json", result)
    return result


def smoke_checkpoint(variant: str, family: str) -> Path:
    """Small random checkpoints for the CPU rehearsal (the same code paths, interpreter-sized)."""
    from zuna_lab.testing import make_random_checkpoint

    path = probe_precision.WORK / f"smoke_{variant}_{family}"
    if not (path / "model-00001-of-00001.safetensors").exists():
        make_random_checkpoint(path, variant=variant, n_layers=4, seed=0 if family != "perturbed" else 11,
                               perturb=0.02 if family == "perturbed" else 0.0)
    return path


def main():
    global STEPS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["time", "errors"], required=True)
    parser.add_argument("--blocks", default="0,2,3,4", help="values of decoder_fp16_blocks (the first is the baseline)")
    parser.add_argument("--families", default="official,perturbed,random")
    parser.add_argument("--smoke", action="store_true", help="CPU rehearsal: small random checkpoints, tiny shapes")
    args = parser.parse_args()
    blocks = [int(k) for k in args.blocks.split(",")]
    probe_precision.WORK.mkdir(parents=True, exist_ok=True)
    if args.smoke:
        STEPS = 2
        bench_cases, family_cases = [("1x3", 1, 3), ("2x2", 2, 2)], [(1, 3)]
        checkpoint_of = lambda variant, family: smoke_checkpoint(variant, family)  # noqa: E731
        bench_checkpoint = smoke_checkpoint("ZUNA1.1", "bench")
        families = "perturbed,random"
    else:
        bench_cases, family_cases = bench.CASES, [(1, 12), (8, 64)]
        bench.write_checkpoint_ours()
        checkpoint_of = lambda variant, family: (bench.CKPT if family == "bench"  # noqa: E731
                                                 else probe_precision.checkpoint(variant, family))
        bench_checkpoint = bench.CKPT
        families = args.families
    from zuna_lab.fast import kernels

    # the rehearsal runs the kernels' twins (the interpreter is slow; tests/fast checks the kernels)
    with kernels.eager() if args.smoke else contextlib.nullcontext():
        if args.part == "time":
            repeats = (1, 1) if args.smoke else (10, 3)
            part_time(blocks, bench_cases[:3], bench_checkpoint, *repeats)
        else:
            part_errors(blocks, families.split(","), bench_cases, family_cases, checkpoint_of)


if __name__ == "__main__":
    main()
