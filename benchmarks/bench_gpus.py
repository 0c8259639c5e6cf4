"""Benchmark of issue #15: ``embed_many`` with one GPU worker per device against one GPU, in one command.

The same study twice on one machine: first on a local dask.distributed cluster with one GPU worker
(GPU 0), then on one with a GPU worker per visible device; both with the same CPU workers (every
core not feeding a GPU reads, preprocesses and tokenises). Each cluster gets a short warm-up run
first (model load and kernel compilation on every GPU worker), so both timed runs are warm.

Study: ``--n`` synthetic 20-min x 32-ch recordings (FIF, 256 Hz), each listed ``--copies`` times under
different ids (every entry is read, preprocessed, encoded and written on its own: the copies only
save the time to synthesise files). Reported: recording-hours per hour for each run, the ratio,
per-GPU utilisation (NVML, every 0.1 s), encode tasks and recordings per GPU worker, CPU use, and
the two stores compared (same epochs and channels for every recording; embeddings of
``--compare`` recordings).

From the repository root, on a machine with several GPUs::

    python benchmarks/bench_gpus.py --out benchmarks/results      # writes gpus.json / gpus.md
    python benchmarks/bench_gpus.py --small --n 2 --copies 2 --minutes 0.5 --out /tmp/g   # CPU check
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import threading
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_many import make_recording  # noqa: E402


class Monitor:
    """Per-GPU utilisation (NVML) and whole-machine CPU use (psutil), sampled every 0.1 s."""

    def __init__(self, devices):
        self.devices, self.gpu, self.cpu, self._stop = list(devices), {d: [] for d in devices}, [], threading.Event()

    def __enter__(self):
        handles = {}
        try:
            import pynvml

            pynvml.nvmlInit()
            handles = {d: pynvml.nvmlDeviceGetHandleByIndex(int(d)) for d in self.devices}
        except Exception:
            pynvml = None
        import psutil

        psutil.cpu_percent()

        def poll():
            while not self._stop.wait(0.1):
                for d, h in handles.items():
                    self.gpu[d].append(pynvml.nvmlDeviceGetUtilizationRates(h).gpu)
                self.cpu.append(psutil.cpu_percent())

        threading.Thread(target=poll, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self._stop.set()

    def summary(self):
        return {"gpu_utilisation": {d: round(float(np.mean(v)), 1) for d, v in self.gpu.items() if v},
                "cpu_percent": round(float(np.mean(self.cpu)), 1) if self.cpu else None}


def run_study(label, devices, n_cpu_workers, sources, work, ckpt, hours, warmup):
    import zuna_lab as zl
    from zuna_lab.study.cluster import local_cluster, plan_workers

    plan = plan_workers(devices, n_cpu_workers + len(devices))
    with local_cluster(plan) as client:
        start = time.perf_counter()
        warm = [(f"warm-{rec}", path) for rec, path in sources[:warmup * max(1, len(devices))]]
        zl.embed_many(warm, work / f"warm-{label}.zarr", model=str(ckpt), client=client, progress=False)
        warmup_seconds = time.perf_counter() - start
        with Monitor(devices) as monitor:
            start = time.perf_counter()
            index = zl.embed_many(sources, work / f"{label}.zarr", model=str(ckpt), client=client, progress=False)
            seconds = time.perf_counter() - start
    assert (index.status == "done").all(), index[index.status != "done"][["recording", "error"]].to_dict("records")
    index["encoder"] = index.worker.str.split(" > ").str[-1]
    per_worker = index.groupby("encoder").agg(recordings=("recording", "size"),
                                             encode_seconds=("compute_seconds", "sum"))
    run = dict(gpus=list(devices), workers=len(plan), cpu_workers=n_cpu_workers, recordings=len(index),
               seconds=round(seconds, 2), rec_hours_per_hour=round(hours / (seconds / 3600), 1),
               warmup_recordings=len(warm), warmup_seconds=round(warmup_seconds, 1),
               preparers=int(index.worker.str.split(" > ").str[0].nunique()),
               per_worker={w: {"recordings": int(r.recordings), "encode_seconds": round(float(r.encode_seconds), 1)}
                           for w, r in per_worker.iterrows()}, **monitor.summary())
    print(label, json.dumps(run), flush=True)
    return run


def compare(work, one, many, n_compare):
    """The two stores: the same epochs/channels everywhere; embeddings of ``n_compare`` recordings."""
    import zuna_lab as zl

    a, b = zl.open_embeddings(work / f"{one}.zarr"), zl.open_embeddings(work / f"{many}.zarr")
    ia, ib = a.index.set_index("recording"), b.index.set_index("recording")
    same_shape = bool((ia.n_epochs == ib.n_epochs.reindex(ia.index)).all()
                      and (ia.n_channels == ib.n_channels.reindex(ia.index)).all())
    errors = []
    for rec in list(ia.index)[:: max(1, len(ia) // n_compare)][:n_compare]:
        x, y = a[rec], b[rec]
        assert list(x.channel.values) == list(y.channel.values) and x.sizes == y.sizes
        u, v = x.embedding.values, y.embedding.values
        d = np.abs(u - v)
        errors.append(dict(recording=rec, max_abs=float(np.nanmax(d)),
                           rel_l2=float(np.sqrt(np.nansum(d ** 2) / np.nansum(u ** 2)))))
    return dict(same_epochs_and_channels=same_shape, recordings_compared=errors,
                max_rel_l2=max(e["rel_l2"] for e in errors))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=36, help="distinct recordings (default 36)")
    parser.add_argument("--copies", type=int, default=4, help="entries per recording (default 4)")
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--variant", default="ZUNA", choices=("ZUNA", "ZUNA1.1"))
    parser.add_argument("--warmup", type=int, default=3, help="warm-up recordings per GPU (default 3)")
    parser.add_argument("--compare", type=int, default=8, help="recordings whose embeddings are compared")
    parser.add_argument("--small", action="store_true", help="a tiny model (CPU check)")
    parser.add_argument("--work", default=os.environ.get("ZUNA_BENCH_WORK", "/tmp/zuna_bench_gpus"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args(argv)

    import torch

    from zuna_lab.study.cluster import visible_gpus
    from zuna_lab.testing import make_random_checkpoint

    out, work = Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(work, ignore_errors=True)
    (work / "data").mkdir(parents=True)
    gpus, n_cpus = visible_gpus(), os.cpu_count() or 1
    result = dict(n_distinct=args.n, copies=args.copies, entries=args.n * args.copies, minutes=args.minutes,
                  channels=32, variant=args.variant, full_size=not args.small, cpu_cores=n_cpus, gpus=gpus,
                  gpu_name=torch.cuda.get_device_name(0) if gpus else None, torch=torch.__version__,
                  python=platform.python_version())
    save = lambda: (out / "gpus.json").write_text(json.dumps(result, indent=1))   # noqa: E731  (after each stage)
    start = time.perf_counter()
    ckpt = make_random_checkpoint(work / "ckpt", variant=args.variant, full_size=not args.small)
    jobs = [(str(work / "data" / f"sub-{i:03d}_raw.fif"), args.minutes, i) for i in range(args.n)]
    with ProcessPoolExecutor(min(n_cpus, args.n)) as pool:
        files = list(pool.map(make_recording, jobs))
    sources = [(f"sub-{i:03d}-{c}", files[i]) for c in range(args.copies) for i in range(args.n)]
    result["setup_seconds"] = round(time.perf_counter() - start, 1)
    hours = len(sources) * args.minutes / 60
    n_cpu_workers = max(1, n_cpus - len(gpus))          # the same CPU workers in both runs
    save()
    one, many = "gpu1", f"gpu{max(1, len(gpus))}"
    result["runs"] = {one: run_study(one, gpus[:1], n_cpu_workers, sources, work, ckpt, hours, args.warmup)}
    save()
    if len(gpus) > 1:
        result["runs"][many] = run_study(many, gpus, n_cpu_workers, sources, work, ckpt, hours, args.warmup)
        result["speedup"] = round(result["runs"][many]["rec_hours_per_hour"]
                                  / result["runs"][one]["rec_hours_per_hour"], 3)
        save()
        result["comparison"] = compare(work, one, many, args.compare)
    save()
    (out / "gpus.md").write_text(report(result))
    print(report(result))


def report(r):
    runs = r["runs"]
    lines = [f"# embed_many on {len(r['gpus'])} x {r['gpu_name']} against one, {r['cpu_cores']} CPU cores", "",
             f"{r['entries']} recordings of {r['minutes']:g} min x {r['channels']} ch (FIF, 256 Hz; {r['n_distinct']} "
             f"distinct files listed {r['copies']} times under different ids), random "
             f"{'full-size' if r['full_size'] else 'tiny'} {r['variant']} weights; torch {r['torch']}. Both runs warm.",
             "", "| run | seconds | rec-hours / hour | per-GPU utilisation | recordings encoded per GPU worker "
             "| CPU workers that prepared | CPU busy |", "|---|---|---|---|---|---|---|"]
    for name, run in runs.items():
        util = ", ".join(f"GPU {d}: {u:.0f} %" for d, u in run["gpu_utilisation"].items()) or "—"
        workers = ", ".join(f"{w}: {v['recordings']}" for w, v in run["per_worker"].items())
        lines.append(f"| {len(run['gpus'])} GPU | {run['seconds']} | {run['rec_hours_per_hour']} | {util} | "
                     f"{workers} | {run['preparers']} of {run['cpu_workers']} | {run['cpu_percent']} % |")
    if "speedup" in r:
        c = r["comparison"]
        lines += ["", f"**{len(r['gpus'])} GPUs / 1 GPU: {r['speedup']:.2f}x.** Same epochs and channels for every "
                  f"recording: {c['same_epochs_and_channels']}; embeddings of {len(c['recordings_compared'])} "
                  f"recordings: largest relative L2 difference {c['max_rel_l2']:.2e} (bf16, batches of different "
                  "composition)."]
    lines += ["", "Measured by `python benchmarks/bench_gpus.py` (one command on the device machine)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
