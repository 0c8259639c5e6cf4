"""The study store at corpus scale (issue #30): what the driver pays per recording, and what reading costs.

For 1,000 / 10,000 / 100,000 recordings, a simulated ``embed_many`` driver through the store's
real code, without a cluster or a model:

- sources: N empty ``.edf`` files in ONE folder (the worst case for the source stamps),
  found by ``find_recordings`` and stamped by ``source_stamps``;
- the store opened (``StudyStore.open``), every job checked (``is_complete``);
- N commits through ``_Pipeline.commit`` (the driver's own commit: row, store commit, progress
  bar) of the row a write task returns, its pooled totals and a stand-in output file (a worker
  writes it: created outside the timings);
- the index frame and the end-of-run compaction (``close``); then a rerun's start (open +
  stamps + ``is_complete``: nothing to do).

The runs go side by side (each commits its share of every step, so they start and end
together under the same disk and load). Per-commit times: at each size (after the N commits,
rounds of 100 more commits into each store, the sizes taking turns, so that every size sees the
same disk and the same neighbours' load: a commit is an fsync, whose latency varies with them)
and amortised over the whole run (compactions included). Then ``open_embeddings(store).index``
and ``pooled()`` at N rows, mid-run (the journal at its longest, just before the end-of-run
compaction) and after the run. For comparison, the cost of a /2 commit (``index.json``
rewritten whole, as before this store) at the same sizes. Files per recording and per-epoch
pooling are measured on real recordings (20 min x 32 ch, tiny random ZUNA weights: the store
does not care).

    python benchmarks/bench_store.py [--sizes 1000 10000 100000] [--work /tmp]
    # writes benchmarks/results/store.json and store.md
"""
import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from pathlib import Path

import numpy as np

import zuna_lab as zl
from zuna_lab.study.api import find_recordings
from zuna_lab.study.cluster import _Pipeline
from zuna_lab.study.journal import now, read_index
from zuna_lab.study.layout import RECORDING_SUFFIX
from zuna_lab.study.store import StudyStore, source_stamps

RESULTS = Path(__file__).resolve().parent / "results"
SETTINGS = {"model": "Zyphra/ZUNA1.1", "variant": "ZUNA1.1"}


def lscpu():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {}
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    return {k: fields[k].strip() for k in ("Model name", "CPU(s)", "Thread(s) per core") if k in fields}


def percentile(values, q):
    return float(np.percentile(np.asarray(values), q))


def _commit(ctx, rec_id):
    """One recording through the driver's commit (the worker's file made first, outside the timing)."""
    target, pipe, rng = ctx["target"], ctx["pipe"], ctx["rng"]
    written = target.tmp / f"{rec_id}@{pipe.id}{RECORDING_SUFFIX}"
    written.touch()
    pipe.sources.setdefault(rec_id, (ctx["any_source"], "0:0"))
    totals = {"sum": rng.normal(size=32) * 1000, "n": 30720, "sum_all": rng.normal(size=32) * 1000, "n_all": 30720}
    row = dict(recording=rec_id, status="done", n_epochs=240, n_channels=32, seconds=1200.0, warnings="",
               compute_seconds=12.345, worker="cpu-3 > gpu-0", written=str(written), pooled=totals)
    begin = time.perf_counter()
    _Pipeline.commit(pipe, row)
    return time.perf_counter() - begin


def start_study(work, n):
    """A simulated embed_many driver of n recordings, up to its first commit (sources, stamps, store opened)."""
    from tqdm.auto import tqdm

    sources, store = work / f"sources_{n}", work / f"store_{n}.zarr"
    sources.mkdir()
    for i in range(n):
        (sources / f"sub-{i:06d}_task-rest_eeg.edf").touch()
    out = {"recordings": n}
    start = time.perf_counter()
    pairs = find_recordings(sources)
    out["find_recordings_s"] = time.perf_counter() - start
    start = time.perf_counter()
    stamps = source_stamps([path for _, path in pairs])
    out["source_stamps_s"] = time.perf_counter() - start
    jobs = [(rec_id, path, stamp) for (rec_id, path), stamp in zip(pairs, stamps)]
    target = StudyStore(store, "embeddings")
    target.check_target(False)
    start = time.perf_counter()
    target.open(SETTINGS)
    todo = [job for job in jobs if not target.is_complete(*job)]
    out["open_and_check_s"] = time.perf_counter() - start
    pipe = object.__new__(_Pipeline)      # the driver's commit, without a cluster
    pipe.store, pipe.id, pipe.started = target, uuid.uuid4().hex[:8], time.perf_counter()
    pipe.sources = {rec_id: (source, stamp) for rec_id, source, stamp in todo}
    pipe.active, pipe.epochs, pipe.failed = len(todo), 0, 0
    pipe.bar = tqdm(total=len(todo), disable=True)
    return dict(n=n, store=store, sources=sources, pairs=pairs, target=target, pipe=pipe, out=out, times=[],
                todo=[rec_id for rec_id, _, _ in todo], rng=np.random.default_rng(0), any_source=pairs[0][1], extra=0)


def commit_next(ctx, count):
    """The next ``count`` recordings of the study's run committed."""
    for rec_id in ctx["todo"][len(ctx["times"]):len(ctx["times"]) + count]:
        ctx["times"].append(_commit(ctx, rec_id))


def end_of_commits(ctx):
    """The run's commit times, and what a reader sees just before the end-of-run compaction."""
    out, store, target, times, n = ctx["out"], ctx["store"], ctx["target"], ctx["times"], ctx["n"]
    assert len(times) == n
    out["commit_amortised_s"] = sum(times) / n
    out["commit_max_s"] = max(times)
    out["commits_total_s"] = sum(times)
    out["compactions_during_run"] = read_index(store, "embeddings").generation - 1
    out["journal_lines_at_end"] = target._log.lines
    # a reader in the middle of the run: the journal at its longest
    start = time.perf_counter()
    index = zl.open_embeddings(store).index
    out["index_mid_run_s"] = time.perf_counter() - start
    start = time.perf_counter()
    pooled = zl.open_embeddings(store).pooled()
    out["open_and_pooled_mid_run_s"] = time.perf_counter() - start
    assert len(index) == n and len(pooled) == n


def commit_block(ctx, count):
    """``count`` more commits into the open store (new recordings): their times."""
    times = []
    for _ in range(count):
        ctx["extra"] += 1
        times.append(_commit(ctx, f"extra-{ctx['extra']:06d}"))
    return times


def fsync_block(path, count):
    """``count`` appends of a 1 kB line, each fsynced: what a commit cannot go below on this disk."""
    times = []
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        for _ in range(count):
            begin = time.perf_counter()
            os.write(fd, b"x" * 1023 + b"\n")
            os.fsync(fd)
            times.append(time.perf_counter() - begin)
    finally:
        os.close(fd)
    return times


def finish_study(ctx):
    """The end of the run (frame, compaction), then readers of the finished store and a rerun's start."""
    out, store, target, pairs = ctx["out"], ctx["store"], ctx["target"], ctx["pairs"]
    total = len(target.rows)
    start = time.perf_counter()
    target.frame()
    target.close()
    out["frame_and_close_s"] = time.perf_counter() - start
    out["driver_overhead_s"] = (out["find_recordings_s"] + out["source_stamps_s"] + out["open_and_check_s"]
                                + out["commits_total_s"] + out["frame_and_close_s"])
    out["driver_overhead_per_recording_ms"] = 1000 * out["driver_overhead_s"] / ctx["n"]
    start = time.perf_counter()
    index = zl.open_embeddings(store).index
    out["index_s"] = time.perf_counter() - start
    study = zl.open_embeddings(store)
    start = time.perf_counter()
    pooled = study.pooled()
    out["pooled_s"] = time.perf_counter() - start
    start = time.perf_counter()
    zl.open_embeddings(store).pooled()
    out["open_and_pooled_s"] = time.perf_counter() - start
    assert len(index) == total and len(pooled) == total and (index.status == "done").all()
    out["rows_read"] = total
    # a rerun with nothing to do: stamps, open, checks
    start = time.perf_counter()
    stamps = source_stamps([path for _, path in pairs])
    again = StudyStore(store, "embeddings").open(SETTINGS)
    todo = [(rec_id, path, stamp) for (rec_id, path), stamp in zip(pairs, stamps)
            if not again.is_complete(rec_id, path, stamp)]
    again.close()
    out["rerun_start_s"] = time.perf_counter() - start
    assert not todo
    out["store_files"] = sum(len(files) for _, _, files in os.walk(store))
    out["index_json_mb"] = (store / "index.json").stat().st_size / 1e6
    shutil.rmtree(ctx["sources"])
    shutil.rmtree(store)
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in out.items()}


def old_commit(work, n, repeats):
    """A /2 commit: every row, sorted, indented, fsynced, replaced (the code this store replaces)."""
    row = dict(recording="", source="/data/sources/sub-000000_task-rest_eeg.edf", status="done", n_epochs=240,
               n_channels=32, seconds=1200.0, error="", warnings="", output="recordings/sub-000000@1a2b3c4d",
               source_stamp="0:1764412800123456789", run_id="1a2b3c4d", computed_at=now(), compute_seconds=12.345,
               worker="cpu-3 > gpu-0")
    rows = {f"sub-{i:06d}": dict(row, recording=f"sub-{i:06d}") for i in range(n)}
    path = work / "old_index.json"
    times = []
    for _ in range(repeats):
        begin = time.perf_counter()
        content = {"format": "zuna_lab.study.api/2", "kind": "embeddings", "settings": SETTINGS, "updated": now(),
                   "rows": sorted(rows.values(), key=lambda r: r["recording"])}
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
        with open(tmp, "w") as handle:
            json.dump(content, handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        times.append(time.perf_counter() - begin)
    path.unlink()
    return statistics.median(times)


CH32 = ["Fp1", "Fp2", "F7", "F3", "Fz", "F4", "F8", "FC5", "FC1", "FC2", "FC6", "T7", "C3", "Cz", "C4", "T8", "TP9",
        "CP5", "CP1", "CP2", "CP6", "TP10", "P7", "P3", "Pz", "P4", "P8", "PO9", "O1", "Oz", "O2", "PO10"]


def real_recordings(work, count):
    """Files per recording (this store vs /2's zarr folder) and pooling, on ``count`` real 20-min x 32-ch recordings."""
    from zuna_lab.io.write import netcdf_ready
    from zuna_lab.study.archive import write_recording
    from zuna_lab.study.pooled import epoch_sums, recording_sums
    from zuna_lab.synthetic import make_synthetic_raw
    from zuna_lab.testing import make_random_checkpoint

    model = zl.load_model(make_random_checkpoint(work / "ckpt", variant="ZUNA1.1"), device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = make_synthetic_raw(duration=1200.0, ch_names=CH32, seed=0, verbose=False)
        ds = zl.embed(raw, model=model, progress=False, verbose="error")
    per_chunk = max(1, min(ds.sizes["epoch"], (16 << 20) // max(1, ds.embedding[0].nbytes)))
    encoding = {name: {"chunks": (per_chunk,) + ds[name].shape[1:]} for name in ("embedding", "mask", "padding")}
    old = work / "old_layout"
    netcdf_ready(ds).to_zarr(old, mode="w", zarr_format=2, consolidated=True, encoding=encoding)
    out = {"recording": f"{ds.sizes['epoch']} epochs x {ds.sizes['channel']} channels x {ds.sizes['token']} tokens",
           "files_per_recording_v2_folder": sum(len(files) for _, _, files in os.walk(old))}
    store = work / "real.zarr"
    target = StudyStore(store, "embeddings").open(SETTINGS)
    writes = []
    for i in range(count):
        written = target.tmp / f"rec-{i:03d}@run{RECORDING_SUFFIX}"
        begin = time.perf_counter()
        sums = epoch_sums(ds)                                      # the worker's write
        write_recording(ds, written, sums=sums, encoding=encoding)
        totals = recording_sums(sums)
        writes.append(time.perf_counter() - begin)
        target.commit({"recording": f"rec-{i:03d}", "status": "done", "run_id": "run"}, written=str(written),
                      pooled=totals)
    target.close()
    files = [p for p in (store / "recordings").iterdir() if not p.name.startswith(".")]
    out["files_per_recording"] = len(files) / count
    out["recording_file_mb"] = files[0].stat().st_size / 1e6
    out["write_recording_s"] = statistics.median(writes)
    study = zl.open_embeddings(store)
    start = time.perf_counter()
    by_epoch = study.pooled(per="epoch")
    out["pooled_per_epoch_per_recording_s"] = (time.perf_counter() - start) / count
    start = time.perf_counter()
    legacy = study._from_embeddings(study.recordings, "epoch", False)
    out["pooled_from_embeddings_per_recording_s"] = (time.perf_counter() - start) / count
    latents = [f"latent_{i}" for i in range(32)]
    out["per_epoch_max_abs_diff_vs_embeddings"] = float(np.abs(by_epoch[latents].to_numpy()
                                                               - legacy[latents].to_numpy()).max())
    shutil.rmtree(store)
    shutil.rmtree(old)
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in out.items()}


def markdown(result):
    sizes = result["sizes"]
    lines = [f"# Study store at corpus scale — {result['cpu']} ({result['cpus']} cores)", "",
             f"Measured {result['date']} by `{result['command']}` (Python {result['python']}, zarr {result['zarr']}; "
             f"load average at the start {result['load_average']}: two other engineers share these 2 cores).", "",
             "Simulated `embed_many` driver through the store's real code (no cluster, no model): N empty `.edf` files "
             "in one folder, `find_recordings` + `source_stamps`, `StudyStore.open` + `is_complete` for every job, N "
             "commits through `_Pipeline.commit` (the row a write task returns, its pooled totals, a stand-in output "
             "file made outside the timings), the index frame and the end-of-run compaction (`close`). The runs of "
             "the different sizes go side by side (each commits its share at every step: they start and end "
             "together). \"Commit at "
             f"that size\": {result['sizes'][0]['commits_at_size']:,} more commits into each finished store, in rounds of "
             "100 with the sizes taking turns (a commit is an fsync, whose latency follows the disk and the "
             "neighbours' load: taking turns gives every size the same conditions).", "",
             "| recordings | commit at that size (mean / median / p99) | commit, amortised over the run | /2 commit (index.json rewritten) | compactions | driver overhead (total, per recording) | `open_embeddings(...).index` | `pooled()` (open + pooled) | mid-run: `.index` / open + `pooled()` | rerun start (nothing to do) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in sizes:
        lines.append(
            f"| {r['recordings']:,} | {1e3 * r['commit_at_size_mean_s']:.3f} / {1e3 * r['commit_at_size_median_s']:.3f} / "
            f"{1e3 * r['commit_at_size_p99_s']:.3f} ms | {1e3 * r['commit_amortised_s']:.3f} ms | "
            f"{1e3 * r['old_commit_s']:.1f} ms | {r['compactions_during_run']} | {r['driver_overhead_s']:.1f} s "
            f"({r['driver_overhead_s'] / 60:.2f} min), {r['driver_overhead_per_recording_ms']:.3f} ms | "
            f"{r['index_s']:.3f} s | {r['open_and_pooled_s']:.3f} s | {r['index_mid_run_s']:.3f} s / "
            f"{r['open_and_pooled_mid_run_s']:.3f} s | {r['rerun_start_s']:.2f} s |")
    first, last = sizes[0], sizes[-1]
    real = result["real"]
    lines += ["", f"A bare 1 kB append + fsync on this disk, in the same rounds: {1e3 * result['fsync_1kb_append_mean_s']:.3f} "
              f"ms mean, {1e3 * result['fsync_1kb_append_median_s']:.3f} ms median (a commit is one of them, plus a "
              "rename and the row's JSON).", "", "## Must show", "",
              f"- Per-commit time from {first['recordings']:,} to {last['recordings']:,} rows: "
              f"x{last['commit_at_size_mean_s'] / first['commit_at_size_mean_s']:.2f} (mean), "
              f"x{last['commit_at_size_median_s'] / first['commit_at_size_median_s']:.2f} (median) at that size, "
              f"x{last['commit_amortised_s'] / first['commit_amortised_s']:.2f} (amortised, compactions included). "
              f"The /2 store's commit grew x{last['old_commit_s'] / first['old_commit_s']:.0f} over the same range.",
              f"- Driver overhead of a simulated {last['recordings']:,}-recording study: "
              f"{last['driver_overhead_s'] / 60:.2f} min ({last['driver_overhead_per_recording_ms']:.3f} ms per "
              f"recording; the /2 commits alone would be ~{last['old_commit_s'] * last['recordings'] / 2 / 3600:.1f} h "
              "(half the final cost on average)).",
              f"- At {last['recordings']:,} recordings: `open_embeddings(...).index` {last['index_s']:.2f} s, "
              f"`open_embeddings(...).pooled()` {last['open_and_pooled_s']:.2f} s (`pooled()` on an open study "
              f"{last['pooled_s']:.2f} s) — one table.",
              f"- Files per recording: {real['files_per_recording']:.0f} (a zip of its zarr group, "
              f"{real['recording_file_mb']:.1f} MB for {real['recording']}); the /2 layout wrote "
              f"{real['files_per_recording_v2_folder']} files for the same recording. The whole store adds 6 files "
              "(`.zgroup`, `.zattrs`, `recordings/.zgroup`, `index.json`, the journal, the pooled table).",
              "", "## Details", "",
              "- A commit is one fsynced line appended to the journal; the journal is compacted into `index.json` "
              "when it reaches half the rows (at least 4,096 lines) and at the end of the run, so a compaction "
              "(O(rows)) costs O(1) per commit on average: the amortised column includes them; the largest single "
              f"commit (one with a compaction) took {last['commit_max_s']:.2f} s at {last['recordings']:,} rows.",
              "- Mid-run readers read the snapshot plus the journal (at its longest here: "
              f"{last['journal_lines_at_end']:,} lines at {last['recordings']:,} rows).",
              f"- Source stamps of {last['recordings']:,} recordings in one folder: {last['source_stamps_s']:.2f} s "
              "(each folder listed once; before, one listing per recording: 0.011 s each at 10,000 files, "
              "~3 h for 100,000).",
              f"- Per-epoch pooling reads the small per-epoch sums kept in each recording's zip: "
              f"{real['pooled_per_epoch_per_recording_s'] * 1e3:.1f} ms per recording, against "
              f"{real['pooled_from_embeddings_per_recording_s'] * 1e3:.0f} ms pooling the embedding itself "
              f"(max |difference| {real['per_epoch_max_abs_diff_vs_embeddings']:.1e}: float64 rounding). Writing "
              f"one recording's zip (a worker's job) took {real['write_recording_s']:.2f} s.",
              f"- `index.json` at {last['recordings']:,} rows: {last['index_json_mb']:.1f} MB (compact JSON)."]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--work", default=None, help="folder for the simulated stores (default: a temporary one)")
    parser.add_argument("--real", type=int, default=4, help="real recordings for the files / per-epoch numbers")
    parser.add_argument("--rounds", type=int, default=20, help="rounds of 100 commits per size, sizes taking turns")
    args = parser.parse_args()
    import zarr

    result = {"date": time.strftime("%Y-%m-%d"), "command": "python benchmarks/bench_store.py "
              + " ".join(sys.argv[1:]), "cpu": lscpu().get("Model name", platform.processor()),
              "cpus": os.cpu_count(), "lscpu": lscpu(), "python": platform.python_version(), "zarr": zarr.__version__,
              "load_average": [round(x, 2) for x in os.getloadavg()], "sizes": []}
    with tempfile.TemporaryDirectory(dir=args.work) as work:
        work = Path(work)
        result["real"] = real_recordings(work, args.real)
        print(json.dumps(result["real"]), flush=True)
        studies = [start_study(work, n) for n in args.sizes]
        # the runs side by side, each committing its share of every step: they end together, under the same load
        steps = min(args.sizes)
        for step in range(steps):
            for ctx in studies:
                commit_next(ctx, ctx["n"] // steps + (step < ctx["n"] % steps))
        for ctx in studies:
            end_of_commits(ctx)
        # per-commit time at each size, the sizes taking turns (the same disk, the same neighbours' load)
        blocks = {ctx["n"]: [] for ctx in studies}
        fsyncs = []
        for _ in range(args.rounds):
            for ctx in studies:
                blocks[ctx["n"]] += commit_block(ctx, 100)
            fsyncs += fsync_block(work / "fsync.bin", 100)
        result["fsync_1kb_append_median_s"] = round(statistics.median(fsyncs), 6)
        result["fsync_1kb_append_mean_s"] = round(statistics.fmean(fsyncs), 6)
        for ctx in studies:
            timings = finish_study(ctx)
            times = blocks[ctx["n"]]
            timings.update(commit_at_size_mean_s=statistics.fmean(times), commit_at_size_median_s=statistics.median(times),
                           commit_at_size_p99_s=percentile(times, 99), commits_at_size=len(times),
                           old_commit_s=old_commit(work, ctx["n"], repeats=3 if ctx["n"] >= 100000 else 10))
            result["sizes"].append({k: (round(v, 6) if isinstance(v, float) else v) for k, v in timings.items()})
            print(json.dumps(result["sizes"][-1]), flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "store.json").write_text(json.dumps(result, indent=1))
    (RESULTS / "store.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
