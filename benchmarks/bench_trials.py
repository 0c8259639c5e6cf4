"""Time to embed event-locked trials on this machine's CPU (issue #23): ``zl.embed(epochs)`` and
``ZunaEmbedder`` (first transform embeds, the second is served from the cache), full-size ZUNA1.1
with random weights (the model's size sets the time, not its weights).

    python benchmarks/bench_trials.py [--trials 200] [--seconds 2.0]      # writes results/trials.json
"""
import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import mne
import numpy as np
import torch

import zuna_lab as zl
from zuna_lab.decoding import ZunaEmbedder, cache_info, clear_cache
from zuna_lab.synthetic import make_synthetic_raw
from zuna_lab.testing import make_random_checkpoint

RESULTS = Path(__file__).resolve().parent / "results"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=2.0, help="trial length (ZUNA1.1: 0.5-30 s)")
    args = parser.parse_args()
    raw = make_synthetic_raw(duration=args.trials * (args.seconds + 0.5) + 10, seed=3)
    raw.filter(0.5, None, verbose="error")
    onsets = 5 + np.arange(args.trials) * (args.seconds + 0.5)
    events = np.array([[int(t * 256), 0, 1 + i % 2] for i, t in enumerate(onsets)])
    epochs = mne.Epochs(raw, events, {"a": 1, "b": 2}, tmin=-0.5, tmax=args.seconds - 0.5 - 1 / 256,
                        baseline=None, preload=True, verbose="error")
    with tempfile.TemporaryDirectory() as work:
        ckpt = make_random_checkpoint(Path(work) / "ckpt", variant="ZUNA1.1", full_size=True)
        model = zl.api.cache.get_model(str(ckpt))      # loaded once (outside the timings), shared by the embedder
        zl.embed(epochs[:4], model, progress=False)                       # warm-up
        start = time.perf_counter()
        emb = zl.embed(epochs, model, progress=False)
        embed_s = time.perf_counter() - start
        clear_cache()
        embedder = ZunaEmbedder(str(ckpt))
        start = time.perf_counter()
        embedder.fit_transform(epochs)
        first_s = time.perf_counter() - start
        start = time.perf_counter()
        embedder.transform(epochs)
        cached_s = time.perf_counter() - start
    out = dict(machine=platform.processor() or platform.machine(), cpus=os.cpu_count(), torch=torch.__version__,
               threads=torch.get_num_threads(), precision=model.precision, trials=len(epochs),
               trial_seconds=emb.attrs["segment_duration"], channels=emb.sizes["channel"],
               tokens_per_trial=emb.sizes["channel"] * emb.sizes["token"], embed_s=round(embed_s, 2),
               embedder_first_s=round(first_s, 2), embedder_cached_s=round(cached_s, 2), cache=cache_info())
    print(json.dumps(out, indent=1))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "trials.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
