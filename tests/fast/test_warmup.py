"""First use of the CUDA fast path: the kernels' PyTorch twins (zuna_lab.fast.eager) stand in while a
background process compiles the kernels (zuna_lab.fast.warmup, .precompile).

Without a GPU the kernels run under Triton's interpreter (``TRITON_INTERPRET=1``); the timing of a
real first use is measured on the GPU by tests/fast/test_gpu.py.
"""
import json
import os
import subprocess
import sys

import pytest
import torch

from zuna_lab.config import ModelConfig
from zuna_lab.fast import FastOptions, build, eager, kernels, precompile, runner, warmup
from zuna_lab.testing import random_model

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
if not kernels.available(DEVICE):
    if os.environ.get("ZUNA_LAB_REQUIRE_TRITON"):
        raise RuntimeError("Triton kernels cannot run here: install triton and set TRITON_INTERPRET=1 without a GPU.")
    pytest.skip("needs Triton (and TRITON_INTERPRET=1 without a GPU)", allow_module_level=True)

EXACT = FastOptions(precision="fp32", cuda_graphs=False)
TWINS = ("add_rms_norm", "rope_heads", "swiglu", "attention", "matmul_swiglu", "matmul_rope_heads", "lowrank_kv")


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(DEVICE)


def both(name, *args, **kwargs):
    """(kernel result, twin result) of one call, each on its own copies of the tensors."""
    def copies():
        return ([a.clone() if torch.is_tensor(a) else a for a in args],
                {k: (v.clone() if torch.is_tensor(v) else v) for k, v in kwargs.items()})
    a, kw = copies()
    out = getattr(kernels, name)(*a, **kw)
    a, kw = copies()
    with kernels.eager():
        twin = getattr(kernels, name)(*a, **kw)
    return out, twin


def assert_same(out, twin):
    if torch.is_tensor(out):
        assert twin.shape == out.shape and twin.dtype == out.dtype and twin.is_contiguous() == out.is_contiguous()
        torch.testing.assert_close(twin, out, rtol=1e-4, atol=1e-5)
    else:
        assert len(out) == len(twin)
        for o, t in zip(out, twin):
            assert_same(o, t)


def test_every_public_kernel_has_a_twin_that_computes_the_same():
    head_dim, n_heads, n_kv = 16, 4, 2
    cos, sin = randn(2, 9, head_dim // 2, seed=5), randn(2, 9, head_dim // 2, seed=6)
    gain = randn(head_dim, seed=7)
    h, delta, early = randn(2, 9, 64, seed=1), randn(2, 9, 64, seed=2), randn(2, 9, 64, seed=3)
    assert_same(*both("add_rms_norm", h, delta, randn(2, 64, seed=4), 1e-5, post_weight=randn(64, seed=8),
                      post_eps=1e-6, out_dtype=torch.float32, earlier=(early, randn(64, seed=9), 1e-6)))
    assert_same(*both("add_rms_norm", h, delta, randn(64, seed=4), 1e-5, out_dtype=torch.float32, store_h=False))
    fused = randn(2, 9, (n_heads + 2 * n_kv) * head_dim)
    assert_same(*both("rope_heads", fused, cos, sin, n_q=n_heads, n_k=n_kv, n_v=n_kv, head_dim=head_dim,
                      q_gain=gain, k_gain=randn(head_dim, seed=8)))
    assert_same(*both("swiglu", randn(3, 5, 80)))
    q, k, v = randn(2, 9, n_heads, head_dim), randn(2, 9, n_kv, head_dim, seed=1), randn(2, 9, n_kv, head_dim, seed=2)
    assert_same(*both("attention", q, k, v))
    assert_same(*both("attention", q, k, v, rope=(cos, sin), q_gain=gain))
    x = randn(2, 9, 64, seed=3)
    if kernels.gemm_fusable(64, head_dim):      # the GEMMs with epilogues need Triton's TMA descriptors
        assert_same(*both("matmul_swiglu", x, randn(2 * 48, 64, seed=4) / 8))
        assert_same(*both("matmul_rope_heads", x, randn(8 * head_dim, 64, seed=4) / 8, cos, sin, n_q=n_heads,
                          n_k=n_kv, n_v=n_kv, head_dim=head_dim, q_gain=gain, k_gain=gain))
    weights = randn(3, 2 * n_kv * head_dim, 64, seed=4) / 8
    assert_same(*both("lowrank_kv", randn(2, 9, 64, seed=3), weights, cos, sin, n_kv=n_kv, head_dim=head_dim,
                      k_gain=randn(3, head_dim, seed=7), out_dtype=torch.float32))
    assert set(TWINS) <= set(dir(eager))


def test_eager_mode_is_per_thread_and_restored():
    import threading
    seen = []
    with kernels.eager():
        thread = threading.Thread(target=lambda: seen.append(getattr(kernels._local, "eager", False)))
        thread.start()
        thread.join()
        with kernels.eager():
            pass
        assert kernels._local.eager
    assert seen == [False] and not kernels._local.eager


def _tiny(variant="ZUNA1.1"):
    config = ModelConfig.from_hf({"dim": 64, "n_layers": 2, "head_dim": 16, "n_heads": 4}, variant=variant)
    reference = random_model(config, seed=1).to(DEVICE)
    tokens = (0.3 * randn(2, 24, 32, seed=2)).clamp(-1, 1)
    tok_idx = (randn(2, 24, 4, seed=3).abs() * 8).long().clamp(0, 40)
    return reference, tokens, tok_idx, randn(2, 24, 32, seed=4)


class Sleeper:
    """A compilation that ends when told to."""

    def __init__(self):
        self.process = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)

    def finish(self):
        self.process.stdin.close()
        self.process.wait(30)


@pytest.mark.parametrize("variant", ["ZUNA", "ZUNA1.1"])
def test_model_runs_the_twins_until_the_kernels_are_compiled(variant, monkeypatch):
    """While the background compilation runs, encode and sample give the reference's results through
    the twins (no kernel launched); once it has ended, the kernels run."""
    reference, tokens, tok_idx, noise = _tiny(variant)
    latents = reference.encode(tokens, tok_idx)
    samples = reference.sample(latents, tok_idx, noise=noise, steps=2, cfg=1.5)
    fast = build(reference, EXACT)
    assert fast.kernels_ready(wait=True) and (DEVICE.type == "cuda" or fast._warmup.returncode is None)
    sleeper = Sleeper()
    fast._warmup = warmup.Warmup(sleeper.process)
    launched = []
    for name in TWINS:
        monkeypatch.setattr(kernels, f"_{name}_kernel", object())     # a launch would fail
    real_twins = {name: getattr(eager, name) for name in TWINS}
    counted = {name: (lambda fn: lambda *a, **kw: launched.append(1) or fn(*a, **kw))(fn) for name, fn in real_twins.items()}
    for name, fn in counted.items():
        monkeypatch.setattr(eager, name, fn)
    try:
        assert not fast.kernels_ready()
        torch.testing.assert_close(fast.encode(tokens, tok_idx), latents, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(fast.sample(latents, tok_idx, noise=noise, steps=2, cfg=1.5), samples,
                                   rtol=1e-4, atol=1e-5)
        assert launched                               # ... all through the twins
    finally:
        sleeper.finish()
    assert fast.kernels_ready() and fast._warmup.returncode == 0
    monkeypatch.undo()
    launched.clear()
    torch.testing.assert_close(fast.encode(tokens, tok_idx), latents, rtol=1e-4, atol=1e-5)
    assert not launched


def test_prime_runs_what_a_first_call_runs_and_keeps_nothing(monkeypatch):
    """prime() (load_model's, on CUDA) runs the encoder and one sampler step through the twins while the
    kernels compile: no kernel launched, no graph captured, later results unchanged."""
    reference, tokens, tok_idx, noise = _tiny()
    latents = reference.encode(tokens, tok_idx)
    fast = build(reference, EXACT)
    fast.kernels_ready(wait=True)
    sleeper = Sleeper()
    fast._warmup = warmup.Warmup(sleeper.process)
    launched, encoded, sampled = [], [], []
    for name in TWINS:
        monkeypatch.setattr(kernels, f"_{name}_kernel", object())     # a launch would fail
        monkeypatch.setattr(eager, name, (lambda fn: lambda *a, **kw: launched.append(1) or fn(*a, **kw))(
            getattr(eager, name)))
    monkeypatch.setattr(fast.encoder, "forward", (lambda fn: lambda *a: encoded.append(a[0].shape) or fn(*a))(
        fast.encoder.forward))
    real_sample = runner.sample
    monkeypatch.setattr(runner, "sample", lambda *a, **kw: sampled.append(kw["steps"]) or real_sample(*a, **kw))
    try:
        assert fast.prime() is fast
    finally:
        sleeper.finish()
    assert launched and encoded == [(1, 480, 32)] and sampled == [1] and len(fast._graphs) == 0
    monkeypatch.undo()
    torch.testing.assert_close(fast.encode(tokens, tok_idx), latents, rtol=1e-4, atol=1e-5)


def test_twins_keep_the_mixed_precision_within_its_margins():
    """The default precision through the twins: fp16 encoder and bf16 decoder GEMMs, as close to the
    exact path as the kernels are (2e-3 / 8e-3 at this size)."""
    reference, tokens, tok_idx, noise = _tiny()
    latents = reference.encode(tokens, tok_idx)
    samples = reference.sample(latents, tok_idx, noise=noise, steps=3)
    fast = build(reference, FastOptions(cuda_graphs=False))
    with kernels.eager():
        ours = fast.encode(tokens, tok_idx)
        ours_samples = fast.sample(ours, tok_idx, noise=noise, steps=3)
    rel = lambda a, b: float((a - b).norm() / b.norm())   # noqa: E731
    assert 1e-5 < rel(ours, latents) < 2e-3 and 1e-5 < rel(ours_samples, samples) < 8e-3


def _fake_gpu_launch(fast, monkeypatch):
    """A stand-in of ``fast`` on a CUDA device (capability 9.0), and the precompile processes start()
    launches recorded instead of run: (model, launched argvs, the Sleeper standing for the process)."""
    launched = []

    class FakeModel:
        config, precision, device, decoder = fast.config, fast.precision, torch.device("cuda", 0), fast.decoder

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    sleeper = Sleeper()
    monkeypatch.setattr(warmup.subprocess, "Popen", lambda argv, **kw: launched.append(argv) or sleeper.process)
    return FakeModel, launched, sleeper


def test_precompile_writes_the_marker_that_start_looks_for(tmp_path, monkeypatch):
    """start() on a GPU model without its marker launches ``python -m zuna_lab.fast.precompile``
    with arguments that rebuild the same architecture; the child's work leaves the marker, after
    which start() launches nothing."""
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path))
    reference, *_ = _tiny()
    fast = build(reference, EXACT)
    FakeModel, launched, sleeper = _fake_gpu_launch(fast, monkeypatch)
    job = warmup.start(FakeModel)
    assert launched and launched[0][:3] == [sys.executable, "-m", "zuna_lab.fast.precompile"]
    config_json, precision, device, fp16_blocks = launched[0][3:]
    assert ModelConfig(**json.loads(config_json)) == fast.config
    assert (precision, device, fp16_blocks) == ("fp32", "cuda:0", "0")
    assert not job.ready()
    sleeper.finish()
    assert job.wait(30) and job.ready()
    # the child's work, on this device (small shapes: the interpreter is slow), for the GPU's marker
    monkeypatch.setattr(precompile, "marker", lambda config, precision, device, blocks: warmup.marker(
        config, precision, FakeModel.device, blocks))
    path = precompile.compile_kernels(ModelConfig(**json.loads(config_json)), precision, DEVICE, shapes=((1, 2),))
    assert path.parent == tmp_path and path.exists()
    launched.clear()
    assert warmup.start(FakeModel).ready() and not launched
    # another precision or architecture is another marker
    assert warmup.marker(fast.config, "mixed", FakeModel.device) != path
    assert warmup.marker(fast.config.replace(n_layers=3), "fp32", FakeModel.device) != path
    assert warmup.marker(fast.config, "fp32", FakeModel.device, 1) != path


def test_precompile_builds_the_same_fp16_decoder_blocks(tmp_path, monkeypatch):
    """A "mixed" model with fp16 decoder blocks: start() passes their number, and the child's random
    model has the same blocks in fp16 (their kernels compiled) and writes the marker that start() reads."""
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path))
    reference, *_ = _tiny()
    fast = build(reference, FastOptions(cuda_graphs=False, decoder_fp16_blocks=1))
    assert warmup.fp16_blocks(fast) == 1
    FakeModel, launched, sleeper = _fake_gpu_launch(fast, monkeypatch)
    warmup.start(FakeModel)
    sleeper.finish()
    assert launched[0][4:] == ["mixed", "cuda:0", "1"]
    built = []
    real = precompile.FastZunaModel
    monkeypatch.setattr(precompile, "FastZunaModel", lambda *a, **kw: built.append(real(*a, **kw)) or built[-1])
    monkeypatch.setattr(precompile, "marker", lambda config, precision, device, blocks: warmup.marker(
        config, precision, FakeModel.device, blocks))
    path = precompile.compile_kernels(fast.config, "mixed", DEVICE, shapes=((1, 2),), decoder_fp16_blocks=1)
    assert warmup.fp16_blocks(built[0]) == 1 and path == warmup.marker(fast.config, "mixed", FakeModel.device, 1)
    launched.clear()
    assert warmup.start(FakeModel).ready() and not launched


def test_a_failed_compilation_warns_once_and_lets_the_kernels_compile_on_their_first_call(tmp_path):
    from zuna_lab.errors import ZunaLabWarning

    log = tmp_path / "warmup.log"
    job = warmup.Warmup(subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"]), log)
    job.process.wait(30)
    with pytest.warns(ZunaLabWarning, match="failed .*warmup.log"):
        assert job.ready()
    assert job.returncode == 3 and not job.wait() and job.ready()
