"""End-to-end parity on the sample recordings (issue B): official preprocessing + official
model vs ``zuna_lab.embed`` and zuna_lab's low-level reconstruction, for both variants.

1. The official package preprocesses sample1/sample2 (tests/oracle/official_preprocess.py) and
   its model (random weights, tests/oracle/official_model.py) encodes those tokens and samples
   from them with a recorded noise tensor.
2. ``zuna_lab.embed`` on the same files with the same checkpoint must give the official latents.
3. zuna_lab's model, fed its own tokens and the same noise, must give the official samples, and
   de-normalised with ``Preprocessed.to_volts`` the same volts as the official samples.

The recordings are ../shared/data/sample1_raw.fif and sample2_raw.fif when present, else 15 s
stand-ins cut from data/sample_synthetic_raw.fif (oracle_support.sample_recordings).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import zuna_lab
from zuna_lab.pipeline.preprocessing import preprocess
from zuna_lab.pipeline.tokens import detokenize, tokenize

from oracle_support import run_oracle, sample_recordings

pytestmark = pytest.mark.oracle
FILES = ("sample1_raw", "sample2_raw")
STEPS = 8


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    return sample_recordings(tmp_path_factory.mktemp("samples"))


@pytest.fixture(scope="module", params=["ZUNA", "ZUNA1.1"])
def official(request, samples, tmp_path_factory):
    variant = request.param
    work = tmp_path_factory.mktemp(f"pipeline-{variant}")
    run_oracle(variant, "official_preprocess.py", "--out", work, "--segment-sec", "5",
               *[samples[name] for name in FILES])
    ckpt = work / "ckpt"
    run_oracle(variant, "official_model.py", "build", "--out", ckpt, "--seed", "11")
    results = {}
    rng = np.random.default_rng(0)
    for name in FILES:
        stem = f"ZUNA_{name}" if variant == "ZUNA" else f"ZUNA1.1_{name}_seg5"
        tokens = np.load(work / f"{stem}.npz")
        noise = rng.standard_normal(tokens["tokens"].shape).astype(np.float32)
        np.savez(work / f"{name}_in.npz", tokens=tokens["tokens"], tok_idx=tokens["tok_idx"], noise=noise,
                 steps=STEPS, cfgs=np.array([1.0]))
        run_oracle(variant, "official_model.py", "run", "--ckpt", ckpt, "--inputs", work / f"{name}_in.npz",
                   "--out", work / f"{name}_out.npz")
        results[name] = dict(tokens=dict(tokens), noise=noise, out=dict(np.load(work / f"{name}_out.npz")))
    return dict(variant=variant, ckpt=ckpt, results=results, samples=samples)


def max_rel(ours, ref):
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    return np.abs(ours - ref).max() / np.abs(ref).max()


@pytest.mark.parametrize("name", FILES)
def test_embed_equals_official_latents(official, name):
    model = zuna_lab.load_model(official["ckpt"], device="cpu", dtype="fp32")
    emb = zuna_lab.embed(official["samples"][name], model=model)
    ref = official["results"][name]["out"]["latents_fp32"]           # [epoch, S, 32] in official order
    n_epochs, n_channels, n_tokens, _ = emb.embedding.shape
    assert ref.shape == (n_epochs, n_channels * n_tokens, 32)
    ref_grid = detokenize(ref, n_channels, n_tokens * 32, variant=official["variant"]).reshape(emb.embedding.shape)
    assert max_rel(emb.embedding.values, ref_grid) <= 1e-5
    assert list(emb.channel.values) == list(official["results"][name]["tokens"]["ch_names"])
    assert emb.attrs["model_variant"] == official["variant"]
    assert not emb.mask.values.any()


@pytest.mark.parametrize("name", FILES)
def test_reconstruction_equals_official(official, name):
    variant = official["variant"]
    model = zuna_lab.load_model(official["ckpt"], device="cpu", dtype="fp32")
    raw = zuna_lab.read_raw(official["samples"][name])
    pre = preprocess(raw, variant)
    tokens, tok_idx = tokenize(np.stack(pre.data), pre.ch_pos, variant=variant)
    case = official["results"][name]
    noise = torch.from_numpy(case["noise"])
    latents = model.encode(torch.from_numpy(tokens), torch.from_numpy(tok_idx))
    ours = model.sample(latents, torch.from_numpy(tok_idx), noise=noise, steps=STEPS).numpy()
    ref = case["out"]["sample_fp32_cfg1"]
    assert max_rel(ours, ref) <= 1e-5
    # de-normalised: the same volts, epoch by epoch
    n_channels, n_samples = pre.data[0].shape
    for epoch in range(pre.n_epochs):
        ours_volts = pre.to_volts(detokenize(ours[epoch], n_channels, n_samples, variant=variant), epoch)
        ref_volts = pre.to_volts(detokenize(ref[epoch], n_channels, n_samples, variant=variant), epoch)
        assert np.abs(ours_volts - ref_volts).max() <= 1e-5 * np.abs(ref_volts).max()
        assert 1e-7 < np.abs(ref_volts).max() < 1e-2      # volts of EEG, not normalised units
