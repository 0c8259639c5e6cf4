"""Long recordings on a GPU (issues #25 and #21): ``zl.embed(path, out=...)`` with full-size weights.

Usage (the device recipe of benchmarks/bench.py: the official package on PYTHONPATH for its weights)::

    python benchmarks/probe_long_gpu.py hour day      # -> JSON lines on stdout

- ``hour``: 1 h x 64 ch (bench.py's file), in memory (``zl.embed(path)``) and streamed
  (``out=``: reading and preprocessing of the next chunk on a thread while the GPU encodes this one).
- ``day``: 24 h x 32 ch at 256 Hz (an hour of ``make_synthetic_raw`` repeated, written lazily), embedded
  with ``out=``: wall time, the GPU's busy time (CUDA events around every encoder call) and its
  fraction of the wall time, peak RSS.
"""
from __future__ import annotations

import json
import resource
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (the benchmark's checkpoint and hour file)


class BusyClock:
    """Wraps ``model.encode``: CUDA events around each call, summed at the end (the GPU's busy time)."""

    def __init__(self, model):
        self.model, self.events, self.calls = model, [], 0
        self.inner = model.encode

        def timed(*args, **kwargs):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            out = self.inner(*args, **kwargs)
            end.record()
            self.events.append((start, end))
            self.calls += 1
            return out

        model.encode = timed

    def busy_seconds(self):
        torch.cuda.synchronize()
        return sum(start.elapsed_time(end) for start, end in self.events) / 1e3

    def reset(self):
        self.events, self.calls = [], 0


def _model():
    import zuna_lab

    bench.write_checkpoint_ours()
    model = zuna_lab.load_model(bench.CKPT, device="cuda")
    model.kernels_ready(wait=True)
    return model


def section_hour(model):
    import zuna_lab

    bench.embed_hour(model)                           # writes the file, warms every shape
    path = str(bench.WORK / "hour_64ch_raw.fif")
    out = Path(tempfile.mkdtemp(prefix="hour_")) / "hour.zarr"
    rows, busy = {}, {}
    from zuna_lab.api import core

    overlaps = core.overlaps
    for label in ("in memory", "in memory again", "classic in memory", "streamed", "streamed again"):
        clock = BusyClock(model)
        core.overlaps = (lambda *args, **kwargs: False) if label.startswith("classic") else overlaps
        torch.cuda.synchronize()
        start = time.perf_counter()
        if "in memory" in label:     # through the streamed stages (read and preprocessed under the encoding) or not
            zuna_lab.embed(path, model=model, progress=False, verbose=False)
        else:
            zuna_lab.embed(path, model=model, out=out, overwrite=True, progress=False, verbose=False)
        torch.cuda.synchronize()
        rows[label] = round(time.perf_counter() - start, 3)
        busy[label] = round(clock.busy_seconds(), 3)       # the GPU's time in the encoder calls
        model.encode = clock.inner
    core.overlaps = overlaps
    rows["gpu_busy_s"] = busy
    shutil.rmtree(out.parent, ignore_errors=True)
    print(json.dumps(dict(section="hour", recording="1 h x 64 ch, 256 Hz FIF", **rows)), flush=True)


def _day_file(folder):
    import mne

    from zuna_lab.synthetic import make_synthetic_raw

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_long import CHANNELS

    hour = folder / "h1_raw.fif"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        make_synthetic_raw(duration=3600.0, ch_names=CHANNELS, seed=0, verbose=False).save(hour, verbose="error")
    joined = mne.concatenate_raws([mne.io.read_raw_fif(hour, preload=False, verbose="error") for _ in range(24)],
                                  verbose="error")
    joined.set_annotations(None)
    day = folder / "h24_raw.fif"
    joined.save(day, verbose="error")
    return day


def section_day(model):
    import zuna_lab

    folder = Path(tempfile.mkdtemp(prefix="day_"))
    try:
        start = time.perf_counter()
        path = _day_file(folder)
        made = time.perf_counter() - start
        clock = BusyClock(model)
        torch.cuda.synchronize()
        start = time.perf_counter()
        emb = zuna_lab.embed(path, model=model, out=folder / "day.zarr", progress=False, verbose=False)
        torch.cuda.synchronize()
        wall = time.perf_counter() - start
        busy = clock.busy_seconds()
        model.encode = clock.inner
        size = sum(f.stat().st_size for f in (folder / "day.zarr").rglob("*") if f.is_file())
        print(json.dumps(dict(section="day", recording="24 h x 32 ch, 256 Hz FIF", file_written_s=round(made, 1),
                              seconds=round(wall, 1), gpu_busy_s=round(busy, 1), gpu_busy_fraction=round(busy / wall, 3),
                              encode_calls=clock.calls, epochs=int(emb.sizes["epoch"]), result_gb=round(size / 1e9, 2),
                              peak_rss_gb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2))),
              flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    loaded = _model()
    for name in sys.argv[1:]:
        globals()[f"section_{name}"](loaded)
