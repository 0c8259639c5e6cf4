"""GPU benchmark: zuna_lab vs the official zuna 1.1.6, side by side on the same GPU.

Run on a CUDA machine from the repository root:

    python benchmarks/bench_gpu.py --part ours       # zuna_lab, bf16 fast path (+ fp32 for errors)
    python benchmarks/bench_gpu.py --part official   # official EncoderDecoder, fp32, torch.compile'd sample
    python benchmarks/bench_gpu.py --report          # merge into results/gpu.json + results/gpu.md

Both parts build the real ZUNA1.1 architecture (1024 wide, 16 layers, 382 M parameters) with the
same random weights (seeded official init, shared through a safetensors file) and time
reconstruction (encode + 50-step rectified flow, cfg 1) of 5 s epochs:
1 epoch x 12 ch (latency, cold and warm), 32 x 12 ch, 8 x 64 ch, 2 x 128 ch; plus zuna_lab's
end-to-end embedding of a 1 h x 64 ch recording (read + preprocess + encode).
FLOPs follow the issue's formulas (forward, 2 x MACs).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import warnings

import numpy as np
import torch

warnings.filterwarnings("ignore", category=FutureWarning)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
WORK = Path(os.environ.get("ZUNA_BENCH_WORK", "/tmp/zuna_bench"))
CKPT = WORK / "ckpt"
STEPS = 50
CASES = [("1x12", 1, 12), ("32x12", 32, 12), ("8x64", 8, 64), ("2x128", 2, 128)]


def flops_reconstruct(n_epochs, n_channels, steps=STEPS):
    s = 40 * n_channels
    encoder = 2 * s * 3.44e8 + 32768 * (2 * s) ** 2
    decoder = s * 4.11e8 + 65536 * s ** 2
    return n_epochs * (encoder + steps * decoder)


def flops_encode(n_epochs, n_channels):
    s = 40 * n_channels
    return n_epochs * (2 * s * 3.44e8 + 32768 * (2 * s) ** 2)


def sync():
    torch.cuda.synchronize()


def timed(fn, repeats=3):
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        out = fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def measured_peak():
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    seconds, _ = timed(lambda: [a @ b for _ in range(10)], repeats=3)
    return 10 * 2 * 8192 ** 3 / seconds


def make_inputs(n_epochs, n_channels, seed=0):
    """Tokens of n_epochs 5 s epochs on a real 10-05 cap, official (ZUNA1.1, time-major) order."""
    import mne
    montage = mne.channels.make_standard_montage("standard_1005")
    names = montage.ch_names[:n_channels]
    positions = montage.get_positions()["ch_pos"]
    pos = np.array([positions[n] for n in names])
    bins = np.clip(np.floor((pos + 0.12) / 0.24 * 100), 0, 99).astype(np.int64)
    n_tok = 40
    tok_idx = np.zeros((n_tok * n_channels, 4), np.int64)
    for t in range(n_tok):
        tok_idx[t * n_channels:(t + 1) * n_channels, :3] = bins
        tok_idx[t * n_channels:(t + 1) * n_channels, 3] = t
    g = torch.Generator().manual_seed(seed)
    tokens = (0.1 * torch.randn(n_epochs, n_tok * n_channels, 32, generator=g)).clamp(-1, 1)
    tokens[:, 3::n_channels] = 0.0            # one dropped channel, as in a repair
    noise = torch.randn(n_epochs, n_tok * n_channels, 32, generator=g)
    return tokens, torch.from_numpy(tok_idx).expand(n_epochs, -1, -1).contiguous(), noise


def official_args():
    from apps.AY2latent_bci.transformer import DecoderTransformerArgs
    return DecoderTransformerArgs(
        dim=1024, n_layers=16, head_dim=64, input_dim=32, encoder_input_dim=32, encoder_output_dim=32,
        encoder_latent_downsample_factor=1, encoder_sliding_window=65536, sliding_window=65536,
        xattn_sliding_window=65536, max_seqlen=256, num_fine_time_pts=32, rope_dim=4, rope_theta=10000.0,
        tok_idx_type="{x,y,z,tc}", stft_global_sigma=0.1, ape_dim=0, adaptive_loss_weighting=False)


def write_checkpoint():
    """Official init (seeded) of the real architecture, saved in the HF layout."""
    if (CKPT / "model-00001-of-00001.safetensors").exists():
        return
    from apps.AY2latent_bci.transformer import EncoderDecoder
    from safetensors.torch import save_file
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = EncoderDecoder(official_args())
        model.init_weights()
    fields = {k: getattr(official_args(), k) for k in (
        "dim", "n_layers", "head_dim", "input_dim", "encoder_input_dim", "encoder_output_dim",
        "encoder_latent_downsample_factor", "encoder_sliding_window", "sliding_window", "xattn_sliding_window",
        "max_seqlen", "num_fine_time_pts", "rope_dim", "rope_theta", "tok_idx_type", "stft_global_sigma", "ape_dim")}
    CKPT.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()},
              str(CKPT / "model-00001-of-00001.safetensors"))
    (CKPT / "config.json").write_text(json.dumps({"model": fields}))


def part_official(out):
    from apps.AY2latent_bci.transformer import EncoderDecoder
    from safetensors.torch import load_file
    write_checkpoint()
    model = EncoderDecoder(official_args()).cuda()
    state = load_file(str(CKPT / "model-00001-of-00001.safetensors"), device="cuda")
    model.load_state_dict(state, strict=True)
    model.eval()
    # As the official inference runs it on CUDA (eeg_eval.py): compiled sample and encoder, fp32.
    model.sample = torch.compile(model.sample)
    model.encoder = torch.compile(model.encoder)
    results = {}
    for name, n_epochs, n_channels in CASES[:3]:
        tokens, tok_idx, noise = make_inputs(n_epochs, n_channels)
        packed = tokens.reshape(1, -1, 32).cuda()
        packed_idx = tok_idx.reshape(1, -1, 4).cuda()
        seq_lens = torch.full((n_epochs,), tokens.shape[1], dtype=torch.long, device="cuda")

        def run():
            with torch.no_grad():
                return model.sample(packed, seq_lens, packed_idx, sample_steps=STEPS, cfg=1.0)[0]

        torch.cuda.reset_peak_memory_stats()
        sync()
        start = time.perf_counter()
        run()
        sync()
        cold = time.perf_counter() - start
        warm, _ = timed(run, repeats=3 if n_epochs > 1 else 5)
        results[name] = dict(n_epochs=n_epochs, n_channels=n_channels, cold_s=cold, warm_s=warm,
                             epochs_per_s=n_epochs / warm, tflops=flops_reconstruct(n_epochs, n_channels) / warm / 1e12,
                             peak_mem_gib=torch.cuda.max_memory_allocated() / 2**30)
        print("official", name, results[name], flush=True)
        out["official"] = results
        save(out)


def part_ours(out):
    sys.path.insert(0, str(ROOT))
    import zuna_lab
    write_checkpoint_ours()
    t0 = time.perf_counter()
    model = zuna_lab.load_model(CKPT, device="cuda", dtype="bf16")
    load_s = time.perf_counter() - t0
    results = {"load_s": load_s}
    for name, n_epochs, n_channels in CASES:
        tokens, tok_idx, noise = make_inputs(n_epochs, n_channels)
        tokens, tok_idx, noise = tokens.cuda(), tok_idx.cuda(), noise.cuda()

        def run():
            latents = model.encode(tokens, tok_idx)
            return model.sample(latents, tok_idx, noise=noise, steps=STEPS)

        torch.cuda.reset_peak_memory_stats()
        sync()
        start = time.perf_counter()
        run()
        sync()
        cold = time.perf_counter() - start          # first call of this shape: graph capture (+ kernel compile)
        warm, out_bf16 = timed(run, repeats=5 if n_epochs == 1 else 3)
        results[name] = dict(n_epochs=n_epochs, n_channels=n_channels, cold_s=cold, warm_s=warm,
                             epochs_per_s=n_epochs / warm, tflops=flops_reconstruct(n_epochs, n_channels) / warm / 1e12,
                             peak_mem_gib=torch.cuda.max_memory_allocated() / 2**30)
        if name in ("32x12", "8x64"):
            out_bf16 = out_bf16.float()
            model.set_precision("fp32")
            ref = model.sample(model.encode(tokens, tok_idx), tok_idx, noise=noise, steps=STEPS)
            model.set_precision("bf16")
            results[name]["bf16_vs_fp32_rel_l2"] = float((out_bf16 - ref).norm() / ref.norm())
        print("ours", name, results[name], flush=True)
        out["ours"] = results
        save(out)
    results["embed_1h_64ch"] = embed_hour(model)
    print("ours embed 1h", results["embed_1h_64ch"], flush=True)
    out["ours"] = results
    save(out)


def write_checkpoint_ours():
    if (CKPT / "model-00001-of-00001.safetensors").exists():
        return
    write_checkpoint()


def embed_hour(model):
    import mne
    import zuna_lab
    path = WORK / "hour_64ch_raw.fif"
    if not path.exists():
        names = mne.channels.make_standard_montage("standard_1005").ch_names[:64]
        rng = np.random.default_rng(0)
        n = 3600 * 256
        data = np.cumsum(rng.standard_normal((64, n)).astype(np.float32), axis=1) * 1e-7
        raw = mne.io.RawArray(data, mne.create_info(names, 256.0, "eeg"), verbose="error")
        raw.set_montage("standard_1005", verbose="error")
        raw.save(path, fmt="single", verbose="error")
    from zuna_lab.preprocessing import preprocess
    start = time.perf_counter()
    raw = zuna_lab.read_raw(str(path), verbose=False)
    read_s = time.perf_counter() - start
    start = time.perf_counter()
    preprocess(raw, model.variant)
    preprocess_s = time.perf_counter() - start
    torch.cuda.reset_peak_memory_stats()
    sync()
    start = time.perf_counter()
    emb = zuna_lab.embed(str(path), model=model, progress=False, verbose=False)
    sync()
    seconds = time.perf_counter() - start
    return dict(seconds=seconds, read_s=read_s, preprocess_s=preprocess_s, n_epochs=int(emb.sizes["epoch"]), shape=dict(emb.sizes),
                encoder_tflops=flops_encode(emb.sizes["epoch"], 64) / seconds / 1e12,
                peak_mem_gib=torch.cuda.max_memory_allocated() / 2**30)


def part_cold(out):
    """A fresh process: load + the first 1 x 12 reconstruction (inductor's disk cache may be warm)."""
    import zuna_lab
    start = time.perf_counter()
    model = zuna_lab.load_model(CKPT, device="cuda", dtype="bf16")
    tokens, tok_idx, noise = (t.cuda() for t in make_inputs(1, 12))
    latents = model.encode(tokens, tok_idx)
    model.sample(latents, tok_idx, noise=noise, steps=STEPS)
    sync()
    out["cold_1x12_fresh_process_s"] = time.perf_counter() - start
    print("cold", out, flush=True)
    save(out)


def save(out):
    RESULTS.mkdir(parents=True, exist_ok=True)
    WORK.mkdir(parents=True, exist_ok=True)
    path = Path(os.environ.get("OUT", WORK)) / f"gpu_{out['part']}.json"
    path.write_text(json.dumps(out, indent=2))


def report(paths):
    merged = {}
    for p in paths:
        merged.update(json.loads(Path(p).read_text()))
    peak = merged.get("peak_tflops") or 780.0
    lines = [f"# GPU benchmark — {merged.get('gpu', '?')}", "",
             f"torch {merged.get('torch')}, measured bf16 matmul peak {peak:.0f} TFLOP/s. "
             "Reconstruction = encode + 50 rectified-flow steps (cfg 1) of 5 s epochs, random full-size ZUNA1.1 weights.", "",
             "| case | official fp32 compiled (epochs/s) | zuna_lab bf16 (epochs/s) | speed-up | zuna_lab TFLOP/s | % of peak | zuna_lab warm (s) | zuna_lab cold (s) | peak mem (GiB) | bf16 vs fp32 rel L2 |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    official, ours = merged.get("official", {}), merged.get("ours", {})
    for name, _, _ in CASES:
        o, z = official.get(name), ours.get(name)
        if not z:
            continue
        speed = f"{z['epochs_per_s'] / o['epochs_per_s']:.1f}x" if o else "—"
        lines.append(f"| {name} | {o['epochs_per_s']:.2f} | " if o else f"| {name} | — | ")
        lines[-1] += (f"{z['epochs_per_s']:.2f} | {speed} | {z['tflops']:.0f} | {100 * z['tflops'] / peak:.0f}% | "
                      f"{z['warm_s']:.3f} | {z['cold_s']:.2f} | {z['peak_mem_gib']:.1f} | "
                      f"{z.get('bf16_vs_fp32_rel_l2', float('nan')):.2e} |")
    if "embed_1h_64ch" in ours:
        e = ours["embed_1h_64ch"]
        lines += ["", f"1 h x 64 ch embedded end to end (read + preprocess + encode, {e['n_epochs']} epochs): "
                  f"{e['seconds']:.1f} s ({e['encoder_tflops']:.0f} TFLOP/s over the encoder FLOPs)."]
    if "cold_1x12_fresh_process_s" in merged:
        lines += ["", f"zuna_lab cold start in a fresh process (load 1.5 GB checkpoint + first 1 x 12 reconstruction, "
                  f"inductor disk cache warm): {merged['cold_1x12_fresh_process_s']:.1f} s."]
    if official:
        lines += ["", "Official cold start (first call, compile): " + ", ".join(
            f"{k} {v['cold_s']:.0f} s" for k, v in official.items())]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "gpu.json").write_text(json.dumps(merged, indent=2))
    (RESULTS / "gpu.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--part", choices=["ours", "official", "cold"])
    parser.add_argument("--report", nargs="*")
    args = parser.parse_args()
    if args.report is not None:
        report(args.report)
        return
    out = {"part": args.part, "gpu": torch.cuda.get_device_name(), "torch": torch.__version__}
    if args.part != "cold":
        out["peak_tflops"] = measured_peak() / 1e12
        print("peak", out["peak_tflops"], flush=True)
    {"ours": part_ours, "official": part_official, "cold": part_cold}[args.part](out)


if __name__ == "__main__":
    main()
