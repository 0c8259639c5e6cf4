"""Diagnostics for the GPU fast path (benchmarks/bench.py is the benchmark): cold-start phases,
SDPA backends and layouts, kernel-level profiles (eager and graphed), GEMM libraries.

    python benchmarks/probe_gpu.py SECTION [SECTION ...]   # cold sdpa profile profile_graphed shared_values blas
                                                          # hour encoder_epilogue encoder_memory

The A/B sections of the sessions that built the fast path (epilogue GEMMs per tile shape and per
part, TF32 encoder parts, low-rank K/V precision and tiles, attention tiles and limits, recomputed
residual, values as a view, stacked gains, TF32 decoder IO, launch knobs, row-chunked SwiGLU, FA2)
toggled switches that have left the library; their results are in results/gpu.md, and the commit
before this note has them. The kernels' tiles are module constants of zuna_lab.fast.kernels.
"""
import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
import bench  # noqa: E402


def section_cold():
    """Fresh processes, empty then warm Triton cache: import, load, first encode, first and warm sample."""
    code = r"""
import sys, time; t0 = time.perf_counter()
import torch; t1 = time.perf_counter()
sys.path[:0] = [sys.argv[1], sys.argv[2]]
import zuna_lab, bench; t2 = time.perf_counter()
m = zuna_lab.load_model(bench.CKPT, device="cuda"); torch.cuda.synchronize(); t3 = time.perf_counter()
tok, idx, noise = (t.cuda() for t in bench.make_inputs(1, 12))
lat = m.encode(tok, idx); torch.cuda.synchronize(); t4 = time.perf_counter()
m.sample(lat, idx, noise=noise, steps=50); torch.cuda.synchronize(); t5 = time.perf_counter()
m.sample(lat, idx, noise=noise, steps=50); torch.cuda.synchronize(); t6 = time.perf_counter()
print(f"import torch {t1-t0:.2f}  import zuna_lab {t2-t1:.2f}  load {t3-t2:.2f}  first encode {t4-t3:.2f}  first sample {t5-t4:.2f}  warm sample {t6-t5:.3f}  total-to-first {t5-t0:.2f}")
"""
    import tempfile
    bench.write_checkpoint_ours()
    bench.make_inputs(1, 12)    # builds mne's montage cache outside the timing
    cache = tempfile.mkdtemp(prefix="zuna_probe_triton_")
    env = dict(os.environ, TRITON_CACHE_DIR=cache)
    for label in ("empty kernel cache", "warm kernel cache"):
        start = time.perf_counter()
        res = subprocess.run([sys.executable, "-c", code, str(HERE.parent), str(HERE)], env=env,
                             capture_output=True, text=True)
        print(f"cold ({label}): wall {time.perf_counter() - start:.2f}\n", res.stdout, res.stderr[-2000:], flush=True)


def section_sdpa():
    from torch.nn.attention import SDPBackend, sdpa_kernel
    import triton.testing
    for b, s in ((32, 480), (8, 2560), (2, 5120), (1, 480)):
        q, k, v = (torch.randn(b, 8, s, 64, device="cuda", dtype=torch.bfloat16) for _ in range(3))
        flops = 4 * b * 8 * s * s * 64
        line = f"sdpa B={b} S={s}:"
        for backend in (SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION, SDPBackend.EFFICIENT_ATTENTION):
            try:
                with sdpa_kernel([backend]):
                    ms = triton.testing.do_bench(lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v))
                line += f"  {backend.name} {ms*1e3:.0f}us {flops / ms / 1e9:.0f}TF"
            except Exception as err:  # noqa: BLE001
                line += f"  {backend.name} failed ({str(err)[:60]})"
        # default choice, and the [B, S, H, D] transposed layout we pass
        qt, kt, vt = (t.transpose(1, 2).contiguous().transpose(1, 2) for t in (q, k, v))
        ms = triton.testing.do_bench(lambda: torch.nn.functional.scaled_dot_product_attention(qt, kt, vt))
        line += f"  default(BSHD) {ms*1e3:.0f}us {flops / ms / 1e9:.0f}TF"
        print(line, flush=True)


def _model(cuda_graphs=True):
    """The full-size bench checkpoint's fast model (default options, or without CUDA graphs)."""
    import zuna_lab
    from zuna_lab.fast import FastOptions, build
    bench.write_checkpoint_ours()
    if cuda_graphs:
        model = zuna_lab.load_model(bench.CKPT, device="cuda")
    else:
        model = build(zuna_lab.load_model(bench.CKPT, device="cuda", dtype="fp32"), FastOptions(cuda_graphs=False))
    model.kernels_ready(wait=True)          # the compiled kernels, not their twins
    return model


def section_profile():
    """Kernel tables of 4 eager (ungraphed) steps at three sizes, then of one graphed 1 x 12 reconstruction."""
    from torch.profiler import ProfilerActivity, profile
    model = _model(cuda_graphs=False)
    for n_epochs, n_channels in ((32, 12), (8, 64), (1, 12)):
        tokens, tok_idx, noise = (t.cuda() for t in bench.make_inputs(n_epochs, n_channels))
        latents = model.encode(tokens, tok_idx)
        model.sample(latents, tok_idx, noise=noise, steps=4)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            model.sample(latents, tok_idx, noise=noise, steps=4)
            torch.cuda.synchronize()
        print(f"== fast path {n_epochs} x {n_channels} ch, 4 steps, no CUDA graph")
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=18, max_name_column_width=60), flush=True)
    del model
    model = _model()
    tokens, tok_idx, noise = (t.cuda() for t in bench.make_inputs(1, 12))
    run = lambda: model.sample(model.encode(tokens, tok_idx), tok_idx, noise=noise, steps=50)  # noqa: E731
    run()
    warm, _ = bench.timed(run, repeats=10)
    enc, _ = bench.timed(lambda: model.encode(tokens, tok_idx), repeats=10)
    print(f"1x12 graphed: {warm * 1e3:.1f} ms (encode {enc * 1e3:.1f} ms)", flush=True)
    # every kernel of one graphed 1 x 12 reconstruction (CUPTI records the kernels of graph replays)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        run()
        torch.cuda.synchronize()
    kernels = [e for e in prof.events() if e.device_type.name == "CUDA"]
    busy = sum(e.device_time for e in kernels)
    print(f"1x12 graphed profile: {len(kernels)} kernels, {busy / 1e3:.1f} ms busy", flush=True)
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=25, max_name_column_width=70), flush=True)


def graph_bench(fn, repeats=20):
    """Microseconds per call of fn, replayed in a CUDA graph of ``repeats`` calls (as inside the model)."""
    import triton.testing
    fn()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(repeats):
            fn()
    return triton.testing.do_bench(graph.replay) / repeats


def section_blas():
    """GEMM library choices: cuBLAS (default), cuBLASLt, TunableOp; and SDPA input layouts."""
    import triton.testing
    for b, seq in ((8, 2560), (1, 480)):
        bshd = [torch.randn(b, seq, 8, 64, device="cuda", dtype=torch.bfloat16) for _ in range(3)]
        bhsd = [t.transpose(1, 2).contiguous() for t in bshd]
        flops = 4 * b * 8 * seq * seq * 64
        for name, (q, k, v) in (("BSHD", [t.transpose(1, 2) for t in bshd]), ("BHSD", bhsd)):
            ms = graph_bench(lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v))
            out = torch.nn.functional.scaled_dot_product_attention(q, k, v)
            print(f"sdpa {name} B={b} S={seq}: {ms * 1e3:.1f} us {flops / ms / 1e9:.0f} TF/s, out strides {out.stride()}", flush=True)
    model = _model()
    cases = [(8, 64), (1, 12), (32, 12)]
    inputs = {case: [t.cuda() for t in bench.make_inputs(*case)] for case in cases}

    def run_all(label):
        model.clear_graphs()
        for case in cases:
            tokens, tok_idx, noise = inputs[case]
            run = lambda: model.sample(model.encode(tokens, tok_idx), tok_idx, noise=noise, steps=50)  # noqa: E731
            start = time.perf_counter()
            run()
            torch.cuda.synchronize()
            first = time.perf_counter() - start
            warm, _ = bench.timed(run, repeats=10 if case[0] == 1 else 3)
            print(f"blas {label} {case[0]}x{case[1]}: first {first:.2f} s, warm {warm * 1e3:.1f} ms {case[0] / warm:.3f} ep/s", flush=True)

    run_all("cublas")
    torch.backends.cuda.preferred_blas_library("cublaslt")
    run_all("cublaslt")
    torch.backends.cuda.preferred_blas_library("cublas")
    try:
        torch.cuda.tunable.enable(True)
        torch.cuda.tunable.tuning_enable(True)
        torch.cuda.tunable.set_max_tuning_duration(30)
        torch.cuda.tunable.set_filename("/tmp/tunableop.csv")
        run_all("tunableop-tuning")
        torch.cuda.tunable.tuning_enable(False)
        run_all("tunableop-tuned")
        print("tunableop results:", len(torch.cuda.tunable.get_results()), flush=True)
    except Exception as err:  # noqa: BLE001
        print("tunableop failed:", err, flush=True)


def section_shared_values():
    """Cross-attention with the rank-33 factor as values shared by all heads (d_v 40/48) vs per-head d 64."""
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel
    bsz, seq = 8, 2560
    q, k = (torch.randn(bsz, 8, seq, 64, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    for d_v in (64, 48, 40):
        for shared in (False, True):
            v = torch.randn(bsz, 1 if shared else 8, seq, d_v, device="cuda", dtype=torch.bfloat16).expand(bsz, 8, seq, d_v)
            line = f"shared_values d_v={d_v} shared={shared}:"
            for backend in (None, SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION):
                try:
                    ctx = sdpa_kernel([backend]) if backend is not None else contextlib.nullcontext()
                    with ctx:
                        us = graph_bench(lambda: F.scaled_dot_product_attention(q, k, v), repeats=5)
                    line += f"  {backend.name if backend else 'default'} {us * 1e3:.0f}us"
                except Exception as exc:  # noqa: BLE001
                    line += f"  {backend.name if backend else 'default'} failed ({str(exc)[:40]})"
            print(line, flush=True)


def section_profile_graphed():
    """Kernel table of one graphed 4-step sample at 8 x 64 and of one cuDNN SDPA call (its memset)."""
    from torch.profiler import ProfilerActivity, profile
    import torch.nn.functional as F
    model = _model()
    for n_epochs, n_channels, steps in ((8, 64, 4), (1, 12, 10)):
        tokens, tok_idx, noise = (t.cuda() for t in bench.make_inputs(n_epochs, n_channels))
        latents = model.encode(tokens, tok_idx)
        run = lambda: model.sample(latents, tok_idx, noise=noise, steps=steps)  # noqa: E731
        run()
        warm, _ = bench.timed(run, repeats=5)
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            run()
            torch.cuda.synchronize()
        kernels = [e for e in prof.events() if e.device_type.name == "CUDA"]
        busy = sum(e.device_time for e in kernels)
        print(f"== graphed {n_epochs} x {n_channels}, {steps} steps: {warm * 1e3:.1f} ms wall, "
              f"{len(kernels)} kernels, {busy / 1e3:.1f} ms busy", flush=True)
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=22, max_name_column_width=70), flush=True)
    q, k, v = (torch.randn(1, 480, 8, 64, device="cuda", dtype=torch.bfloat16).transpose(1, 2) for _ in range(3))
    F.scaled_dot_product_attention(q, k, v)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        F.scaled_dot_product_attention(q, k, v)
        torch.cuda.synchronize()
    print("one SDPA call:", [e.name[:80] for e in prof.events() if e.device_type.name == "CUDA"], flush=True)


def section_hour():
    """Where the 1 h x 64 ch ``zl.embed(path)`` spends its time: read, read + preprocess, tokenise
    alone, encode alone (tokens already on the GPU), and the whole call."""
    import numpy as np
    import zuna_lab
    from zuna_lab.api.core import prepare
    from zuna_lab.pipeline import masks
    from zuna_lab.pipeline.batching import auto_batch_size
    from zuna_lab.pipeline.tokens import epoch_masks, tokenize

    bench.write_checkpoint_ours()
    model = zuna_lab.load_model(bench.CKPT, device="cuda")
    model.kernels_ready(wait=True)
    print("warm-up embed", bench.embed_hour(model), flush=True)       # writes the file too
    path = str(bench.WORK / "hour_64ch_raw.fif")
    times = {}

    def timed(name, fn):
        torch.cuda.synchronize()
        start = time.perf_counter()
        result = fn()
        torch.cuda.synchronize()
        times[name] = time.perf_counter() - start
        return result

    timed("read", lambda: zuna_lab.read_raw(path, verbose=False))
    prepared = timed("read+preprocess", lambda: prepare(path, model.variant))
    pre = prepared.pre
    layout = epoch_masks(pre, masks.request(prepared.raw, bads=prepared.bads, use_annotations=True, mask=None))
    size = auto_batch_size(model, 64 * 40)
    groups = [list(range(i, min(i + size, pre.n_epochs))) for i in range(0, pre.n_epochs, size)]

    def tokenise_all():
        out = []
        for indices in groups:
            epochs = np.stack([layout.inputs(pre, i) for i in indices])
            batch_masks = np.stack([layout.masks[i] for i in indices])
            out.append(tokenize(epochs, layout.ch_pos, variant=model.variant, mask=batch_masks))
        return out

    batches = timed("tokenise", tokenise_all)
    on_gpu = [(torch.from_numpy(t).cuda(), torch.from_numpy(i).cuda()) for t, i in batches]
    for label in ("encode alone", "encode alone again"):
        timed(label, lambda: [model.encode(t, i) for t, i in on_gpu])
    times["encode TFLOP/s"] = bench.flops_encode(pre.n_epochs, 64) / times["encode alone again"] / 1e12
    for label in ("embed", "embed again"):
        timed(label, lambda: zuna_lab.embed(path, model=model, progress=False, verbose=False))
    print("hour:", dict(batch_size=size, **{k: round(v, 3) for k, v in times.items()}), flush=True)


def section_encoder_epilogue():
    """The encoder's QKV and SwiGLU GEMMs with their Triton epilogues (default) or through cuBLAS then a
    kernel ("plain"): encode time at hour-sized batches (A/B/A/B), latents and 1 x 12 samples against the
    exact fp32 path."""
    import zuna_lab
    from zuna_lab.fast import FastOptions, build, kernels

    bench.write_checkpoint_ours()
    ref = zuna_lab.load_model(bench.CKPT, device="cuda", dtype="fp32")
    fused = build(ref, FastOptions())
    fusable = kernels.gemm_fusable
    kernels.gemm_fusable = lambda *a, **k: False
    try:
        plain = build(ref, FastOptions())
    finally:
        kernels.gemm_fusable = fusable
    for m in (fused, plain):
        m.kernels_ready(wait=True)
    models = dict(fused=fused, plain=plain)
    for n_epochs in (32, 52):
        tokens, tok_idx, _ = (t.cuda() for t in bench.make_inputs(n_epochs, 64))
        times = {name: [] for name in models}
        for name in [*models, *models]:
            models[name].encode(tokens, tok_idx)
            seconds, _ = bench.timed(lambda: models[name].encode(tokens, tok_idx), repeats=5)
            times[name].append(round(seconds * 1e3, 2))
        flops = bench.flops_encode(n_epochs, 64)
        print(f"encode {n_epochs} x 64 ch, ms (A/B/A/B):", times,
              {name: round(flops / (min(v) / 1e3) / 1e12) for name, v in times.items()}, "TFLOP/s", flush=True)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False

    def rel(a, b):
        return float((a.float() - b.float()).norm() / b.float().norm())

    for n_epochs, n_channels in ((1, 12), (8, 64)):
        tokens, tok_idx, noise = (t.cuda() for t in bench.make_inputs(n_epochs, n_channels))
        exact = ref.encode(tokens, tok_idx)
        line = {name: dict(latents=round(rel(m.encode(tokens, tok_idx), exact) * 1e3, 3)) for name, m in models.items()}
        if n_channels == 12:
            exact_samples = ref.sample(exact, tok_idx, noise=noise, steps=50)
            for name, m in models.items():
                line[name]["samples"] = round(rel(m.sample(m.encode(tokens, tok_idx), tok_idx, noise=noise, steps=50),
                                                  exact_samples) * 1e3, 3)
        print(f"errors x1e-3 {n_epochs} x {n_channels}:", line, flush=True)


def section_encoder_memory():
    """Peak GPU memory of the default model's encode at hour-sized batches (64 channels), against what
    ``auto_batch_size`` assumes per epoch."""
    import zuna_lab
    from zuna_lab.pipeline.batching import auto_batch_size

    bench.write_checkpoint_ours()
    model = zuna_lab.load_model(bench.CKPT, device="cuda")
    model.kernels_ready(wait=True)
    base = torch.cuda.memory_allocated()
    free, total = torch.cuda.mem_get_info()
    print("auto_batch_size(64 ch):", auto_batch_size(model, 64 * 40), f"free {free / 2**30:.1f} of {total / 2**30:.1f} GiB",
          flush=True)
    for n_epochs in (16, 32, 64, 128):
        tokens, tok_idx, _ = (t.cuda() for t in bench.make_inputs(n_epochs, 64))
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        model.encode(tokens, tok_idx)
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
        print(f"encode {n_epochs} x 64 ch: peak {peak / 2**30:.2f} GiB above the weights, "
              f"{peak / n_epochs / 2**20:.0f} MiB per epoch", flush=True)


if __name__ == "__main__":
    for name in sys.argv[1:]:
        print(f"##### {name}", flush=True)
        start = time.perf_counter()
        globals()[f"section_{name}"]()
        print(f"##### {name} done in {time.perf_counter() - start:.1f} s", flush=True)
