"""Diagnostics for the GPU fast path (benchmarks/bench.py is the benchmark): cold-start phases,
SDPA backends, kernel-level profiles, the Triton kernels against PyTorch, per-case timings,
the error and cost of TF32 encoder sub-layers, and a Python profile of the 1 h x 64 ch embedding.

    python benchmarks/probe_gpu.py SECTION [SECTION ...]   # cold sdpa profile kernels timing tf32 embed
"""
import contextlib
import cProfile
import io
import os
import pstats
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
import bench as bench_gpu  # noqa: E402


def section_cold():
    code = r"""
import time; t0 = time.perf_counter()
import torch; t1 = time.perf_counter()
import zuna_lab, bench_gpu; t2 = time.perf_counter()
m = zuna_lab.load_model(bench_gpu.CKPT, device="cuda", dtype="bf16"); torch.cuda.synchronize(); t3 = time.perf_counter()
tok, idx, noise = (t.cuda() for t in bench_gpu.make_inputs(1, 12))
lat = m.encode(tok, idx); torch.cuda.synchronize(); t4 = time.perf_counter()
m.sample(lat, idx, noise=noise, steps=50); torch.cuda.synchronize(); t5 = time.perf_counter()
m.sample(lat, idx, noise=noise, steps=50); torch.cuda.synchronize(); t6 = time.perf_counter()
print(f"import torch {t1-t0:.2f}  import zuna_lab {t2-t1:.2f}  load {t3-t2:.2f}  first encode {t4-t3:.2f}  first sample {t5-t4:.2f}  warm sample {t6-t5:.3f}  total-to-first {t5-t0:.2f}")
"""
    bench_gpu.write_checkpoint_ours()
    bench_gpu.make_inputs(1, 12)    # builds mne's montage cache outside the timing
    env = dict(os.environ, PYTHONPATH=f"{HERE}:{HERE.parent}:" + os.environ.get("PYTHONPATH", ""))
    for label in ("empty inductor cache", "warm inductor cache"):
        start = time.perf_counter()
        res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
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


def _model():
    import zuna_lab
    bench_gpu.write_checkpoint_ours()
    return zuna_lab.load_model(bench_gpu.CKPT, device="cuda", dtype="bf16")


def section_profile():
    from torch.profiler import ProfilerActivity, profile
    model = _model()
    model.cuda_graphs = False
    for n_epochs, n_channels in ((32, 12), (8, 64), (1, 12)):
        tokens, tok_idx, noise = (t.cuda() for t in bench_gpu.make_inputs(n_epochs, n_channels))
        latents = model.encode(tokens, tok_idx)
        model.sample(latents, tok_idx, noise=noise, steps=4)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            model.sample(latents, tok_idx, noise=noise, steps=4)
            torch.cuda.synchronize()
        print(f"== fused {n_epochs} x {n_channels} ch, 4 steps (cross kv cached: {n_epochs * n_channels <= 12})")
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=18, max_name_column_width=60), flush=True)
    model.cuda_graphs = True
    tokens, tok_idx, noise = (t.cuda() for t in bench_gpu.make_inputs(1, 12))
    for budget in (1 << 30, 0):
        model.cross_kv_budget = budget
        model._graphs.clear()
        run = lambda: model.sample(model.encode(tokens, tok_idx), tok_idx, noise=noise, steps=50)  # noqa: E731
        run()
        warm, _ = bench_gpu.timed(run, repeats=10)
        enc, _ = bench_gpu.timed(lambda: model.encode(tokens, tok_idx), repeats=10)
        print(f"1x12 cross-kv budget {budget}: {warm * 1e3:.1f} ms (encode {enc * 1e3:.1f} ms)", flush=True)


def section_kernels():
    """The Triton kernels against PyTorch on the GPU (bf16), and their speed."""
    import triton.testing
    from zuna_lab.model import kernels
    from zuna_lab.model.layers import rms_norm, rope
    g = torch.Generator(device="cuda").manual_seed(0)
    for bsz, seq in ((1, 480), (1, 960), (4, 480)):
        q, k, v = (torch.randn(bsz, seq, 8, 64, device="cuda", generator=g).bfloat16() for _ in range(3))
        ref = torch.nn.functional.scaled_dot_product_attention(*(t.transpose(1, 2) for t in (q, k, v))).transpose(1, 2)
        ref32 = torch.nn.functional.scaled_dot_product_attention(*(t.float().transpose(1, 2) for t in (q, k, v))).transpose(1, 2)
        out = kernels.attention(q, k, v)
        ours = triton.testing.do_bench(lambda: kernels.attention(q, k, v))
        theirs = triton.testing.do_bench(lambda: torch.nn.functional.scaled_dot_product_attention(*(t.transpose(1, 2) for t in (q, k, v))))
        print(f"attention B={bsz} S={seq}: vs fp32 ours {float((out.float() - ref32).norm() / ref32.norm()):.2e} "
              f"sdpa {float((ref.float() - ref32).norm() / ref32.norm()):.2e}; {ours * 1e3:.1f} us vs sdpa {theirs * 1e3:.1f} us", flush=True)
    for rows in (480, 15360, 20480):
        x = torch.randn(1, rows, 24 * 64, device="cuda", generator=g).bfloat16()
        cos, sin = (torch.rand(1, rows, 32, device="cuda", generator=g) for _ in range(2))
        gain = torch.rand(64, device="cuda", generator=g) + 0.5
        q, k, v = kernels.rope_heads(x, cos, sin, n_q=8, n_k=8, n_v=8, head_dim=64, q_gain=gain, k_gain=gain)
        ref = rope(rms_norm(x[..., :512].float().view(1, rows, 8, 64), gain, 1e-5).transpose(1, 2),
                   cos.unsqueeze(1), sin.unsqueeze(1)).transpose(1, 2)
        ms = triton.testing.do_bench(lambda: kernels.rope_heads(x, cos, sin, n_q=8, n_k=8, n_v=8, head_dim=64, q_gain=gain, k_gain=gain))
        print(f"rope rows={rows}: max err {float((q.float() - ref).abs().max()):.3e}, {ms * 1e3:.1f} us, "
              f"{rows * 24 * 64 * 2 * 2 / ms / 1e9:.0f} GB/s", flush=True)


def section_timing():
    """All cases through the default fast path; 1x12 also without the small-attention kernel."""
    from zuna_lab.model import kernels
    model = _model()
    for n_epochs, n_channels in ((1, 12), (32, 12), (8, 64), (2, 128)):
        tokens, tok_idx, noise = (t.cuda() for t in bench_gpu.make_inputs(n_epochs, n_channels))
        run = lambda: model.sample(model.encode(tokens, tok_idx), tok_idx, noise=noise, steps=50)  # noqa: E731
        run()
        warm, _ = bench_gpu.timed(run, repeats=10 if n_epochs == 1 else 3)
        enc, _ = bench_gpu.timed(lambda: model.encode(tokens, tok_idx), repeats=5)
        print(f"timing {n_epochs}x{n_channels}: {warm * 1e3:.1f} ms {n_epochs / warm:.2f} ep/s "
              f"{bench_gpu.flops_reconstruct(n_epochs, n_channels) / warm / 1e12:.0f} TFLOP/s (encode {enc * 1e3:.1f} ms)", flush=True)
    tokens, tok_idx, noise = (t.cuda() for t in bench_gpu.make_inputs(1, 12))
    kernels.SMALL_ATTENTION_ROWS = 0
    model._graphs.clear()
    run = lambda: model.sample(model.encode(tokens, tok_idx), tok_idx, noise=noise, steps=50)  # noqa: E731
    run()
    warm, _ = bench_gpu.timed(run, repeats=10)
    print(f"timing 1x12 with cuDNN SDPA only: {warm * 1e3:.1f} ms", flush=True)
    kernels.SMALL_ATTENTION_ROWS = 2048


def section_tf32():
    """Encoder sub-layers in TF32: error against fp32 and encode cost."""
    model = _model()
    for n_epochs, n_channels in ((2, 64), (8, 64), (32, 12), (4, 12)):
        tokens, tok_idx, noise = (t.cuda() for t in bench_gpu.make_inputs(n_epochs, n_channels, seed=2))
        model.set_precision("fp32")
        model.optimize(kernels=False, cuda_graphs=False)
        ref = model.sample(model.encode(tokens, tok_idx), tok_idx, noise=noise, steps=50)
        model.optimize()
        for parts in ((), ("attention",), ("attention", "feed_forward")):
            model.encoder_tf32_parts = parts
            model.set_precision("bf16")
            out = model.sample(model.encode(tokens, tok_idx), tok_idx, noise=noise, steps=50)
            enc, _ = bench_gpu.timed(lambda: model.encode(tokens, tok_idx), repeats=5)
            print(f"tf32 {n_epochs}x{n_channels} {parts}: rel L2 {float((out - ref).norm() / ref.norm()):.2e} encode {enc * 1e3:.1f} ms", flush=True)
    big = [t.cuda() for t in bench_gpu.make_inputs(64, 64)][:2]
    for parts in ((), ("attention",), ("attention", "feed_forward")):
        model.encoder_tf32_parts = parts
        model.set_precision("bf16")
        model.encode(*big)
        enc, _ = bench_gpu.timed(lambda: model.encode(*big), repeats=3)
        print(f"tf32 encode 64x64 {parts}: {enc * 1e3:.0f} ms", flush=True)
    model.encoder_tf32_parts = ()
    model.set_precision("bf16")


def section_embed():
    model = _model()
    bench_gpu.embed_hour(model)        # warm-up: file, compile, allocator
    prof = cProfile.Profile()
    start = time.perf_counter()
    prof.enable()
    result = bench_gpu.embed_hour(model)
    prof.disable()
    print("embed 1h", result, "wall", time.perf_counter() - start)
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(40)
    print(buf.getvalue()[:12000], flush=True)


if __name__ == "__main__":
    for name in sys.argv[1:]:
        print(f"##### {name}", flush=True)
        start = time.perf_counter()
        globals()[f"section_{name}"]()
        print(f"##### {name} done in {time.perf_counter() - start:.1f} s", flush=True)
