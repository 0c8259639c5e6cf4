"""How well screening finds known faults (issue O): zl.screen's spline and ZUNA estimators, pyprep, RANSAC, LOF.

Synthetic recordings (``make_synthetic_raw``: 1/f background correlated over ~10 cm, posterior
alpha, blinks, line noise) of 32 and 64 channels, one recording per (montage, seed, fault); each
gets one kind of fault (``zuna_lab.trust.faults``) on 2 random channels (a bridge: one random pair
of neighbours), or none. Per method and fault: precision and recall of the channels flagged;
for a 1 s burst, whether a suggested BAD_screen segment covers it (channel flags count as false
alarms). ZUNA runs a tiny RANDOM checkpoint here: its row is meaningless (the pipeline is
exercised, nothing is learned).

    python benchmarks/eval_screen.py                      # 32 and 64 channels, seeds 0 1 2, 30 s
    python benchmarks/eval_screen.py --seeds 0 --montages 32 --methods spline ransac   # quick
"""
import argparse
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

import zuna_lab as zl
from zuna_lab.synthetic import make_synthetic_raw
from zuna_lab.testing import make_random_checkpoint
from zuna_lab.trust import detectors
from zuna_lab.trust.faults import FAULTS, inject_faults

RESULTS = Path(__file__).resolve().parent / "results"
CAPS = {
    32: ["Fp1", "Fp2", "AF3", "AF4", "F7", "F3", "Fz", "F4", "F8", "FC5", "FC1", "FC2", "FC6", "T7", "C3", "Cz",
         "C4", "T8", "CP5", "CP1", "CP2", "CP6", "P7", "P3", "Pz", "P4", "P8", "PO3", "PO4", "O1", "Oz", "O2"],
    64: ["Fp1", "Fpz", "Fp2", "AF7", "AF3", "AFz", "AF4", "AF8", "F7", "F5", "F3", "F1", "Fz", "F2", "F4", "F6", "F8",
         "FT7", "FC5", "FC3", "FC1", "FCz", "FC2", "FC4", "FC6", "FT8", "T7", "C5", "C3", "C1", "Cz", "C2", "C4", "C6",
         "T8", "TP7", "CP5", "CP3", "CP1", "CPz", "CP2", "CP4", "CP6", "TP8", "P7", "P5", "P3", "P1", "Pz", "P2", "P4",
         "P6", "P8", "PO7", "PO3", "POz", "PO4", "PO8", "O1", "Oz", "O2", "Iz", "FT9", "FT10"],
}
KINDS = ("none", "dead", "noise", "bridge", "pops", "drift", "line", "position", "burst")
CHANNEL_FAULTS = ("dead", "noise", "bridge", "pops", "drift", "line", "position")
METHODS = ("spline", "zuna", "pyprep", "ransac", "lof")
LABELS = {"spline": "zl.screen, spline", "zuna": "zl.screen, ZUNA (RANDOM weights: meaningless)",
          "pyprep": "pyprep NoisyChannels (all criteria)", "ransac": "pyprep RANSAC alone", "lof": "MNE LOF"}


def faulty_recording(n_channels, seed, kind, duration):
    """The recording with one kind of fault on 2 random channels (bridge: a random pair of neighbours)."""
    names = CAPS[n_channels]
    base = make_synthetic_raw(duration=duration, ch_names=names, seed=seed, verbose="error")
    if kind == "none":
        return base, [], {}
    rng = np.random.default_rng([seed, n_channels, KINDS.index(kind)])
    if kind == "bridge":
        pos = np.array([base.get_montage().get_positions()["ch_pos"][n] for n in names])
        first = int(rng.integers(len(names)))
        distance = np.linalg.norm(pos - pos[first], axis=1)
        distance[first] = np.inf
        pair = (names[first], names[int(np.argmin(distance))])
        faulty, truth = inject_faults(base, {"bridge": [pair]}, seed=seed)
        return faulty, list(pair), truth
    chosen = [str(c) for c in rng.choice(names, 2, replace=False)]
    faulty, truth = inject_faults(base, {kind: chosen[:1] if kind == "burst" else chosen}, seed=seed)
    return faulty, ([] if kind == "burst" else chosen), truth


def run_method(method, raw, *, model, seed, steps, groups, options=None):
    """(flagged channels, suggested segments or None, seconds)."""
    start, options = time.perf_counter(), options or {}
    if method in ("spline", "zuna"):
        report = zl.screen(raw, model=model if method == "zuna" else None, estimators=(method,), compare=(),
                           groups=groups if method == "zuna" else None, steps=steps, seed=seed, progress=False,
                           verbose="error", **options)
        return report.bad_channels, report.segments, time.perf_counter() - start
    if method == "pyprep":
        verdicts = detectors.pyprep_verdicts(raw, seed=seed)
    elif method == "ransac":
        verdicts = detectors.ransac_verdicts(raw, seed=seed)
    else:
        verdicts = detectors.lof_verdicts(raw)[0]
    if any(v.startswith(("failed", "not installed")) for v in verdicts.values()):
        raise RuntimeError(f"{method}: {next(iter(verdicts.values()))}")
    return [c for c, v in verdicts.items() if v], None, time.perf_counter() - start


def covered(segments, channel, span):
    """Whether BAD segments on ``channel`` cover at least 90 % of ``span``."""
    start, stop = span
    inside = sum(max(0.0, min(b, stop) - max(a, start)) for a, b, c in segments or () if c == channel)
    return bool(inside >= 0.9 * (stop - start))


def summarise(rows, methods):
    """Per method and fault: precision, recall (channels); false alarms per clean recording; burst coverage."""
    table = {}
    for method in methods:
        part = [r for r in rows if r["method"] == method]
        entry = {}
        for kind in CHANNEL_FAULTS:
            these = [r for r in part if r["kind"] == kind]
            tp = sum(len(set(r["flagged"]) & set(r["injected"])) for r in these)
            fp = sum(len(set(r["flagged"]) - set(r["injected"])) for r in these)
            fn = sum(len(set(r["injected"]) - set(r["flagged"])) for r in these)
            entry[kind] = dict(precision=tp / (tp + fp) if tp + fp else None, recall=tp / (tp + fn) if tp + fn else None,
                               tp=tp, fp=fp, fn=fn)
        clean = [r for r in part if r["kind"] == "none"]
        entry["clean_false_alarms"] = sum(len(r["flagged"]) for r in clean) / max(len(clean), 1)
        entry["clean_segment_s"] = (sum(r["segment_s"] for r in clean) / len(clean)
                                    if clean and clean[0]["segment_s"] is not None else None)
        bursts = [r for r in part if r["kind"] == "burst"]
        entry["burst_covered"] = (sum(bool(r["burst_covered"]) for r in bursts) / len(bursts)
                                  if bursts and bursts[0]["burst_covered"] is not None else None)
        entry["seconds"] = sum(r["seconds"] for r in part) / max(len(part), 1)
        table[method] = entry
    return table


def markdown(table, args, command, compute):
    def cell(value):
        return "—" if value is None else f"{value:.2f}"

    head = ("| method | " + " | ".join(CHANNEL_FAULTS) + " | false alarms / clean rec. | burst covered | "
            "BAD_screen s / clean rec. | s / rec. |")
    lines = [head, "|" + "---|" * (len(CHANNEL_FAULTS) + 5)]
    for method, entry in table.items():
        scores = [f"{cell(entry[k]['precision'])} / {cell(entry[k]['recall'])}" for k in CHANNEL_FAULTS]
        lines.append(f"| {LABELS[method]} | " + " | ".join(scores) + f" | {entry['clean_false_alarms']:.2f} | "
                     f"{cell(entry['burst_covered'])} | {cell(entry['clean_segment_s'])} | {entry['seconds']:.1f} |")
    faults = "\n".join(f"- **{k}**: {FAULTS[k]}" for k in (*CHANNEL_FAULTS, "burst"))
    return f"""# Screening: known faults found (issue O)

Command: `{command}` ({compute / 60:.1f} min of detection in all, on {platform.processor() or platform.machine()},
{os.cpu_count()} CPUs shared with other work).

Recordings: `make_synthetic_raw` ({args.duration:g} s, 256 Hz), {', '.join(map(str, args.montages))} channels,
seeds {', '.join(map(str, args.seeds))}: for each, one clean recording and one per fault kind, the fault on 2 random
channels (bridge: one random pair of nearest neighbours; burst: 1 channel).

Cells: **precision / recall** of the channels each method flags, over all recordings of that fault
(a clean channel flagged is a false alarm; "—" where nothing was flagged). *False alarms / clean rec.*:
channels flagged on the clean recordings, per recording. *Burst covered*: share of bursts whose span a
suggested `BAD_screen` segment on that channel covers (≥ 90 %; channel flags on those recordings count
in no column). *BAD_screen s / clean rec.*: seconds of segments suggested on the clean recordings (false alarms).
*s / rec.*: mean seconds per recording on this machine (zl.screen without `compare`).

{chr(10).join(lines)}

zl.screen's criteria and its default threshold were chosen on seeds 0–2 of these recordings;
[`screen_heldout.md`](screen_heldout.md) repeats the evaluation on seeds 3–5
(`--seeds 3 4 5 --methods spline pyprep ransac lof --out benchmarks/results/screen_heldout`).

zl.screen runs with {_defaults(args)};
the spline holds out each channel alone; ZUNA ({'groups=' + str(args.groups)}, {args.steps} steps, on the
{' and '.join(map(str, args.zuna_montages))}-channel recordings only: on 2 shared CPUs each takes about a minute) runs a
tiny RANDOM checkpoint (`make_random_checkpoint`, dim 64, 2 layers): **its row is meaningless** — its predictions are
noise of a fixed size, so the criteria only single out channels whose own amplitude or spectrum is far off the
others'; it shows that the pipeline runs, not what ZUNA's weights would find. pyprep {_pyprep_version()}: `NoisyChannels(do_detrend=True)`,
`find_all_bads(ransac=True)` (all criteria), and `find_bad_by_ransac()` alone with its defaults (RANSAC: 50 random
quarters of the channels, r < 0.75 in 40 % of 5 s windows). LOF: `mne.preprocessing.find_bad_channels_lof`
(20 neighbours, threshold 1.5) on the recording high-passed at 1 Hz.

Faults:
{faults}
"""


def _defaults(args):
    import inspect

    keys = ("threshold", "bad_fraction", "segment_threshold", "segment_window", "bridge_threshold")
    values = {k: v.default for k, v in inspect.signature(zl.screen).parameters.items() if k in keys}
    if args.threshold is not None:
        values["threshold"] = args.threshold
    return ", ".join(f"{k}={v:g}" for k, v in values.items())


def _pyprep_version():
    try:
        import pyprep

        return pyprep.__version__
    except ImportError:
        return "(not installed)"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--montages", type=int, nargs="+", default=[32, 64], choices=sorted(CAPS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--steps", type=int, default=2, help="ZUNA sampler steps (random weights)")
    parser.add_argument("--groups", type=int, default=4, help="ZUNA's held-out sets")
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    parser.add_argument("--threshold", type=float, default=None, help="zl.screen's threshold (default: its own)")
    parser.add_argument("--zuna-montages", type=int, nargs="+", default=[32], choices=sorted(CAPS),
                        help="montages ZUNA runs on (random weights, CPU: slow and meaningless; default 32)")
    parser.add_argument("--rows", default=None, help="a JSON-lines cache of finished rows: skipped when rerun")
    parser.add_argument("--out", default=str(RESULTS / "screen"), help="writes OUT.json and OUT.md")
    args = parser.parse_args()
    shown = [a for i, a in enumerate(sys.argv[1:]) if a != "--rows" and (i == 0 or sys.argv[i] != "--rows")]
    command = " ".join(["python benchmarks/eval_screen.py", *shown])
    warnings.simplefilter("ignore")
    start, rows = time.perf_counter(), []
    cache = Path(args.rows) if args.rows else None
    done = {}
    if cache is not None and cache.exists():
        for line in cache.read_text().splitlines():
            row = json.loads(line)
            done[row["montage"], row["seed"], row["kind"], row["method"]] = row
    with tempfile.TemporaryDirectory() as work:
        model = zl.load_model(make_random_checkpoint(Path(work) / "ckpt", seed=0), device="cpu") \
            if "zuna" in args.methods else None
        for n_channels in args.montages:
            for seed in args.seeds:
                for kind in args.kinds:
                    raw, injected, truth = faulty_recording(n_channels, seed, kind, args.duration)
                    for method in args.methods:
                        if method == "zuna" and n_channels not in args.zuna_montages:
                            continue
                        if (n_channels, seed, kind, method) in done:
                            rows.append(done[n_channels, seed, kind, method])
                            continue
                        flagged, segments, seconds = run_method(
                            method, raw, model=model, seed=seed, steps=args.steps, groups=args.groups,
                            options={} if args.threshold is None else dict(threshold=args.threshold))
                        burst = None
                        if kind == "burst" and segments is not None:
                            (channel, span), = truth["bursts"].items()
                            burst = covered(segments, channel, span)
                        rows.append(dict(montage=n_channels, seed=seed, kind=kind, method=method, injected=injected,
                                         flagged=[str(c) for c in flagged], burst_covered=burst, seconds=seconds,
                                         segment_s=None if segments is None else sum(b - a for a, b, _ in segments)))
                        print(f"{n_channels} ch seed {seed} {kind:8s} {method:6s} {seconds:5.1f} s injected={injected} "
                              f"flagged={flagged}" + ("" if burst is None else f" burst covered={burst}")
                              + ("" if rows[-1]["segment_s"] is None else f" segments={rows[-1]['segment_s']:g} s"),
                              flush=True)
                        if cache is not None:
                            with cache.open("a") as handle:
                                handle.write(json.dumps(rows[-1]) + "\n")
    elapsed = time.perf_counter() - start
    compute = sum(r["seconds"] for r in rows)
    table = summarise(rows, args.methods)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(dict(
        command=command, seeds=args.seeds, montages=args.montages, duration_s=args.duration, steps=args.steps,
        groups=args.groups, zuna_montages=args.zuna_montages, detection_s=round(compute, 1),
        elapsed_s=round(elapsed, 1), machine=platform.processor() or platform.machine(),
        cpus=os.cpu_count(), zuna_lab=zl.__version__, pyprep=_pyprep_version(), summary=table, rows=rows), indent=1))
    out.with_suffix(".md").write_text(markdown(table, args, command, compute))
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
