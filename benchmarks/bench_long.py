"""Day-long recordings in bounded memory (issue #25): peak RSS and time of ``zl.embed(path, out=...)``.

Usage::

    python benchmarks/bench_long.py make  DIR              # 32-ch synthetic recordings of 1 h, 6 h, 24 h (FIF, EDF)
    python benchmarks/bench_long.py run   DIR [--task embed|reconstruct] [--model stub|tiny] [--hours 1 6 24] [--out F]
    python benchmarks/bench_long.py one   FILE --model stub|tiny     # one measurement, in a fresh process

``make`` writes one hour of ``make_synthetic_raw`` (32 channels of the 10-20/10-10 cap, 256 Hz) as
FIF and EDF, then the 6 h and 24 h files by repeating that hour: FIF through MNE's lazy
``concatenate_raws`` + ``save`` (split into 2 GB parts as MNE does), EDF by copying its data records
after a header whose record count is changed — no file is ever held in memory whole.

``run`` measures every file in a fresh Python process (``one``): peak resident memory
(``getrusage``'s ``ru_maxrss``: the whole process — Python, torch, MNE — not only the data) and
wall time. ``--model tiny`` is a small random checkpoint on the CPU (its encoder dominates the
time on 2 cores); ``--model stub`` replaces the encoder by the identity (the tokens as latents),
which keeps the data's sizes and measures the pipeline itself: reading, preprocessing, tokens,
writing. The model's size changes neither the data nor their memory.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

CHANNELS = ["Fp1", "Fp2", "F7", "F3", "Fz", "F4", "F8", "FC5", "FC1", "FC2", "FC6", "T7", "C3", "Cz", "C4", "T8",
            "CP5", "CP1", "CP2", "CP6", "P7", "P3", "Pz", "P4", "P8", "PO3", "PO4", "O1", "Oz", "O2", "AF3", "AF4"]
HOURS = (1, 6, 24)


def make(folder):
    import mne

    from zuna_lab.synthetic import make_synthetic_raw

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hour = make_synthetic_raw(duration=3600.0, ch_names=CHANNELS, seed=0, verbose=False)
        hour.save(folder / "h1_raw.fif", overwrite=True, verbose="error")
        mne.export.export_raw(folder / "h1.edf", hour, fmt="edf", overwrite=True, verbose="error")
    del hour
    for hours in HOURS[1:]:
        lazy = [mne.io.read_raw_fif(folder / "h1_raw.fif", preload=False, verbose="error") for _ in range(hours)]
        joined = mne.concatenate_raws(lazy, verbose="error")
        joined.set_annotations(None)          # no BAD boundary annotations between the copies
        joined.save(folder / f"h{hours}_raw.fif", overwrite=True, verbose="error")
        _repeat_edf(folder / "h1.edf", folder / f"h{hours}.edf", hours)
    for path in sorted(folder.iterdir()):
        print(f"{path.name}: {path.stat().st_size / 1e9:.2f} GB")


def _repeat_edf(source, target, times):
    """An EDF ``times`` as long: the same header with the record count multiplied, the records repeated."""
    with open(source, "rb") as handle:
        header = bytearray(handle.read(256))
        n_signals = int(header[252:256].decode().strip())
        header += handle.read(256 * n_signals)
        records = int(header[236:244].decode().strip())
        data = handle.read()
    header[236:244] = f"{records * times:<8d}".encode()
    with open(target, "wb") as out:
        out.write(header)
        for _ in range(times):
            out.write(data)


def one(path, model_kind, task="embed", in_memory=False):
    """Embed or reconstruct one file with out=; print a JSON line with the peak RSS and the times."""
    import numpy as np
    import torch

    import zuna_lab as zl
    from zuna_lab.testing import make_random_checkpoint

    folder = Path(tempfile.mkdtemp(prefix="bench_long_"))
    try:
        model = zl.load_model(make_random_checkpoint(folder / "ckpt", variant="ZUNA1.1"), device="cpu")
        if model_kind == "stub":     # the identity: tokens as latents, latents as the sampled output
            model.encode = lambda tokens, tok_idx: torch.as_tensor(np.ascontiguousarray(tokens[..., :32]))
            model.sample = lambda latents, tok_idx, **kwargs: latents
        baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = None if in_memory else folder / "out.zarr"
            if task == "embed":
                emb = zl.embed(path, model=model, out=out, progress=False, verbose="error")
            else:
                emb = zl.reconstruct(path, model=model, out=out, steps=2, seed=0,
                                     bad_channels=["T7"], progress=False, verbose="error")
        seconds = time.perf_counter() - start
        size = sum(f.stat().st_size for f in (folder / "out.zarr").rglob("*") if f.is_file()) if out else emb.nbytes
        print(json.dumps(dict(file=Path(path).name, task=task, where="memory" if in_memory else "out=",
                              model=model_kind, seconds=round(seconds, 1),
                              peak_rss_gb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 3),
                              rss_before_gb=round(baseline, 3), epochs=int(emb.sizes["epoch"]),
                              channels=int(emb.sizes["channel"]), result_gb=round(size / 1e9, 3),
                              recording_hours=round(emb.sizes["epoch"] * 5 / 3600, 2))), flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run(folder, model_kind, out, hours_list=HOURS, task="embed"):
    rows = []
    for hours in hours_list:
        for name in (f"h{hours}_raw.fif", f"h{hours}.edf"):
            path = Path(folder) / name
            if not path.exists():
                continue
            done = subprocess.run([sys.executable, __file__, "one", str(path), "--model", model_kind, "--task", task],
                                  capture_output=True, text=True)
            line = [text for text in done.stdout.splitlines() if text.startswith("{")]
            if done.returncode or not line:
                print(done.stderr[-2000:], file=sys.stderr)
                continue
            rows.append(json.loads(line[-1]))
            print(line[-1], flush=True)
    if out:
        Path(out).write_text(json.dumps(dict(machine=_machine(), rows=rows), indent=1))


def _machine():
    import platform

    import torch

    return dict(cpu=platform.processor() or platform.machine(), cores=os.cpu_count(), torch=torch.__version__,
                python=platform.python_version())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=("make", "run", "one"))
    parser.add_argument("path")
    parser.add_argument("--model", choices=("stub", "tiny"), default="stub")
    parser.add_argument("--out", default=None)
    parser.add_argument("--hours", type=int, nargs="+", default=list(HOURS), help="which lengths to run")
    parser.add_argument("--task", choices=("embed", "reconstruct"), default="embed")
    parser.add_argument("--in-memory", action="store_true", help="one: without out= (the in-memory path)")
    args = parser.parse_args(argv)
    if args.action == "make":
        make(args.path)
    elif args.action == "one":
        one(args.path, args.model, args.task, args.in_memory)
    else:
        run(args.path, args.model, args.out, args.hours, args.task)


if __name__ == "__main__":
    main()
