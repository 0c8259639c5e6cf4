"""Where a 1 x 12 reconstruction's 61 ms could shrink (issue #21 item 4): sweeps of the decoder's kernels at
its sizes (480 rows), then whole reconstructions with the winners switched in. One GPU, one process:

    python benchmarks/probe_latency.py [gemm] [epilogue] [attention] [whole] > $OUT/latency.txt

- ``gemm``: each decoder GEMM shape (rows 480) in fp16 and bf16: cuBLAS (``F.linear``) against a plain
  Triton GEMM (TMA tiles) over tile shapes and split-K (fp32 atomics into a zeroed output, the memset
  counted), each replayed in a CUDA graph over 16 distinct weights (the weights leave L2 as in the model).
- ``epilogue``: ``matmul_swiglu`` / ``matmul_rope_heads`` over their small tiles against cuBLAS + the
  separate kernel.
- ``attention``: ``kernels.attention`` (self: rotated heads; cross: raw queries rotated inside) over tiles.
- ``whole`` (bench.py's checkpoint: the official package on PYTHONPATH, as bench.py): 1 x 12 reconstructions (encode + 50 steps, CUDA graphs) with the best of each sweep switched in
  one after the other, interleaved rounds; the samples' difference from the baseline's.
(Session 7 ran the first three sections on an H100; ``whole`` stopped at the checkpoint, written by the
official package, which was not on the path, and has not run yet.)
Results are printed as ``key: json`` lines (``BEST ...`` lines name the choices the whole section used).
"""
from __future__ import annotations

import itertools
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROWS = 480
#: (name, N, K) of the decoder's GEMMs at full size
SHAPES = [("wq_or_wo", 1024, 1024), ("qkv", 3072, 1024), ("w13", 5632, 1024), ("w2", 1024, 2816)]
LAYERS = 16
BEST: dict = {}


def say(key, value):
    print(f"{key}: {json.dumps(value)}", flush=True)


def graph_us(fns, repeats=5):
    """Microseconds per call: every fn of ``fns`` (one per layer) called in order ``repeats`` times in
    one CUDA graph, the graph replayed (triton's do_bench, median)."""
    import triton.testing
    for fn in fns:
        fn()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(repeats):
            for fn in fns:
                fn()
    ms = triton.testing.do_bench(graph.replay, warmup=20, rep=100)
    return ms * 1e3 / (repeats * len(fns))


if True:
    import triton
    import triton.language as tl
    from triton.tools.tensor_descriptor import TensorDescriptor

    from zuna_lab.fast.kernels import _tile_ids

    @triton.jit(do_not_specialize=['M'])
    def _mm_kernel(x_desc, w_desc, out_ptr, M, N, K, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                   BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr, SPLIT_K: tl.constexpr):
        pid_m, pid_n = _tile_ids(M, N, BLOCK_M, BLOCK_N, GROUP_M)
        split = tl.program_id(1)
        off_m = pid_m * BLOCK_M
        off_n = pid_n * BLOCK_N
        per_split = K // SPLIT_K
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for k in range(split * per_split, (split + 1) * per_split, BLOCK_K):
            acc = tl.dot(x_desc.load([off_m, k]), w_desc.load([off_n, k]).T, acc)
        rows = off_m + tl.arange(0, BLOCK_M)
        cols = off_n + tl.arange(0, BLOCK_N)
        live = (rows < M)[:, None] & (cols < N)[None, :]
        offs = rows.to(tl.int64)[:, None] * N + cols[None, :]
        if SPLIT_K == 1:
            tl.store(out_ptr + offs, acc.to(out_ptr.dtype.element_ty), mask=live)
        else:
            tl.atomic_add(out_ptr + offs, acc, mask=live, sem="relaxed")


def triton_linear(x, w, cfg):
    """x [.., K] @ w[N, K].T with tiles cfg = (BM, BN, BK, GROUP_M, warps, stages, split_k); split-K
    results are fp32 (atomics into zeros), else x's dtype."""
    bm, bn, bk, group_m, warps, stages, split = cfg
    *lead, k = x.shape
    x2 = x.reshape(-1, k)
    rows, n = x2.shape[0], w.shape[0]
    assert k % (bk * split) == 0
    if split == 1:
        out = torch.empty(rows, n, device=x.device, dtype=x.dtype)
    else:
        out = torch.zeros(rows, n, device=x.device, dtype=torch.float32)
    grid = (triton.cdiv(rows, bm) * triton.cdiv(n, bn), split)
    _mm_kernel[grid](TensorDescriptor.from_tensor(x2, [bm, bk]), TensorDescriptor.from_tensor(w, [bn, bk]), out,
                     rows, n, k, BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, GROUP_M=group_m, SPLIT_K=split,
                     num_warps=warps, num_stages=stages)
    return out.view(*lead, n)


def gemm_configs(k):
    tiles = [(64, 32), (64, 64), (64, 128), (128, 64), (128, 128)]
    for (bm, bn), (bk, stages), split in itertools.product(tiles, ((64, 4), (128, 3)), (1, 2, 4)):
        if k % (bk * split) == 0:
            yield (bm, bn, bk, 8, 4, stages, split)


def section_gemm():
    # the sweep in bf16 (14 of the 16 blocks); fp16 times cuBLAS and bf16's three best
    for dtype in (torch.bfloat16, torch.float16):
        for name, n, k in SHAPES:
            x = torch.randn(ROWS, k, device="cuda", dtype=dtype)
            ws = [torch.randn(n, k, device="cuda", dtype=dtype) / k ** 0.5 for _ in range(LAYERS)]
            ref = F.linear(x, ws[0]).float()
            results = {"cublas": round(graph_us([lambda w=w: F.linear(x, w) for w in ws]), 2)}
            configs = list(gemm_configs(k))
            if dtype == torch.float16:
                done = BEST[("gemm-top", name)]
                configs = [c for c in configs if str(c) in done]
            for cfg in configs:
                try:
                    got = triton_linear(x, ws[0], cfg).float()
                    err = float((got - ref).norm() / ref.norm())
                    assert err < 1e-2, err
                    results[str(cfg)] = round(graph_us([lambda w=w: triton_linear(x, w, cfg) for w in ws]), 2)
                except Exception as exc:  # noqa: BLE001
                    results[str(cfg)] = f"failed {type(exc).__name__}: {str(exc)[:80]}"
            timed = {key: v for key, v in results.items() if isinstance(v, float) and key != "cublas"}
            best = min(timed, key=timed.get)
            best_plain = min((key for key in timed if key.endswith(" 1)")), key=timed.get)
            say(f"gemm {name} {str(dtype)[6:]} N={n} K={k}", dict(cublas=results["cublas"], best=best,
                                                                 best_us=timed[best], best_plain=best_plain,
                                                                 best_plain_us=timed[best_plain]))
            say(f"gemm-all {name} {str(dtype)[6:]}", results)
            BEST[("gemm", name, dtype)] = (results["cublas"], best, timed[best], best_plain, timed[best_plain])
            if dtype == torch.bfloat16:
                ranked = sorted(timed, key=timed.get)
                BEST[("gemm-top", name)] = set(ranked[:3]) | {best_plain}
            del ws


SWIGLU_TILES = [(64, 64, 64, 8, 4, 4), (64, 32, 64, 8, 4, 4), (64, 64, 64, 8, 4, 3), (64, 64, 128, 8, 4, 3),
                (128, 64, 64, 8, 4, 4), (128, 64, 64, 8, 8, 3), (64, 128, 64, 8, 4, 3), (64, 128, 64, 8, 8, 3),
                (128, 128, 64, 8, 8, 3), (64, 32, 128, 8, 4, 3), (128, 32, 64, 8, 4, 4)]
ROPE_TILES = [(64, None, 64, 8, 4, 4), (64, None, 64, 8, 4, 3), (64, None, 128, 8, 4, 3), (128, None, 64, 8, 4, 4),
              (128, None, 64, 8, 8, 3), (32, None, 64, 8, 4, 4), (32, None, 128, 8, 4, 3)]


def _sweep_epilogue(kind, dtype, separate, fused, candidates):
    """cuBLAS + the separate kernel (``separate(w)``) against the fused GEMM (``fused(w)``) over the small
    tiles ``candidates`` of ``kernels.GEMM_TILES[kind, "small"]``; fp16 times the first tile and bf16's best."""
    from zuna_lab.fast import kernels
    n, k = (5632, 1024) if kind == "swiglu" else (3072, 1024)
    weights = [torch.randn(n, k, device="cuda", dtype=dtype) / 32 for _ in range(LAYERS)]
    res = {"separate": graph_us([lambda w=w: separate(w) for w in weights])}
    if dtype == torch.float16:
        candidates = [candidates[0], eval(BEST[(kind, torch.bfloat16)][1])]  # noqa: S307
    saved = dict(kernels.GEMM_TILES)
    for tiles in candidates:
        kernels.GEMM_TILES[(kind, "small")] = tiles
        try:
            res[str(tiles)] = graph_us([lambda w=w: fused(w) for w in weights])
        except Exception as exc:  # noqa: BLE001
            res[str(tiles)] = f"failed {type(exc).__name__}: {str(exc)[:80]}"
    kernels.GEMM_TILES.update(saved)
    res = {key: round(v, 2) if isinstance(v, float) else v for key, v in res.items()}
    timed = {key: v for key, v in res.items() if isinstance(v, float) and key != "separate"}
    best = min(timed, key=timed.get)
    say(f"epilogue {kind} {str(dtype)[6:]}", res)
    BEST[(kind, dtype)] = (res["separate"], best, timed[best])


def section_epilogue():
    from zuna_lab.fast import kernels
    for dtype in (torch.bfloat16, torch.float16):
        x = torch.randn(1, ROWS, 1024, device="cuda", dtype=dtype)
        _sweep_epilogue("swiglu", dtype, lambda w: kernels.swiglu(F.linear(x, w)),
                        lambda w: kernels.matmul_swiglu(x, w), SWIGLU_TILES)
        cos, sin = torch.randn(2, 1, ROWS, 32, device="cuda").unbind(0)
        gq, gk = torch.ones(2, 64, device="cuda").unbind(0)
        heads = dict(n_q=16, n_k=16, n_v=16, head_dim=64, q_gain=gq, k_gain=gk)

        def separate(w):
            projected = F.linear(x, w)
            rotated = kernels.rope_heads(projected[..., :2048], cos, sin, **{**heads, "n_v": 0})
            return rotated, projected[..., 2048:]

        _sweep_epilogue("rope", dtype, separate, lambda w: kernels.matmul_rope_heads(x, w, cos, sin, **heads),
                        ROPE_TILES)


ATTENTION_CANDIDATES = [(64, 64, 4, 3), (16, 64, 2, 3), (16, 128, 4, 3), (32, 32, 2, 3), (32, 64, 2, 3),
                        (32, 64, 4, 3), (32, 64, 4, 2), (32, 128, 4, 3), (32, 128, 4, 2), (64, 32, 4, 3),
                        (64, 64, 4, 2), (64, 64, 8, 3), (64, 128, 4, 3), (64, 128, 8, 3), (64, 128, 8, 2),
                        (128, 64, 8, 3), (128, 128, 8, 2), (32, 64, 4, 4), (64, 64, 4, 4)]


def section_attention():
    from zuna_lab.fast import kernels
    saved = kernels.ATTENTION_TILES
    for dtype in (torch.bfloat16, torch.float16):
        q, k, v = (torch.randn(1, ROWS, 16, 64, device="cuda", dtype=dtype) for _ in range(3))
        cos, sin = torch.randn(2, ROWS, 32, device="cuda").unbind(0)
        gain = torch.ones(64, device="cuda")
        ref = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)
        res = {}
        candidates = ATTENTION_CANDIDATES
        if dtype == torch.float16:
            candidates = [saved, eval(BEST[("attention", torch.bfloat16)][1])]  # noqa: S307
        for tiles in candidates:
            kernels.ATTENTION_TILES = tiles
            try:
                err = float((kernels.attention(q, k, v).float() - ref.float()).norm() / ref.float().norm())
                assert err < 1e-2, err
                self_us = graph_us([lambda: kernels.attention(q, k, v)] * LAYERS)
                cross_us = graph_us([lambda: kernels.attention(q, k, v, rope=(cos, sin), q_gain=gain)] * LAYERS)
                res[str(tiles)] = (round(self_us, 2), round(cross_us, 2))
            except Exception as exc:  # noqa: BLE001
                res[str(tiles)] = f"failed {type(exc).__name__}: {str(exc)[:80]}"
        kernels.ATTENTION_TILES = saved
        timed = {key: sum(v) for key, v in res.items() if isinstance(v, tuple)}
        best = min(timed, key=timed.get)
        say(f"attention {str(dtype)[6:]}", res)
        BEST[("attention", dtype)] = (timed[str(saved)], best, timed[best])


class _Linear:
    """``torch.nn.functional`` for the fast blocks with ``linear`` through Triton tiles where ``choices``
    ({(N, K, dtype): cfg}) name them (rows <= 512, the decoder at 1 x 12)."""

    def __init__(self, choices):
        self.choices = choices

    def __getattr__(self, name):
        return getattr(F, name)

    def linear(self, x, w, bias=None):
        cfg = self.choices.get((w.shape[0], w.shape[1], w.dtype))
        if cfg is None or bias is not None or x.numel() // x.shape[-1] > 512:
            return F.linear(x, w, bias)
        return triton_linear(x.contiguous(), w, cfg)


def section_whole():
    import bench
    import zuna_lab
    from zuna_lab.fast import blocks, kernels, runner

    bench.write_checkpoint_ours()
    model = zuna_lab.load_model(bench.CKPT, device="cuda")
    model.kernels_ready(wait=True)
    tokens, tok_idx, noise = (t.cuda() for t in bench.make_inputs(1, 12))
    run = lambda: model.sample(model.encode(tokens, tok_idx), tok_idx, noise=noise, steps=50)  # noqa: E731
    dec = model.decoder.blocks
    saved_tiles = dict(kernels.GEMM_TILES)
    saved_attention = kernels.ATTENTION_TILES

    def pick(kind, dtype):
        base, best, best_us = BEST.get((kind, dtype), (None, None, None))[:3]
        return (eval(best) if best is not None and best_us < base else None)  # noqa: S307

    att = pick("attention", torch.bfloat16)
    swiglu = pick("swiglu", torch.bfloat16)
    rope = pick("rope", torch.bfloat16)
    linears = {}
    for name, n, k in SHAPES:
        for dtype in (torch.float16, torch.bfloat16):
            entry = BEST.get(("gemm", name, dtype))
            if entry is None:
                continue
            cublas, best, best_us, best_plain, plain_us = entry
            # split-K results are fp32: only where an fp32 result is read (N = 1024: wq, wo, w2)
            cfg, us = (best, best_us) if n == 1024 else (best_plain, plain_us)
            if us < 0.95 * cublas:
                linears[(n, k, dtype)] = eval(cfg)  # noqa: S307
    say("BEST choices", dict(attention=att, swiglu=swiglu, rope=rope,
                             linears={f"{n}x{k} {str(d)[6:]}": c for (n, k, d), c in linears.items()}))

    def configure(variant):
        kernels.GEMM_TILES.update(saved_tiles)
        kernels.ATTENTION_TILES = saved_attention
        blocks.F = F
        for block in dec:
            block.feed_forward.epilogue = False
            block.attention.epilogue = False
        if variant in ("attention", "+swiglu", "+rope", "+linears") and att:
            kernels.ATTENTION_TILES = att
        if variant in ("+swiglu", "+rope", "+linears") and swiglu:
            kernels.GEMM_TILES[("swiglu", "small")] = swiglu
            for block in dec:
                block.feed_forward.epilogue = True
        if variant in ("+rope", "+linears") and rope:
            kernels.GEMM_TILES[("rope", "small")] = rope
            for block in dec:
                block.attention.epilogue = True
        if variant in ("+linears", "linears only") and linears:
            blocks.F = _Linear(linears)
        model.clear_graphs()
        # one eager step first: new tiles compile outside any graph capture
        with torch.no_grad(), runner.gemm_flags(tf32=True):
            runner.sample(model.decoder, model.encode(tokens, tok_idx).float(), tok_idx, noise, steps=1, cfg=1.0,
                          tf32=True)
        torch.cuda.synchronize()

    variants = ["base", "attention", "+swiglu", "+rope", "+linears", "linears only"]
    times = {v: [] for v in variants}
    outputs = {}
    for _ in range(3):
        for variant in variants:
            configure(variant)
            try:
                outputs[variant] = run()
                run()
                seconds, _ = bench.timed(run, repeats=10)
                times[variant].append(round(seconds * 1e3, 2))
            except Exception as exc:  # noqa: BLE001
                times[variant].append(f"failed {type(exc).__name__}: {str(exc)[:100]}")
    configure("base")
    base = outputs["base"].float()
    say("whole 1x12 ms (3 interleaved rounds)", times)
    say("whole samples vs base (rel L2)", {v: float((o.float() - base).norm() / base.norm())
                                            for v, o in outputs.items()})


def main():
    sections = sys.argv[1:] or ["gemm", "epilogue", "attention", "whole"]
    say("device", torch.cuda.get_device_name())
    for name in sections:
        start = time.perf_counter()
        globals()[f"section_{name}"]()
        say(f"section {name} seconds", round(time.perf_counter() - start, 1))


if __name__ == "__main__":
    main()
