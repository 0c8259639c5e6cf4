"""Kernel-level profile of zuna_lab's reconstruction on CUDA (top kernels by GPU time).

    python benchmarks/profile_gpu.py   # after bench_gpu.py has written its checkpoint
"""
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import bench as bench_gpu  # noqa: E402
import zuna_lab  # noqa: E402

bench_gpu.write_checkpoint_ours()
model = zuna_lab.load_model(bench_gpu.CKPT, device="cuda", dtype="bf16")
model.cuda_graphs = False      # eager launches so the profiler sees every kernel
for n_epochs, n_channels in ((32, 12), (1, 12)):
    tokens, tok_idx, noise = (t.cuda() for t in bench_gpu.make_inputs(n_epochs, n_channels))
    latents = model.encode(tokens, tok_idx)
    model.sample(latents, tok_idx, noise=noise, steps=2)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        model.sample(latents, tok_idx, noise=noise, steps=5)
        torch.cuda.synchronize()
    print(f"== {n_epochs} x {n_channels} ch, 5 steps")
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=22, max_name_column_width=70))
