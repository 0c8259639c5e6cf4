"""Where a study runs: the workers to start on this machine, what runs where, and the driver loop.

- :func:`plan_workers`: one GPU worker per visible device (``CUDA_VISIBLE_DEVICES`` set to it,
  resource ``GPU=1``) and CPU workers (resource ``CPU=1``, no GPU visible) for the other cores.
  Without GPUs every worker is a CPU worker and encodes too.
- :func:`local_cluster`: those workers as a dask.distributed cluster on the loopback interface
  (dashboard on 127.0.0.1), started and closed around a run.
- :func:`placement`: for any cluster (yours, e.g. dask-jobqueue on SLURM), which resources the
  stages ask for: encode/reconstruct ``GPU=1`` when some worker declares a GPU, reading and
  writing ``CPU=1`` when some worker declares CPUs; without declared resources tasks go anywhere.
- :func:`run_pipeline`: the driver. It keeps a window of recordings in flight, batches prepared
  recordings into encode tasks (bigger batches while the GPU is busy), and commits each written
  recording to the store as it finishes, with a progress bar.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import uuid
from collections import deque
from dataclasses import dataclass, field

from .tasks import ModelPlugin, bundle_info, bundle_meta, pick

__all__ = ["WorkerPlan", "plan_workers", "visible_gpus", "local_cluster", "placement", "task_tokens", "run_pipeline",
           "Stages"]

#: Tokens per encode task on a GPU (about a dozen 20-min x 32-ch recordings, ~10 s of an H200: the
#: gap between two tasks, when the GPU waits, is then rare) and on a CPU.
GPU_BATCH_TOKENS = 1 << 22
CPU_BATCH_TOKENS = 1 << 15


@dataclass(frozen=True)
class WorkerPlan:
    """One worker process to start: its name, threads, dask resources and environment."""

    name: str
    nthreads: int
    resources: dict
    env: dict = field(default_factory=dict)


def visible_gpus():
    """The CUDA devices this process may use, as ``CUDA_VISIBLE_DEVICES`` entries (``[]`` without CUDA)."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    try:
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # pragma: no cover - a broken CUDA install counts as none
        count = 0
    if listed is not None and listed.strip() != "":
        return [entry.strip() for entry in listed.split(",") if entry.strip()][:count]
    return [str(i) for i in range(count)]


def plan_workers(gpus, n_cpus):
    """The workers of a local study cluster: one per GPU, CPU workers on the other cores.

    Parameters
    ----------
    gpus : list of str | int
        Visible CUDA devices (``CUDA_VISIBLE_DEVICES`` entries), or their number.
    n_cpus : int
        CPU cores to use.

    Returns
    -------
    plan : list of WorkerPlan
        ``gpu-<i>`` workers (2 threads: the encoder and small tasks; ``GPU=1``;
        ``CUDA_VISIBLE_DEVICES`` = that device only), then ``cpu-<i>`` workers, one per remaining
        core (at least one; 2 threads, ``CPU=1``: one heavy task at a time, small tasks beside it;
        no GPU visible). Without GPUs, one CPU worker per core, which also encode.

    Examples
    --------
    >>> [(w.name, w.resources, w.env.get("CUDA_VISIBLE_DEVICES")) for w in plan_workers(2, 4)]
    [('gpu-0', {'GPU': 1}, '0'), ('gpu-1', {'GPU': 1}, '1'), ('cpu-0', {'CPU': 1}, ''), ('cpu-1', {'CPU': 1}, '')]
    """
    devices = [str(i) for i in range(gpus)] if isinstance(gpus, int) else [str(g) for g in gpus]
    n_cpus = max(1, int(n_cpus))
    plan = [WorkerPlan(f"gpu-{i}", 2, {"GPU": 1}, {"CUDA_VISIBLE_DEVICES": device})
            for i, device in enumerate(devices)]
    # each GPU worker keeps a core busy feeding its device; the others read, preprocess and write
    n_cpu_workers = max(1, n_cpus - len(devices))
    plan += [WorkerPlan(f"cpu-{i}", 2, {"CPU": 1}, {"CUDA_VISIBLE_DEVICES": ""}) for i in range(n_cpu_workers)]
    return plan


@contextlib.contextmanager
def local_cluster(plan, *, memory_limit=None):
    """Start ``plan`` as a dask.distributed cluster on 127.0.0.1 (dashboard too); yield a Client; close both."""
    from distributed import Client, Nanny, Scheduler, SpecCluster

    if memory_limit is None:
        try:
            import psutil

            # at least 4 GiB each: a worker holds a few recordings' tokens (some machines report less at first)
            memory_limit = max(4 << 30, int(psutil.virtual_memory().total * 0.9 / max(1, len(plan))))
        except ImportError:  # pragma: no cover - psutil comes with distributed
            memory_limit = "auto"
    workers = {w.name: {"cls": Nanny, "options": {
        "nthreads": w.nthreads, "resources": dict(w.resources), "env": dict(w.env), "host": "127.0.0.1",
        "memory_limit": memory_limit, "silence_logs": logging.ERROR}} for w in plan}
    scheduler = {"cls": Scheduler, "options": {"host": "127.0.0.1", "dashboard_address": "127.0.0.1:0"}}
    cluster = SpecCluster(workers=workers, scheduler=scheduler, silence_logs=logging.ERROR, name="zuna_lab study")
    try:
        client = Client(cluster)
        try:
            yield client
        finally:
            client.close()
    finally:
        cluster.close()


def placement(workers):
    """What each stage asks of the cluster, from ``client.scheduler_info()["workers"]``.

    Returns
    -------
    place : dict
        ``cpu`` / ``encode``: keyword arguments for ``client.submit`` (``resources=``) of the
        reading/writing and the model stages; ``gpu``: whether encoding runs on GPU workers;
        ``cpu_slots`` / ``encoders``: how many of each run at once.

    Examples
    --------
    >>> placement({"a": {"resources": {"GPU": 1}, "nthreads": 2}, "b": {"resources": {"CPU": 1}, "nthreads": 2}})
    {'cpu': {'resources': {'CPU': 1}}, 'encode': {'resources': {'GPU': 1}}, 'gpu': True, 'cpu_slots': 1, 'encoders': 1}
    """
    infos = list(workers.values())
    gpus = sum(int(w.get("resources", {}).get("GPU", 0)) for w in infos)
    cpus = sum(int(w.get("resources", {}).get("CPU", 0)) for w in infos)
    threads = sum(int(w.get("nthreads", 1)) for w in infos) or 1
    cpu = {"resources": {"CPU": 1}} if cpus else {}
    if gpus:
        return {"cpu": cpu, "encode": {"resources": {"GPU": 1}}, "gpu": True,
                "cpu_slots": cpus or max(1, threads - gpus), "encoders": gpus}
    return {"cpu": cpu, "encode": dict(cpu), "gpu": False, "cpu_slots": cpus or threads, "encoders": cpus or threads}


@dataclass
class Stages:
    """The three stages of a run and their options (embed_many or reconstruct_many)."""

    prepare: object          # prepare(rec_id, path, variant, options) -> bundle | Failed
    encode: object           # encode(spec, bundles, *encode_args) -> {rec_id: result | Failed}
    write: object            # write(meta, result, *write_args(rec_id)) -> index row
    variant: str
    options: dict
    encode_args: tuple
    write_args: object       # (rec_id, run) -> tuple
    batch: bool = True       # several recordings per encode task


def task_tokens(place, queued=0, *, tail=False):
    """Tokens per encode task: about 10 s of one H200, split among the GPUs when there are several
    (so that at the end of a run no GPU waits long for another's last task); on the tail of a run
    (nothing left to launch) the ``queued`` tokens are shared out among the encoders.

    Examples
    --------
    >>> gpus = {"gpu": True, "encoders": 2}
    >>> task_tokens(gpus) == GPU_BATCH_TOKENS // 2, task_tokens(gpus, 1000, tail=True)
    (True, 500)
    """
    target = GPU_BATCH_TOKENS // max(1, place["encoders"]) if place["gpu"] else CPU_BATCH_TOKENS
    return min(target, max(1, -(-queued // place["encoders"]))) if tail else target


def run_pipeline(client, store, jobs, stages, spec, *, progress=True, label="embed_many"):
    """Run ``jobs`` ((rec_id, source, stamp) triples) through ``stages`` on ``client``; commit to ``store``.

    A recording is committed as soon as it is written (or has failed); a failure never stops the
    others. Returns the run's id when every job is committed. Interrupting it (Ctrl-C) cancels the
    tasks and leaves the store with the recordings committed so far.
    """
    return _Pipeline(client, store, jobs, stages, spec, progress=progress, label=label).run()


class _Pipeline:
    """One run of :func:`run_pipeline`: prepare tasks in a window, encode tasks over the prepared
    recordings (batched across recordings), write tasks, and the commits, as their results come."""

    def __init__(self, client, store, jobs, stages, spec, *, progress, label):
        from distributed import as_completed
        from tqdm.auto import tqdm

        self.client, self.store, self.stages, self.spec = client, store, stages, spec
        self.place = placement(client.scheduler_info()["workers"])
        client.register_plugin(ModelPlugin(spec), name=ModelPlugin.name)
        self.id = uuid.uuid4().hex[:8]
        self.window = 2 * self.place["cpu_slots"] + 4 * self.place["encoders"] + 2
        self.waiting = deque(jobs)
        self.sources = {rec_id: (source, stamp) for rec_id, source, stamp in jobs}
        self.tags, self.futures = {}, as_completed()
        self.ready = []            # prepared recordings waiting for an encode task: (rec_id, bundle future, info)
        self.active = self.encoding = self.epochs = self.failed = 0
        self.bar = tqdm(total=len(jobs), desc=label, unit="rec", disable=not progress, file=sys.stderr)
        self.started = time.perf_counter()

    def run(self) -> str:
        try:
            self.launch()
            for future in self.futures:
                self.handle(future)
                self.launch()
                self.flush(force=not self.waiting and self.encoding == 0)
                if not self.waiting and not any(kind == "info" for kind, _, _ in self.tags.values()):
                    self.flush(force=True)
        except BaseException:
            self.futures.clear()
            self.client.cancel([f for _, _, f in self.tags.values()], force=True)
            raise
        finally:
            self.bar.close()
        return self.id

    def submit(self, kind, rec, fn, *args, **kwargs):
        future = self.client.submit(fn, *args, pure=False, **kwargs)
        self.tags[future.key] = (kind, rec, future)
        self.futures.add(future)
        return future

    def launch(self):
        """Prepare tasks for waiting recordings, up to the window."""
        while self.waiting and self.active < self.window:
            rec_id, source, _ = self.waiting.popleft()
            bundle = self.client.submit(self.stages.prepare, rec_id, source, self.stages.variant, self.stages.options,
                                        pure=False, key=f"prepare-{rec_id}-{self.id}", **self.place["cpu"])
            self.submit("info", (rec_id, bundle), bundle_info, bundle)
            self.active += 1

    def flush(self, force=False):
        """Encode tasks over the ready recordings (one running and one queued per encoder), and their writes."""
        place, stages = self.place, self.stages
        queued = sum(info.get("tokens", 0) for _, _, info in self.ready)
        idle = self.encoding < 2 * place["encoders"]
        if not self.ready or not (force or idle or queued >= task_tokens(place) or not stages.batch):
            return
        limit = task_tokens(place, queued, tail=not self.waiting)
        while self.ready:
            batch, tokens = [], 0
            while self.ready and (not batch or (stages.batch and tokens < limit)):
                item = self.ready.pop(0)
                batch.append(item)
                tokens += item[2].get("tokens", 0)
            encoded = self.submit("encode", [rec for rec, _, _ in batch], stages.encode, self.spec,
                                  [bundle for _, bundle, _ in batch], *stages.encode_args, **place["encode"])
            self.encoding += 1
            for rec_id, bundle, _ in batch:
                meta = self.client.submit(bundle_meta, bundle, pure=False)
                share = self.client.submit(pick, encoded, rec_id, pure=False)
                self.submit("write", rec_id, stages.write, meta, share, *stages.write_args(rec_id, self.id),
                            **place["cpu"])
            if not force and self.encoding >= 2 * place["encoders"]:
                break

    def handle(self, future):
        kind, rec, _ = self.tags.pop(future.key)
        if kind == "info":
            rec_id, bundle = rec
            info = _result(future, rec_id)
            if info.get("ok"):
                self.ready.append((rec_id, bundle, info))
            else:
                self.commit({"recording": rec_id, "status": "failed", "error": info.get("error", ""),
                             "warnings": info.get("warnings", "")})
        elif kind == "encode":
            self.encoding -= 1      # a failed encode: each write task of the batch fails and says why
        elif kind == "write":
            self.commit(_result(future, rec))

    def commit(self, row):
        source, stamp = self.sources[row["recording"]]
        written, pooled = row.pop("written", None), row.pop("pooled", None)
        self.store.commit({**row, "source": source, "source_stamp": stamp, "run_id": self.id, "computed_at": _now()},
                          written=written, pooled=pooled)
        self.active -= 1
        self.epochs += int(row.get("n_epochs", 0)) if row["status"] == "done" else 0
        self.failed += row["status"] == "failed"
        rate = self.epochs / max(time.perf_counter() - self.started, 1e-9)
        self.bar.set_postfix(epochs=self.epochs, failed=self.failed, epochs_per_s=f"{rate:.1f}", refresh=False)
        self.bar.update(1)


def _result(future, rec_id):
    """A task's result, or the row of a failed recording when the task itself failed (a worker died...)."""
    if future.status == "error":
        from .tasks import failure_message

        err = future.exception()
        text = failure_message(err)
        if type(err).__name__ == "KilledWorker":
            text = "The worker processing this recording died (KilledWorker: out of memory, or a crash in a reader)."
        return {"recording": rec_id, "status": "failed", "error": text, "ok": False}
    if future.status == "cancelled":
        raise RuntimeError(f"The task of {rec_id!r} was cancelled (the cluster went away).")
    return future.result()


def _now():
    from .journal import now

    return now()
