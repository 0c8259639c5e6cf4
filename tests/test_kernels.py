"""The Triton kernels of the CUDA fast path against the plain PyTorch reference.

Without a GPU they run under Triton's interpreter (``TRITON_INTERPRET=1``, set by
tests/run_tests.sh), in fp32: the interpreter rounds to bf16 by truncation, unlike the GPU, so
bf16 accuracy is measured on the GPU by benchmarks/bench.py instead. On a GPU the file runs as it
is: the GEMM kernels take fp32 operands in exact fp32 unless torch allows TF32 (off by default).
"""
import os

import pytest
import torch

from zuna_lab.config import ModelConfig
from zuna_lab.errors import ZunaValueError
from zuna_lab.model import kernels
from zuna_lab.model.layers import rms_norm, rope
from zuna_lab.testing import random_model

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


@pytest.mark.parametrize("tiles", [(16, 16, 4, 1), (32, 64, 4, 2)])
@pytest.mark.parametrize("n_kv", [4, 2])
def test_attention_matches_sdpa(tiles, n_kv):
    # 45 queries and keys: no whole number of tiles; q/k/v strided views of one fused projection
    head_dim, n_heads = 16, 4
    fused = randn(2, 45, (n_heads + 2 * n_kv) * head_dim)
    q, k, v = fused.split([n_heads * head_dim, n_kv * head_dim, n_kv * head_dim], dim=-1)
    q, k, v = q.unflatten(-1, (n_heads, head_dim)), k.unflatten(-1, (n_kv, head_dim)), v.unflatten(-1, (n_kv, head_dim))
    out = kernels.attention(q, k, v, tiles=tiles)
    assert out.shape == (2, 45, n_heads, head_dim) and out.is_contiguous()
    torch.testing.assert_close(out, _sdpa_reference(q, k, v), rtol=1e-4, atol=1e-5)
    # cross-attention shape: other key count
    keys, values = randn(2, 30, n_kv, head_dim, seed=3), randn(2, 30, n_kv, head_dim, seed=4)
    torch.testing.assert_close(kernels.attention(q, keys, values, tiles=tiles), _sdpa_reference(q, keys, values),
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("qk_norm", [False, True])
def test_attention_rotates_raw_queries_like_rope_heads(qk_norm):
    head_dim, n_heads = 16, 4
    raw, k, v = randn(2, 21, n_heads, head_dim), randn(2, 21, n_heads, head_dim, seed=1), randn(2, 21, n_heads, head_dim, seed=2)
    cos, sin = randn(2, 21, head_dim // 2, seed=5), randn(2, 21, head_dim // 2, seed=6)
    gain = randn(head_dim, seed=7) if qk_norm else None
    (q,) = kernels.rope_heads(raw.flatten(-2), cos, sin, n_q=n_heads, n_k=0, n_v=0, head_dim=head_dim, q_gain=gain)
    fused = kernels.attention(raw, k, v, rope=(cos, sin), q_gain=gain, tiles=(16, 16, 4, 1))
    torch.testing.assert_close(fused, _sdpa_reference(q, k, v), rtol=1e-4, atol=1e-5)


def test_attention_pays_only_for_few_tiles_and_power_of_2_heads():
    assert kernels.attention_pays(1, 480, 8, 64)            # one 12-channel epoch
    assert kernels.attention_pays(1, 960, 8, 64)            # ... in the encoder (a register per token)
    assert not kernels.attention_pays(1, 1280, 8, 64)       # one 32-channel epoch: the library kernel
    assert not kernels.attention_pays(8, 2560, 8, 64)       # 8 epochs of 64 channels: the library kernel
    assert not kernels.attention_pays(1, 480, 8, 48)


@pytest.mark.parametrize("tiles", [None, (16, 3, 4, 2), (32, 8, 4, 1)])
@pytest.mark.parametrize("qk_norm", [False, True])
def test_lowrank_kv_matches_projection_then_rope_heads(tiles, qk_norm):
    # 2 blocks, 4 kv heads of 16; 2 x 19 rows (no whole tile); 3 heads a program: a partial group
    n_blocks, n_kv, head_dim, width = 2, 4, 16, 64
    factor, weights = randn(2, 19, width, seed=1), randn(n_blocks, 2 * n_kv * head_dim, width, seed=2) / 8
    cos, sin = randn(2, 19, head_dim // 2, seed=5), randn(2, 19, head_dim // 2, seed=6)
    gains = randn(n_blocks, head_dim, seed=7) if qk_norm else None
    keys, values = kernels.lowrank_kv(factor, weights, cos, sin, n_kv=n_kv, head_dim=head_dim, k_gain=gains,
                                      out_dtype=torch.float32, tf32=False, tiles=tiles)
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
def test_matmul_swiglu_matches_reference(tiles):
    # 50 rows and 48 hidden units: neither a whole number of tiles
    x, w13 = randn(2, 25, 128, seed=1), randn(2 * 48, 128, seed=2) / 8
    a, b = torch.nn.functional.linear(x, w13).chunk(2, dim=-1)
    out = kernels.matmul_swiglu(x, w13, tiles=tiles)
    assert out.shape == (2, 25, 48)
    torch.testing.assert_close(out, torch.nn.functional.silu(a) * b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("qk_norm", [False, True])
@pytest.mark.parametrize("heads", [(4, 2, 2), (4, 0, 0), (0, 2, 2)])
def test_matmul_rope_heads_matches_projection_then_rope_heads(qk_norm, heads):
    n_q, n_k, n_v = heads
    head_dim = 16
    x = randn(2, 25, 128, seed=1)
    weight = randn((n_q + n_k + n_v) * head_dim, 128, seed=2) / 8
    cos, sin = randn(2, 25, head_dim // 2, seed=5), randn(2, 25, head_dim // 2, seed=6)
    gains = dict(q_gain=randn(head_dim, seed=7) if qk_norm and n_q else None,
                 k_gain=randn(head_dim, seed=8) if qk_norm and n_k else None)
    fused = kernels.matmul_rope_heads(x, weight, cos, sin, n_q=n_q, n_k=n_k, n_v=n_v, head_dim=head_dim,
                                      tiles=(16, None, 64, 2, 4, 2), **gains)
    expected = kernels.rope_heads(torch.nn.functional.linear(x, weight), cos, sin, n_q=n_q, n_k=n_k, n_v=n_v,
                                  head_dim=head_dim, **gains)
    assert len(fused) == len(expected)
    for ours, theirs in zip(fused, expected):
        assert ours.shape == theirs.shape and ours.is_contiguous()
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("tma", [False, True])
def test_matmul_rope_heads_batched_weights(tma):
    """n projections of one x in one launch, each with its own QK-norm gain, K = 48 (the low-rank
    cross-attention K/V): output b equals the single-weight call with weight b."""
    n_batch, n_k, head_dim = 3, 2, 16
    x = randn(2, 25, 48, seed=1)
    weights = randn(n_batch, 2 * n_k * head_dim, 48, seed=2) / 4
    cos, sin = randn(2, 25, head_dim // 2, seed=5), randn(2, 25, head_dim // 2, seed=6)
    k_gains = randn(n_batch, head_dim, seed=8)
    tiles = (16, None, 32, 2, 4, 2, tma)      # fp32 operands: K tiles of 16, three of them
    keys, values = kernels.matmul_rope_heads(x, weights, cos, sin, n_q=0, n_k=n_k, n_v=n_k, head_dim=head_dim,
                                             k_gain=k_gains, tiles=tiles, tf32=False)
    assert keys.shape == values.shape == (n_batch, 2, 25, n_k, head_dim)
    for b in range(n_batch):
        k, v = kernels.rope_heads(torch.nn.functional.linear(x, weights[b]), cos, sin, n_q=0, n_k=n_k, n_v=n_k,
                                  head_dim=head_dim, k_gain=k_gains[b])
        torch.testing.assert_close(keys[b], k, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(values[b], v, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("variant", ["ZUNA", "ZUNA1.1"])
@pytest.mark.parametrize("head_dim", [8, 16])
def test_low_rank_cross_kv_equals_projected_context(variant, head_dim):
    """K/V from the 33-wide context factor == QK-norm + RoPE of W_kv (rms_norm(latent_proj(latents)) * g)."""
    config = ModelConfig.from_hf({"dim": 64, "n_layers": 2, "n_heads": 4, "head_dim": head_dim}, variant=variant)
    model = random_model(config).to(DEVICE).eval().optimize(kernels=True, cuda_graphs=False)
    decoder = model.decoder
    latents = randn(2, 12, 32, seed=1)
    tok_idx = torch.randint(0, 30, (2, 12, 4), generator=torch.Generator().manual_seed(2)).to(DEVICE)
    positions = decoder.positions(tok_idx)
    gains = decoder.conditioning(torch.tensor([1.0, 0.5], device=DEVICE))
    with torch.no_grad():
        weights = decoder.cross_kv_weights(gains)
        assert weights.shape == (2, 2, 2 * 4 * head_dim, 64)   # 33 columns, padded to a power of 2
        kv = decoder.fused_cross_kv(decoder.context_factor(latents), weights[1], positions,
                                    decoder.cross_k_gains(), tf32=False)
        context = decoder.context(latents)
        for layer, block in enumerate(decoder.blocks):
            attention = block.cross_attention
            normed = rms_norm(context, gains[1, 4 * layer + 1], block.cross_y_norm.eps)
            k = torch.nn.functional.linear(normed, attention.wk.weight).view(2, 12, 4, head_dim)
            v = torch.nn.functional.linear(normed, attention.wv.weight).view(2, 12, 4, head_dim)
            if attention.k_norm is not None:
                k = attention.k_norm(k)
            k = rope(k.transpose(1, 2), *positions["rope"]).transpose(1, 2)
            torch.testing.assert_close(kv[layer][0], k, rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(kv[layer][1], v, rtol=1e-4, atol=1e-5)


def _tiny_model_and_inputs(variant, *, dim, head_dim):
    """A 2-layer random model on the reference path (no kernels), tokens, tok_idx and noise."""
    config = ModelConfig.from_hf({"dim": dim, "head_dim": head_dim, "n_layers": 2, "n_heads": 4}, variant=variant)
    model = random_model(config).to(DEVICE).eval().optimize(kernels=False, cuda_graphs=False)
    tokens = (0.1 * randn(2, 12, 32, seed=1)).clamp(-1, 1)
    tok_idx = torch.randint(0, 30, (2, 12, 4), generator=torch.Generator().manual_seed(2)).to(DEVICE)
    return config, model, tokens, tok_idx, randn(2, 12, 32, seed=3)


@pytest.mark.parametrize("variant,gemm_epilogues", [("ZUNA", False), ("ZUNA1.1", False),
                                                    ("ZUNA", True), ("ZUNA1.1", True)])
def test_fused_model_path_equals_reference_path(variant, gemm_epilogues):
    """encode + sample through the kernels compute the reference function (fp32), K/V weights of all
    steps formed at once or step by step."""
    # dim 64 / head_dim 16: sizes the GEMMs with fused epilogues take (dim 32 / 8 fall back)
    size = dict(dim=64, head_dim=16) if gemm_epilogues else dict(dim=32, head_dim=8)
    config, model, tokens, tok_idx, noise = _tiny_model_and_inputs(variant, **size)
    latents = model.encode(tokens, tok_idx)
    expected = model.sample(latents, tok_idx, noise=noise, steps=2, cfg=1.5)
    model.optimize(kernels=True, gemm_epilogues="all" if gemm_epilogues else "none", cuda_graphs=False)
    assert model.use_kernels
    assert model.decoder.blocks[0].feed_forward.gemm_epilogue == gemm_epilogues
    assert kernels.gemm_fusable(config.dim, config.head_dim) == gemm_epilogues
    torch.testing.assert_close(model.encode(tokens, tok_idx), latents, rtol=1e-4, atol=1e-5)
    at_once = model.sample(latents, tok_idx, noise=noise, steps=2, cfg=1.5)
    model.cross_kv_chunk = 1
    per_step = model.sample(latents, tok_idx, noise=noise, steps=2, cfg=1.5)
    torch.testing.assert_close(at_once, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(per_step, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("variant", ["ZUNA", "ZUNA1.1"])
@pytest.mark.parametrize("options", [True, False])
def test_fused_model_options_compute_the_reference_function(variant, options, monkeypatch):
    """The small-tile attention kernel (the cross-attention queries rotated inside it), V read in
    place and the recomputed residual, all on or all off: the reference function either way."""
    from zuna_lab.model.layers import Attention, DecoderBlock
    _, model, tokens, tok_idx, noise = _tiny_model_and_inputs(variant, dim=64, head_dim=16)
    latents = model.encode(tokens, tok_idx)
    expected = model.sample(latents, tok_idx, noise=noise, steps=2)
    model.optimize(kernels=True, gemm_epilogues="none", cuda_graphs=False)
    monkeypatch.setattr(DecoderBlock, "recompute_residual", options)
    for module in model.modules():
        if isinstance(module, Attention):
            module.small_attention = module.values_as_view = options
    calls = []
    real = kernels.attention
    monkeypatch.setattr(kernels, "attention", lambda *a, **kw: calls.append(kw.get("rope") is not None) or real(*a, **kw))
    torch.testing.assert_close(model.encode(tokens, tok_idx), latents, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(model.sample(latents, tok_idx, noise=noise, steps=2), expected, rtol=1e-4, atol=1e-5)
    # encoder 2 + decoder 2 x 2 steps x (self + cross) attention calls; the cross ones rotate q inside
    assert (len(calls), sum(calls)) == ((2 + 8, 4) if options else (0, 0))

def test_kernels_refused_where_they_cannot_run(monkeypatch):
    model = random_model(ModelConfig.from_hf({"dim": 32, "n_layers": 1, "head_dim": 8, "n_heads": 4}, variant="ZUNA1.1"))
    monkeypatch.setattr(kernels, "available", lambda device: False)
    with pytest.raises(ZunaValueError, match="kernels=True needs"):
        model.optimize(kernels=True)
    assert not model.optimize().use_kernels          # the default simply stays on the reference path

