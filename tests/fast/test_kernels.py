"""The CUDA fast path (zuna_lab.fast: Triton kernels, fused blocks, the built model) against the
plain PyTorch reference model.

Without a GPU they run under Triton's interpreter (``TRITON_INTERPRET=1``, set by
tests/run_tests.sh), in fp32: the interpreter rounds to bf16 by truncation, unlike the GPU, so
bf16 accuracy is measured on the GPU by tests/fast/test_gpu.py instead. On a GPU the file runs as it
is: the GEMM kernels take fp32 operands in exact fp32 unless torch allows TF32 (off by default).
"""
import os
import warnings

import pytest
import torch

from zuna_lab.config import ModelConfig
from zuna_lab.errors import ZunaTypeError, ZunaValueError
from zuna_lab.fast import FastOptions, FastZunaModel, kernels, runner
from zuna_lab.fast import build as build_fast
from zuna_lab.model import ZunaModel
from zuna_lab.model.layers import rms_norm, rope
from zuna_lab.testing import random_model

EXACT = FastOptions(precision="fp32", cuda_graphs=False)


def build(model, options=None):
    """The fast model with its kernels compiled (on a GPU, not their twins while they compile)."""
    fast = build_fast(model, options)
    fast.kernels_ready(wait=True)
    return fast

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
if not kernels.available(DEVICE):
    if os.environ.get("ZUNA_LAB_REQUIRE_TRITON"):
        raise RuntimeError("Triton kernels cannot run here: install triton and set TRITON_INTERPRET=1 without a GPU.")
    pytest.skip("needs Triton (and TRITON_INTERPRET=1 without a GPU)", allow_module_level=True)


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(DEVICE)


@pytest.mark.parametrize("post", [False, True])
@pytest.mark.parametrize("per_batch_gain", [False, True])
def test_add_rms_norm_matches_reference(post, per_batch_gain):
    h, delta = randn(2, 5, 48, seed=1), randn(2, 5, 48, seed=2)
    gain = randn(2, 48, seed=3) if per_batch_gain else randn(48, seed=3)
    post_weight = randn(48, seed=4) if post else None
    expected_h = h + (rms_norm(delta, post_weight, 1e-6) if post else delta)
    expected_x = rms_norm(expected_h, gain.unsqueeze(1) if per_batch_gain else gain, 1e-5)
    new_h, x = kernels.add_rms_norm(h.clone(), delta, gain, 1e-5, post_weight=post_weight, post_eps=1e-6,
                                    out_dtype=torch.float32)
    torch.testing.assert_close(new_h, expected_h)
    torch.testing.assert_close(x, expected_x)
    # delta=None: the norm alone, the residual untouched
    same_h, x_only = kernels.add_rms_norm(h.clone(), None, gain, 1e-5, out_dtype=torch.float32)
    torch.testing.assert_close(same_h, h)
    torch.testing.assert_close(x_only, rms_norm(h, gain.unsqueeze(1) if per_batch_gain else gain, 1e-5))


@pytest.mark.parametrize("post", [False, True])
def test_add_rms_norm_recomputes_an_unstored_residual(post):
    """store_h=False leaves h as it was; the next call with ``earlier`` gives the same h and x as
    two ordinary calls (bit for bit: the same fp32 operations)."""
    h, first, second = randn(2, 5, 48, seed=1), randn(2, 5, 48, seed=2), randn(2, 5, 48, seed=3)
    gain, post_weight = randn(48, seed=4), (randn(48, seed=5) if post else None)
    options = dict(post_weight=post_weight, post_eps=1e-6, out_dtype=torch.float32)
    h_mid, x_mid = kernels.add_rms_norm(h.clone(), first, gain, 1e-5, **options)
    h_end, x_end = kernels.add_rms_norm(h_mid.clone(), second, gain, 1e-5, **options)
    kept, x_skip = kernels.add_rms_norm(h.clone(), first, gain, 1e-5, store_h=False, **options)
    torch.testing.assert_close(kept, h, rtol=0, atol=0)
    torch.testing.assert_close(x_skip, x_mid, rtol=0, atol=0)
    h_again, x_again = kernels.add_rms_norm(h.clone(), second, gain, 1e-5,
                                            earlier=(first, post_weight, 1e-6), **options)
    torch.testing.assert_close(h_again, h_end, rtol=0, atol=0)
    torch.testing.assert_close(x_again, x_end, rtol=0, atol=0)


def _sdpa_reference(q, k, v):
    group = q.shape[2] // k.shape[2]
    k, v = (t.repeat_interleave(group, dim=2) for t in (k, v))
    out = torch.nn.functional.scaled_dot_product_attention(*(t.transpose(1, 2) for t in (q, k, v)))
    return out.transpose(1, 2)


@pytest.mark.parametrize("tiles", [(16, 16, 4, 1), (32, 64, 4, 2), None])
@pytest.mark.parametrize("n_kv", [4, 2])
def test_attention_matches_sdpa(tiles, n_kv, monkeypatch):
    # 45 queries and keys: no whole number of tiles; q/k/v strided views of one fused projection.
    # None: the default tiles (fp32 operands here: their key tiles clipped to 64)
    if tiles is not None:
        monkeypatch.setattr(kernels, "ATTENTION_TILES", tiles)
    head_dim, n_heads = 16, 4
    fused = randn(2, 45, (n_heads + 2 * n_kv) * head_dim)
    q, k, v = fused.split([n_heads * head_dim, n_kv * head_dim, n_kv * head_dim], dim=-1)
    q, k, v = q.unflatten(-1, (n_heads, head_dim)), k.unflatten(-1, (n_kv, head_dim)), v.unflatten(-1, (n_kv, head_dim))
    out = kernels.attention(q, k, v)
    assert out.shape == (2, 45, n_heads, head_dim) and out.is_contiguous()
    torch.testing.assert_close(out, _sdpa_reference(q, k, v), rtol=1e-4, atol=1e-5)
    # cross-attention shape: other key count
    keys, values = randn(2, 30, n_kv, head_dim, seed=3), randn(2, 30, n_kv, head_dim, seed=4)
    torch.testing.assert_close(kernels.attention(q, keys, values), _sdpa_reference(q, keys, values),
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("qk_norm", [False, True])
def test_attention_rotates_raw_queries_like_rope_heads(qk_norm, monkeypatch):
    monkeypatch.setattr(kernels, "ATTENTION_TILES", (16, 16, 4, 1))
    head_dim, n_heads = 16, 4
    raw, k, v = randn(2, 21, n_heads, head_dim), randn(2, 21, n_heads, head_dim, seed=1), randn(2, 21, n_heads, head_dim, seed=2)
    cos, sin = randn(2, 21, head_dim // 2, seed=5), randn(2, 21, head_dim // 2, seed=6)
    gain = randn(head_dim, seed=7) if qk_norm else None
    (q,) = kernels.rope_heads(raw.flatten(-2), cos, sin, n_q=n_heads, n_k=0, n_v=0, head_dim=head_dim, q_gain=gain)
    fused = kernels.attention(raw, k, v, rope=(cos, sin), q_gain=gain)
    torch.testing.assert_close(fused, _sdpa_reference(q, k, v), rtol=1e-4, atol=1e-5)


def test_attention_pays_only_for_few_tiles_and_power_of_2_heads():
    assert kernels.attention_pays(1, 480, 8, 64)            # one 12-channel epoch
    assert kernels.attention_pays(1, 960, 8, 64)            # ... in the encoder (a register per token)
    assert not kernels.attention_pays(1, 1280, 8, 64)       # one 32-channel epoch: the library kernel
    assert not kernels.attention_pays(8, 2560, 8, 64)       # 8 epochs of 64 channels: the library kernel
    assert not kernels.attention_pays(1, 480, 8, 48)


@pytest.mark.parametrize("tiles", [None, (16, 3, 4, 2), (32, 8, 4, 1)])
@pytest.mark.parametrize("qk_norm", [False, True])
def test_lowrank_kv_matches_projection_then_rope_heads(tiles, qk_norm, monkeypatch):
    # 2 blocks, 4 kv heads of 16; 2 x 19 rows (no whole tile); 3 heads a program: a partial group
    if tiles is not None:
        monkeypatch.setattr(kernels, "LOWRANK_TILES", {"small": tiles, "large": tiles})
    n_blocks, n_kv, head_dim, width = 2, 4, 16, 64
    factor, weights = randn(2, 19, width, seed=1), randn(n_blocks, 2 * n_kv * head_dim, width, seed=2) / 8
    cos, sin = randn(2, 19, head_dim // 2, seed=5), randn(2, 19, head_dim // 2, seed=6)
    gains = randn(n_blocks, head_dim, seed=7) if qk_norm else None
    keys, values = kernels.lowrank_kv(factor, weights, cos, sin, n_kv=n_kv, head_dim=head_dim, k_gain=gains,
                                      out_dtype=torch.float32)
    assert keys.shape == values.shape == (n_blocks, 2, 19, n_kv, head_dim)
    for block in range(n_blocks):
        k, v = kernels.rope_heads(torch.nn.functional.linear(factor, weights[block]), cos, sin, n_q=0, n_k=n_kv,
                                  n_v=n_kv, head_dim=head_dim, k_gain=None if gains is None else gains[block])
        torch.testing.assert_close(keys[block], k, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(values[block], v, rtol=1e-4, atol=1e-5)

@pytest.mark.parametrize("qk_norm", [False, True])
def test_rope_heads_matches_reference(qk_norm):
    n_q, n_k, head_dim = 4, 2, 16
    x = randn(2, 7, (n_q + 2 * n_k) * head_dim)
    cos, sin = randn(2, 7, head_dim // 2, seed=5), randn(2, 7, head_dim // 2, seed=6)
    q_gain, k_gain = (randn(head_dim, seed=7), randn(head_dim, seed=8)) if qk_norm else (None, None)
    q, k, v = kernels.rope_heads(x, cos, sin, n_q=n_q, n_k=n_k, n_v=n_k, head_dim=head_dim, q_gain=q_gain, k_gain=k_gain)

    def reference(part, n, gain):
        heads = part.view(2, 7, n, head_dim)
        if gain is not None:
            heads = rms_norm(heads, gain, 1e-5)
        return rope(heads.transpose(1, 2), cos.unsqueeze(1), sin.unsqueeze(1)).transpose(1, 2)

    torch.testing.assert_close(q, reference(x[..., :n_q * head_dim], n_q, q_gain))
    torch.testing.assert_close(k, reference(x[..., n_q * head_dim:(n_q + n_k) * head_dim], n_k, k_gain))
    torch.testing.assert_close(v, x[..., (n_q + n_k) * head_dim:].reshape(2, 7, n_k, head_dim))
    assert q.shape == (2, 7, n_q, head_dim) and q.is_contiguous()


def test_swiglu_matches_reference():
    ab = randn(3, 4, 2 * 40)
    a, b = ab.chunk(2, dim=-1)
    torch.testing.assert_close(kernels.swiglu(ab), torch.nn.functional.silu(a) * b)


@pytest.mark.parametrize("tiles", [None, (16, 32, 64, 2, 4, 2)])
def test_matmul_swiglu_matches_reference(tiles, monkeypatch):
    # 50 rows and 48 hidden units: neither a whole number of tiles
    if tiles is not None:
        monkeypatch.setitem(kernels.GEMM_TILES, ("swiglu", "small"), tiles)
    x, w13 = randn(2, 25, 128, seed=1), randn(2 * 48, 128, seed=2) / 8
    a, b = torch.nn.functional.linear(x, w13).chunk(2, dim=-1)
    out = kernels.matmul_swiglu(x, w13)
    assert out.shape == (2, 25, 48)
    torch.testing.assert_close(out, torch.nn.functional.silu(a) * b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("qk_norm", [False, True])
@pytest.mark.parametrize("heads", [(4, 2, 2), (4, 0, 0), (0, 2, 2)])
def test_matmul_rope_heads_matches_projection_then_rope_heads(qk_norm, heads, monkeypatch):
    monkeypatch.setitem(kernels.GEMM_TILES, ("rope", "small"), (16, None, 64, 2, 4, 2))
    n_q, n_k, n_v = heads
    head_dim = 16
    x = randn(2, 25, 128, seed=1)
    weight = randn((n_q + n_k + n_v) * head_dim, 128, seed=2) / 8
    cos, sin = randn(2, 25, head_dim // 2, seed=5), randn(2, 25, head_dim // 2, seed=6)
    gains = dict(q_gain=randn(head_dim, seed=7) if qk_norm and n_q else None,
                 k_gain=randn(head_dim, seed=8) if qk_norm and n_k else None)
    fused = kernels.matmul_rope_heads(x, weight, cos, sin, n_q=n_q, n_k=n_k, n_v=n_v, head_dim=head_dim, **gains)
    expected = kernels.rope_heads(torch.nn.functional.linear(x, weight), cos, sin, n_q=n_q, n_k=n_k, n_v=n_v,
                                  head_dim=head_dim, **gains)
    assert len(fused) == len(expected)
    for ours, theirs in zip(fused, expected):
        assert ours.shape == theirs.shape and ours.is_contiguous()
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("variant", ["ZUNA", "ZUNA1.1"])
@pytest.mark.parametrize("head_dim", [8, 16])
def test_low_rank_cross_kv_equals_projected_context(variant, head_dim):
    """K/V from the 33-wide context factor == QK-norm + RoPE of W_kv (rms_norm(latent_proj(latents)) * g)."""
    config = ModelConfig.from_hf({"dim": 64, "n_layers": 2, "n_heads": 4, "head_dim": head_dim}, variant=variant)
    reference = random_model(config).to(DEVICE)
    decoder = build(reference, EXACT).decoder
    latents = randn(2, 12, 32, seed=1)
    tok_idx = torch.randint(0, 30, (2, 12, 4), generator=torch.Generator().manual_seed(2)).to(DEVICE)
    gains = decoder.conditioning(torch.tensor([1.0, 0.5], device=DEVICE))
    with torch.no_grad():
        torch.testing.assert_close(gains, reference.decoder.conditioning(torch.tensor([1.0, 0.5], device=DEVICE)),
                                   rtol=1e-5, atol=1e-6)        # all AdaRMSNorm gains: one GEMM
        weights = decoder.cross_kv_weights(gains)
        assert weights.shape == (2, 2, 2 * 4 * head_dim, 64)   # 33 columns, padded to a power of 2
        kv = decoder.cross_kv(decoder.context_factor(latents), weights[1], decoder.positions(tok_idx))
        context = reference.decoder.context(latents)
        angles = reference.decoder.positions(tok_idx)["rope"]
        for layer, block in enumerate(reference.decoder.blocks):
            attention = block.cross_attention
            normed = rms_norm(context, gains[1, 4 * layer + 1], block.cross_y_norm.eps)
            k = torch.nn.functional.linear(normed, attention.wk.weight).view(2, 12, 4, head_dim)
            v = torch.nn.functional.linear(normed, attention.wv.weight).view(2, 12, 4, head_dim)
            if attention.k_norm is not None:
                k = attention.k_norm(k)
            k = rope(k.transpose(1, 2), *angles).transpose(1, 2)
            torch.testing.assert_close(kv[layer][0], k, rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(kv[layer][1], v, rtol=1e-4, atol=1e-5)


def _tiny_model_and_inputs(variant, *, dim, head_dim):
    """A 2-layer random reference model, tokens, tok_idx and noise."""
    config = ModelConfig.from_hf({"dim": dim, "head_dim": head_dim, "n_layers": 2, "n_heads": 4}, variant=variant)
    model = random_model(config).to(DEVICE).eval()
    tokens = (0.1 * randn(2, 12, 32, seed=1)).clamp(-1, 1)
    tok_idx = torch.randint(0, 30, (2, 12, 4), generator=torch.Generator().manual_seed(2)).to(DEVICE)
    return config, model, tokens, tok_idx, randn(2, 12, 32, seed=3)


@pytest.mark.parametrize("variant,size", [("ZUNA", "small"), ("ZUNA1.1", "small"), ("ZUNA", "fusable"),
                                          ("ZUNA1.1", "fusable")])
def test_fast_model_equals_reference_model(variant, size, monkeypatch):
    """encode + sample of the fast model compute the reference function (fp32), the K/V weights of
    all steps formed at once or step by step; the small-tile attention runs where it pays."""
    # dim 64 / head_dim 16: sizes the GEMMs with fused epilogues and the attention kernel take
    # (dim 32 / head_dim 8: cuBLAS, the separate kernels and SDPA instead)
    config, model, tokens, tok_idx, noise = _tiny_model_and_inputs(
        variant, **(dict(dim=64, head_dim=16) if size == "fusable" else dict(dim=32, head_dim=8)))
    latents = model.encode(tokens, tok_idx)
    expected = model.sample(latents, tok_idx, noise=noise, steps=2, cfg=1.5)
    fast = build(model, EXACT)
    assert fast.encoder.blocks[0].feed_forward.epilogue == (size == "fusable")
    assert not fast.decoder.blocks[0].feed_forward.epilogue                # cuBLAS in the decoder
    calls = []
    real = kernels.attention
    monkeypatch.setattr(kernels, "attention", lambda *a, **kw: calls.append(kw.get("rope") is not None) or real(*a, **kw))
    torch.testing.assert_close(fast.encode(tokens, tok_idx), latents, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(fast.sample(latents, tok_idx, noise=noise, steps=2, cfg=1.5), expected,
                               rtol=1e-4, atol=1e-5)
    # encoder 2 + decoder 2 blocks x 2 steps x 2 (cfg) x (self + cross) attention calls; the cross ones rotate q
    assert (len(calls), sum(calls)) == ((2 + 16, 8) if size == "fusable" else (0, 0))
    monkeypatch.setattr(runner, "CROSS_KV_CHUNK", 1)
    monkeypatch.setattr(kernels, "ATTENTION_MAX_SEQ", 0)                     # SDPA everywhere
    torch.testing.assert_close(fast.sample(latents, tok_idx, noise=noise, steps=2, cfg=1.5), expected,
                               rtol=1e-4, atol=1e-5)
    assert len(calls) == (18 if size == "fusable" else 0)


def test_fast_model_owns_its_weights_once():
    """Fused weights are parameters of the fast model, created once: the unfused ones are not kept,
    .to() moves every tensor, the reference is left as it was, state dicts are refused."""
    config, model, tokens, tok_idx, noise = _tiny_model_and_inputs("ZUNA1.1", dim=64, head_dim=16)
    before = {name: t.clone() for name, t in model.state_dict().items()}
    model.source, model.revision = "somewhere", "abc"
    fast = build(model, FastOptions(precision="bf16", cuda_graphs=False))
    assert isinstance(fast, ZunaModel) and isinstance(fast, FastZunaModel) and hasattr(fast, "_call_lock")
    assert (fast.variant, fast.config, fast.source, fast.revision, fast.precision) == (
        "ZUNA1.1", config, "somewhere", "abc", "bf16")
    assert fast.n_parameters() == model.n_parameters()
    names = dict(fast.named_parameters())
    assert not any(name.endswith((".wk", ".wv", ".w1", ".w3")) for name in names)
    assert names["encoder.blocks.0.attention.wqkv"].dtype == torch.float32          # TF32 in bf16
    assert names["decoder.blocks.0.attention.wqkv"].dtype == torch.bfloat16
    assert names["decoder.cross_wkv"].shape == (2, 2 * 64, 64) and names["decoder.embed.weight"].dtype == torch.float32
    ours = {t.data_ptr() for t in model.state_dict().values()}
    assert not ours & {t.data_ptr() for t in fast.state_dict().values()}           # nothing shared
    for module in fast.modules():       # every tensor is a parameter or buffer, so .to() moves it
        assert not [k for k, v in vars(module).items() if isinstance(v, torch.Tensor)], type(module).__name__
    assert all(torch.equal(t, before[name]) for name, t in model.state_dict().items())
    with pytest.raises(ZunaValueError, match="cannot load a state dict"):
        fast.load_state_dict(model.state_dict())
    with pytest.raises(ZunaValueError, match="precision is fixed"):
        fast.set_precision("fp32")
    moved = fast.to("meta")
    assert moved.device.type == "meta" and all(t.device.type == "meta" for t in fast.state_dict().values())


def test_build_refuses_what_it_cannot_use(monkeypatch):
    config = ModelConfig.from_hf({"dim": 32, "n_layers": 1, "head_dim": 8, "n_heads": 4}, variant="ZUNA1.1")
    model = random_model(config).to(DEVICE)
    with pytest.raises(ZunaTypeError, match="options must be a FastOptions"):
        build(model, {"precision": "fp32"})
    with pytest.raises(ZunaValueError, match="precision must be 'mixed', 'fp16', 'bf16' or 'fp32'"):
        FastOptions(precision="float8")
    with pytest.raises(ZunaTypeError, match="takes a reference ZunaModel"):
        build(build(model, EXACT))
    with pytest.raises(ZunaValueError, match="exact weights"):
        build(random_model(config).set_precision("bf16"))
    monkeypatch.setattr(kernels, "available", lambda device: False)
    with pytest.raises(ZunaValueError, match="needs Triton and a CUDA device"):
        build(model)


@pytest.mark.parametrize("variant", ["ZUNA", "ZUNA1.1"])
def test_fp16_path_is_close_to_the_reference(variant):
    """fp16 operands with fp32 accumulation (the CUDA default): within 2e-3 of exact at small size
    (fp16 rounds like TF32; the full-size budget is measured on the GPU by tests/fast/test_gpu.py)."""
    config = ModelConfig.from_hf({"dim": 64, "n_layers": 2, "head_dim": 16, "n_heads": 4}, variant=variant)
    reference = random_model(config, seed=1).to(DEVICE)
    tokens, tok_idx, noise = (0.3 * randn(2, 24, 32, seed=2)).clamp(-1, 1), randn(2, 24, 4, seed=3), randn(2, 24, 32, seed=4)
    tok_idx = (tok_idx.abs() * 8).long().clamp(0, 40)
    latents = reference.encode(tokens, tok_idx)
    samples = reference.sample(latents, tok_idx, noise=noise, steps=3)
    fast = build(reference, FastOptions(precision="fp16", cuda_graphs=False))
    assert fast.precision == "fp16" and fast.decoder.blocks[0].feed_forward.w13.dtype == torch.float16
    # fp16 rounds the encoder's attention projections too (as finely as TF32 would)
    assert fast.encoder.blocks[0].attention.wqkv.dtype == torch.float16
    fast_latents = fast.encode(tokens, tok_idx)
    fast_samples = fast.sample(fast_latents, tok_idx, noise=noise, steps=3)
    rel = lambda a, b: float((a - b).norm() / b.norm())   # noqa: E731
    assert 1e-5 < rel(fast_latents, latents) < 2e-3 and 1e-5 < rel(fast_samples, samples) < 2e-3


def test_fp16_overflow_turns_the_model_to_bf16():
    """An activation beyond fp16's range gives inf: the call is run again in bf16, with one warning,
    and the model stays in bf16 (its weights converted in place, nothing else allocated)."""
    from zuna_lab.errors import ZunaLabWarning

    config = ModelConfig.from_hf({"dim": 64, "n_layers": 2, "head_dim": 16, "n_heads": 4}, variant="ZUNA")
    reference = random_model(config, seed=1).to(DEVICE)
    with torch.no_grad():
        reference.encoder.blocks[0].feed_forward.w1.weight.mul_(3e3)     # silu(a) * b far beyond 65504
        reference.encoder.blocks[0].feed_forward.w3.weight.mul_(3e3)
    tokens, tok_idx = (0.3 * randn(1, 16, 32, seed=2)).clamp(-1, 1), torch.zeros(1, 16, 4, dtype=torch.long, device=DEVICE)
    assert torch.isfinite(reference.encode(tokens, tok_idx)).all()
    fast = build(reference, FastOptions(precision="fp16", cuda_graphs=False))
    n_params = fast.n_parameters()
    with pytest.warns(ZunaLabWarning, match="overflowed fp16's range"):
        latents = fast.encode(tokens, tok_idx)
    assert torch.isfinite(latents).all() and fast.precision == "bf16"
    assert {p.dtype for p in fast.parameters()} == {torch.float32, torch.bfloat16} and fast.n_parameters() == n_params
    assert set(fast.decoder.heads_dtypes()) == {torch.bfloat16}
    with warnings.catch_warnings():
        warnings.simplefilter("error", ZunaLabWarning)      # in bf16 now: no second warning
        fast.encode(tokens, tok_idx)


def _decoder_block_dtypes(fast) -> list:
    """Per decoder block, the one dtype of all its 16-bit operands (weights and K/V heads), or a set of them."""
    found = []
    for block, heads in zip(fast.decoder.blocks, fast.decoder.heads_dtypes()):
        dtypes = {heads, *(w.dtype for w in (block.cross_attention.wq, block.cross_attention.wo, block.attention.wqkv,
                                             block.attention.wo, block.feed_forward.w13, block.feed_forward.w2))}
        found.append(dtypes.pop() if len(dtypes) == 1 else dtypes)
    return found


def test_default_policy_is_fp16_encoder_and_bf16_decoder():
    """The default ("mixed"): fp16 operands in the encoder (its attention projections too) and in the
    first ``decoder_fp16_blocks`` decoder blocks, bf16 in the others, the cross-attention K/V weights
    in fp16, fp32 norms, residual and token projections (accuracy on the GPU: tests/fast/test_gpu.py)."""
    n = FastOptions().decoder_fp16_blocks
    config = ModelConfig.from_hf({"dim": 64, "n_layers": n + 2, "head_dim": 16, "n_heads": 4}, variant="ZUNA1.1")
    fast = build(random_model(config, seed=1).to(DEVICE), FastOptions(cuda_graphs=False))
    assert FastOptions().precision == "mixed" and fast.precision == "mixed"
    block = fast.encoder.blocks[0]
    assert block.attention.wqkv.dtype == block.feed_forward.w13.dtype == torch.float16
    assert _decoder_block_dtypes(fast) == [torch.float16] * n + [torch.bfloat16] * 2
    assert fast.decoder.cross_wkv.dtype == torch.float16
    assert fast.encoder.embed.weight.dtype == fast.decoder.out.weight.dtype == torch.float32


@pytest.mark.parametrize("head_dim", [8, 16])
def test_first_decoder_blocks_in_fp16(head_dim):
    """FastOptions(decoder_fp16_blocks=n) in "mixed": the first n decoder blocks take fp16 operands
    (cross-attention with its keys and values, self-attention, SwiGLU), the others bf16; each
    block's keys and values of a step come out in its dtype, the exact ones up to that rounding;
    the samples stay close to exact, closer with every block in fp16 than with none. The other
    precisions ignore the option."""
    dim = 64 if head_dim == 16 else 32      # the K/V kernel (one launch per dtype), or its per-block fallback
    config = ModelConfig.from_hf({"dim": dim, "n_layers": 3, "head_dim": head_dim, "n_heads": 4}, variant="ZUNA1.1")
    reference = random_model(config, seed=1).to(DEVICE)
    tokens, noise = (0.3 * randn(2, 24, 32, seed=2)).clamp(-1, 1), randn(2, 24, 32, seed=4)
    tok_idx = (randn(2, 24, 4, seed=3).abs() * 8).long().clamp(0, 40)
    latents = reference.encode(tokens, tok_idx)
    samples = reference.sample(latents, tok_idx, noise=noise, steps=2)
    exact = build(reference, EXACT)
    models = {n: build(reference, FastOptions(cuda_graphs=False, decoder_fp16_blocks=n)) for n in (0, 2, 5)}
    fp16, bf16 = torch.float16, torch.bfloat16
    assert _decoder_block_dtypes(models[0]) == [bf16] * 3
    assert _decoder_block_dtypes(models[2]) == [fp16, fp16, bf16]
    assert _decoder_block_dtypes(models[5]) == [fp16] * 3                   # more than there are: all
    assert all(m.decoder.cross_wkv.dtype == fp16 and m.precision == "mixed" for m in models.values())
    for precision, dtype in (("bf16", bf16), ("fp16", fp16), ("fp32", torch.float32)):
        other = build(reference, FastOptions(precision=precision, cuda_graphs=False, decoder_fp16_blocks=2))
        assert _decoder_block_dtypes(other) == [dtype] * 3
    # one step's keys and values, from the same fp32 factor and weights
    decoder, positions = models[2].decoder, exact.decoder.positions(tok_idx)
    factor = exact.decoder.context_factor(latents)
    weights = exact.decoder.cross_kv_weights(exact.decoder.conditioning(torch.tensor([0.5], device=DEVICE)))[0]
    for layer, (ours, theirs) in enumerate(zip(decoder.cross_kv(factor, weights, positions),
                                               exact.decoder.cross_kv(factor, weights, positions))):
        for mine, exact_heads in zip(ours, theirs):
            assert mine.dtype == (fp16 if layer < 2 else bf16) and mine.shape == exact_heads.shape
            # one rounding of each element: fp16's, or bf16's (which the interpreter truncates)
            bound = 2 ** -11 if layer < 2 else 2 ** -7
            assert ((mine.float() - exact_heads).abs() <= bound * exact_heads.abs() + 1e-5).all()
    rel = lambda a, b: float((a - b).norm() / b.norm())   # noqa: E731
    # the whole model through the twins (the interpreter's bf16 products are not the GPU's: the
    # kernels' bf16 accuracy is measured there), and with every block in fp16 through the kernels
    errors = {}
    with kernels.eager():
        for n, model in models.items():
            ours = model.encode(tokens, tok_idx)
            # the encoder as it was
            torch.testing.assert_close(ours, models[0].encode(tokens, tok_idx), rtol=0, atol=0)
            errors[n] = rel(model.sample(ours, tok_idx, noise=noise, steps=2), samples)
    assert all(1e-5 < e < 8e-3 for e in errors.values()) and errors[5] < errors[0], errors
    if head_dim == 16:
        ours = models[5].encode(tokens, tok_idx)
        assert 1e-5 < rel(models[5].sample(ours, tok_idx, noise=noise, steps=2), samples) < 2e-3


def test_options_refuse_a_wrong_number_of_fp16_blocks():
    for wrong in (-1, 1.5, True, "2"):
        with pytest.raises(ZunaValueError, match="decoder_fp16_blocks must be a whole number"):
            FastOptions(decoder_fp16_blocks=wrong)


def test_fp16_decoder_overflow_turns_the_model_to_bf16():
    """An fp16 decoder block (decoder_fp16_blocks) that overflows: the sampling is run again in bf16,
    with one warning; no fp16 weight is left."""
    from zuna_lab.errors import ZunaLabWarning

    config = ModelConfig.from_hf({"dim": 64, "n_layers": 2, "head_dim": 16, "n_heads": 4}, variant="ZUNA")
    reference = random_model(config, seed=1).to(DEVICE)
    with torch.no_grad():
        reference.decoder.blocks[0].feed_forward.w1.weight.mul_(3e3)     # silu(a) * b far beyond 65504
        reference.decoder.blocks[0].feed_forward.w3.weight.mul_(3e3)
    tokens, noise = (0.3 * randn(1, 16, 32, seed=2)).clamp(-1, 1), randn(1, 16, 32, seed=3)
    tok_idx = torch.zeros(1, 16, 4, dtype=torch.long, device=DEVICE)
    latents = reference.encode(tokens, tok_idx)
    assert torch.isfinite(reference.sample(latents, tok_idx, noise=noise, steps=1)).all()
    fast = build(reference, FastOptions(cuda_graphs=False, decoder_fp16_blocks=1))
    latents = fast.encode(tokens, tok_idx)
    assert fast.precision == "mixed"
    with pytest.warns(ZunaLabWarning, match="overflowed fp16's range"):
        out = fast.sample(latents, tok_idx, noise=noise, steps=1)
    assert torch.isfinite(out).all() and fast.precision == "bf16"
    assert torch.float16 not in {p.dtype for p in fast.parameters()}
    assert set(fast.decoder.heads_dtypes()) == {torch.bfloat16}


def fake_capture(fn, warmup=None):
    """runner.capture off CUDA: the warm-up runs, the capture runs the Python once (on a GPU it only
    records), each replay runs ``fn`` again."""
    (warmup or fn)()
    fn()
    return fn


@pytest.mark.parametrize("cfg", [1.0, 1.5])
def test_stepwise_graph_replay_computes_the_same_as_the_loop(cfg, monkeypatch):
    """The sampler with one step captured and replayed (runner.sample_stepwise) gives the loop's
    result: the step's gains and K/V weights read at its device-side index, the K/V weights refilled
    every CROSS_KV_CHUNK steps, the state and index reset for a new call of the captured shape, the
    callback at every step. (A stand-in for the CUDA graph off CUDA: the warm-up runs, the capture
    does not, each replay runs the step.)"""
    monkeypatch.setattr(runner, "capture", fake_capture)
    monkeypatch.setattr(runner, "CROSS_KV_CHUNK", 2)
    config, model, tokens, tok_idx, noise = _tiny_model_and_inputs("ZUNA1.1", dim=64, head_dim=16)
    fast = build(model, EXACT)
    graphs, seen = runner.Graphs(), []
    weights = torch.empty(2, 2, 2 * 4 * 16, fast.decoder.factor_width, device=DEVICE)
    for seed in (1, 2):                       # the second call replays the first one's capture
        latents, z = fast.encode(tokens * seed, tok_idx), randn(2, 12, 32, seed=seed)
        expected = runner.sample(fast.decoder, latents, tok_idx, z, steps=3, cfg=cfg, tf32=False)
        out = runner.sample_stepwise(fast.decoder, latents, tok_idx, z, steps=3, cfg=cfg, tf32=False, graphs=graphs,
                                     kv_weights=weights, callback=lambda k, n: seen.append((k, n)))
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    assert len(graphs) == 1 and seen == [(1, 3), (2, 3), (3, 3)] * 2


def test_a_shape_is_replayed_by_steps_first_then_whole(monkeypatch):
    """A shape's first call captures one sampler step (cheap); its second captures the whole call
    (faster replays) and drops the step's graph; later calls replay the whole call. Each gives the
    loop's result."""
    monkeypatch.setattr(runner, "capture", fake_capture)
    monkeypatch.setattr(FastZunaModel, "_graphed", lambda self: True)
    config, model, tokens, tok_idx, noise = _tiny_model_and_inputs("ZUNA", dim=64, head_dim=16)
    fast = build(model, FastOptions(precision="fp32"))
    latents = fast.encode(tokens, tok_idx)
    kinds = []
    for seed in (1, 2, 3):
        z = randn(2, 12, 32, seed=seed)
        out = fast.sample(latents, tok_idx, noise=z, steps=2)
        expected = runner.sample(fast.decoder, latents, tok_idx, z * fast.config.sigma, steps=2, cfg=1.0, tf32=False)
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
        kinds.append(sorted(key[0] for key in fast._graphs._entries))
    assert kinds == [["encode", "step"], ["encode", "sample"], ["encode", "sample"]]
