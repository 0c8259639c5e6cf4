"""A real multi-process cluster (issue #30): ``dask scheduler`` and two ``dask worker`` processes from the command line.

Started as a SLURM job script would start them (here on 127.0.0.1): the scheduler writes its
address to a scheduler file; a "GPU" worker declares ``--resources GPU=1`` (no CUDA device visible:
it encodes on the CPU, as the placement test of test_study.py simulates) and a CPU worker
``--resources CPU=1``, each under its nanny. ``embed_many(..., client=Client(address))`` drives
them from this process. Checked: the store equals ``zl.embed`` of every file, bit for bit, with
reading/writing on the CPU worker and encoding on the GPU worker; the GPU worker's process
killed (SIGKILL) mid-run is restarted by its nanny and the run completes; the driver killed
(SIGKILL) mid-run while the cluster lives on, then a rerun: every recording complete once, those
committed before the kill kept, nothing left over.
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

import numpy as np
import pytest
import xarray as xr

import zuna_lab as zl
from zuna_lab.errors import ZunaValueError
from zuna_lab.synthetic import make_synthetic_raw
from zuna_lab.testing import make_random_checkpoint

from oracle_support import require_module

distributed = require_module("distributed")
require_module("zarr")

ROOT = Path(__file__).resolve().parents[2]
DASK = str(Path(sys.executable).with_name("dask"))
CH12 = ["Fp1", "Fp2", "F3", "F4", "C3", "C4", "P3", "P4", "O1", "O2", "Fz", "Cz"]


def _env(**extra):
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), **extra)


def _start(args, log, **env):
    return subprocess.Popen([DASK, *args], env=_env(**env), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def _stop(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Scheduler + gpu-0 (GPU=1) + cpu-0 (CPU=1), each its own process tree, loopback only."""
    from distributed import Client

    root = tmp_path_factory.mktemp("cli_cluster")
    scheduler_file = root / "scheduler.json"
    log = open(root / "cluster.log", "w")
    procs = [_start(["scheduler", "--host", "127.0.0.1", "--port", "0", "--dashboard-address", "127.0.0.1:0",
                     "--scheduler-file", str(scheduler_file)], log)]
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert scheduler_file.exists(), (root / "cluster.log").read_text()
        for name, resource, cuda in (("gpu-0", "GPU=1", ""), ("cpu-0", "CPU=1", "")):
            procs.append(_start(["worker", "--scheduler-file", str(scheduler_file), "--name", name, "--nthreads", "2",
                                 "--resources", resource, "--host", "127.0.0.1", "--no-dashboard",
                                 "--local-directory", str(root / name)], log, CUDA_VISIBLE_DEVICES=cuda))
        client = Client(scheduler_file=str(scheduler_file), timeout=60)
        client.wait_for_workers(2, timeout=120)
        address = json.loads(scheduler_file.read_text())["address"]
        yield dict(client=client, address=address, root=root, log=root / "cluster.log")
        client.close()
    finally:
        for proc in reversed(procs):
            _stop(proc)
        log.close()


@pytest.fixture(scope="module")
def material(tmp_path_factory):
    """A tiny random checkpoint, 4 mixed recordings and 8 of 30 s; zl.embed's result of each, computed once."""
    root = tmp_path_factory.mktemp("cli_material")
    ckpt = make_random_checkpoint(root / "ZUNA", variant="ZUNA")
    mixed, many = root / "mixed", root / "many"
    mixed.mkdir()
    many.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, (duration, names) in enumerate(((12.0, None), (20.0, CH12), (7.0, None), (16.0, CH12))):
            raw = make_synthetic_raw(duration=duration, ch_names=names, seed=10 + i, verbose=False)
            if i == 1:
                raw.info["bads"] = ["C3"]
            raw.save(mixed / f"m{i}_raw.fif", verbose=False)
        for i in range(8):
            make_synthetic_raw(duration=30.0, ch_names=CH12, seed=40 + i, verbose=False).save(
                many / f"k{i}_raw.fif", verbose=False)
    return dict(ckpt=ckpt, mixed=mixed, many=many, model=zl.load_model(ckpt, device="cpu"), expected={})


def expected(material, path):
    """zl.embed of the file (cached)."""
    path = str(path)
    if path not in material["expected"]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = zl.embed(path, model=material["model"], progress=False, verbose="error")
        ds.attrs.pop("created")
        material["expected"][path] = ds
    return material["expected"][path]


def assert_store_equals_embed(store, material):
    study = zl.open_embeddings(store)
    index = study.index.set_index("recording")
    assert (index.status == "done").all() and len(study) == len(index)
    for name in study:
        stored = study[name].load()
        stored.attrs.pop("created")
        xr.testing.assert_identical(stored, expected(material, index.loc[name, "source"]))
    return index


def done_rows(store):
    try:
        index = zl.open_embeddings(store).index
    except ZunaValueError:          # no index yet
        return []
    return [row for row in index.to_dict("records") if row["status"] == "done"]


def worker_pid(client, name):
    workers = client.scheduler_info()["workers"]
    address = next(a for a, info in workers.items() if info["name"] == name)
    return client.run(os.getpid, workers=[address])[address]


def wait_until_idle(client, timeout=60):
    """No task left on the scheduler, none running on a worker (a killed driver's tasks are let go)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tasks = client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks))
        running = client.run(lambda dask_worker: dask_worker.state.executing_count)
        if tasks == 0 and not any(running.values()):
            return
        time.sleep(0.2)
    raise AssertionError("the cluster is still busy with the killed driver's tasks")


def test_cli_cluster_store_equals_embed(cluster, material, tmp_path):
    client = cluster["client"]
    workers = sorted((w["name"], w["resources"]) for w in client.scheduler_info()["workers"].values())
    assert workers == [("cpu-0", {"CPU": 1}), ("gpu-0", {"GPU": 1})]
    assert len({worker_pid(client, "gpu-0"), worker_pid(client, "cpu-0"), os.getpid()}) == 3   # 3 processes
    store = tmp_path / "cli.zarr"
    index = zl.embed_many(material["mixed"], store, model=material["ckpt"], client=client, progress=False)
    assert len(index) == 4 and (index.worker == "cpu-0 > gpu-0").all()      # read+written on cpu-0, encoded on gpu-0
    assert_store_equals_embed(store, material)
    assert all((store / output).is_file() for output in index.output)        # one file per recording


def test_cli_cluster_worker_killed_mid_run(cluster, material, tmp_path):
    client, store = cluster["client"], tmp_path / "worker_killed.zarr"
    pid, killed = worker_pid(client, "gpu-0"), []

    def kill_the_encoder():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            if done_rows(store):
                os.kill(pid, signal.SIGKILL)       # the worker process, not its nanny: as the OOM killer would
                killed.append(len(done_rows(store)))
            time.sleep(0.02)

    watcher = threading.Thread(target=kill_the_encoder)
    watcher.start()
    index = zl.embed_many(material["many"], store, model=material["ckpt"], client=client, progress=False,
                          batch_size=1)
    watcher.join()
    assert killed and killed[0] < 8, "the encoder was not killed mid-run"
    assert len(index) == 8 and (index.status == "done").all(), index[["recording", "status", "error"]]
    client.wait_for_workers(2, timeout=120)
    assert worker_pid(client, "gpu-0") != pid                             # its nanny started a new one
    assert_store_equals_embed(store, material)


DRIVER = """
import sys

from distributed import Client

import zuna_lab as zl

if __name__ == "__main__":
    folder, store, model, address = sys.argv[1:]
    with Client(address) as client:
        zl.embed_many(folder, store, model=model, client=client, progress=False, batch_size=1)
"""


def test_cli_cluster_driver_killed_mid_run(cluster, material, tmp_path):
    client, store, script = cluster["client"], tmp_path / "driver_killed.zarr", tmp_path / "driver.py"
    script.write_text(textwrap.dedent(DRIVER))
    proc = subprocess.Popen([sys.executable, str(script), str(material["many"]), str(store), str(material["ckpt"]),
                             cluster["address"]], env=_env(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None and not done_rows(store):
            time.sleep(0.02)
    finally:
        os.kill(proc.pid, signal.SIGKILL)        # the driver alone: the cluster lives on
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the driver ended before it could be killed"
    before = {row["recording"]: row for row in done_rows(store)}
    assert 1 <= len(before) < 8, len(before)
    assert (store / ".lock").exists()                                    # left by the killed driver
    wait_until_idle(client)
    index = zl.embed_many(material["many"], store, model=material["ckpt"], client=client, progress=False)
    assert len(index) == 8 and index.recording.is_unique
    rows = assert_store_equals_embed(store, material)
    for name, row in before.items():            # committed before the kill: kept, not recomputed
        assert rows.loc[name, ["run_id", "computed_at", "output"]].tolist() == \
            [row["run_id"], row["computed_at"], row["output"]]
    assert len(set(rows.run_id)) == 2
    left = sorted(p.name for p in store.iterdir())
    assert left == sorted([".zattrs", ".zgroup", "index.json", "recordings", *(p.name for p in store.glob("journal-*")),
                           *(p.name for p in store.glob("pooled-*"))]) and len(left) == 6, left
    assert {f"recordings/{p.name}" for p in (store / "recordings").iterdir() if p.name != ".zgroup"} == \
        set(rows.output)
    np.testing.assert_array_equal(zl.open_embeddings(store).pooled().n_tokens > 0, True)
