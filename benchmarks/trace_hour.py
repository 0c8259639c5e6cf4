"""Where the 1 h x 64 ch ``zl.embed(path)`` spends its wall time (issue #21, item 3): a timeline of its stages.

Every stage function of the streamed path is wrapped with wall-clock stamps (thread, start, end); the
encoder calls also get CUDA events, so the GPU's idle gaps show. Prints one JSON line: the stages'
totals per thread, the time to the first encoder call, the tail after the last, the GPU's busy time
and its longest gaps, and the raw timeline.

    python benchmarks/trace_hour.py                   # GPU: bench.py's checkpoint and hour file
    python benchmarks/trace_hour.py --cpu 600         # a CPU dry run: 600 s x 64 ch, tiny random model
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
from functools import partial
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

T0 = [0.0]
EVENTS = []        # (label, thread, start, end) in seconds from T0


def stamp(label, start):
    EVENTS.append((label, threading.current_thread().name, round(start - T0[0], 4),
                   round(time.perf_counter() - T0[0], 4)))


def wrap(owner, name, label=None):
    """Replace ``owner.name`` by a timed twin (generators: each item timed)."""
    inner = getattr(owner, name)
    label = label or inner.__qualname__

    if hasattr(inner, "__code__") and inner.__code__.co_flags & 0x20:     # a generator function
        @functools.wraps(inner)
        def timed_gen(*args, **kwargs):
            items = inner(*args, **kwargs)
            while True:
                start = time.perf_counter()
                try:
                    item = next(items)
                except StopIteration:
                    return
                stamp(label, start)
                yield item
        setattr(owner, name, timed_gen)
        return

    @functools.wraps(inner)
    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            stamp(label, start)
    setattr(owner, name, timed)


def instrument(model):
    from zuna_lab.api import core, streaming
    from zuna_lab.io import write
    from zuna_lab.pipeline import stream

    for owner, name in ((streaming, "_read_lazily"), (streaming, "epoch_masks"), (streaming, "tokenize_epochs"),
                        (streaming, "place_latents"), (streaming, "hidden_grid"), (streaming, "padding_grid"),
                        (streaming, "empty_grid"), (streaming, "_stream"), (streaming.results, "embedding_template"),
                        (stream, "_filter_into"), (stream, "_chunk"), (stream, "stream_plan"),
                        (stream.FilteredReader, "read"), (stream.Spill, "write"), (stream.Spill, "read"),
                        (write.MemoryRegions, "__init__"), (write.MemoryRegions, "write"),
                        (core, "overlaps"), (core, "embed_overlapped")):
        wrap(owner, name)
    gpu = []
    inner = model.encode

    def encode(*args, **kwargs):
        start = time.perf_counter()
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        try:
            return inner(*args, **kwargs)
        finally:
            end.record()
            gpu.append((begin, end, args[0].shape[0]))
            stamp("encode (host)", start)
    model.encode = encode
    return gpu


def first_chunk(plan_of, first, *args, **kwargs):
    """The plan with a first chunk of ``first`` epochs (the GPU starts sooner), then chunks as before."""
    plan = plan_of(*args, **kwargs)
    n, step = plan.n_epochs, plan.chunk_epochs
    cuts = sorted({0, min(first, n), *range(first + step, n, step), n})
    return dataclasses.replace(plan, chunks=tuple(zip(cuts[:-1], cuts[1:])))


def summary(gpu, wall, origin):
    torch.cuda.synchronize()
    spans = [(origin.elapsed_time(b) / 1e3, origin.elapsed_time(e) / 1e3, n) for b, e, n in gpu]
    busy = sum(b - a for a, b, _ in spans)
    gaps = sorted(((round(spans[i + 1][0] - spans[i][1], 4), i) for i in range(len(spans) - 1)), reverse=True)
    totals = {}
    for label, thread, start, end in EVENTS:
        key = f"{thread.split('_')[0] if thread.startswith('Thread') else thread}: {label}"
        totals[key] = round(totals.get(key, 0.0) + end - start, 3)
    return dict(wall_s=round(wall, 3), gpu_busy_s=round(busy, 3), encoder_calls=len(spans),
                batch_sizes=[n for _, _, n in spans], first_encode_gpu_start_s=round(spans[0][0], 3),
                last_encode_gpu_end_s=round(spans[-1][1], 3), tail_s=round(wall - spans[-1][1], 3),
                largest_gpu_gaps_s=gaps[:8], totals_s=totals, gpu_spans=[(round(a, 4), round(b, 4), n) for a, b, n in spans],
                timeline=EVENTS)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cpu", type=float, default=None, help="CPU dry run: seconds of a 64-channel file")
    parser.add_argument("--variants", nargs="*", default=["b0f0"],
                        help="runs as bBATCHfFIRST: the encoder's batch size (0: automatic) and a smaller first "
                             "chunk of FIRST epochs (0: the plan's)")
    parser.add_argument("--plain-encoder", action="store_true", help="no epilogue GEMMs in the encoder")
    parser.add_argument("--timeline", action="store_true", help="print the raw timeline of the traced runs")
    args = parser.parse_args()
    import zuna_lab
    if args.cpu:
        import mne
        import numpy as np
        from zuna_lab.api import streaming
        folder = Path(tempfile.mkdtemp(prefix="trace_"))
        names = mne.channels.make_standard_montage("standard_1005").ch_names[:64]
        n = int(args.cpu * 256)
        data = np.cumsum(np.random.default_rng(0).standard_normal((64, n)).astype(np.float32), axis=1) * 1e-7
        raw = mne.io.RawArray(data, mne.create_info(names, 256.0, "eeg"), verbose="error")
        raw.set_montage("standard_1005", verbose="error")
        path = folder / "trace_raw.fif"
        raw.save(path, fmt="single", verbose="error")
        from zuna_lab.testing import make_random_checkpoint
        model = zuna_lab.load_model(make_random_checkpoint(folder / "ckpt", variant="ZUNA1.1"), device="cpu")
        EVENTS.clear()
        T0[0] = time.perf_counter()
        from zuna_lab.api import core
        wrap(streaming, "_read_lazily")
        wrap(streaming, "tokenize_epochs")
        wrap(core, "overlaps")
        streaming.embed_overlapped(str(path), model, progress=False, verbose=False)
        print(json.dumps(dict(wall_s=round(time.perf_counter() - T0[0], 3), events=len(EVENTS), timeline=EVENTS[:20])))
        return
    import bench
    from zuna_lab.api import streaming
    from zuna_lab.fast import kernels
    from zuna_lab.pipeline import stream
    if args.plain_encoder:      # the encoder's QKV and SwiGLU through cuBLAS, then a kernel (no epilogue GEMMs)
        kernels.gemm_fusable = lambda *a, **k: False
    bench.write_checkpoint_ours()
    model = zuna_lab.load_model(bench.CKPT, device="cuda")
    model.kernels_ready(wait=True)
    bench.embed_hour(model)                      # writes the file, warms every shape
    path = str(bench.WORK / "hour_64ch_raw.fif")
    gpu = instrument(model)
    automatic, plan_of = streaming.auto_batch_size, stream.stream_plan
    for variant in args.variants:
        batch, first = (int(v) for v in variant[1:].split("f"))
        streaming.auto_batch_size = automatic if batch == 0 else (lambda *a, b=batch: b)
        stream.stream_plan = plan_of if first == 0 else partial(first_chunk, plan_of, first)
        for run in ("warm", "traced"):
            EVENTS.clear()
            gpu.clear()
            torch.cuda.synchronize()
            origin = torch.cuda.Event(enable_timing=True)
            T0[0] = time.perf_counter()
            origin.record()
            zuna_lab.embed(path, model=model, progress=False, verbose=False)
            torch.cuda.synchronize()
            wall = time.perf_counter() - T0[0]
            result = summary(gpu, wall, origin)
            if run == "warm" or not args.timeline:
                result.pop("timeline")
                result.pop("gpu_spans")
            print(json.dumps(dict(run=run, variant=variant, plain_encoder=args.plain_encoder, **result)),
                  flush=True)

if __name__ == "__main__":
    main()
