"""The fast path's kernels compiled ahead, in a background process, on a machine's first use.

Triton compiles each kernel on its first call (seconds for the whole model) and keeps the binary in
its on-disk cache. So that a fresh process never waits for that, :func:`start` (called by
:func:`zuna_lab.fast.build` on CUDA) looks for this model's marker in Triton's cache: when it is
there, the kernels are compiled already; when not, a separate Python process compiles them by
running a random model of the same architecture and precision on every code path
(:mod:`.precompile`), and writes the marker. Meanwhile the fast model runs its kernels' PyTorch twins
(:mod:`.eager`), which need no compilation; its first call after the process has finished loads
the compiled kernels from the cache. A separate process, not a thread: compilation holds the
GIL for long stretches, which would slow the calls it is meant to hide.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from ..config import VERSION, ModelConfig
from ..errors import warn
from . import kernels


def cache_dir() -> Path:
    """Triton's kernel cache folder (``TRITON_CACHE_DIR`` or its default)."""
    try:
        from triton import knobs
        return Path(knobs.cache.dir)
    except (ImportError, AttributeError):
        return Path(os.environ.get("TRITON_CACHE_DIR") or Path.home() / ".triton" / "cache")


def marker(config: ModelConfig, precision: str, device: torch.device, decoder_fp16_blocks: int = 0) -> Path:
    """The file that says this model's kernels are in the cache: one per kernel source, Triton and
    torch version, GPU kind, architecture and precision (with its fp16 decoder blocks)."""
    import triton
    parts = [VERSION, triton.__version__, torch.__version__, precision, json.dumps(dataclasses.asdict(config)),
             hashlib.sha256(Path(kernels.__file__).read_bytes()).hexdigest()]
    if decoder_fp16_blocks:
        parts.append(f"decoder_fp16_blocks={decoder_fp16_blocks}")
    if device.type == "cuda":
        parts.append(str(torch.cuda.get_device_capability(device)))
    key = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:20]
    return cache_dir() / f"zuna_lab-kernels-{key}.ready"


class Warmup:
    """A background compilation, or none (``process=None``: the kernels are ready)."""

    def __init__(self, process: subprocess.Popen | None = None, log: Path | None = None):
        self.process = process
        self.log = log
        self.returncode = None

    def ready(self) -> bool:
        """Whether the fast model may call its kernels: the process has ended (if it failed, the
        kernels compile on their first call, as without it, and a warning says where its log is)."""
        if self.process is not None and self.process.poll() is not None:
            self.returncode, self.process = self.process.returncode, None
            if self.returncode:
                warn(f"Compiling the fast path's kernels in the background failed (log: {self.log}); they "
                              "compile on their first call instead.")
        return self.process is None

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the compilation to end; returns whether it compiled everything."""
        if self.process is not None:
            self.process.wait(timeout)
            self.ready()
        return self.returncode in (None, 0)


def start(model) -> Warmup:
    """Compile ``model``'s kernels in a background process unless its marker says they are cached."""
    device = model.device
    if device.type != "cuda":
        return Warmup()
    blocks = fp16_blocks(model)
    done = marker(model.config, model.precision, device, blocks)
    if done.exists():
        return Warmup()
    done.parent.mkdir(parents=True, exist_ok=True)
    log = done.with_suffix(".log")
    config = json.dumps(dataclasses.asdict(model.config))
    # the child imports this very copy of zuna_lab, wherever it was imported from
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
    with log.open("w") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "zuna_lab.fast.precompile", config, model.precision,
                                    str(device), str(blocks)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=stderr, env=env)
    return Warmup(process, log)


def fp16_blocks(model) -> int:
    """How many of a "mixed" ``model``'s decoder blocks compute in fp16 (``FastOptions.decoder_fp16_blocks``:
    their kernels are compiled for fp16 too); 0 for the other precisions."""
    if model.precision != "mixed":
        return 0
    return [block.cross_attention.wq.dtype for block in model.decoder.blocks].count(torch.float16)
