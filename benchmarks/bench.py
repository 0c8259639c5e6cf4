"""Benchmark: zuna_lab against the official zuna 1.1.6, side by side on the same machine.

GPU (one command, one machine; from the repository root):

    python benchmarks/bench.py --part gpu        # official, then zuna_lab, then a cold process; writes results/gpu.*

runs, each in its own process on the same GPU, ``--part official`` (the official EncoderDecoder,
fp32, its ``sample`` and encoder torch.compile'd as its inference script runs them), ``--part
ours`` (zuna_lab's default CUDA path: bf16 + Triton kernels + CUDA graphs, ``zuna_lab.fast``; then
the exact fp32 path for the errors) and ``--part cold`` (fresh processes with empty kernel
caches), then ``--report``.
Both models are the real ZUNA1.1 architecture (1024 wide, 16 layers, 382 M parameters) with the
same random weights (seeded official init, shared through a safetensors file). Timed:
reconstruction (encode + 50-step rectified flow, cfg 1) of 5 s epochs — 1 epoch x 12 ch
(latency, cold and warm), 32 x 12 ch, 8 x 64 ch, 2 x 128 ch — and zuna_lab's end-to-end
embedding of a 1 h x 64 ch recording (read + preprocess + encode). FLOPs follow issue #5's
formulas (forward, 2 x MACs).

CPU (the same comparison on this machine's cores; needs tests/oracle/setup_venvs.sh and ../shared/data):

    python benchmarks/bench.py --part cpu [--threads 2]     # writes results/cpu.*
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
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


def apply_ab_knobs():
    """A/B switches of the benchmark runs (never of the library), from the environment:
    ZUNA_BENCH_REDUCED=1 leaves cuBLAS's 16-bit split-K reductions at torch's default (allowed).
    (ZUNA_BENCH_NO_AHEAD, the A/B of compiling kernels ahead, left with that experiment:
    results/precision.md.)"""
    if os.environ.get("ZUNA_BENCH_REDUCED"):
        from zuna_lab.fast import runner

        def enter(self):
            self.previous = [getattr(torch.backends.cuda.matmul, name) for name in self.FLAGS]
            torch.backends.cuda.matmul.allow_tf32 = self.tf32 or self.previous[0]
        runner.gemm_flags.__enter__ = enter


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


def time_case(run, n_epochs, n_channels, repeats):
    """(results, output) of one reconstruction case: the first call of the shape (compilation or
    graph capture), the median warm time, its rates and the peak memory."""
    torch.cuda.reset_peak_memory_stats()
    sync()
    start = time.perf_counter()
    run()
    sync()
    cold = time.perf_counter() - start
    warm, output = timed(run, repeats=repeats)
    return dict(n_epochs=n_epochs, n_channels=n_channels, cold_s=cold, warm_s=warm, epochs_per_s=n_epochs / warm,
                tflops=flops_reconstruct(n_epochs, n_channels) / warm / 1e12,
                peak_mem_gib=torch.cuda.max_memory_allocated() / 2**30), output


def measured_peak():
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    seconds, _ = timed(lambda: [a @ b for _ in range(10)], repeats=3)
    return 10 * 2 * 8192 ** 3 / seconds


def make_inputs(n_epochs, n_channels, seed=0, n_bins=100):
    """Tokens of n_epochs 5 s epochs on a real 10-05 cap, official (ZUNA1.1, time-major) order;
    positions in ``n_bins`` bins per axis (ZUNA1.1's 100; ZUNA's 50)."""
    import mne
    montage = mne.channels.make_standard_montage("standard_1005")
    names = montage.ch_names[:n_channels]
    positions = montage.get_positions()["ch_pos"]
    pos = np.array([positions[n] for n in names])
    bins = np.clip(np.floor((pos + 0.12) / 0.24 * n_bins), 0, n_bins - 1).astype(np.int64)
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

        # the official 32 x 12 takes ~16 s a run
        results[name], _ = time_case(run, n_epochs, n_channels, repeats=2 if n_epochs > 1 else 5)
        print("official", name, results[name], flush=True)
        out["official"] = results
        save(out)


def part_ours(out, dtype=None):
    sys.path.insert(0, str(code_root()))
    import dataclasses

    import zuna_lab
    write_checkpoint_ours()
    if code_root() == ROOT:
        apply_ab_knobs()
    t0 = time.perf_counter()
    # each code's own default (a baseline of the bf16 era: ZUNA_BENCH_DTYPE=bf16)
    model = zuna_lab.load_model(CKPT, device="cuda", dtype=dtype or os.environ.get("ZUNA_BENCH_DTYPE") or None)
    load_s = time.perf_counter() - t0
    if hasattr(model, "kernels_ready"):       # timings of the compiled kernels, not of their twins
        model.kernels_ready(wait=True)
    weights = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    results = {"load_s": load_s, "path": dict(model=type(model).__name__, **dataclasses.asdict(model.options)),
               "memory_after_load_gb": torch.cuda.memory_allocated() / 1e9, "weights_gb": weights / 1e9}
    outputs = {}
    for name, n_epochs, n_channels in CASES:
        tokens, tok_idx, noise = (t.cuda() for t in make_inputs(n_epochs, n_channels))

        def run():
            latents = model.encode(tokens, tok_idx)
            return latents, model.sample(latents, tok_idx, noise=noise, steps=STEPS)

        model.clear_graphs()            # peak memory: the weights and this shape's graph
        results[name], outputs[name] = time_case(run, n_epochs, n_channels, repeats=10 if n_epochs == 1 else 3)
        print("ours", name, results[name], flush=True)
        out["ours"] = results
        save(out)
    model.clear_graphs()
    if not os.environ.get("ZUNA_BENCH_NO_HOUR"):
        results["embed_1h_64ch_first"] = embed_hour(model)
        results["embed_1h_64ch"] = embed_hour(model)
        print("ours embed 1h", results["embed_1h_64ch_first"], results["embed_1h_64ch"], flush=True)
    if os.environ.get("ZUNA_BENCH_QUICK"):          # timings only: no errors against the exact path
        out["ours"] = results
        save(out)
        return
    del model
    # Errors against the exact fp32 path (the reference model, plain PyTorch, no TF32, no kernels)
    exact = zuna_lab.load_model(CKPT, device="cuda", dtype="fp32")
    for name, n_epochs, n_channels in CASES:
        tokens, tok_idx, noise = (t.cuda() for t in make_inputs(n_epochs, n_channels))
        ref_latents = exact.encode(tokens, tok_idx)
        ref = exact.sample(ref_latents, tok_idx, noise=noise, steps=STEPS)
        latents, samples = outputs[name]
        results[name]["bf16_vs_fp32_rel_l2"] = float((samples - ref).norm() / ref.norm())
        results[name]["latents_bf16_vs_fp32_rel_l2"] = float((latents - ref_latents).norm() / ref_latents.norm())
        print("ours", name, "errors", results[name], flush=True)
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
    from zuna_lab.pipeline.preprocessing import preprocess
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


COLD_CHILD = r"""
import json, os, sys, time
t0 = time.perf_counter()
import torch
sys.path[:0] = [sys.argv[1], sys.argv[2]]
import zuna_lab, bench
if sys.argv[1] == str(bench.ROOT):
    bench.apply_ab_knobs()
mode, dtype = sys.argv[3], (None if sys.argv[4] == "default" else sys.argv[4])
cache = os.environ["TRITON_CACHE_DIR"]
def compiled():
    return sum(len(files) for _, _, files in os.walk(cache))
def ready():
    return getattr(model, "kernels_ready", lambda: True)()
t1 = time.perf_counter()
model = zuna_lab.load_model(bench.CKPT, device="cuda", dtype=dtype)
torch.cuda.synchronize()
t2 = time.perf_counter()
out = dict(imports_s=t1 - t0, load_s=t2 - t1, precision=model.precision, kernels_ready_after_load=ready())
if mode.startswith("embed"):
    if mode == "embed_profile":
        import cProfile, io, pstats
        profiler = cProfile.Profile()
        profiler.enable()
    zuna_lab.embed(bench.sample_15s(), model=model, progress=False)
    torch.cuda.synchronize()
    out["first_embed_s"] = time.perf_counter() - t2
    if mode == "embed_profile":
        profiler.disable()
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumtime").print_stats(40)
        out["profile"] = text.getvalue().splitlines()[-48:]
    out["process_to_first_result_s"] = time.perf_counter() - t0
    out["kernels_ready_after_first_embed"] = ready()
else:
    tokens, tok_idx, noise = (t.cuda() for t in bench.make_inputs(1, 12))
    def call():
        start = time.perf_counter()
        model.sample(model.encode(tokens, tok_idx), tok_idx, noise=noise, steps=bench.STEPS)
        torch.cuda.synchronize()
        return time.perf_counter() - start
    out["first_call_s"] = call()
    out["process_to_first_result_s"] = time.perf_counter() - t0
    out["kernels_ready_after_first_call"] = ready()
    out["second_call_s"] = call()
    start = time.perf_counter()
    if hasattr(model, "kernels_ready"):
        model.kernels_ready(wait=True)
    out["kernels_ready_s_after_load"] = time.perf_counter() - t2
    out["wait_for_kernels_s"] = time.perf_counter() - start
    out["first_kernel_call_s"] = call()
    out["warm_call_s"] = call()
    # new shapes: another channel count and batch size, once every kernel compilation has ended
    before = compiled()
    for n_epochs, n_channels in ((1, 13), (3, 17)):
        tokens, tok_idx, noise = (t.cuda() for t in bench.make_inputs(n_epochs, n_channels))
        out[f"first_{n_epochs}x{n_channels}_s"] = call()
    out["files_compiled_for_new_shapes"] = compiled() - before
print(json.dumps(out))
"""


def sample_15s() -> str:
    """A 15 s x 12 channel cut of the project's synthetic recording (data/), as a FIF file."""
    import mne
    path = WORK / "sample_15s_12ch_raw.fif"
    if not path.exists():
        WORK.mkdir(parents=True, exist_ok=True)
        raw = mne.io.read_raw_fif(ROOT / "data" / "sample_synthetic_raw.fif", preload=True, verbose="error")
        raw.crop(0, 15, include_tmax=False).pick(raw.ch_names[:12]).save(path, verbose="error")
    return str(path)


def part_cold(out, dtype=None):
    """Fresh processes: imports, load, the first (and second) 1 x 12 reconstruction, then new shapes;
    and the first embed of a 15 s x 12 ch recording.

    Each "empty" process gets an empty Triton kernel cache (a machine that never ran zuna_lab); the
    "warm" one reuses what the first compiled (what any later session on the machine sees).
    """
    write_checkpoint_ours()
    sample_15s()
    make_inputs(1, 12)      # mne's montage files read once outside the timings
    caches = {label: tempfile.mkdtemp(prefix=f"zuna_triton_{label}_") for label in ("reconstruct", "embed")}
    caches["profile"] = tempfile.mkdtemp(prefix="zuna_triton_profile_")
    runs = (("empty_cache", "reconstruct", caches["reconstruct"]), ("embed_empty_cache", "embed", caches["embed"]),
            ("warm_cache", "reconstruct", caches["reconstruct"]),
            ("embed_profile_empty_cache", "embed_profile", caches["profile"]))
    for label, mode, cache in runs:
        env = dict(os.environ, TRITON_CACHE_DIR=cache, TORCHINDUCTOR_CACHE_DIR=cache)
        done = subprocess.run([sys.executable, "-c", COLD_CHILD, str(code_root()), str(ROOT / "benchmarks"), mode,
                               dtype or "default"], env=env, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(done.stderr[-3000:])
        out[f"cold_1x12_{label}"] = json.loads(done.stdout.strip().splitlines()[-1])
        print("cold", label, {k: v for k, v in out[f"cold_1x12_{label}"].items() if k != "profile"}, flush=True)
    save(out)


def code_root() -> Path:
    """The zuna_lab that is timed: this checkout, or ``$ZUNA_BENCH_CODE`` (an older copy, for a baseline)."""
    return Path(os.environ.get("ZUNA_BENCH_CODE") or ROOT).resolve()


def part_gpu(out):
    """Official, ours and cold, each in its own process on this GPU, then the report."""
    env = dict(os.environ, ZUNA_BENCH_OUT=str(results_dir()))
    for part in ("official", "ours", "cold"):
        subprocess.run([sys.executable, __file__, "--part", part], check=True, env=env)
    report([results_dir() / f"gpu_{part}.json" for part in ("official", "ours", "cold")])


def results_dir() -> Path:
    return Path(os.environ.get("ZUNA_BENCH_OUT") or os.environ.get("OUT") or WORK)


def save(out):
    RESULTS.mkdir(parents=True, exist_ok=True)
    WORK.mkdir(parents=True, exist_ok=True)
    results_dir().mkdir(parents=True, exist_ok=True)
    label = os.environ.get("ZUNA_BENCH_LABEL", "")      # e.g. "_baseline" for an older copy's run
    (results_dir() / f"gpu_{out['part']}{label}.json").write_text(json.dumps(out, indent=2))


NOTES_MARKER = "<!-- notes: kept as they are by bench.py --report -->"


def report(paths):
    parts = {}
    for p in paths:
        data = json.loads(Path(p).read_text())
        parts[data["part"]] = data
    official = parts.get("official", {}).get("official", {})
    ours_part = parts.get("ours", {})
    ours = ours_part.get("ours", {})
    cold = parts.get("cold", {})
    peak = ours_part.get("peak_tflops") or 780.0
    reused = parts.get("official", {}).get("reused_from")
    together = (f"ran on this GPU kind; the official figures are those of {reused}, zuna_lab's were measured "
                "again" if reused else "ran in one command on this GPU, one after the other")
    lines = [f"# GPU benchmark — {ours_part.get('gpu', '?')}", "",
             f"torch {ours_part.get('torch')}; measured bf16 matmul peak {peak:.0f} TFLOP/s. Official zuna 1.1.6 "
             "(fp32, compiled `sample` and encoder, as its inference runs) and zuna_lab (its default on CUDA, "
             f"`zuna_lab.fast`: precision {ours.get('path', {}).get('precision', '?')!r}, Triton kernels, CUDA graphs) "
             f"{together}. "
             "Reconstruction = encode + 50 rectified-flow steps (cfg 1) of 5 s epochs, random full-size ZUNA1.1 "
             "weights shared by both. `vs exact` is the relative L2 distance of zuna_lab's default output (latents; "
             "50-step samples) from its exact fp32 path (same noise and weights; before 2026-11-29 the fp32 path ran with "
             "bf16-rounded attention and SwiGLU weights, see the notes). TFLOP/s count the FLOPs of issue #5's formulas, i.e. of the model "
             "as written; zuna_lab forms the decoder's cross-attention keys and values from the rank-33 context "
             "factor (zuna_lab/fast/model.py), so it executes about 8 % fewer decoder FLOPs than it is credited with.",
             "",
             "| case | official (epochs/s) | zuna_lab (epochs/s) | speed-up | zuna_lab TFLOP/s | % of peak | "
             "zuna_lab warm (s) | zuna_lab first call (s) | peak mem (GiB) | vs exact: latents | vs exact: samples |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, _, _ in CASES:
        o, z = official.get(name), ours.get(name)
        if not z:
            continue
        speed = f"{z['epochs_per_s'] / o['epochs_per_s']:.1f}x" if o else "—"
        lines.append((f"| {name} | {o['epochs_per_s']:.2f} | " if o else f"| {name} | — | ")
                     + f"{z['epochs_per_s']:.2f} | {speed} | {z['tflops']:.0f} | {100 * z['tflops'] / peak:.0f}% | "
                     f"{z['warm_s']:.3f} | {z['cold_s']:.2f} | {z['peak_mem_gib']:.1f} | "
                     f"{z.get('latents_bf16_vs_fp32_rel_l2', float('nan')):.2e} | "
                     f"{z.get('bf16_vs_fp32_rel_l2', float('nan')):.2e} |")
    if "memory_after_load_gb" in ours:
        lines += ["", f"Memory after `load_model`: {ours['memory_after_load_gb']:.3f} GB allocated for "
                      f"{ours['weights_gb']:.3f} GB of weights in the precision they are used in."]
    if "1x12" in ours:
        o = official.get("1x12")
        lines += ["", f"Latency, 1 epoch x 12 ch, 50 steps, warm: {1e3 * ours['1x12']['warm_s']:.1f} ms"
                  + (f" (official {1e3 * o['warm_s']:.0f} ms)." if o else ".")]
    for label, key in (("empty kernel cache", "cold_1x12_empty_cache"), ("kernel cache from an earlier process", "cold_1x12_warm_cache")):
        if key in cold:
            c = cold[key]
            lines.append(f"Cold start, fresh process, {label}: first 1 x 12 reconstruction {c['first_call_s']:.1f} s after "
                         f"`load_model` ({c['load_s']:.1f} s) and imports ({c['imports_s']:.1f} s); "
                         f"{c['process_to_first_result_s']:.1f} s from process start to the first result.")
    if official:
        lines.append("Official first call (torch.compile): " + ", ".join(f"{k} {v['cold_s']:.0f} s" for k, v in official.items()) + ".")
    for label, key in (("first call", "embed_1h_64ch_first"), ("warm", "embed_1h_64ch")):
        if key in ours:
            e = ours[key]
            lines.append(f"1 h x 64 ch embedded end to end ({label}; `zl.embed(path)`: read + preprocess + encode, "
                         f"{e['n_epochs']} epochs): {e['seconds']:.1f} s (read alone {e['read_s']:.1f} s, preprocess alone "
                         f"{e['preprocess_s']:.1f} s; {e['encoder_tflops']:.0f} TFLOP/s over the encoder FLOPs).")
    how = ("`python benchmarks/bench.py --part ours` and `--part cold`, merged with the earlier official part by "
           "`--report`" if reused else "`python benchmarks/bench.py --part gpu` (one command)")
    lines += ["", f"Measured {time.strftime('%Y-%m-%d')} by {how}, code at the commit that adds this file."]
    merged = dict(parts=parts, date=time.strftime("%Y-%m-%d"))
    # hand-written notes (ablations, negative results) below the marker survive a new report
    previous = RESULTS / "gpu.md"
    text = previous.read_text() if previous.exists() else ""
    notes = text[text.index(NOTES_MARKER):] if NOTES_MARKER in text else ""
    for folder in {RESULTS, results_dir()}:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "gpu.json").write_text(json.dumps(merged, indent=2))
        (folder / "gpu.md").write_text("\n".join(lines) + "\n\n" + notes)
    print("\n".join(lines))


def part_cpu(args):
    """zuna_lab's CPU paths vs the official package and braindecode: see benchmarks/bench_cpu.py."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_cpu

    bench_cpu.run(threads=args.threads, steps=args.steps, rounds=args.rounds, minutes=args.minutes,
                  braindecode=args.braindecode, official=not args.no_official)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["gpu", "ours", "official", "cold", "cpu"])
    parser.add_argument("--report", nargs="*", help="merge gpu_*.json files into results/gpu.json and gpu.md")
    parser.add_argument("--threads", type=int, default=2, help="CPU part: torch threads")
    parser.add_argument("--steps", type=int, default=10, help="CPU part: sampler steps")
    parser.add_argument("--rounds", type=int, default=3, help="CPU part: interleaved rounds of the encoders")
    parser.add_argument("--minutes", type=float, default=2.0, help="CPU part: minutes of the 64-channel recording")
    parser.add_argument("--braindecode", help="CPU part: a folder holding braindecode (pip install --target)")
    parser.add_argument("--no-official", action="store_true", help="CPU part: leave the official package out")
    parser.add_argument("--dtype", default=None, help="GPU parts: load_model's dtype (default: the library's)")
    args = parser.parse_args()
    if args.report is not None:
        report(args.report)
        return
    if args.part == "cpu":
        part_cpu(args)
        return
    out = {"part": args.part, "gpu": torch.cuda.get_device_name(), "torch": torch.__version__}
    if args.part in ("ours", "official"):
        out["peak_tflops"] = measured_peak() / 1e12
        print("peak", out["peak_tflops"], flush=True)
    if args.part in ("ours", "cold"):
        out["code"] = str(code_root())
        {"ours": part_ours, "cold": part_cold}[args.part](out, dtype=args.dtype)
    else:
        {"gpu": part_gpu, "official": part_official}[args.part](out)


if __name__ == "__main__":
    main()
