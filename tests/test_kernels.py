"""The Triton kernels of the CUDA fast path against the plain PyTorch reference.

Without a GPU they run under Triton's interpreter (``TRITON_INTERPRET=1``, set by
tests/run_tests.sh), in fp32: the interpreter rounds to bf16 by truncation, unlike the GPU, so
bf16 accuracy is measured on the GPU by benchmarks/bench.py instead.
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


def test_swiglu_and_scale_columns_match_reference():
    ab = randn(3, 4, 2 * 40)
    a, b = ab.chunk(2, dim=-1)
    torch.testing.assert_close(kernels.swiglu(ab), torch.nn.functional.silu(a) * b)
    weight, gain = randn(24, 40, seed=1), randn(40, seed=2)
    torch.testing.assert_close(kernels.scale_columns(weight, gain), weight * gain)


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


@pytest.mark.parametrize("variant,gemm_epilogues", [("ZUNA", False), ("ZUNA1.1", False),
                                                    ("ZUNA", True), ("ZUNA1.1", True)])
def test_fused_model_path_equals_reference_path(variant, gemm_epilogues):
    """encode + sample through the kernels compute the reference function (fp32), cached K/V or not."""
    # dim 64 / head_dim 16: sizes the GEMMs with fused epilogues take (dim 32 / 8 fall back)
    size = dict(dim=64, head_dim=16) if gemm_epilogues else dict(dim=32, head_dim=8)
    config = ModelConfig.from_hf({**size, "n_layers": 2, "n_heads": 4}, variant=variant)
    model = random_model(config).to(DEVICE).eval()
    tokens = (0.1 * randn(2, 12, 32, seed=1)).clamp(-1, 1)
    tok_idx = torch.randint(0, 30, (2, 12, 4), generator=torch.Generator().manual_seed(2)).to(DEVICE)
    noise = randn(2, 12, 32, seed=3)
    model.optimize(kernels=False, cuda_graphs=False)
    latents = model.encode(tokens, tok_idx)
    expected = model.sample(latents, tok_idx, noise=noise, steps=2, cfg=1.5)
    model.optimize(kernels=True, gemm_epilogues="all" if gemm_epilogues else "none", cuda_graphs=False)
    assert model.use_kernels
    assert model.decoder.blocks[0].feed_forward.gemm_epilogue == gemm_epilogues
    assert kernels.gemm_fusable(config.dim, config.head_dim) == gemm_epilogues
    torch.testing.assert_close(model.encode(tokens, tok_idx), latents, rtol=1e-4, atol=1e-5)
    cached = model.sample(latents, tok_idx, noise=noise, steps=2, cfg=1.5)      # K/V of all steps up front
    model.cross_kv_budget = 0                                                   # K/V formed every step
    per_step = model.sample(latents, tok_idx, noise=noise, steps=2, cfg=1.5)
    torch.testing.assert_close(cached, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(per_step, expected, rtol=1e-4, atol=1e-5)


def test_kernels_refused_where_they_cannot_run(monkeypatch):
    model = random_model(ModelConfig.from_hf({"dim": 32, "n_layers": 1, "head_dim": 8, "n_heads": 4}, variant="ZUNA1.1"))
    monkeypatch.setattr(kernels, "available", lambda device: False)
    with pytest.raises(ZunaValueError, match="kernels=True needs"):
        model.optimize(kernels=True)
    assert not model.optimize().use_kernels          # the default simply stays on the reference path
