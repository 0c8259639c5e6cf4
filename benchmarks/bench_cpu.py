"""CPU benchmark (``python benchmarks/bench.py --part cpu``): zuna_lab's CPU paths against the official
package and braindecode's ZUNA1.1 encoder, side by side on this machine's cores.

The 15 s sample (12 channels, 3 epochs of 5 s) tokenised once; full-size ZUNA1.1 weights built by
the official package (its init, norms and time conditioning given non-trivial values), saved in
the Hugging Face layout and loaded into every contender:

- official zuna 1.1.6 in its venv (tests/oracle/setup_venvs.sh), flex attention as it runs on a CPU,
  in a subprocess: its encoder and a ``--steps``-step ``sample`` (warm-up, then one timed run);
- braindecode 1.8.1's ``ZUNA`` encoder (the same weights: the official keys after ``encoder.``,
  RMSNorm weights one level up), on the same tokens, positions from the recording's ``chs_info``;
- zuna_lab exact fp32 (``dtype="fp32"``, "today's CPU path") and the default CPU fast path
  (:mod:`zuna_lab.fast.cpu`), the encoder on the same tokens, and a ``--steps``-step reconstruction
  with the same noise.

The three encoders run interleaved (round robin, ``--rounds`` rounds after a warm-up; the best
round counts). Errors: relative L2 of the fast path's latents and samples against the exact path,
on these weights and on perturbed full-size weights (every tensor + 0.02 N(0, 1), as the GPU tests).
Also times ``zl.embed`` end to end on a synthetic 64-channel recording of ``--minutes`` minutes.

braindecode is imported from ``--braindecode PATH`` if given (a ``pip install --target`` folder;
see ../shared/ENVIRONMENT.md for its torchaudio stand-in), else from the environment; without it
its column is left out and said so. Writes results/cpu.json and cpu.md.
"""
from __future__ import annotations

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
RESULTS = ROOT / "benchmarks" / "results"


def rel(a, b):
    a, b = torch.as_tensor(a).double(), torch.as_tensor(b).double()
    return float((a - b).norm() / b.norm())


def braindecode_encoder(weights_path, raw, n_times):
    """braindecode's ZUNA with the checkpoint's encoder weights; returns its ``encoder`` module."""
    import warnings

    from safetensors.torch import load_file

    warnings.filterwarnings("ignore")
    from braindecode.models import ZUNA

    # ZUNA1.1 bins electrode positions into 100 per axis (braindecode's default is ZUNA's 50)
    model = ZUNA(n_outputs=2, chs_info=raw.info["chs"], n_times=n_times, sfreq=raw.info["sfreq"], pos_bins=100).eval()
    official = load_file(str(weights_path))
    theirs = {}
    for key, value in official.items():
        if key.startswith("model."):
            key = key[len("model."):]
        if key.startswith("encoder."):
            theirs[key.replace(".norm.weight", ".weight", 1) if key.endswith(".norm.weight") else key] = value
    missing, unexpected = model.load_state_dict(theirs, strict=False)
    missing = [k for k in missing if not k.startswith("final_layer")]
    if missing or unexpected:
        raise RuntimeError(f"braindecode key mapping: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model.encoder


def interleaved(contenders, rounds):
    """Best wall time of each contender, run round robin after one warm-up each; and its last output."""
    outputs = {name: fn() for name, fn in contenders.items()}
    times = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            start = time.perf_counter()
            outputs[name] = fn()
            times[name].append(time.perf_counter() - start)
    return {name: min(t) for name, t in times.items()}, times, outputs


def run(threads=2, steps=10, rounds=3, minutes=2.0, braindecode=None, official=True):
    sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
    if braindecode:
        sys.path.insert(0, str(braindecode))
    torch.set_num_threads(threads)
    import zuna_lab as zl
    from zuna_lab.fast.cpu import build_cpu, native_bf16
    from zuna_lab.pipeline.preprocessing import preprocess
    from zuna_lab.testing import make_random_checkpoint
    from zuna_lab.pipeline.tokens import tokenize

    work = Path(tempfile.mkdtemp(prefix="zuna_cpu_bench_"))
    sample = ROOT.parent / "shared" / "data" / "sample1_raw.fif"
    env = dict(os.environ, TORCHDYNAMO_DISABLE="1", PYTHONWARNINGS="ignore")
    from oracle_support import oracle_python

    python, script = str(oracle_python("ZUNA1.1")), str(ROOT / "tests" / "oracle" / "official_model.py")
    subprocess.run([python, script, "build", "--out", str(work / "ckpt"), "--dim", "1024", "--n-layers", "16",
                    "--n-heads", "8", "--head-dim", "64", "--t-dim", "64"], check=True, env=env)
    exact = zl.load_model(work / "ckpt", device="cpu", dtype="fp32")
    fast = build_cpu(exact)
    raw = zl.read_raw(sample, verbose=False)
    pre = preprocess(raw, exact.variant)
    tokens, tok_idx = tokenize(np.stack(pre.data), pre.ch_pos, variant=exact.variant)
    np.savez(work / "inputs.npz", tokens=tokens, tok_idx=tok_idx)
    t, i = torch.from_numpy(tokens), torch.from_numpy(tok_idx)
    result = dict(machine=f"{platform.processor() or platform.machine()}, {threads} threads",
                  torch=torch.__version__, native_bf16=native_bf16(), policy=vars(fast.cpu_policy), steps=steps,
                  tokens=list(tokens.shape), date=time.strftime("%Y-%m-%d"))

    # the encoders, interleaved
    contenders = {"zuna_lab exact fp32": lambda: exact.encode(t, i), "zuna_lab default": lambda: fast.encode(t, i)}
    if braindecode is not None or _importable("braindecode"):
        encoder = braindecode_encoder(next((work / "ckpt").glob("*.safetensors")), raw.copy().pick("eeg"),
                                      pre.data[0].shape[-1])
        # braindecode's sequence is channel-major, ZUNA1.1's time-major: the same tokens reordered
        n_docs, n_channels = t.shape[0], len(pre.ch_names)
        t_cm = t.view(n_docs, -1, n_channels, 32).transpose(1, 2).reshape(n_docs, -1, 32).contiguous()
        back = lambda out: out.view(n_docs, n_channels, -1, out.shape[-1]).transpose(1, 2).reshape(out.shape)  # noqa: E731
        with torch.no_grad():
            contenders["braindecode 1.8.1"] = lambda: back(encoder(t_cm))
    with torch.no_grad():
        best, all_times, outs = interleaved(contenders, rounds)
    result["encode"] = {name: round(v, 3) for name, v in best.items()}
    result["encode_rounds"] = {name: [round(x, 3) for x in v] for name, v in all_times.items()}
    result["encode_median"] = {name: round(float(np.median(v)), 3) for name, v in all_times.items()}
    result["latents_error"] = {name: rel(out, outs["zuna_lab exact fp32"]) for name, out in outs.items()}
    print("encode", result["encode"], result["latents_error"], flush=True)

    # reconstruction, same noise
    noise = torch.randn(t.shape, generator=torch.Generator().manual_seed(0))
    recon = {"zuna_lab exact fp32": exact, "zuna_lab default": fast}
    best, _, outs = interleaved({name: (lambda m=m: m.sample(m.encode(t, i), i, noise=noise, steps=steps))
                                 for name, m in recon.items()}, 1)
    result["reconstruct"] = {name: round(v, 2) for name, v in best.items()}
    result["samples_error"] = rel(outs["zuna_lab default"], outs["zuna_lab exact fp32"])
    print("reconstruct", result["reconstruct"], result["samples_error"], flush=True)

    # the same errors on perturbed full-size weights
    perturbed = zl.load_model(make_random_checkpoint(work / "perturbed", variant="ZUNA1.1", full_size=True,
                                                     perturb=0.02), device="cpu", dtype="fp32")
    fast_p = build_cpu(perturbed)
    result["perturbed"] = dict(latents_error=rel(fast_p.encode(t, i), perturbed.encode(t, i)),
                               samples_error=rel(fast_p.sample(fast_p.encode(t, i), i, noise=noise, steps=steps),
                                                 perturbed.sample(perturbed.encode(t, i), i, noise=noise, steps=steps)))
    del perturbed, fast_p
    print("perturbed", result["perturbed"], flush=True)

    # a 64-channel recording end to end with the default path
    from zuna_lab.synthetic import make_synthetic_raw

    names = [ch for ch in _names_64()]
    long_raw = make_synthetic_raw(duration=60.0 * minutes, ch_names=names, seed=1, verbose=False)
    start = time.perf_counter()
    emb = zl.embed(long_raw, model=fast, progress=False, verbose="error")
    seconds = time.perf_counter() - start
    result["embed_64ch"] = dict(minutes=minutes, channels=len(names), epochs=int(emb.sizes["epoch"]),
                                seconds=round(seconds, 1), per_10_min=round(seconds * 10 / minutes, 1))
    print("embed 64 ch", result["embed_64ch"], flush=True)
    result["embed_end_to_end_sample"] = round(_best(lambda: zl.embed(sample, model=fast, progress=False,
                                                                      verbose=False)), 2)

    if official:
        result["official"] = json.loads(subprocess.run(
            [python, script, "time", "--ckpt", str(work / "ckpt"), "--inputs", str(work / "inputs.npz"),
             "--steps", str(steps), "--threads", str(threads), "--repeats", "1"],
            check=True, env=env, capture_output=True, text=True).stdout.strip().splitlines()[-1])
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "cpu.json").write_text(json.dumps(result, indent=2))
    (RESULTS / "cpu.md").write_text(report(result))
    print(report(result))
    return result


def report(r):
    enc, rec, off = r["encode"], r["reconstruct"], r.get("official", {})
    exact, default = enc["zuna_lab exact fp32"], enc["zuna_lab default"]
    med = r.get("encode_median", enc)
    bd = enc.get("braindecode 1.8.1")
    cell = lambda v, ref: f"{v:.2f} ({ref / v:.2f}x)" if v else "—"     # noqa: E731
    lines = [f"# CPU benchmark — {r['machine']}, torch {r['torch']}, native bf16: {r['native_bf16']}", "",
             f"15 s sample (12 channels, 3 epochs, tokens {r['tokens']}), full-size ZUNA1.1 weights built by the "
             "official package, the same tokens and weights in every column. Seconds (speed-up over braindecode "
             "for the encoder, over zuna_lab exact for the reconstruction); encoders interleaved, best of "
             f"{len(r['encode_rounds']['zuna_lab default'])} rounds.", "",
             "| task | official zuna 1.1.6 | braindecode 1.8.1 | zuna_lab exact fp32 | zuna_lab default (CPU fast path) |",
             "|---|---|---|---|---|",
             f"| embed (encoder on the tokens) | {off.get('encode', float('nan')):.2f} | {bd if bd else '—'} | "
             f"{cell(exact, bd) if bd else exact} | {cell(default, bd) if bd else default} |",
             *([f"| embed, median of the rounds | | {med['braindecode 1.8.1']} | "
                f"{cell(med['zuna_lab exact fp32'], med['braindecode 1.8.1'])} | "
                f"{cell(med['zuna_lab default'], med['braindecode 1.8.1'])} |"] if bd else []),
             f"| reconstruct, {r['steps']} steps | {off.get('reconstruct', float('nan')):.2f} | — | "
             f"{rec['zuna_lab exact fp32']:.2f} | {cell(rec['zuna_lab default'], rec['zuna_lab exact fp32'])} |",
             "", f"Default path vs exact, relative L2: latents {r['latents_error']['zuna_lab default']:.2e}, "
             f"{r['steps']}-step samples {r['samples_error']:.2e} (these weights); on perturbed full-size weights "
             f"latents {r['perturbed']['latents_error']:.2e}, samples {r['perturbed']['samples_error']:.2e}. "
             + (f"braindecode vs exact: {r['latents_error']['braindecode 1.8.1']:.1e}. " if bd else
                "braindecode was not importable: its column is empty. ")
             + f"Policy: {r['policy']}.",
             "", f"`zl.embed` end to end: the 15 s sample {r['embed_end_to_end_sample']} s; a synthetic "
             f"{r['embed_64ch']['minutes']:g}-min {r['embed_64ch']['channels']}-channel recording "
             f"({r['embed_64ch']['epochs']} epochs) {r['embed_64ch']['seconds']} s"
             + (f", i.e. {r['embed_64ch']['per_10_min']} s per 10 minutes of recording (epochs are independent)."
                if r['embed_64ch']['minutes'] < 10 else
                " end to end (preprocessing, tokens, encoder, the Dataset), run in full."),
             "", f"Measured {r['date']} by `python benchmarks/bench.py --part cpu` (one command)."]
    return "\n".join(lines) + "\n"


def _best(fn, repeats=2):
    fn()
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return min(runs)


def _importable(name):
    import importlib.util

    return importlib.util.find_spec(name) is not None


def _names_64():
    import mne

    montage = mne.channels.make_standard_montage("standard_1005")
    wanted = ["Fp1", "Fpz", "Fp2", "AF7", "AF3", "AFz", "AF4", "AF8", "F7", "F5", "F3", "F1", "Fz", "F2", "F4", "F6",
              "F8", "FT7", "FC5", "FC3", "FC1", "FCz", "FC2", "FC4", "FC6", "FT8", "T7", "C5", "C3", "C1", "Cz", "C2",
              "C4", "C6", "T8", "TP7", "CP5", "CP3", "CP1", "CPz", "CP2", "CP4", "CP6", "TP8", "P7", "P5", "P3", "P1",
              "Pz", "P2", "P4", "P6", "P8", "PO7", "PO3", "POz", "PO4", "PO8", "O1", "Oz", "O2", "Iz", "TP9", "TP10"]
    assert all(name in montage.ch_names for name in wanted) and len(wanted) == 64
    return wanted
