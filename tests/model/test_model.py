"""Loading checkpoints: layouts, strictness, clear errors, hub resolution, full size."""
from __future__ import annotations

import json
import shutil
import time

import pytest
import torch
from safetensors.torch import load_file, save_file

import zuna_lab
from zuna_lab.errors import CheckpointError, WeightsUnavailableError, ZunaValueError
from zuna_lab.model.hub import CONFIG_NAME, WEIGHTS_NAME
from zuna_lab.testing import make_random_checkpoint


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_random_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", variant="ZUNA", seed=1)


def inputs(n_docs=2, n_tokens=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    tokens = (0.3 * torch.randn(n_docs, n_tokens, 32, generator=g)).clamp(-1, 1)
    tok_idx = torch.randint(0, 40, (n_docs, n_tokens, 4), generator=g)
    return tokens, tok_idx


@pytest.mark.parametrize("variant", ["ZUNA", "ZUNA1.1"])
@pytest.mark.parametrize("key_prefix", [False, True])
def test_layouts_load_identically(tmp_path, variant, key_prefix):
    plain = zuna_lab.load_model(make_random_checkpoint(tmp_path / "a", variant=variant, seed=4), device="cpu")
    other = zuna_lab.load_model(
        make_random_checkpoint(tmp_path / "b", variant=variant, seed=4, key_prefix=key_prefix), device="cpu")
    assert plain.variant == other.variant == variant
    stored = load_file(str(tmp_path / "b" / WEIGHTS_NAME))
    assert all(k.startswith("model.") == key_prefix for k in stored)
    tokens, tok_idx = inputs()
    assert torch.equal(plain.encode(tokens, tok_idx), other.encode(tokens, tok_idx))


def test_bf16_file_and_sources(tmp_path, tiny):
    path = make_random_checkpoint(tmp_path / "bf16", seed=1, dtype=torch.bfloat16)
    assert next(iter(load_file(str(path / WEIGHTS_NAME)).values())).dtype == torch.bfloat16
    a = zuna_lab.load_model(path, device="cpu")
    b = zuna_lab.load_model(tiny, device="cpu")
    tokens, tok_idx = inputs()
    # bf16 storage rounds weights: close to, not equal to, the fp32 file of the same seed
    rel = (a.encode(tokens, tok_idx) - b.encode(tokens, tok_idx)).norm() / b.encode(tokens, tok_idx).norm()
    assert 0 < rel < 5e-2
    by_file = zuna_lab.load_model(tiny / WEIGHTS_NAME, device="cpu")
    by_pair = zuna_lab.load_model((tiny / CONFIG_NAME, tiny / WEIGHTS_NAME), device="cpu")
    assert torch.equal(by_file.encode(tokens, tok_idx), b.encode(tokens, tok_idx))
    assert torch.equal(by_pair.encode(tokens, tok_idx), b.encode(tokens, tok_idx))
    assert by_file.source == str(tiny / WEIGHTS_NAME)


def test_n_heads_absent_means_8(tmp_path):
    path = make_random_checkpoint(tmp_path / "h8", dim=64, n_heads=8, head_dim=8)
    config = json.loads((path / CONFIG_NAME).read_text())
    del config["model"]["n_heads"]
    (path / CONFIG_NAME).write_text(json.dumps(config))
    model = zuna_lab.load_model(path, device="cpu")
    assert model.config.n_heads == 8 and model.config.head_dim == 8


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_renamed_key_is_named(tmp_path, tiny):
    path = _copy(tiny, tmp_path / "renamed")
    state = load_file(str(path / WEIGHTS_NAME))
    state["decoder.layers.0.attention.wq_renamed.weight"] = state.pop("decoder.layers.0.attention.wq.weight")
    save_file(state, str(path / WEIGHTS_NAME))
    with pytest.raises(CheckpointError, match=r"'decoder\.layers\.0\.attention\.wq_renamed\.weight' is not part of a ZUNA model"):
        zuna_lab.load_model(path, device="cpu")
    del state["decoder.layers.0.attention.wq_renamed.weight"]
    save_file(state, str(path / WEIGHTS_NAME))
    with pytest.raises(CheckpointError, match=r"missing key 'decoder\.layers\.0\.attention\.wq\.weight'"):
        zuna_lab.load_model(path, device="cpu")


def test_wrong_shape_is_named(tmp_path, tiny):
    path = _copy(tiny, tmp_path / "shape")
    state = load_file(str(path / WEIGHTS_NAME))
    state["encoder.output.weight"] = torch.zeros(16, 64)
    save_file(state, str(path / WEIGHTS_NAME))
    with pytest.raises(CheckpointError, match=r"'encoder\.output\.weight' has shape \[16, 64\] but config\.json implies \[32, 64\]"):
        zuna_lab.load_model(path, device="cpu")


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_at_load(tmp_path, tiny, bad):
    """One NaN (or Inf) in one encoder tensor would make every embedding NaN: refused when loading, the
    tensor named (issue R)."""
    path = _copy(tiny, tmp_path / "nan")
    state = load_file(str(path / WEIGHTS_NAME))
    name = next(k for k in state if k.startswith("encoder.") and k.endswith(".weight"))
    state[name] = state[name].clone()
    state[name].view(-1)[3] = bad
    save_file(state, str(path / WEIGHTS_NAME))
    with pytest.raises(CheckpointError, match=rf"'{name}' holds 1 NaN or infinite value\(s\)"):
        zuna_lab.load_model(path, device="cpu")


def test_non_finite_model_output_is_never_passed_on(tmp_path, tiny, monkeypatch):
    """Latents or samples that come out NaN from finite input (an overflow, weights damaged in memory)
    raise one sentence instead of passing for padding; no output folder is left behind."""
    from zuna_lab.errors import ModelOutputError
    from zuna_lab.synthetic import make_synthetic_raw

    model = zuna_lab.load_model(tiny, device="cpu")
    raw = make_synthetic_raw(duration=12.0, seed=0, verbose=False)
    honest = model._encode
    monkeypatch.setattr(model, "_encode", lambda tokens, tok_idx: honest(tokens, tok_idx) * float("nan"))
    with pytest.raises(ModelOutputError, match="NaN or infinite latents from finite input"):
        zuna_lab.embed(raw, model=model, progress=False)
    with pytest.raises(ModelOutputError, match="NaN or infinite latents"):
        zuna_lab.embed(raw, model=model, out=tmp_path / "e.zarr", progress=False)
    assert not any(tmp_path.iterdir())
    monkeypatch.undo()
    honest_sample = model._sample
    monkeypatch.setattr(model, "_sample", lambda *a, **k: honest_sample(*a, **k) + float("inf"))
    with pytest.raises(ModelOutputError, match="NaN or infinite samples"):
        zuna_lab.reconstruct(raw, model=model, bad_channels=["Cz"], steps=1, seed=0, progress=False)


def test_truncated_file(tmp_path, tiny):
    path = _copy(tiny, tmp_path / "truncated")
    data = (path / WEIGHTS_NAME).read_bytes()
    (path / WEIGHTS_NAME).write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        zuna_lab.load_model(path, device="cpu")


def test_three_errors_are_distinct(tmp_path, tiny):
    messages = []
    for name, edit in [("renamed", lambda s: s.__setitem__("x.y", s.pop("encoder.norm.weight"))),
                       ("shape", lambda s: s.__setitem__("encoder.norm.weight", torch.ones(3)))]:
        path = _copy(tiny, tmp_path / name)
        state = load_file(str(path / WEIGHTS_NAME))
        edit(state)
        save_file(state, str(path / WEIGHTS_NAME))
        with pytest.raises(CheckpointError) as info:
            zuna_lab.load_model(path, device="cpu")
        messages.append(str(info.value))
    path = _copy(tiny, tmp_path / "trunc")
    (path / WEIGHTS_NAME).write_bytes((path / WEIGHTS_NAME).read_bytes()[:1000])
    with pytest.raises(CheckpointError) as info:
        zuna_lab.load_model(path, device="cpu")
    messages.append(str(info.value))
    assert len(set(messages)) == 3
    assert all(message.count(".") >= 1 and "\n" not in message for message in messages)


def test_config_errors(tmp_path, tiny):
    path = _copy(tiny, tmp_path / "cfg")
    (path / CONFIG_NAME).write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        zuna_lab.load_model(path, device="cpu")
    (path / CONFIG_NAME).write_text(json.dumps({"dim": 64}))
    with pytest.raises(CheckpointError, match='no "model" object'):
        zuna_lab.load_model(path, device="cpu")
    config = json.loads((tiny / CONFIG_NAME).read_text())
    config["model"]["encoder_latent_downsample_factor"] = 2
    (path / CONFIG_NAME).write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="encoder_latent_downsample_factor=2"):
        zuna_lab.load_model(path, device="cpu")
    with pytest.raises(CheckpointError, match="neither an existing directory"):
        zuna_lab.load_model(str(tmp_path / "no" / "such" / "dir"), device="cpu")
    (path / WEIGHTS_NAME).unlink()
    with pytest.raises(CheckpointError, match="No weights"):
        zuna_lab.load_model(path, device="cpu")


def fake_hub_cache(cache, repo_id, checkpoint, sha="0123456789abcdef0123456789abcdef01234567"):
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / sha
    snapshot.mkdir(parents=True)
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        shutil.copy(checkpoint / name, snapshot / name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(sha)
    return sha


def test_hub_offline_cache(tmp_path, tiny, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    sha = fake_hub_cache(tmp_path / "hub", "Zyphra/ZUNA", tiny)
    model = zuna_lab.load_model("Zyphra/ZUNA", device="cpu", cache_dir=tmp_path / "hub")
    assert model.source == "Zyphra/ZUNA" and model.revision == sha and model.variant == "ZUNA"


def test_hub_unreachable_says_how_to_pass_a_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(WeightsUnavailableError, match=r"pass that directory.*load_model\('/path/to/ZUNA'\)"):
        zuna_lab.load_model("Zyphra/ZUNA1.1", device="cpu", cache_dir=tmp_path / "empty")
    assert time.perf_counter() - start < 5


def test_default_source_env(tmp_path, tiny, monkeypatch):
    monkeypatch.setenv("ZUNA_LAB_MODEL", str(tiny))
    model = zuna_lab.load_model(device="cpu")
    assert model.source == str(tiny)
    assert model.is_random          # random checkpoints say so in config.json


def test_low_level_api_validation(tiny):
    model = zuna_lab.load_model(tiny, device="cpu")
    tokens, tok_idx = inputs()
    with pytest.raises(ZunaValueError, match=r"tokens must have shape \[batch, n_tokens, 32\]"):
        model.encode(tokens[..., :16], tok_idx)
    with pytest.raises(ZunaValueError, match=r"tok_idx values must lie in \[0, 49\]"):
        model.encode(tokens, tok_idx + 45)
    with pytest.raises(TypeError, match="integer positions"):
        model.encode(tokens, tok_idx.float())
    latents = model.encode(tokens, tok_idx)
    with pytest.raises(ZunaValueError, match="noise must have shape"):
        model.sample(latents, tok_idx, noise=torch.zeros(1, 2, 32))
    with pytest.raises(ZunaValueError, match="steps must be a positive integer"):
        model.sample(latents, tok_idx, steps=0)
    with pytest.raises(ZunaValueError, match="dtype must be"):
        zuna_lab.load_model(tiny, device="cpu", dtype="fp8")
    for dtype in ("fp16", "mixed", torch.float16):        # the CUDA fast path's precisions
        with pytest.raises(ZunaValueError, match="is the CUDA fast path's; on cpu use dtype='bf16' or 'fp32'"):
            zuna_lab.load_model(tiny, device="cpu", dtype=dtype)


def test_sampling_is_seeded_and_token_order_free(tiny):
    model = zuna_lab.load_model(tiny, device="cpu")
    tokens, tok_idx = inputs()
    latents = model.encode(tokens, tok_idx)
    a = model.sample(latents, tok_idx, steps=4, generator=torch.Generator().manual_seed(0))
    b = model.sample(latents, tok_idx, steps=4, generator=torch.Generator().manual_seed(0))
    c = model.sample(latents, tok_idx, steps=4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, c)
    # positions travel in tok_idx: permuting tokens permutes the latents
    perm = torch.randperm(tokens.shape[1], generator=torch.Generator().manual_seed(3))
    permuted = model.encode(tokens[:, perm], tok_idx[:, perm])
    torch.testing.assert_close(permuted, latents[:, perm], atol=1e-5, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("variant,n_params", [("ZUNA", 382_018_656), ("ZUNA1.1", 382_106_720)])
def test_full_size_checkpoint(tmp_path, variant, n_params):
    path = make_random_checkpoint(tmp_path / variant, variant=variant, full_size=True, dtype=torch.bfloat16)
    model = zuna_lab.load_model(path, device="cpu")
    assert model.n_parameters() == n_params
    assert (model.config.dim, model.config.n_layers, model.config.n_heads, model.config.head_dim) == (1024, 16, 8, 64)
    tokens, tok_idx = inputs(n_docs=1, n_tokens=8)
    latents = model.encode(tokens, tok_idx)
    assert latents.shape == (1, 8, 32) and torch.isfinite(latents).all()
    out = model.sample(latents, tok_idx, steps=1, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(out).all()


def test_bf16_policy_and_precision_switch(tiny):
    """bf16: the attention and SwiGLU weights in bf16, the 32-wide projections and time conditioning fp32."""
    model = zuna_lab.load_model(tiny, device="cpu", dtype="fp32")
    tokens, tok_idx = inputs(n_tokens=10)
    noise = torch.randn(*tokens.shape, generator=torch.Generator().manual_seed(0))
    exact = model.sample(model.encode(tokens, tok_idx), tok_idx, noise=noise, steps=3)
    # the reference model's plain bf16 policy (on the CPU, dtype="bf16" gives the CPU fast path:
    # tests/fast/test_cpu.py)
    half = zuna_lab.load_model(tiny, device="cpu", dtype="fp32").set_precision("bf16")
    assert half.precision == "bf16" and half.n_parameters() == model.n_parameters()
    for part in (half.encoder.blocks[0], half.decoder.blocks[0]):
        assert part.attention.wq.weight.dtype == part.feed_forward.w2.weight.dtype == torch.bfloat16
        assert part.attention.q_norm is None                                     # ZUNA: no QK-norm
    assert half.decoder.embed.weight.dtype == half.encoder.out.weight.dtype == torch.float32
    assert half.decoder.blocks[0].ffn_norm.gain.weight.dtype == torch.float32
    out = half.sample(half.encode(tokens, tok_idx), tok_idx, noise=noise, steps=3)
    assert 0 < float((out - exact).norm() / exact.norm()) < 2e-2
    assert model.set_precision("bf16").encoder.blocks[0].feed_forward.w1.weight.dtype == torch.bfloat16
    with pytest.raises(ZunaValueError, match="precision must be one of"):
        model.set_precision("fp16")


def test_reference_model_is_plain_pytorch():
    """zuna_lab.model imports no Triton and holds no fast-path code (zuna_lab.api.loading picks the path)."""
    import subprocess
    import sys
    from pathlib import Path

    code = "import sys, zuna_lab, zuna_lab.model; sys.exit('triton' in sys.modules or 'zuna_lab.fast' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
    for path in Path(zuna_lab.model.__file__).parent.glob("*.py"):
        text = path.read_text()
        assert "triton" not in text.lower() and "kernels" not in text and "fused" not in text, path.name
        assert "import fast" not in text and "fast_path" not in text, path.name


def test_rope_angles_on_cpu_are_correctly_rounded():
    # torch's threaded fp32 CPU cos was off by up to 1.5e-4 on one thread's share of a large tensor
    # in ~5 % of fresh processes, so the same recording embedded differently in two processes
    # (seen in CI on tutorial 04). The angles are now the fp64 values rounded to fp32.
    from zuna_lab.model.layers import rope_angles
    tok_idx = torch.randint(0, 50, (8, 1520, 4), generator=torch.Generator().manual_seed(0))
    cos, sin = rope_angles(tok_idx, 16, 10000.0)
    inv_freq = 1.0 / (10000.0 ** (torch.arange(0, 4, 2).float() / 4))
    angles = (tok_idx.float().unsqueeze(-1) * inv_freq).flatten(-2).double()
    assert cos.dtype == sin.dtype == torch.float32 and cos.shape == (8, 1520, 8)
    assert torch.equal(cos, angles.cos().float()) and torch.equal(sin, angles.sin().float())


@pytest.mark.parametrize("device", ["meta", "tpu", ""])
def test_unusable_device_is_one_sentence(device, random_checkpoint, tmp_path):
    """Found by test_fuzz (issue R): device="meta" loaded the model and failed in the first forward pass with
    torch's "Tensor.item() cannot be called on meta tensors"; it is refused at load, as an unknown name is."""
    with pytest.raises(ZunaValueError, match="device must be 'auto', 'cpu', 'cuda' or 'cuda:N'") as info:
        zuna_lab.load_model(random_checkpoint("ZUNA"), device=device)
    assert "\n" not in str(info.value) and str(info.value).endswith(".")
