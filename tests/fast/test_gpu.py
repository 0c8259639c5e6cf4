"""The CUDA paths at full size, on a GPU (marker ``gpu``; skipped without CUDA, never needed by CI).

Run with the device tool (README "Performance")::

    python -m pytest -m gpu tests/fast/test_gpu.py -q

Both variants, the released architecture (382 M parameters) with every weight perturbed
(``make_random_checkpoint(full_size=True, perturb=0.02)``: 0.02 N(0, 1) added to every weight of
the seeded random init), so that AdaRMSNorm and the time conditioning matter:

(a) memory: after ``load_model`` on CUDA the model holds nothing but its parameters in the
    precision they are used in (requested bytes within 1 %, for the default and the exact path),
    and the default path's allocated bytes stay within 5 % of them;
(b) the exact CUDA path (``dtype="fp32"``) against the official package's fp32 output for the same
    weights, tokens and noise (``tests/data/official_fp32_full_size.npz``: the official packages
    do not run on the GPU machine; ``python tests/fast/test_gpu.py reference`` makes the file on the CPU
    with the oracle venvs, and a fingerprint of the weights checks that both sides built the same);
(c) the default path ("mixed": Triton kernels, CUDA graphs) against the exact path: latents and
    50-step samples at 1 epoch x 12 channels and 8 x 64, on three weight families (the official
    package's own init, needing ``$ZUNA_OFFICIAL_116`` / ``$ZUNA_OFFICIAL_011``: folders made by
    ``pip install --target``; perturbed; random), through the kernels and through their PyTorch
    twins (what runs while the kernels compile on a machine's first use);
(d) first use: fresh processes with an empty kernel cache answer a 1 x 12 reconstruction within
    2 s of ``load_model`` and an embed within 1 s, then switch to the compiled kernels.

With ``ZUNA_LAB_GPU_REPORT=path.json`` the measured numbers are written there.
"""
from __future__ import annotations

import contextlib
import gc
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import zuna_lab
from zuna_lab.testing import make_random_checkpoint

TESTS = Path(__file__).resolve().parents[1]
REFERENCE = TESTS / "data" / "official_fp32_full_size.npz"
SEED, PERTURB, STEPS, CFGS = 11, 0.02, 50, (1.0, 1.7)
N_BINS = {"ZUNA": 50, "ZUNA1.1": 100}
# the default path ("mixed": fp16 encoder and first 2 decoder blocks, bf16 other decoder blocks) against
# the exact one, relative L2: issue #21's margins (measured 0.9-2.6e-3 and 2.3-5.3e-3 on three weight
# families, kernels and twins, H100, benchmarks/results/precision.md "Third session")
SAMPLES_BOUND, LATENTS_BOUND = 8e-3, 4e-3

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


OFFICIAL_ENV = {"ZUNA1.1": "ZUNA_OFFICIAL_116", "ZUNA": "ZUNA_OFFICIAL_011"}
FAMILIES = ("official", "perturbed", "random")


def family_checkpoint(path: Path, variant: str, family: str) -> Path:
    """A full-size checkpoint of one weight family at ``path`` (written once): "official" (the
    official package's init, ``tests/oracle/official_model.py build --official-init`` with the
    package from ``$ZUNA_OFFICIAL_116`` / ``$ZUNA_OFFICIAL_011``), "perturbed" (seed 11, + 0.02
    N(0, 1) on every weight) or "random" (seed 0)."""
    import subprocess

    if (path / "model-00001-of-00001.safetensors").exists():
        return path
    if family == "perturbed":
        return make_random_checkpoint(path, variant=variant, full_size=True, seed=SEED, perturb=PERTURB)
    if family == "random":
        return make_random_checkpoint(path, variant=variant, full_size=True, seed=0)
    site = os.environ.get(OFFICIAL_ENV[variant])
    if not site:
        message = f"${OFFICIAL_ENV[variant]} (the official package for {variant}) is not set"
        if os.environ.get("ZUNA_LAB_REQUIRE_ORACLE"):
            pytest.fail(message)
        pytest.skip(message)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([site, os.environ.get("PYTHONPATH", "")]),
               TORCHDYNAMO_DISABLE="1", PYTHONWARNINGS="ignore")
    subprocess.run([sys.executable, str(TESTS / "oracle" / "official_model.py"), "build",
                    "--out", str(path), "--seed", "0", "--dim", "1024", "--n-layers", "16", "--n-heads", "8",
                    "--head-dim", "64", "--t-dim", "64", "--official-init"], check=True, env=env)
    return path


def make_inputs(n_epochs: int, n_channels: int, n_coarse: int, variant: str, seed: int = 0):
    """Tokens of ``n_epochs`` epochs, ``n_channels`` channels at random positions, ``n_coarse``
    coarse times (channel-major), one channel dropped (zeroed); tok_idx; standard-normal noise."""
    g = torch.Generator().manual_seed(seed)
    bins = torch.randint(0, N_BINS[variant], (n_channels, 3), generator=g)
    tok_idx = torch.cat([bins.repeat_interleave(n_coarse, 0),
                         torch.arange(n_coarse).repeat(n_channels)[:, None]], dim=1)
    tok_idx = tok_idx.expand(n_epochs, -1, -1).contiguous()
    tokens = (0.1 * torch.randn(n_epochs, n_channels * n_coarse, 32, generator=g)).clamp(-1, 1)
    tokens[:, n_coarse:2 * n_coarse] = 0.0
    return tokens, tok_idx, torch.randn(tokens.shape, generator=g)


def fingerprint(checkpoint: Path) -> np.ndarray:
    """Sums and sums of squares of every stored tensor (float64): the same weights on both machines."""
    from safetensors.torch import load_file

    state = load_file(str(checkpoint / "model-00001-of-00001.safetensors"))
    return np.array([[float(state[k].double().sum()), float(state[k].double().pow(2).sum())] for k in sorted(state)])


def rel_l2(ours, ref) -> float:
    ours, ref = (torch.as_tensor(t).double().cpu() for t in (ours, ref))
    return float((ours - ref).norm() / ref.norm())


def max_rel(ours, ref) -> float:
    ours, ref = (torch.as_tensor(t).double().cpu() for t in (ours, ref))
    return float((ours - ref).abs().max() / ref.abs().max())


def record(*keys, value):
    """Keep a measured number in $ZUNA_LAB_GPU_REPORT (JSON), and print it (pytest -s)."""
    print(" / ".join(keys), value)
    path = os.environ.get("ZUNA_LAB_GPU_REPORT")
    if not path:
        return
    report = json.loads(Path(path).read_text()) if Path(path).exists() else {}
    node = report
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value
    Path(path).write_text(json.dumps(report, indent=2))


def parameter_bytes(model) -> int:
    return sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])


def allocated_by(load) -> tuple:
    """(model, bytes allocated on the GPU by ``load()``, bytes requested by it).

    Allocated bytes count whole allocator blocks: an 11 MiB tensor (an fp32 SwiGLU weight) takes
    a 12 MiB block; requested bytes count the tensors themselves.
    """
    def requested():
        return torch.cuda.memory_stats().get("requested_bytes.all.current", float("nan"))

    # cuBLAS's workspace (32 MiB on an H100), taken from the caching allocator by a process's first GEMM
    # on a stream — the first model's load_model now runs one (FastZunaModel.prime) — is the process's,
    # not the model's: taken here first
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        torch.ones(16, 16, device="cuda", dtype=dtype) @ torch.ones(16, 16, device="cuda", dtype=dtype)
    gc.collect()
    torch.cuda.synchronize()
    before, before_requested = torch.cuda.memory_allocated(), requested()
    model = load()
    torch.cuda.synchronize()
    return model, torch.cuda.memory_allocated() - before, requested() - before_requested


@pytest.fixture(scope="module", params=["ZUNA", "ZUNA1.1"])
def models(request, tmp_path_factory):
    variant = request.param
    path = make_random_checkpoint(tmp_path_factory.mktemp(variant) / "ckpt", variant=variant, full_size=True,
                                  seed=SEED, perturb=PERTURB)
    fast, *fast_bytes = allocated_by(lambda: zuna_lab.load_model(path, device="cuda"))
    exact, *exact_bytes = allocated_by(lambda: zuna_lab.load_model(path, device="cuda", dtype="fp32"))
    yield dict(variant=variant, path=path, fast=fast, exact=exact, fast_bytes=fast_bytes, exact_bytes=exact_bytes)
    del fast, exact
    gc.collect()
    torch.cuda.empty_cache()


def test_memory_after_load_is_the_weights_once(models):
    from zuna_lab.fast import FastZunaModel

    variant, fast, exact = models["variant"], models["fast"], models["exact"]
    assert isinstance(fast, FastZunaModel) and fast.precision == "mixed"
    assert type(exact) is zuna_lab.ZunaModel and exact.precision == "fp32"
    assert fast.n_parameters() == exact.n_parameters()
    for label, model in (("fast", fast), ("exact", exact)):
        weights, (allocated, requested) = parameter_bytes(model), models[f"{label}_bytes"]
        record(variant, "memory", label, value=dict(allocated_gb=allocated / 1e9, requested_gb=requested / 1e9,
                                                    weights_gb=weights / 1e9, ratio=allocated / weights))
        assert not requested > 1.01 * weights, (label, requested, weights)      # nothing but the weights
    # the default path's bound (issue #12); the exact path's 96 fp32 SwiGLU weights of 11 MiB take
    # 12 MiB blocks each (+6 %), the fast path's are bf16 and fused
    assert models["fast_bytes"][0] <= 1.05 * parameter_bytes(fast)


def test_exact_path_equals_official_fp32(models):
    variant, exact = models["variant"], models["exact"]
    if not REFERENCE.exists():
        pytest.fail(f"{REFERENCE} is missing; make it with `python tests/fast/test_gpu.py reference` (oracle venvs).")
    ref = {k.split("__", 1)[1]: v for k, v in np.load(REFERENCE).items() if k.startswith(variant + "__")}
    np.testing.assert_allclose(fingerprint(models["path"]), ref["fingerprint"], rtol=1e-9,
                               err_msg="the checkpoint built here differs from the reference's")
    tokens, tok_idx, noise = (torch.from_numpy(ref[k]) for k in ("tokens", "tok_idx", "noise"))
    latents = exact.encode(tokens, tok_idx)
    errors = {"latents": (rel_l2(latents, ref["latents_fp32"]), max_rel(latents, ref["latents_fp32"]))}
    for cfg in CFGS:
        out = exact.sample(latents, tok_idx, noise=noise, steps=STEPS, cfg=cfg)
        errors[f"sample_cfg{cfg:g}"] = (rel_l2(out, ref[f"sample_fp32_cfg{cfg:g}"]),
                                        max_rel(out, ref[f"sample_fp32_cfg{cfg:g}"]))
    for name, (l2, peak) in errors.items():
        record(variant, "exact_vs_official", name, value=dict(rel_l2=l2, max_rel=peak))
    assert all(l2 <= 1e-5 for l2, _ in errors.values()), errors
    assert max_rel(ref["sample_fp32_cfg1.7"], ref["sample_fp32_cfg1"]) > 1e-2      # cfg matters
    gains = exact.decoder.conditioning(torch.tensor([1.0, 0.02], device="cuda"))
    record(variant, "gains_t1_vs_t0.02", value=rel_l2(gains[1], gains[0]))
    assert rel_l2(gains[1], gains[0]) > 1e-2          # the AdaRMSNorm gains change along the flow


@pytest.fixture(scope="module", params=[(v, f) for v in ("ZUNA", "ZUNA1.1") for f in FAMILIES], ids=lambda p: "-".join(p))
def family(request, tmp_path_factory):
    """Per variant and weight family: the exact path's latents and samples at 1 x 12 and 8 x 64, and
    the default model (its kernels compiled)."""
    variant, name = request.param
    path = family_checkpoint(tmp_path_factory.mktemp(f"{variant}_{name}") / "ckpt", variant, name)
    exact = zuna_lab.load_model(path, device="cuda", dtype="fp32")
    cases = {}
    for n_epochs, n_channels in ((1, 12), (8, 64)):
        inputs = tuple(t.cuda() for t in make_inputs(n_epochs, n_channels, 40, variant, seed=n_channels))
        latents = exact.encode(*inputs[:2])
        cases[f"{n_epochs}x{n_channels}"] = (inputs, latents, exact.sample(latents, inputs[1], noise=inputs[2], steps=STEPS))
    del exact
    fast = zuna_lab.load_model(path, device="cuda")
    assert fast.kernels_ready(wait=True)
    yield dict(variant=variant, family=name, fast=fast, cases=cases)
    del fast, cases
    gc.collect()
    torch.cuda.empty_cache()


@pytest.mark.parametrize("case", ["1x12", "8x64"])
@pytest.mark.parametrize("through", ["kernels", "twins"])
def test_default_path_close_to_exact(family, case, through):
    """Issue #21's margins, latents <= 4e-3 and 50-step samples <= 8e-3, on every weight family, both
    through the compiled kernels and through the twins that stand in while they compile."""
    from zuna_lab.fast import kernels

    fast, ((tokens, tok_idx, noise), latents, samples) = family["fast"], family["cases"][case]
    with kernels.eager() if through == "twins" else contextlib.nullcontext():
        fast_latents = fast.encode(tokens, tok_idx)
        fast_samples = fast.sample(fast_latents, tok_idx, noise=noise, steps=STEPS)
    errors = dict(latents=rel_l2(fast_latents, latents), samples=rel_l2(fast_samples, samples))
    record(family["variant"], "default_vs_exact", family["family"], through, case, value=errors)
    assert fast.precision == "mixed"
    assert 0 < errors["latents"] <= LATENTS_BOUND and 0 < errors["samples"] <= SAMPLES_BOUND, errors


COLD = r"""
import json, sys, time
import torch, zuna_lab
path, mode, recording = sys.argv[1:4]
start = time.perf_counter()
model = zuna_lab.load_model(path, device="cuda")
torch.cuda.synchronize()
out = dict(load_s=time.perf_counter() - start, ready_after_load=model.kernels_ready())
g = torch.Generator().manual_seed(0)
tokens = (0.1 * torch.randn(1, 480, 32, generator=g)).clamp(-1, 1).cuda()
tok_idx = torch.cat([torch.randint(0, 50, (12, 3), generator=g).repeat_interleave(40, 0),
                     torch.arange(40).repeat(12)[:, None]], 1)[None].cuda()
noise = torch.randn(tokens.shape, generator=g).cuda()
def call():
    start = time.perf_counter()
    if mode == "embed":
        result = zuna_lab.embed(recording, model=model, progress=False).embedding.values
    else:
        result = model.sample(model.encode(tokens, tok_idx), tok_idx, noise=noise, steps=50).cpu().numpy()
    torch.cuda.synchronize()
    return time.perf_counter() - start, result
out["first_s"], first = call()
out["ready_after_first"] = model.kernels_ready()
start = time.perf_counter()
out["compiled"] = model.kernels_ready(wait=True)
out["wait_s"] = time.perf_counter() - start
out["kernels_s"], compiled = call()
out["warm_s"], _ = call()
out["twins_vs_kernels"] = float(((first - compiled) ** 2).sum() ** 0.5 / (compiled ** 2).sum() ** 0.5)
print(json.dumps(out))
"""


def test_first_use_on_a_fresh_machine_is_instant(tmp_path):
    """Fresh processes, every cache the library uses empty (Triton's, where the compilation marker
    lives too): the first 1 x 12 reconstruction within 2 s of load_model, the first embed of a 15 s
    x 12 channel recording within 1 s; both through the twins, which agree with the compiled
    kernels once those are ready."""
    import subprocess

    import mne

    path = make_random_checkpoint(tmp_path / "ckpt", variant="ZUNA1.1", full_size=True, seed=SEED, perturb=PERTURB)
    # a machine that has run torch on its GPU before (its libraries read from disk), never zuna_lab
    subprocess.run([sys.executable, "-c", "import torch; a = torch.randn(64, 64, device='cuda'); (a @ a).sum().item()"],
                   check=True, timeout=300)
    raw = mne.io.read_raw_fif(TESTS.parent / "data" / "sample_synthetic_raw.fif", preload=True,
                              verbose="error")
    recording = tmp_path / "sample_15s_raw.fif"
    raw.crop(0, 15, include_tmax=False).pick(raw.ch_names[:12]).save(recording, verbose="error")
    for mode, limit in (("reconstruct", 2.0), ("embed", 1.0)):
        cache = tmp_path / f"triton_{mode}"
        env = dict(os.environ, TRITON_CACHE_DIR=str(cache), TORCHINDUCTOR_CACHE_DIR=str(cache))
        done = subprocess.run([sys.executable, "-c", COLD, str(path), mode, str(recording)], env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        out = json.loads(done.stdout.strip().splitlines()[-1])
        record("ZUNA1.1", "first_use", mode, value=out)
        assert not out["ready_after_load"] and out["compiled"], out      # an empty cache: compiled meanwhile
        assert out["first_s"] <= limit, out
        assert out["twins_vs_kernels"] < 1e-2, out


def make_reference():
    """Write REFERENCE: per variant the checkpoint's fingerprint, inputs, and the official fp32
    latents and samples (oracle venvs, CPU). Also checks zuna_lab's CPU fp32 path against them."""
    import tempfile

    sys.path.insert(0, str(TESTS))
    from oracle_support import run_oracle

    arrays = {}
    for variant in ("ZUNA", "ZUNA1.1"):
        with tempfile.TemporaryDirectory() as work:
            work = Path(work)
            path = make_random_checkpoint(work / "ckpt", variant=variant, full_size=True, seed=SEED, perturb=PERTURB)
            tokens, tok_idx, noise = make_inputs(2, 7, 5, variant, seed=3)
            np.savez(work / "inputs.npz", tokens=tokens.numpy(), tok_idx=tok_idx.numpy(), noise=noise.numpy(),
                     steps=STEPS, cfgs=np.array(CFGS))
            run_oracle(variant, "official_model.py", "run", "--ckpt", path, "--inputs", work / "inputs.npz",
                       "--out", work / "official.npz", timeout=3600)
            official = dict(np.load(work / "official.npz"))
            found = dict(fingerprint=fingerprint(path), tokens=tokens.numpy(), tok_idx=tok_idx.numpy(),
                         noise=noise.numpy(), **{k: v for k, v in official.items() if k != "version"})
            arrays.update({f"{variant}__{k}": v for k, v in found.items()})
            model = zuna_lab.load_model(path, device="cpu", dtype="fp32")
            latents = model.encode(tokens, tok_idx)
            out = model.sample(latents, tok_idx, noise=noise, steps=STEPS, cfg=CFGS[1])
            print(variant, "official", official["version"], "zuna_lab CPU fp32 vs official: latents",
                  max_rel(latents, official["latents_fp32"]), "sample cfg 1.7",
                  max_rel(out, official["sample_fp32_cfg1.7"]), flush=True)
    REFERENCE.parent.mkdir(exist_ok=True)
    np.savez_compressed(REFERENCE, **arrays)


if __name__ == "__main__":
    if sys.argv[1:] != ["reference"]:
        sys.exit("usage: python tests/fast/test_gpu.py reference")
    make_reference()
