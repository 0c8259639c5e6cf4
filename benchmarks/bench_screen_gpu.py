"""Time zl.screen on a GPU: 10 min x 64 channels with full-size (random) weights (issue O's "must show").

Random full-size ZUNA weights (``make_random_checkpoint(full_size=True)``): the model's size sets the
time, not its weights, so the verdicts are meaningless and only the time counts. The recording is
``make_synthetic_raw`` (64 channels of the 10-10 cap, 256 Hz). ZUNA reconstructs the whole recording
once per held-out set and pass: with ``--groups 8`` that is 8 reconstructions of 120 epochs per pass
(about 1000 epoch-reconstructions: ~3 min on one H100 at the 5.9 epochs/s of 8 x 64 in README's
table); ``--groups 0`` holds out each channel alone (64 per pass). zl.screen predicts again when a
pass finds something (at most ``--max-passes``, default 3 as zl.screen's): with random weights that
may happen, so ``--max-passes 1`` times one pass where a command's time is limited. Each held-out set
also preprocesses the whole recording again on the CPU (its channels are replaced by the spline's
estimate first). Prints one JSON object (and writes it with ``--out``): the total, ZUNA's and the
spline's seconds, the passes, the device.

    python benchmarks/bench_screen_gpu.py                          # the GPU run: 600 s x 64 ch, groups 8, 50 steps
    python benchmarks/bench_screen_gpu.py --tiny                   # CPU rehearsal: tiny model, 30 s x 16 ch
"""
import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

import zuna_lab as zl
from zuna_lab.synthetic import make_synthetic_raw
from zuna_lab.testing import make_random_checkpoint

CAP64 = ["Fp1", "Fpz", "Fp2", "AF7", "AF3", "AFz", "AF4", "AF8", "F7", "F5", "F3", "F1", "Fz", "F2", "F4", "F6", "F8",
         "FT7", "FC5", "FC3", "FC1", "FCz", "FC2", "FC4", "FC6", "FT8", "T7", "C5", "C3", "C1", "Cz", "C2", "C4", "C6",
         "T8", "TP7", "CP5", "CP3", "CP1", "CPz", "CP2", "CP4", "CP6", "TP8", "P7", "P5", "P3", "P1", "Pz", "P2", "P4",
         "P6", "P8", "PO7", "PO3", "POz", "PO4", "PO8", "O1", "Oz", "O2", "Iz", "FT9", "FT10"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--channels", type=int, default=64, choices=range(4, 65), metavar="N")
    parser.add_argument("--groups", type=int, default=8, help="held-out sets (0: each channel alone)")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--max-passes", type=int, default=3)
    parser.add_argument("--variant", default="ZUNA1.1", choices=("ZUNA", "ZUNA1.1"))
    parser.add_argument("--tiny", action="store_true", help="CPU rehearsal: tiny model, 30 s x 16 channels, 2 steps")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args()
    if args.tiny:
        args.seconds, args.channels, args.steps = min(args.seconds, 30.0), min(args.channels, 16), min(args.steps, 2)
    raw = make_synthetic_raw(duration=args.seconds, ch_names=CAP64[:args.channels], seed=0, verbose="error")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with tempfile.TemporaryDirectory() as work:
        ckpt = make_random_checkpoint(Path(work) / "ckpt", variant=args.variant, full_size=not args.tiny)
        start = time.perf_counter()
        model = zl.load_model(str(ckpt), device=device)
        load_s = time.perf_counter() - start
        options = dict(groups=args.groups or None, steps=args.steps, max_passes=args.max_passes, compare=(),
                       progress=False, verbose="error")
        start = time.perf_counter()
        spline = zl.screen(raw, estimators=("spline",), **options)
        spline_s = time.perf_counter() - start
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        report = zl.screen(raw, model=model, **options)
        if device == "cuda":
            torch.cuda.synchronize()
        total_s = time.perf_counter() - start
    passes = dict(zip(report.scores.attrs["estimators"], report.scores.attrs["passes"]))
    n_sets = args.groups or args.channels
    out = dict(
        device=torch.cuda.get_device_name(0) if device == "cuda" else (platform.processor() or platform.machine()),
        cpus=os.cpu_count(), torch=torch.__version__, zuna_lab=zl.__version__, variant=model.variant,
        precision=model.precision, full_size=not args.tiny, parameters=model.n_parameters(),
        seconds=args.seconds, channels=args.channels, epochs=int(report.scores.sizes["epoch"]),
        held_out=report.scores.attrs["held_out"], steps=args.steps, passes=passes,
        reconstructions=n_sets * passes["zuna"], load_model_s=round(load_s, 2),
        screen_s=round(total_s, 2), spline_alone_s=round(spline_s, 2),
        zuna_s_per_reconstruction=round((total_s - spline_s) / max(n_sets * passes["zuna"], 1), 2),
        suggested=report.bad_channels, note="random weights: the time counts, the verdicts are meaningless")
    print(json.dumps(out, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
