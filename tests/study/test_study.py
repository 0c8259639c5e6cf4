"""Many recordings on dask.distributed (issue #14): embed_many, open_embeddings, reconstruct_many, the CLI.

A LocalCluster of 2 worker processes (loopback only) embeds a folder of 9 short recordings in
4 formats (FIF, EDF, BrainVision, CSV) with different lengths and channel sets, plus a
truncated EDF and a FIF without EEG. Checked: the store holds exactly what ``zl.embed`` returns
for each file (values, coordinates, attrs but the creation time), the failures are listed with
their one-sentence error while the others complete, a rerun recomputes only what changed, a run
killed with SIGKILL (driver and workers) resumes without duplicate or half-written entries, a
worker killed mid-run costs nothing, and work lands on the workers planned for it (a simulated
GPU worker encodes, CPU workers read and write).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path

import mne
import numpy as np
import pandas as pd
import pytest
import xarray as xr

import zuna_lab as zl
from zuna_lab.errors import ZunaTypeError, ZunaValueError
from zuna_lab.study.api import find_recordings
from zuna_lab.study.cluster import (CPU_BATCH_TOKENS, GPU_BATCH_TOKENS, local_cluster, placement, plan_workers,
                                    task_tokens)
from zuna_lab.synthetic import make_synthetic_raw
from zuna_lab.testing import make_random_checkpoint

from oracle_support import require_module

distributed = require_module("distributed")
require_module("zarr")
edfio = require_module("edfio")
pybv = require_module("pybv")

ROOT = Path(__file__).resolve().parents[2]
CH12 = ["Fp1", "Fp2", "F3", "F4", "C3", "C4", "P3", "P4", "O1", "O2", "Fz", "Cz"]
CH8 = ["F3", "F4", "C3", "C4", "P3", "P4", "O1", "O2"]
CH16 = CH12 + ["T7", "T8", "Pz", "F7"]
CH6 = ["Fz", "Cz", "Pz", "O1", "O2", "C3"]
CH10 = ["Fp1", "Fp2", "F7", "F8", "T7", "T8", "P7", "P8", "O1", "O2"]


def synthetic(duration, names=None, seed=0):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return make_synthetic_raw(duration=duration, ch_names=names, seed=seed, verbose=False)


def write_csv(raw, path):
    data = raw.get_data()
    table = np.column_stack([raw.times, data.T])
    np.savetxt(path, table, delimiter=",", fmt="%.12e", header="time," + ",".join(raw.ch_names), comments="")


def make_study_folder(folder):
    """9 good recordings in 4 formats, a truncated EDF, a FIF without EEG and a text file (ignored)."""
    folder.mkdir()
    (folder / "site2").mkdir()
    export = dict(overwrite=True, verbose="error")
    synthetic(12.5, None, 1).save(folder / "sub-01_raw.fif", verbose=False)          # 19 ch, short last segment
    two = synthetic(20.0, CH8, 2)
    two.info["bads"] = ["C3"]
    two.annotations.append(4.0, 1.5, "BAD_movement")
    two.save(folder / "sub-02_raw.fif", verbose=False)
    mne.export.export_raw(folder / "sub-03.edf", synthetic(10.0, CH12, 3), fmt="edf", **export)
    mne.export.export_raw(folder / "sub-04.edf", synthetic(7.0, None, 4), fmt="edf", **export)
    mne.export.export_raw(folder / "sub-05.vhdr", synthetic(15.0, CH16, 5), fmt="brainvision", **export)
    mne.export.export_raw(folder / "sub-06.vhdr", synthetic(6.0, CH10, 6), fmt="brainvision", **export)
    write_csv(synthetic(9.0, CH6, 7), folder / "sub-07.csv")
    write_csv(synthetic(11.0, CH12, 8), folder / "sub-08.csv")
    synthetic(8.0, CH12, 9).save(folder / "site2" / "sub-01_raw.fif", verbose=False)   # same name, another folder
    whole = (folder / "sub-03.edf").read_bytes()
    (folder / "corrupt.edf").write_bytes(whole[: len(whole) // 2])
    info = mne.create_info(["ECG", "RESP"], 256.0, ["ecg", "misc"])
    rng = np.random.default_rng(0)
    mne.io.RawArray(rng.normal(0, 1e-4, (2, 2560)), info, verbose=False).save(folder / "ecg_only_raw.fif",
                                                                             verbose=False)
    (folder / "notes.txt").write_text("not a recording")
    return folder


GOOD = {"sub-01_raw", "sub-02_raw", "sub-03", "sub-04", "sub-05", "sub-06", "sub-07", "sub-08", "sub-01_raw_2"}
FAILED = {"corrupt": "truncated", "ecg_only_raw": "no EEG channels"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    return dict(root=root, folder=make_study_folder(root / "recordings"),
                ckpt=make_random_checkpoint(root / "ZUNA1.1", variant="ZUNA1.1"),
                ckpt_zuna=make_random_checkpoint(root / "ZUNA", variant="ZUNA"))


@pytest.fixture(scope="module")
def model(setup):
    return zl.load_model(setup["ckpt"], device="cpu")


@pytest.fixture(scope="module")
def embedded(setup, client):
    store = setup["root"] / "study.zarr"
    start = time.perf_counter()
    index = zl.embed_many(setup["folder"], store, model=setup["ckpt"], client=client, progress=False)
    return dict(index=index, store=store, seconds=time.perf_counter() - start)


def done_rows(store):
    """The rows of the recordings committed so far, read as any reader reads them ([] before the index exists)."""
    try:
        index = zl.open_embeddings(store).index
    except ZunaValueError:
        return []
    return [row for row in index.to_dict("records") if row["status"] == "done"]


def stored_outputs(store):
    """What recordings/ holds (but its zarr metadata), as index outputs."""
    return {f"recordings/{p.name}" for p in (store / "recordings").iterdir() if not p.name.startswith(".")}


def without_created(ds):
    ds = ds.copy()
    ds.attrs = {k: v for k, v in ds.attrs.items() if k != "created"}
    return ds


def reference(model, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return zl.embed(path, model=model, progress=False, verbose="error")


# ---------------------------------------------------------------------------------------------- planning
def test_plan_workers_one_worker_per_gpu():
    for gpus, cpus in ((0, 2), (1, 16), (2, 16), (4, 64), (8, 128), (["2", "5"], 8), (3, 2)):
        plan = plan_workers(gpus, cpus)
        devices = [str(i) for i in range(gpus)] if isinstance(gpus, int) else gpus
        gpu_workers = [w for w in plan if w.resources.get("GPU")]
        cpu_workers = [w for w in plan if w.resources.get("CPU")]
        assert [w.env["CUDA_VISIBLE_DEVICES"] for w in gpu_workers] == devices      # one each, its own device
        assert all(w.resources == {"GPU": 1} for w in gpu_workers)
        assert len(cpu_workers) == max(1, cpus - len(devices))                     # the other cores
        assert all(w.env["CUDA_VISIBLE_DEVICES"] == "" and w.resources == {"CPU": 1} for w in cpu_workers)
        assert len({w.name for w in plan}) == len(plan)
        place = placement({w.name: {"resources": w.resources, "nthreads": w.nthreads} for w in plan})
        assert place["gpu"] == bool(devices) and place["encoders"] == max(len(devices), 0 if devices else len(plan))
        assert place["encode"] == ({"resources": {"GPU": 1}} if devices else {"resources": {"CPU": 1}})
        assert place["cpu"] == {"resources": {"CPU": 1}} and place["cpu_slots"] == len(cpu_workers)


def test_encode_tasks_are_shared_among_gpus():
    one, two = {"gpu": True, "encoders": 1}, {"gpu": True, "encoders": 2}
    assert task_tokens(one) == GPU_BATCH_TOKENS and task_tokens(two) == GPU_BATCH_TOKENS // 2
    assert task_tokens({"gpu": False, "encoders": 6}) == CPU_BATCH_TOKENS      # CPU encoders: per-epoch work anyway
    # the tail of a run: what is ready is split evenly, never above the usual task size
    assert task_tokens(two, 3_000_001, tail=True) == 1_500_001
    assert task_tokens(two, 10 * GPU_BATCH_TOKENS, tail=True) == GPU_BATCH_TOKENS // 2
    assert task_tokens(one, 3_000_000, tail=True) == 3_000_000 and task_tokens(two, 0, tail=True) == 1


def test_placement_on_a_cluster_without_resources():
    # someone's cluster, no resources declared: nothing is restricted, every thread encodes
    place = placement({"a": {"resources": {}, "nthreads": 4}, "b": {"nthreads": 2}})
    assert place == {"cpu": {}, "encode": {}, "gpu": False, "cpu_slots": 6, "encoders": 6}
    # GPU workers declared, CPU workers not: reading goes anywhere, encoding to the GPUs
    place = placement({"g": {"resources": {"GPU": 1}, "nthreads": 1}, "c": {"resources": {}, "nthreads": 8}})
    assert place["encode"] == {"resources": {"GPU": 1}} and place["cpu"] == {} and place["cpu_slots"] == 8


def test_find_recordings(setup, tmp_path):
    folder = setup["folder"]
    pairs = find_recordings(folder)
    assert {rec for rec, _ in pairs} == GOOD | set(FAILED)          # notes.txt ignored, .eeg/.vmrk read via .vhdr
    # in path order: recordings/site2/sub-01_raw.fif comes before recordings/sub-01_raw.fif
    assert dict(pairs)["sub-01_raw"].endswith("site2/sub-01_raw.fif")
    assert dict(pairs)["sub-01_raw_2"].endswith("recordings/sub-01_raw.fif")
    assert all(Path(path).is_absolute() for _, path in pairs)
    globbed = find_recordings(str(folder / "**" / "*.fif"))
    assert [rec for rec, _ in globbed] == ["ecg_only_raw", "sub-01_raw", "sub-01_raw_2", "sub-02_raw"]
    named = find_recordings([("control-1", folder / "sub-03.edf"), folder / "sub-03.edf", folder / "sub-04.edf"])
    assert [rec for rec, _ in named] == ["control-1", "sub-04"]          # the same file once
    assert find_recordings({"a": folder / "sub-03.edf"}) == [("a", str(folder / "sub-03.edf"))]
    with pytest.raises(ZunaValueError, match="matches no file"):
        find_recordings(str(tmp_path / "*.edf"))
    with pytest.raises(ZunaValueError, match="given twice"):
        find_recordings([("a", "x.edf"), ("a", "y.edf")])
    with pytest.raises(ZunaValueError, match="cannot name a folder"):
        find_recordings([("../a", "x.edf")])
    with pytest.raises(ZunaTypeError, match="sources must be"):
        find_recordings(3)


def test_errors_come_before_any_work(setup, tmp_path):
    folder = setup["folder"]
    with pytest.raises(ZunaTypeError, match="unexpected option 'steps'"):
        zl.embed_many(folder, tmp_path / "s.zarr", model=setup["ckpt"], steps=3)
    with pytest.raises(ZunaValueError, match="no mask="):
        zl.embed_many(folder, tmp_path / "s.zarr", model=setup["ckpt"], mask=np.zeros((1, 1, 1), bool))
    with pytest.raises(ZunaTypeError, match="batch_size"):
        zl.embed_many(folder, tmp_path / "s.zarr", model=setup["ckpt"], batch_size=0.5)
    with pytest.raises(ZunaTypeError, match="client must be"):
        zl.embed_many(folder, tmp_path / "s.zarr", model=setup["ckpt"], client="tcp://127.0.0.1:1")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "mine.txt").write_text("x")
    with pytest.raises(ZunaValueError, match="not a zuna_lab study store"):
        zl.embed_many(folder, tmp_path / "busy", model=setup["ckpt"])
    with pytest.raises(zl.CheckpointError):
        zl.embed_many(folder, tmp_path / "s.zarr", model=tmp_path / "no-such-checkpoint")
    assert not (tmp_path / "s.zarr").exists()       # nothing was created by any of these


# ---------------------------------------------------------------------------------------------- embed_many
def test_index_lists_every_recording(embedded):
    index = embedded["index"]
    assert list(index.columns[:7]) == ["recording", "source", "status", "n_epochs", "n_channels", "seconds", "error"]
    assert set(index.recording) == GOOD | set(FAILED) and index.recording.is_unique
    done = index[index.status == "done"]
    assert set(done.recording) == GOOD and (done.error == "").all()
    for name, words in FAILED.items():
        row = index[index.recording == name].iloc[0]
        assert row.status == "failed" and words in row.error
        assert row.error.count(". ") == 0 and row.error.endswith(".")        # one sentence
    assert index.set_index("recording").loc["sub-02_raw", "n_channels"] == 8
    assert index.set_index("recording").loc["sub-01_raw_2", "seconds"] == pytest.approx(12.5, abs=0.01)
    print(f"embed_many: {len(index)} recordings on 2 worker processes in {embedded['seconds']:.1f} s")


def test_stored_results_equal_embed(embedded, model):
    study = zl.open_embeddings(embedded["store"])
    assert study.recordings == sorted(GOOD) and len(study) == len(GOOD)
    index = study.index.set_index("recording")
    for name in study:
        lazy = study[name]
        assert hasattr(lazy.embedding.data, "dask")                 # dask-backed until asked
        stored = lazy.load()
        expected = reference(model, index.loc[name, "source"])
        xr.testing.assert_identical(without_created(stored), without_created(expected))
        np.testing.assert_array_equal(stored.embedding.values, expected.embedding.values)   # bit for bit
        assert index.loc[name, "n_epochs"] == expected.sizes["epoch"]
        assert index.loc[name, "n_channels"] == expected.sizes["channel"]
    masked = study["sub-02_raw"]
    assert bool(masked.mask.sel(channel="C3").all()) and int(masked.mask.sel(channel="O1").sum()) > 0
    assert bool(study["sub-01_raw_2"].padding.any())      # 12.5 s: a 2.5 s last ZUNA1.1 segment
    with pytest.raises(ZunaValueError, match="failed and has no embedding: .*truncated"):
        study["corrupt"]
    with pytest.raises(ZunaValueError, match="no recording 'nobody'"):
        study["nobody"]
    assert "9 recordings" in repr(study) and "2 failed" in repr(study)


def test_pooled_means_match_numpy(embedded, model):
    study = zl.open_embeddings(embedded["store"])
    per_epoch = study.pooled(per="epoch")
    per_recording = study.pooled()
    assert len(per_recording) == len(GOOD) and set(per_recording.recording) == GOOD
    for name in ("sub-02_raw", "sub-01_raw", "sub-07"):
        emb = reference(model, study.index.set_index("recording").loc[name, "source"])
        x = emb.embedding.values.astype(np.float64)
        visible = ~(emb["mask"].values | emb["padding"].values)
        rows = per_epoch[per_epoch.recording == name]
        latents = rows[[f"latent_{i}" for i in range(32)]].to_numpy()
        for e in range(emb.sizes["epoch"]):
            np.testing.assert_allclose(latents[e], x[e][visible[e]].mean(0), rtol=1e-10, atol=1e-12)
        np.testing.assert_array_equal(rows.n_tokens, visible.sum((1, 2)))
        np.testing.assert_array_equal(rows.epoch_start, emb.epoch_start.values)
        whole = per_recording[per_recording.recording == name][[f"latent_{i}" for i in range(32)]].to_numpy()[0]
        np.testing.assert_allclose(whole, x[visible].mean(0), rtol=1e-10, atol=1e-12)


def test_one_file_per_recording_and_pooled_from_one_table(embedded, monkeypatch):
    store = embedded["store"]
    study = zl.open_embeddings(store)
    files = [p for p in store.rglob("*") if p.is_file()]
    outputs = {store / output for output in study.index.query("status == 'done'").output}
    assert outputs == {p for p in files if p.parent.name == "recordings" and not p.name.startswith(".")}
    # besides one zip per recording: .zgroup/.zattrs, recordings/.zgroup, index.json, the journal, the table
    assert len(files) - len(outputs) == 6, sorted(p.name for p in files)
    expected = study._from_embeddings(study.recordings, "recording", False)     # as pooled() computed it before
    monkeypatch.setattr("zuna_lab.study.archive.open_recording", lambda path: pytest.fail(f"opened {path}"))
    pd.testing.assert_frame_equal(study.pooled(), expected, check_exact=False, rtol=1e-12, atol=0)


def test_rerun_recomputes_only_what_changed(embedded, setup, client):
    store, folder = embedded["store"], setup["folder"]
    before = embedded["index"].set_index("recording")
    again = zl.embed_many(folder, store, model=setup["ckpt"], client=client, progress=False).set_index("recording")
    for name in GOOD:      # nothing done is done again
        assert again.loc[name, ["run_id", "computed_at", "output"]].tolist() == before.loc[name, ["run_id", "computed_at", "output"]].tolist()
    # one source changes: only it is recomputed, into a new group that replaces the old one
    stamp = (folder / "sub-04.edf").stat()
    os.utime(folder / "sub-04.edf", ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 5 * 10**9))
    third = zl.embed_many(folder, store, model=setup["ckpt"], client=client, progress=False).set_index("recording")
    changed = {name for name in GOOD if third.loc[name, "run_id"] != again.loc[name, "run_id"]}
    assert changed == {"sub-04"}
    assert not (store / before.loc["sub-04", "output"]).exists() and (store / third.loc["sub-04", "output"]).exists()
    assert stored_outputs(store) == set(third.loc[sorted(GOOD), "output"])
    # other settings for the same store are refused before any work
    with pytest.raises(ZunaValueError, match="other settings .*segment_duration"):
        zl.embed_many(folder, store, model=setup["ckpt"], client=client, progress=False, segment_duration=10.0)


def test_lock_refuses_a_second_run(setup, tmp_path):
    store = tmp_path / "locked.zarr"
    zl.study.store.StudyStore(store, "embeddings").open({"model": "x"}).close()
    (store / ".lock").write_text(json.dumps({"host": os.uname().nodename, "pid": os.getpid(), "since": "now"}))
    with pytest.raises(ZunaValueError, match="in use by another run"):
        zl.embed_many(setup["folder"] / "sub-03.edf", store, model=setup["ckpt"], progress=False)


DRIVER = """
import sys
import zuna_lab as zl

if __name__ == "__main__":
    zl.embed_many(sys.argv[1], sys.argv[2], model=sys.argv[3], progress=False, batch_size=1)
"""


def test_killed_run_resumes(setup, tmp_path, client):
    """SIGKILL of the driver and its workers mid-run; the rerun completes every recording once."""
    folder = tmp_path / "kill"
    folder.mkdir()
    for i in range(10):
        synthetic(30.0, None, 100 + i).save(folder / f"k{i:02d}_raw.fif", verbose=False)
    store, script = tmp_path / "kill.zarr", tmp_path / "driver.py"
    script.write_text(textwrap.dedent(DRIVER))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, str(script), str(folder), str(store), str(setup["ckpt_zuna"])],
                            start_new_session=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, done = time.monotonic() + 120, []
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            done = done_rows(store)
            if done:
                break
            time.sleep(0.01)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)       # the driver and every worker it started
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    before = {row["recording"]: row for row in done_rows(store)}
    assert 1 <= len(before) < 10, len(before)
    index = zl.embed_many(folder, store, model=setup["ckpt_zuna"], client=client, progress=False)
    assert (index.status == "done").all() and len(index) == 10 and index.recording.is_unique
    rows = index.set_index("recording")
    for name, row in before.items():     # complete before the kill: kept, not recomputed
        assert rows.loc[name, "run_id"] == row["run_id"] and rows.loc[name, "computed_at"] == row["computed_at"]
    assert set(rows.run_id) - {row["run_id"] for row in before.values()}                     # the rest: this run
    assert stored_outputs(store) == set(rows.output) and not (store / ".tmp").exists()     # nothing left over
    assert not (store / ".lock").exists()
    model = zl.load_model(setup["ckpt_zuna"], device="cpu")
    study = zl.open_embeddings(store)
    for name in study:
        expected = reference(model, rows.loc[name, "source"])
        xr.testing.assert_identical(without_created(study[name].load()), without_created(expected))


def test_worker_killed_mid_run(setup, tmp_path, client):
    """A worker process dies (SIGKILL) during the run: its tasks run again elsewhere, nothing is lost."""
    folder = tmp_path / "wk"
    folder.mkdir()
    for i in range(8):
        synthetic(30.0, CH12, 200 + i).save(folder / f"w{i}_raw.fif", verbose=False)
    store = tmp_path / "wk.zarr"
    pids = list(client.run(os.getpid).values())
    killed = []

    def kill_one():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if done_rows(store):
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
                return
            time.sleep(0.01)

    watcher = threading.Thread(target=kill_one)
    watcher.start()
    index = zl.embed_many(folder, store, model=setup["ckpt"], client=client, progress=False, batch_size=1)
    watcher.join()
    assert killed, "no worker was killed"
    assert (index.status == "done").all() and len(index) == 8, index[["recording", "status", "error"]]
    client.wait_for_workers(2, timeout=60)        # the nanny restarted it
    model = zl.load_model(setup["ckpt"], device="cpu")
    study = zl.open_embeddings(store)
    for name in study:
        expected = reference(model, study.index.set_index("recording").loc[name, "source"])
        np.testing.assert_array_equal(study[name].embedding.values, expected.embedding.values)


def test_gpu_worker_placement_simulated(setup, tmp_path, model):
    """plan_workers for 1 GPU on 2 cores, on this CPU machine: gpu-0 encodes, cpu-0 reads and writes."""
    files = [setup["folder"] / name for name in ("sub-01_raw.fif", "sub-03.edf", "sub-07.csv")]
    with local_cluster(plan_workers(["0"], 2)) as own:
        workers = own.scheduler_info()["workers"].values()
        assert sorted((w["name"], tuple(w["resources"].items())) for w in workers) == \
            [("cpu-0", (("CPU", 1),)), ("gpu-0", (("GPU", 1),))]
        index = zl.embed_many(files, tmp_path / "placed.zarr", model=setup["ckpt"], client=own, progress=False)
    assert (index.status == "done").all()
    assert (index.worker == "cpu-0 > gpu-0").all()          # prepared on cpu-0, encoded on gpu-0
    study = zl.open_embeddings(tmp_path / "placed.zarr")
    for name, path in zip(study.recordings, sorted(files, key=lambda p: p.stem)):
        xr.testing.assert_identical(without_created(study[name].load()), without_created(reference(model, str(path))))


# ---------------------------------------------------------------------------------------------- reconstruct_many
def test_reconstruct_many_writes_repaired_fifs(setup, tmp_path, client, model):
    folder = setup["folder"]
    sources = [folder / "sub-02_raw.fif", folder / "sub-03.edf", folder / "ecg_only_raw.fif"]
    out = tmp_path / "repaired"
    index = zl.reconstruct_many(sources, out, model=setup["ckpt"], client=client, progress=False, steps=2, seed=0)
    rows = index.set_index("recording")
    assert rows.loc["ecg_only_raw", "status"] == "failed" and "no EEG" in rows.loc["ecg_only_raw", "error"]
    for name, path in (("sub-02_raw", sources[0]), ("sub-03", sources[1])):
        assert rows.loc[name, "status"] == "done" and rows.loc[name, "output"] == f"{name}_repaired_raw.fif"
        written = mne.io.read_raw_fif(out / rows.loc[name, "output"], preload=True, verbose="error")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rec = zl.reconstruct(str(path), model=model, steps=2, seed=0, progress=False, verbose="error")
            zl.write_fif(rec, tmp_path / f"{name}_expected_raw.fif")     # the same FIF, one file at a time
        expected = mne.io.read_raw_fif(tmp_path / f"{name}_expected_raw.fif", preload=True, verbose="error")
        np.testing.assert_array_equal(written.get_data(), expected.get_data())
        assert list(written.annotations.description) == list(expected.annotations.description)
    assert "ZUNA_infilled" in set(mne.io.read_raw_fif(out / "sub-02_raw_repaired_raw.fif",
                                                      verbose="error").annotations.description)
    again = zl.reconstruct_many(sources, out, model=setup["ckpt"], client=client, progress=False, steps=2, seed=0)
    assert again.set_index("recording").loc["sub-03", "run_id"] == rows.loc["sub-03", "run_id"]     # skipped
    assert not list(out.glob(".*tmp*"))


# ---------------------------------------------------------------------------------------------- command line
def test_cli_embed_many(setup, tmp_path, client, capsys):
    from zuna_lab.cli.commands import main

    files = [str(setup["folder"] / "sub-03.edf"), str(setup["folder"] / "corrupt.edf")]
    store = tmp_path / "cli.zarr"
    status = main(["embed-many", *files, "-o", str(store), "--scheduler", client.scheduler.address,
                   "--model", str(setup["ckpt"]), "--quiet"])
    captured = capsys.readouterr()
    assert status == 1                              # one recording failed: listed, the other done
    assert "corrupt failed:" in captured.err and "truncated" in captured.err
    assert zl.open_embeddings(store).recordings == ["sub-03"]
    status = main(["embed-many", files[0], "-o", str(store), "--scheduler", "nonsense://x", "--quiet"])
    assert status == 2 and "Cannot reach the dask scheduler" in capsys.readouterr().err


def test_cli_interrupted_study_says_what_it_kept(setup, tmp_path, client, capsys, monkeypatch):
    """Ctrl-C in embed-many: exit 130 and the number of recordings the store kept (was 'no output was written',
    false once some were committed — issue R)."""
    from zuna_lab.cli.commands import main
    from zuna_lab.study import api as study_api

    store = tmp_path / "cut.zarr"
    zl.embed_many([str(setup["folder"] / "sub-03.edf")], store, model=setup["ckpt"], client=client, progress=False)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(study_api, "embed_many", interrupted)
    status = main(["embed-many", str(setup["folder"] / "sub-03.edf"), "-o", str(store), "--quiet"])
    err = capsys.readouterr().err
    assert status == 130 and f"interrupted; 1 recording(s) committed to {store} are kept" in err
    assert "no output was written" not in err


@pytest.mark.parametrize("function, name", [(zl.embed_many, "store"), (zl.reconstruct_many, "out_dir")])
@pytest.mark.parametrize("where", [3, ""])
def test_target_that_is_not_a_path_is_refused(function, name, where, tmp_path, monkeypatch):
    """Found by test_fuzz (issue R): a number as the store gave pathlib's TypeError, and "" meant the current folder
    (reconstruct_many would write its files there); both are refused in one sentence, before any work."""
    source = tmp_path / "a_raw.fif"
    synthetic(6.0, CH8, 1).save(source, verbose="error")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ZunaTypeError, match=f"{name} must be a folder path") as info:
        function(str(source), where, model="no/such-model", progress=False)
    assert "\n" not in str(info.value) and str(info.value).endswith(".")
    assert [p.name for p in tmp_path.iterdir()] == ["a_raw.fif"]
