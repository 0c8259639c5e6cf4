"""Diagnostics for the GPU fast path (benchmarks/bench.py is the benchmark): cold-start phases,
SDPA backends, kernel-level profiles, the Triton GEMMs with fused epilogues against cuBLAS per
tile shape, whole reconstructions per option (time and error against fp32), the error and cost
of TF32 encoder sub-layers, and a Python profile of the 1 h x 64 ch embedding's first call.

    python benchmarks/probe_gpu.py SECTION [SECTION ...]   # cold sdpa profile gemm model lowrank blas tf32 embed attention attention_model attention_large small_ab latency_knobs large_ab lowrank_tiles shared_values profile_graphed
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
    run = lambda: model.sample(model.encode(tokens, tok_idx), tok_idx, noise=noise, steps=50)  # noqa: E731
    run()
    warm, _ = bench_gpu.timed(run, repeats=10)
    enc, _ = bench_gpu.timed(lambda: model.encode(tokens, tok_idx), repeats=10)
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


def section_gemm():
    """The Triton GEMMs with fused epilogues against cuBLAS + the separate kernel, per tile shape."""
    import torch.nn.functional as F
    import triton.testing
    from zuna_lab.model import kernels
    g = torch.Generator(device="cuda").manual_seed(0)
    # (BLOCK_M, BLOCK_N, BLOCK_K, GROUP_M, warps, stages, TMA). Warp specialisation
    # (tl.range(warp_specialize=True)) was also tried: no faster, and some tiles failed to compile.
    big = [(128, 128, 64, 8, 8, 3, False), (128, 128, 64, 8, 8, 3, True), (128, 128, 64, 8, 8, 4, True),
           (128, 64, 64, 8, 4, 4, True)]
    small = [(64, 64, 64, 8, 4, 4, False), (64, 64, 64, 8, 4, 4, True), (64, 128, 64, 8, 4, 3, True),
             (64, 32, 64, 8, 4, 4, True), (64, 64, 128, 8, 4, 3, True)]
    rope_big = [(128, None, 64, 8, 4, 4, False), (128, None, 64, 8, 4, 4, True), (128, None, 64, 8, 8, 4, True),
                (256, None, 64, 8, 8, 3, True), (128, None, 128, 8, 8, 3, True)]
    rope_small = [(64, None, 64, 8, 4, 4, False), (64, None, 64, 8, 4, 4, True), (64, None, 128, 8, 4, 3, True),
                  (64, None, 256, 8, 4, 2, True)]
    gain = torch.rand(64, device="cuda", generator=g) + 0.5
    for rows in (480, 15360, 20480, 102400):
        for dtype in ((torch.bfloat16, torch.float32) if rows == 102400 else (torch.bfloat16,)):
            x = torch.randn(rows, 1024, device="cuda", generator=g).to(dtype)
            w13 = (0.03 * torch.randn(2 * 2816, 1024, device="cuda", generator=g)).to(dtype)
            flops = 2 * rows * 1024 * 2 * 2816
            with contextlib.nullcontext():
                torch.backends.cuda.matmul.allow_tf32 = dtype == torch.float32
                a, b = F.linear(x.double(), w13.double()).chunk(2, -1)
                ref = (F.silu(a) * b)
                base = kernels.swiglu(F.linear(x, w13))
                t_base = graph_bench(lambda: kernels.swiglu(F.linear(x, w13)))
                line = (f"swiglu rows={rows} {dtype}: cublas+kernel {t_base * 1e3:.1f}us ({flops / t_base / 1e9:.0f}TF) "
                        f"err {float((base.double() - ref).norm() / ref.norm()):.2e} |")
                for tiles in (big if rows >= 4096 else small):
                    try:
                        out = kernels.matmul_swiglu(x, w13, tiles=tiles)
                        t = graph_bench(lambda: kernels.matmul_swiglu(x, w13, tiles=tiles))
                        line += f" {tiles[:3]}w{tiles[4]}s{tiles[5]}{'T' if tiles[6] else ''} {t * 1e3:.1f}us err {float((out.double() - ref).norm() / ref.norm()):.1e} |"
                    except Exception as err:  # noqa: BLE001
                        line += f" {tiles} failed {str(err)[:80]} |"
                print(line, flush=True)
                cos, sin = (torch.rand(1, rows, 32, device="cuda", generator=g) for _ in range(2))
                for name, n_q, n_k, n_v in (("qkv", 8, 8, 8), ("q", 8, 0, 0), ("kv", 0, 8, 8)):
                    w = (0.03 * torch.randn((n_q + n_k + n_v) * 64, 1024, device="cuda", generator=g)).to(dtype)
                    heads = dict(n_q=n_q, n_k=n_k, n_v=n_v, head_dim=64, q_gain=gain if n_q else None,
                                 k_gain=gain if n_k else None, out_dtype=torch.bfloat16)
                    x3 = x.view(1, rows, 1024)
                    t_base = graph_bench(lambda: kernels.rope_heads(F.linear(x3, w), cos, sin, **heads))
                    base = kernels.rope_heads(F.linear(x3, w), cos, sin, **heads)
                    line = f"rope-{name} rows={rows} {dtype}: cublas+kernel {t_base * 1e3:.1f}us |"
                    for tiles in (rope_big if rows >= 4096 else rope_small):
                        try:
                            out = kernels.matmul_rope_heads(x3, w, cos, sin, tiles=tiles, **heads)
                            t = graph_bench(lambda: kernels.matmul_rope_heads(x3, w, cos, sin, tiles=tiles, **heads))
                            diff = max(float((o.float() - r.float()).abs().max()) for o, r in zip(out, base))
                            line += f" {tiles[0]},{tiles[2]}w{tiles[4]}s{tiles[5]}{'T' if tiles[6] else ''} {t * 1e3:.1f}us d{diff:.1e} |"
                        except Exception as err:  # noqa: BLE001
                            line += f" {tiles} failed {str(err)[:80]} |"
                    print(line, flush=True)
            torch.backends.cuda.matmul.allow_tf32 = False


def _case_error(model, tokens, tok_idx, noise, reference):
    out = model.sample(model.encode(tokens, tok_idx), tok_idx, noise=noise, steps=50)
    return float((out - reference).norm() / reference.norm())


def _case_line(model, case, inputs, refs, label, repeats):
    """'label: err E[, T ms]' for one (n_epochs, n_channels, seed) case: the error against its fp32
    reference, and for seed 0 the warm time of a 50-step reconstruction."""
    tokens, tok_idx, noise = inputs[case]
    line = f"{label}: err {_case_error(model, tokens, tok_idx, noise, refs[case]):.3e}"
    if case[2] == 0:
        run = lambda: model.sample(model.encode(tokens, tok_idx), tok_idx, noise=noise, steps=50)  # noqa: E731
        warm, _ = bench_gpu.timed(run, repeats=repeats)
        line += f" {warm * 1e3:.2f} ms {case[0] / warm:.2f} ep/s"
    return line


def _bf16_model_and_references(cases):
    """The default bf16 CUDA model, and the inputs and exact fp32 outputs of ``cases`` (see below)."""
    model = _model()
    inputs, refs = _fp32_references(model, cases)
    model.set_precision("bf16")
    model.optimize()
    return model, inputs, refs


def _fp32_references(model, cases):
    """Inputs and exact fp32 (reference path) outputs of (n_epochs, n_channels, seed) cases; leaves the model in fp32."""
    inputs, refs = {}, {}
    model.set_precision("fp32")
    model.optimize(kernels=False, cuda_graphs=False)
    for case in cases:
        inputs[case] = [t.cuda() for t in bench_gpu.make_inputs(*case)]
        tokens, tok_idx, noise = inputs[case]
        refs[case] = model.sample(model.encode(tokens, tok_idx), tok_idx, noise=noise, steps=50)
    return inputs, refs


EPILOGUE_VARIANTS = [(), ("rope",), ("swiglu",), ("rope", "swiglu"), ("rope", "swiglu", "decoder-only")]


def section_model():
    """Whole reconstructions: GEMM epilogues on/off x TF32 encoder parts, time and error against fp32."""
    model = _model()
    cases = [(1, 12, 0), (1, 12, 1), (32, 12, 0), (8, 64, 0), (8, 64, 1)]
    inputs, refs = _fp32_references(model, cases)
    for epilogues in EPILOGUE_VARIANTS:
        model.set_precision("bf16")
        model.optimize(gemm_epilogues=tuple(p for p in epilogues if p != "decoder-only"))
        if "decoder-only" in epilogues:
            for module in model.encoder.modules():
                if hasattr(module, "gemm_epilogue"):
                    module.gemm_epilogue = False
        for case in cases:
            tokens, tok_idx, noise = inputs[case]
            error = _case_error(model, tokens, tok_idx, noise, refs[case])
            line = f"model {case[0]}x{case[1]} seed {case[2]} epilogues={'+'.join(epilogues) or '-'}: err {error:.3e}"
            if case[2] == 0:
                run = lambda: model.sample(model.encode(tokens, tok_idx), tok_idx, noise=noise, steps=50)  # noqa: E731
                warm, _ = bench_gpu.timed(run, repeats=10 if case[0] == 1 else 3)
                enc, _ = bench_gpu.timed(lambda: model.encode(tokens, tok_idx), repeats=5)
                line += (f" {warm * 1e3:.1f} ms {case[0] / warm:.2f} ep/s "
                         f"{bench_gpu.flops_reconstruct(case[0], case[1]) / warm / 1e12:.0f} TFLOP/s encode {enc * 1e3:.1f} ms")
            print(line, flush=True)
    model.encoder_tf32_parts = ("attention",)


def section_lowrank():
    """Cross-attention K/V from the rank-33 context factor: error against fp32 with its product in
    TF32 (the default in bf16) or in exact fp32, same inputs, seeds 0 and 1."""
    cases = [(1, 12, 0), (1, 12, 1), (8, 64, 0), (8, 64, 1)]
    model, inputs, refs = _bf16_model_and_references(cases)
    default = model.decoder.fused_cross_kv
    for label, tf32 in (("tf32", True), ("exact fp32", False)):
        model.decoder.fused_cross_kv = lambda *args, tf32=tf32, **kw: default(*args, **{**kw, "tf32": tf32})  # noqa: E731
        model._graphs.clear()
        for case in cases:
            error = _case_error(model, *inputs[case], refs[case])
            print(f"lowrank {case[0]}x{case[1]} seed {case[2]} K/V product {label}: err {error:.3e}", flush=True)
    model.decoder.fused_cross_kv = default


def section_decoder_epilogues():
    """Time of 8 x 64 and 1 x 12 reconstructions with the decoder's SwiGLU and/or RoPE epilogue GEMMs
    (the encoder's always on), to see whether the memory they save pays on this card."""
    from zuna_lab.model.layers import Attention, SwiGLU
    model = _model()
    for n_epochs, n_channels in ((8, 64), (1, 12)):
        tokens, tok_idx, noise = (t.cuda() for t in bench_gpu.make_inputs(n_epochs, n_channels))
        for kinds in ((), ("swiglu",), ("rope",), ("swiglu", "rope")):
            for module in model.decoder.modules():
                if isinstance(module, (Attention, SwiGLU)):
                    module.gemm_epilogue = ("swiglu" if isinstance(module, SwiGLU) else "rope") in kinds
            model._graphs.clear()
            run = lambda: model.sample(model.encode(tokens, tok_idx), tok_idx, noise=noise, steps=50)  # noqa: E731
            run()
            warm, _ = bench_gpu.timed(run, repeats=10 if n_epochs == 1 else 4)
            print(f"decoder epilogues {n_epochs}x{n_channels} {'+'.join(kinds) or 'none'}: {warm * 1e3:.1f} ms "
                  f"{n_epochs / warm:.2f} ep/s", flush=True)


def section_ideas():
    """Untried speed ideas, A/B by monkeypatching the decoder at 8 x 64 and 1 x 12 (time only):
    SwiGLU in row chunks whose w13 output stays in L2; FA2 instead of cuDNN for one epoch; the
    self-attention values read as a view of the QKV GEMM output instead of copied."""
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from zuna_lab.model import kernels
    from zuna_lab.model.layers import Attention, SwiGLU

    def chunked_swiglu(rows_per_chunk):
        def forward(self, x):
            if self.gemm_epilogue:          # the encoder's: left as it is
                return swiglu_default(self, x)
            x2 = x.to(self.w2.weight.dtype).reshape(-1, x.shape[-1])
            out = torch.empty(x2.shape[0], self.w2.weight.shape[0], device=x.device, dtype=x2.dtype)
            for start in range(0, x2.shape[0], rows_per_chunk):
                part = x2[start:start + rows_per_chunk]
                torch.matmul(kernels.swiglu(F.linear(part, self.w13)), self.w2.weight.T, out=out[start:start + rows_per_chunk])
            return out.view(*x.shape[:-1], -1)
        return forward

    def flash_forward(default):
        def forward(self, x, *args, **kw):
            if x.shape[0] * x.shape[1] > 4096:      # one-epoch sizes only
                return default(self, x, *args, **kw)
            with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
                return default(self, x, *args, **kw)
        return forward

    def value_view_forward(default):
        def forward(self, x, rope, kv=None, attn_mask=None):
            if kv is not None or self.gemm_epilogue:
                return default(self, x, rope, kv=kv, attn_mask=attn_mask)
            bsz, q_len, _ = x.shape
            fused = F.linear(x.to(self.wqkv.dtype), self.wqkv)
            width = (self.n_heads + self.n_kv_heads) * self.head_dim
            q_gain, k_gain = self._qk_gains()
            q, k = kernels.rope_heads(fused[..., :width], *rope, n_q=self.n_heads, n_k=self.n_kv_heads, n_v=0,
                                      head_dim=self.head_dim, q_gain=q_gain, k_gain=k_gain)
            v = fused[..., width:].unflatten(-1, (self.n_kv_heads, self.head_dim))
            out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                                 attn_mask=attn_mask)
            return F.linear(out.transpose(1, 2).reshape(bsz, q_len, -1), self.wo.weight)
        return forward

    swiglu_default, attention_default = SwiGLU.fused_forward, Attention.fused_forward
    variants = {"default": {}, "swiglu chunks of 2048 rows": {"swiglu": chunked_swiglu(2048)},
                "swiglu chunks of 4096 rows": {"swiglu": chunked_swiglu(4096)},
                "FA2 attention": {"attention": flash_forward(attention_default)},
                "values as a view": {"attention": value_view_forward(attention_default)}}
    model = _model()
    for n_epochs, n_channels in ((8, 64), (1, 12)):
        tokens, tok_idx, noise = (t.cuda() for t in bench_gpu.make_inputs(n_epochs, n_channels))
        for label, patch in variants.items():
            SwiGLU.fused_forward = patch.get("swiglu", swiglu_default)
            Attention.fused_forward = patch.get("attention", attention_default)
            model._graphs.clear()
            run = lambda: model.sample(model.encode(tokens, tok_idx), tok_idx, noise=noise, steps=50)  # noqa: E731
            try:
                run()
                warm, _ = bench_gpu.timed(run, repeats=10 if n_epochs == 1 else 4)
                print(f"ideas {n_epochs}x{n_channels} {label}: {warm * 1e3:.1f} ms", flush=True)
            except Exception as err:  # noqa: BLE001
                print(f"ideas {n_epochs}x{n_channels} {label}: failed {str(err)[:120]}", flush=True)
    SwiGLU.fused_forward, Attention.fused_forward = swiglu_default, attention_default


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
    inputs = {case: [t.cuda() for t in bench_gpu.make_inputs(*case)] for case in cases}

    def run_all(label):
        model.optimize()
        for case in cases:
            tokens, tok_idx, noise = inputs[case]
            run = lambda: model.sample(model.encode(tokens, tok_idx), tok_idx, noise=noise, steps=50)  # noqa: E731
            start = time.perf_counter()
            run()
            torch.cuda.synchronize()
            first = time.perf_counter() - start
            warm, _ = bench_gpu.timed(run, repeats=10 if case[0] == 1 else 3)
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


def section_attention():
    """kernels.attention (small query tiles) against SDPA's library kernels, timed inside CUDA graphs."""
    import torch.nn.functional as F
    from zuna_lab.model import kernels, layers
    torch.manual_seed(0)
    configs = [(bm, bn, w, st) for bm in (16, 32, 64) for bn in (32, 64, 128) for w in (4, 8) for st in (2, 3)
               if not (bm == 16 and w == 8)]
    for bsz, seq in ((1, 480), (1, 960), (2, 480), (4, 480), (1, 2560), (8, 480)):
        qkv = torch.randn(bsz, seq, 3 * 512, device="cuda", dtype=torch.bfloat16)
        q, k, v = (t.view(bsz, seq, 8, 64) for t in qkv.split(512, -1))
        ref = F.scaled_dot_product_attention(*(t.float().transpose(1, 2) for t in (q, k, v))).transpose(1, 2)
        lib = graph_bench(lambda: F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)))
        flops = 4 * bsz * 8 * seq * seq * 64
        results = []
        for tiles in configs:
            try:
                out = kernels.attention(q, k, v, tiles=tiles)
                err = float((out.float() - ref).norm() / ref.norm())
                results.append((graph_bench(lambda: kernels.attention(q, k, v, tiles=tiles)), tiles, err))
            except Exception as exc:  # noqa: BLE001
                print(f"  {tiles} failed: {str(exc)[:80]}")
        results.sort()
        best = ", ".join(f"{tiles} {us * 1e3:.1f}us err {err:.1e}" for us, tiles, err in results[:4])
        default = [r for r in results if r[1] == kernels.ATTENTION_TILES]
        print(f"attention B={bsz} S={seq}: library {lib * 1e3:.1f}us ({flops / lib / 1e9:.0f} TF); "
              f"default tiles {default[0][0] * 1e3 if default else float('nan'):.1f}us; best {best}", flush=True)
        # the queries' QK-norm + RoPE inside the kernel, against the separate kernel + attention
        idx = torch.randint(0, 50, (bsz, seq, 4), device="cuda")
        cos, sin = (t.reshape(bsz * seq, -1) for t in layers.rope_angles(idx, 64, 10000.0))
        gain = torch.rand(64, device="cuda") + 0.5
        tiles = results[0][1]
        fused = graph_bench(lambda: kernels.attention(q, k, v, rope=(cos, sin), q_gain=gain, tiles=tiles))
        (qr,) = kernels.rope_heads(qkv[..., :512], cos, sin, n_q=8, n_k=0, n_v=0, head_dim=64, q_gain=gain)
        split = graph_bench(lambda: kernels.attention(kernels.rope_heads(qkv[..., :512], cos, sin, n_q=8, n_k=0, n_v=0,
                                                                         head_dim=64, q_gain=gain)[0], k, v, tiles=tiles))
        err = float((kernels.attention(q, k, v, rope=(cos, sin), q_gain=gain, tiles=tiles).float()
                     - kernels.attention(qr, k, v, tiles=tiles).float()).norm() / ref.norm())
        print(f"  rope in kernel {fused * 1e3:.1f}us vs rope kernel + attention {split * 1e3:.1f}us (diff {err:.1e})", flush=True)


def section_attention_model():
    """Whole reconstructions with kernels.attention where it pays (default) or SDPA everywhere:
    time and error against fp32."""
    from zuna_lab.model.layers import Attention
    cases = [(1, 12, 0), (1, 12, 1), (2, 12, 0), (4, 12, 0), (1, 32, 0), (1, 64, 0)]
    model, inputs, refs = _bf16_model_and_references(cases)
    for small in (True, False):
        for module in model.modules():
            if isinstance(module, Attention):
                module.small_attention = small
        model._graphs.clear()
        for case in cases:
            tokens, tok_idx, noise = inputs[case]
            error = _case_error(model, tokens, tok_idx, noise, refs[case])
            run = lambda: model.sample(model.encode(tokens, tok_idx), tok_idx, noise=noise, steps=50)  # noqa: E731
            warm, _ = bench_gpu.timed(run, repeats=10)
            print(f"attention_model {case[0]}x{case[1]} seed {case[2]} small_attention={small}: "
                  f"{warm * 1e3:.1f} ms err {error:.3e}", flush=True)

def section_large_ab():
    """A/B at 8 x 64 (and 32 x 12, 1 x 12): the residual after self-attention recomputed, V read in
    place, kernels.attention at every size."""
    from zuna_lab.model import kernels
    from zuna_lab.model.layers import Attention, DecoderBlock
    cases = [(8, 64, 0), (32, 12, 0), (1, 12, 0)]
    model, inputs, refs = _bf16_model_and_references(cases)
    variants = {"default": {}, "no recompute": {"recompute": False},
                "V copied": {"view": False}, "kernels.attention at every size": {"own": 10 ** 9},
                "previous (none of these)": {"recompute": False, "view": False},
                "default again": {}}
    max_tiles, max_seq = kernels.ATTENTION_MAX_TILES, kernels.ATTENTION_MAX_SEQ
    for label, options in variants.items():
        own = options.get("own")
        kernels.ATTENTION_MAX_TILES, kernels.ATTENTION_MAX_SEQ = (own, own) if own else (max_tiles, max_seq)
        DecoderBlock.recompute_residual = options.get("recompute", True)
        for module in model.modules():
            if isinstance(module, Attention):
                module.values_as_view = options.get("view", True)
        model._graphs.clear()
        for case in cases:
            tokens, tok_idx, noise = inputs[case]
            error = _case_error(model, tokens, tok_idx, noise, refs[case])
            run = lambda: model.sample(model.encode(tokens, tok_idx), tok_idx, noise=noise, steps=50)  # noqa: E731
            warm, _ = bench_gpu.timed(run, repeats=10 if case[0] == 1 else 4)
            print(f"large_ab {case[0]}x{case[1]} {label}: {warm * 1e3:.1f} ms {case[0] / warm:.3f} ep/s err {error:.3e}",
                  flush=True)
    DecoderBlock.recompute_residual = True
    kernels.ATTENTION_MAX_TILES, kernels.ATTENTION_MAX_SEQ = max_tiles, max_seq
    tokens, tok_idx, _ = inputs[(8, 64, 0)]
    enc, _ = bench_gpu.timed(lambda: model.encode(tokens, tok_idx), repeats=5)
    print(f"large_ab encode 8x64: {enc * 1e3:.1f} ms", flush=True)


def section_lowrank_tiles():
    """Tiles of kernels.lowrank_kv (all 16 blocks' cross-attention K/V of one step) at 8 x 64 and 1 x 12."""
    from zuna_lab.model import kernels, layers
    n_layers, width = 16, 64
    for rows_b, seq in ((8, 2560), (1, 480)):
        factor = torch.randn(rows_b, seq, width, device="cuda")
        weights = torch.randn(n_layers, 1024, width, device="cuda") / 8
        idx = torch.randint(0, 50, (rows_b, seq, 4), device="cuda")
        cos, sin = (t.reshape(rows_b * seq, -1) for t in layers.rope_angles(idx, 64, 1e4))
        gains = torch.rand(n_layers, 64, device="cuda") + 0.5
        heads = dict(n_kv=8, head_dim=64, k_gain=gains, out_dtype=torch.bfloat16, tf32=True)
        results = []
        for block_m in (16, 32, 64, 128):
            for group in (4, 8, 16):
                for warps in (4, 8):
                    for stages in ((1, 2) if block_m < 64 else (1,)):
                        tiles = (block_m, group, warps, stages)
                        try:
                            ms = graph_bench(lambda: kernels.lowrank_kv(factor, weights, cos, sin, tiles=tiles, **heads), repeats=5)
                            results.append((ms, tiles))
                        except Exception as exc:  # noqa: BLE001
                            print(f"  lowrank tiles {tiles} failed: {str(exc)[:80]}")
        results.sort(key=lambda r: r[0])
        ms = graph_bench(lambda: kernels.lowrank_kv(factor, weights, cos, sin, **heads), repeats=5)
        old = graph_bench(lambda: kernels.matmul_rope_heads(factor, weights, cos, sin, n_q=0, n_k=8, n_v=8, head_dim=64,
                                                            k_gain=gains, out_dtype=torch.bfloat16, tiles=(128, None, 32, 8, 4, 3, True),
                                                            tf32=True), repeats=5)
        written = 2 * n_layers * rows_b * seq * 512 * 2
        print(f"lowrank {rows_b}x{seq}: default {ms * 1e3:.0f}us ({written / ms / 1e9:.2f} TB/s written), "
              f"GEMM-tile kernel {old * 1e3:.0f}us; best: " + ", ".join(f"{t} {u * 1e3:.0f}us" for u, t in results[:6]),
              flush=True)

def section_attention_large():
    """kernels.attention at the batched sizes, with and without the queries' RoPE inside, against cuDNN."""
    import torch.nn.functional as F
    from zuna_lab.model import kernels, layers
    for bsz, seq in ((8, 2560), (2, 5120), (32, 480)):
        qkv = torch.randn(bsz, seq, 3 * 512, device="cuda", dtype=torch.bfloat16)
        q, k, v = (t.view(bsz, seq, 8, 64) for t in qkv.split(512, -1))
        lib = graph_bench(lambda: F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)), repeats=5)
        idx = torch.randint(0, 50, (bsz, seq, 4), device="cuda")
        cos, sin = (t.reshape(bsz * seq, -1) for t in layers.rope_angles(idx, 64, 10000.0))
        gain = torch.rand(64, device="cuda") + 0.5
        rope_ms = graph_bench(lambda: kernels.rope_heads(qkv[..., :512], cos, sin, n_q=8, n_k=0, n_v=0, head_dim=64, q_gain=gain), repeats=5)
        line = f"attention_large B={bsz} S={seq}: cuDNN {lib * 1e3:.0f}us, q rope kernel {rope_ms * 1e3:.0f}us;"
        for tiles in ((64, 64, 4, 3), (128, 64, 8, 3), (128, 128, 8, 3), (128, 64, 4, 3), (128, 32, 4, 3), (64, 128, 4, 3)):
            try:
                plain = graph_bench(lambda: kernels.attention(q, k, v, tiles=tiles), repeats=5)
                rotated = graph_bench(lambda: kernels.attention(q, k, v, rope=(cos, sin), q_gain=gain, tiles=tiles), repeats=5)
                line += f" {tiles} {plain * 1e3:.0f}/{rotated * 1e3:.0f}us"
            except Exception as exc:  # noqa: BLE001
                line += f" {tiles} failed ({str(exc)[:40]})"
        print(line, flush=True)

def section_small_ab():
    """A/B: the decoder's token embedding/output projections in TF32, the 65 AdaRMSNorm gains in
    one stacked GEMM (all steps' cross-attention K/V formed before the loop was measured here too:
    1 x 12 60.25 ms a step at a time against 60.36 at once, H100; dropped)."""
    cases = [(1, 12, 0), (1, 12, 1), (2, 12, 0), (8, 64, 0)]
    model, inputs, refs = _bf16_model_and_references(cases)
    stack = model.decoder.gain_stack
    variants = {"default": {}, "fp32 embed/out": {"io_tf32": False}, "65 gain GEMMs": {"stack": None},
                "neither": {"io_tf32": False, "stack": None}, "default again": {}}
    for label, options in variants.items():
        model.decoder_io_tf32 = options.get("io_tf32", True)
        model.decoder.gain_stack = options.get("stack", stack)
        model._graphs.clear()
        for case in cases:
            print(_case_line(model, case, inputs, refs, f"small_ab {case[0]}x{case[1]} seed {case[2]} {label}",
                             repeats=20 if case[0] < 8 else 4), flush=True)
    model.decoder.gain_stack, model.decoder_io_tf32 = stack, True


def section_latency_knobs():
    """1 x 12 reconstruction (50 steps) under launch-level knobs: cuBLASLt instead of cuBLAS,
    attention tiles, warps of the norm kernel. Time only."""
    from zuna_lab.model import kernels
    model = _model()
    tokens, tok_idx, noise = (t.cuda() for t in bench_gpu.make_inputs(1, 12))
    run = lambda: model.sample(model.encode(tokens, tok_idx), tok_idx, noise=noise, steps=50)  # noqa: E731
    tiles, warps = kernels.ATTENTION_TILES, kernels._warps
    variants = {"default": {}, "cuBLASLt": {"blas": "cublaslt"}, "attention (64, 64, 2, 3)": {"tiles": (64, 64, 2, 3)},
                "attention (64, 64, 4, 4)": {"tiles": (64, 64, 4, 4)}, "attention (64, 32, 4, 3)": {"tiles": (64, 32, 4, 3)},
                "attention (64, 128, 4, 3)": {"tiles": (64, 128, 4, 3)}, "norm 2 warps": {"warps": 2},
                "norm 8 warps": {"warps": 8}, "default again": {}}
    for label, options in variants.items():
        torch.backends.cuda.preferred_blas_library(options.get("blas", "cublas"))
        kernels.ATTENTION_TILES = options.get("tiles", tiles)
        kernels._warps = (lambda block, n=options["warps"]: n) if "warps" in options else warps
        model._graphs.clear()
        run()
        times = sorted(bench_gpu.timed(run, repeats=1)[0] for _ in range(20))
        print(f"latency_knobs {label}: median {times[10] * 1e3:.2f} ms, best {times[0] * 1e3:.2f}", flush=True)
    torch.backends.cuda.preferred_blas_library("cublas")
    kernels.ATTENTION_TILES, kernels._warps = tiles, warps

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
        tokens, tok_idx, noise = (t.cuda() for t in bench_gpu.make_inputs(n_epochs, n_channels))
        latents = model.encode(tokens, tok_idx)
        run = lambda: model.sample(latents, tok_idx, noise=noise, steps=steps)  # noqa: E731
        run()
        warm, _ = bench_gpu.timed(run, repeats=5)
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

EMBED_CHILD = r"""
import cProfile, io, pstats, sys, time
import torch
sys.path[:0] = [sys.argv[1], sys.argv[2]]
import zuna_lab, bench
model = zuna_lab.load_model(bench.CKPT, device="cuda", dtype="bf16")
model.encoder_tf32_parts = tuple(p for p in sys.argv[3].split(",") if p)
model.set_precision("bf16")
tokens, tok_idx, noise = (t.cuda() for t in bench.make_inputs(1, 12))
model.sample(model.encode(tokens, tok_idx), tok_idx, noise=noise, steps=50)
torch.cuda.synchronize()
prof = cProfile.Profile()
if sys.argv[4] == "profile":
    prof.enable()
first = bench.embed_hour(model)
prof.disable()
warm = bench.embed_hour(model)
print("embed tf32", model.encoder_tf32_parts, "first", first, "warm", warm, flush=True)
if sys.argv[4] == "profile":
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(30)
    print(buf.getvalue()[:6000], flush=True)
"""


def section_embed():
    """1 h x 64 ch embedding in fresh processes (after one reconstruction): first call profiled, then warm."""
    bench_gpu.write_checkpoint_ours()
    for parts, profiled in (("attention", "profile"), ("attention,feed_forward", "no")):
        done = subprocess.run([sys.executable, "-c", EMBED_CHILD, str(HERE.parent), str(HERE), parts, profiled],
                              capture_output=True, text=True)
        print(done.stdout[-7000:], done.stderr[-2000:], flush=True)


if __name__ == "__main__":
    for name in sys.argv[1:]:
        print(f"##### {name}", flush=True)
        start = time.perf_counter()
        globals()[f"section_{name}"]()
        print(f"##### {name} done in {time.perf_counter() - start:.1f} s", flush=True)
