"""Timings of the fast path's precision policies side by side on one GPU (bench.py's cases and inputs):
bf16, fp16 and mixed (the default: the encoder in fp16, the decoder in bf16; measured on 2026-12-06
as a "hybrid" built by hand, the same modules)."""
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
import bench  # noqa: E402
import zuna_lab  # noqa: E402
from zuna_lab.fast import FastOptions, build  # noqa: E402

bench.write_checkpoint_ours()
exact = zuna_lab.load_model(bench.CKPT, device="cuda", dtype="fp32")
models = {p: build(exact, FastOptions(precision=p)) for p in ("fp16", "bf16", "mixed")}
for model in models.values():
    model.kernels_ready(wait=True)     # the kernels, not their twins
del exact
for name, n_epochs, n_channels in bench.CASES:
    tokens, tok_idx, noise = (t.cuda() for t in bench.make_inputs(n_epochs, n_channels))
    line = f"{name}:"
    for policy in ("bf16", "fp16", "mixed", "bf16"):
        model = models[policy]
        model.clear_graphs()
        run = lambda: model.sample(model.encode(tokens, tok_idx), tok_idx, noise=noise, steps=bench.STEPS)  # noqa: E731
        run()
        warm, _ = bench.timed(run, repeats=10 if n_epochs == 1 else 3)
        line += f"  {policy} {warm * 1e3:.1f} ms ({n_epochs / warm:.2f} ep/s)"
    print(line, flush=True)
