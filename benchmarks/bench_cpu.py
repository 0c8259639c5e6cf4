"""CPU benchmark: zuna_lab vs the official zuna 1.1.6 on the same cores, full-size ZUNA1.1 weights.

    python benchmarks/bench_cpu.py [--threads 2]     # needs tests/oracle/setup_venvs.sh and ../shared/data

Times, on the 15 s sample (../shared/data/sample1_raw.fif, 12 channels, 3 epochs of 5 s):
the encoder on the official tokens (embedding) and a 10-step reconstruction (encoder + sampler),
for the official model (flex attention, as it runs on CPU) and zuna_lab (SDPA), same weights,
same tokens; plus zuna_lab's end-to-end ``embed`` (read + preprocess + encode). Best of 2 runs.
Writes benchmarks/results/cpu.json and cpu.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
SAMPLE = ROOT.parent / "shared" / "data" / "sample1_raw.fif"


def best_of(fn, repeats=2):
    fn()
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return min(runs)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import zuna_lab
    from oracle_support import oracle_python
    from zuna_lab.preprocessing import preprocess
    from zuna_lab.tokens import tokenize

    work = Path(tempfile.mkdtemp(prefix="zuna_cpu_bench_"))
    python = str(oracle_python("ZUNA1.1"))
    script = str(ROOT / "tests" / "oracle" / "official_model.py")
    env = dict(os.environ, TORCHDYNAMO_DISABLE="1", PYTHONWARNINGS="ignore")
    subprocess.run([python, script, "build", "--out", str(work / "ckpt"), "--dim", "1024", "--n-layers", "16",
                    "--n-heads", "8", "--head-dim", "64", "--t-dim", "64"], check=True, env=env)
    model = zuna_lab.load_model(work / "ckpt", device="cpu", dtype="fp32")
    raw = zuna_lab.read_raw(SAMPLE, verbose=False)
    pre = preprocess(raw, model.variant)
    tokens, tok_idx = tokenize(np.stack(pre.data), pre.ch_pos, variant=model.variant)
    np.savez(work / "inputs.npz", tokens=tokens, tok_idx=tok_idx)
    official = json.loads(subprocess.run(
        [python, script, "time", "--ckpt", str(work / "ckpt"), "--inputs", str(work / "inputs.npz"),
         "--steps", str(args.steps), "--threads", str(args.threads)],
        check=True, env=env, capture_output=True, text=True).stdout.strip().splitlines()[-1])
    tokens_t, tok_idx_t = torch.from_numpy(tokens), torch.from_numpy(tok_idx)
    noise = torch.randn(tokens_t.shape)
    ours = {
        "encode": best_of(lambda: model.encode(tokens_t, tok_idx_t)),
        "reconstruct": best_of(lambda: model.sample(model.encode(tokens_t, tok_idx_t), tok_idx_t, noise=noise,
                                                    steps=args.steps)),
        "embed_end_to_end": best_of(lambda: zuna_lab.embed(SAMPLE, model=model, progress=False, verbose=False)),
    }
    result = dict(machine=f"{platform.processor() or platform.machine()}, {args.threads} threads",
                  torch=torch.__version__, official=official, zuna_lab=ours, steps=args.steps,
                  speedup_encode=official["encode"] / ours["encode"],
                  speedup_reconstruct=official["reconstruct"] / ours["reconstruct"])
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "cpu.json").write_text(json.dumps(result, indent=2))
    lines = [f"# CPU benchmark — {result['machine']}, torch {torch.__version__}", "",
             "15 s sample (12 channels, 3 epochs), full-size ZUNA1.1 random weights, fp32, same tokens and weights.", "",
             "| task | official zuna 1.1.6 (s) | zuna_lab (s) | speed-up |", "|---|---|---|---|",
             f"| embed (encoder on the tokens) | {official['encode']:.2f} | {ours['encode']:.2f} | {result['speedup_encode']:.1f}x |",
             f"| reconstruct, {args.steps} steps | {official['reconstruct']:.2f} | {ours['reconstruct']:.2f} | {result['speedup_reconstruct']:.1f}x |",
             "", f"zuna_lab end-to-end `embed` (read + preprocess + encode): {ours['embed_end_to_end']:.2f} s."]
    (out / "cpu.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
