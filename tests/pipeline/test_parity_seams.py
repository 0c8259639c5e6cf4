"""Hybrid reconstruction parity with the official ``zuna.reconstruct_fif`` (zuna 1.1.6, ZUNA1.1),
with a BAD_ span that crosses an epoch boundary.

The official v4 reconstructor stitches every segment's hybrid (original on kept cells, model
output on masked cells) into the whole recording and seam-corrects the STITCHED recording
(``FifReconstructor._seam_correct_hybrid``): per channel and contiguous masked run, a linear ramp
when original data lies on both sides, a constant shift when on one side, nothing for a channel
masked throughout. A run crossing an epoch boundary is ONE run there: correcting each epoch on
its own would shift its two halves to one neighbour each instead.

The recording: the bundled synthetic sample cropped to 15 s (three 5 s segments) with
* ``BAD_crossing`` 4.3–5.6 s on C3 only: tokens 34–39 of segment 0 and 0–4 of segment 1,
  one masked run of samples 1088–1439 in the stitched recording;
* ``BAD_inside`` 11.2–11.9 s on all channels, inside segment 2;
* T8 in ``info["bads"]`` (masked throughout, left as the model made it).

Both sides use the same random ZUNA1.1 checkpoint (built by the official code) and the same
sampler noise: zuna_lab draws epoch i's noise from ``noise_seed(seed, 0, i)`` (zuna_lab.api.infill); the test draws
exactly that and hands it to the official run (tests/oracle/official_reconstruct.py), whose
token order for ZUNA1.1 is zuna_lab's (tests/pipeline/test_parity_tokens.py).

Kept cells: the official hybrid takes them from the de-normalised model INPUT (÷10 and clipped
at ±1, ``v4_recon_unmasked_from_original=False``), zuna_lab from the filtered volts. They differ
only where the input was clipped; ``test_kept_cells_differ_only_where_clipped`` checks that, and
the comparisons leave clipped samples out (there are none in this recording, which is checked too).
"""
from __future__ import annotations

import json
from pathlib import Path

import mne
import numpy as np
import pytest
import torch

import zuna_lab
from zuna_lab.api.infill import noise_seed
from zuna_lab.pipeline.tokens import mask_to_sequence, tokenize

from oracle_support import run_oracle

pytestmark = pytest.mark.oracle

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "sample_synthetic_raw.fif"
STEPS = 6
SEED = 7
SEGMENT = 5.0
CROSSING = dict(onset=4.3, duration=1.3, channel="C3")      # crosses the 5 s boundary
INSIDE = dict(onset=11.2, duration=0.7)                     # all channels, inside 10–15 s
BAD_CHANNEL = "T8"
TOLERANCE = 1e-5                                            # of max|ref|; the official output is float32


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    work = tmp_path_factory.mktemp("seams")
    raw = mne.io.read_raw_fif(SAMPLE, preload=True, verbose="error")
    raw.crop(0.0, 15.0 - 1.0 / raw.info["sfreq"])
    raw.info["bads"] = [BAD_CHANNEL]
    t0 = raw.first_time
    raw.set_annotations(raw.annotations + mne.Annotations(
        [t0 + CROSSING["onset"], t0 + INSIDE["onset"]], [CROSSING["duration"], INSIDE["duration"]],
        ["BAD_crossing", "BAD_inside"], ch_names=[[CROSSING["channel"]], []], orig_time=raw.annotations.orig_time))
    fif = work / "seams_raw.fif"
    raw.save(fif, verbose="error")

    ckpt = work / "ckpt"
    run_oracle("ZUNA1.1", "official_model.py", "build", "--out", ckpt, "--seed", "5")
    model = zuna_lab.load_model(ckpt, device="cpu", dtype="fp32")
    rec = zuna_lab.reconstruct(fif, model=model, steps=STEPS, seed=SEED, segment_duration=SEGMENT, progress=False)

    # zuna_lab's noise of each epoch, as core.reconstruct draws it (sample 0)
    n_channels = rec.sizes["channel"]
    noise = {}
    for i in range(rec.sizes["epoch"]):
        n_tokens = int(np.isfinite(rec.original.values[i, 0]).sum()) // 32
        generator = torch.Generator().manual_seed(noise_seed(SEED, 0, i))
        noise[f"noise_{i}"] = torch.randn((n_channels * n_tokens, 32), generator=generator).numpy()
    np.savez(work / "noise.npz", **noise)
    run_oracle("ZUNA1.1", "official_reconstruct.py", "--fif", fif, "--ckpt", ckpt, "--noise", work / "noise.npz",
               "--steps", STEPS, "--segment-sec", SEGMENT, "--work", work / "official", "--out", work / "official.npz")
    official = dict(np.load(work / "official.npz"))
    return dict(fif=fif, model=model, rec=rec, noise=noise, official=official)


def _stitch(values, epoch_start, sfreq, n_total):
    """(epoch, channel, time) -> (channel, n_total), each epoch at round(epoch_start * sfreq)."""
    out = np.full((values.shape[1], n_total), np.nan)
    for i, start in enumerate(np.rint(np.asarray(epoch_start) * sfreq).astype(int)):
        block = values[i]
        width = min(int(np.isfinite(block).all(axis=0).sum()), n_total - start)
        out[:, start:start + width] = block[:, :width]
    return out


def _official_mask(official):
    """(channel, sample) mask from the official ZUNA1.1_infilled annotations of the hybrid .fif."""
    ch_names = list(official["ch_names"])
    sfreq = float(official["sfreq"])
    mask = np.zeros(official["hybrid"].shape, bool)
    for onset, duration, description, channels in zip(official["ann_onset"], official["ann_duration"],
                                                      official["ann_description"], json.loads(str(official["ann_ch_names"]))):
        assert description == "ZUNA1.1_infilled"
        rows = [ch_names.index(c) for c in channels] if channels else slice(None)
        start = int(round(onset * sfreq))
        mask[rows, start:start + int(round(duration * sfreq))] = True
    return mask


def _ours(case):
    rec, official = case["rec"], case["official"]
    sfreq, n_total = float(official["sfreq"]), official["hybrid"].shape[1]
    stitched = {kind: _stitch(rec[kind].values, rec.epoch_start.values, sfreq, n_total)
                for kind in ("original", "hybrid", "reconstruction")}
    stitched["mask"] = _stitch(np.repeat(rec.mask.values, 32, axis=2).astype(float), rec.epoch_start.values,
                               sfreq, n_total).astype(bool)
    return stitched


def _clipped(case):
    """Samples whose model input was clipped at ±1 (÷10), from the official encoder input, stitched."""
    official, rec = case["official"], case["rec"]
    n_channels = rec.sizes["channel"]
    clipped = np.zeros(official["hybrid"].shape, bool)
    for i, start in enumerate(official["seg_start"]):
        tokens = official[f"tokens_{i}"]                                   # (tokens, 32), time-major
        n_tokens = tokens.shape[0] // n_channels
        grid = tokens.reshape(n_tokens, n_channels, 32).transpose(1, 0, 2).reshape(n_channels, -1)
        clipped[:, start:start + grid.shape[1]] = np.abs(grid) >= 1.0
    return clipped


def _max_rel(ours, ref, where=None):
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    if where is not None:
        ours, ref = ours[where], ref[where]
    return float(np.abs(ours - ref).max() / np.abs(ref).max())


def test_same_input_tokens_and_noise(case):
    """The premise: the official run fed its model zuna_lab's tokens, token mask and noise."""
    rec, model, official = case["rec"], case["model"], case["official"]
    from zuna_lab.api.core import prepare
    pre = prepare(case["fif"], model.variant, segment_duration=SEGMENT, verbose="error").pre
    assert list(official["ch_names"]) == list(rec.channel.values)
    assert len(official["seg_start"]) == rec.sizes["epoch"] == 3
    np.testing.assert_array_equal(official["seg_start"], np.rint(rec.epoch_start.values * 256).astype(int))
    for i in range(rec.sizes["epoch"]):
        tokens, tok_idx = tokenize(pre.data[i], pre.ch_pos, variant=model.variant, mask=rec.mask.values[i])
        assert np.abs(tokens - official[f"tokens_{i}"]).max() <= 1e-5
        np.testing.assert_array_equal(tok_idx, official[f"tok_idx_{i}"])
        np.testing.assert_array_equal(mask_to_sequence(rec.mask.values[i], variant=model.variant), official[f"token_mask_{i}"])
        np.testing.assert_array_equal(official[f"noise_{i}"], case["noise"][f"noise_{i}"])


def test_masks_match_official_infill_annotations(case):
    ours = _ours(case)["mask"]
    official = _official_mask(case["official"])
    np.testing.assert_array_equal(ours, official)
    buffered = np.concatenate([case["official"][f"mask_{i}"] for i in range(len(case["official"]["seg_start"]))], axis=1)
    np.testing.assert_array_equal(ours, buffered)
    ch_names = list(case["official"]["ch_names"])
    c3 = ch_names.index(CROSSING["channel"])
    assert np.flatnonzero(official[c3, :2560]).tolist() == list(range(1088, 1440))   # one run across 1280
    others = [c for c in range(len(ch_names)) if ch_names[c] not in (CROSSING["channel"], BAD_CHANNEL)]
    assert not official[others, :2560].any()
    assert official[:, 2848:3072].all() and not official[others, 2560:2848].any()   # BAD_inside: tokens 25-31 of segment 2
    assert official[list(case["official"]["ch_names"]).index(BAD_CHANNEL)].all()
    assert BAD_CHANNEL not in case["official"]["out_bads"]                       # fully infilled -> not bad


def test_kept_cells_differ_only_where_clipped(case):
    ours, official = _ours(case), case["official"]
    clipped = _clipped(case)
    kept = ~_official_mask(official)
    error = _max_rel(ours["original"], official["hybrid"], kept & ~clipped)
    print(f"kept cells: max|Δ| = {error:.2e} of max|ref|; {int(clipped.sum())} clipped samples")
    assert error <= TOLERANCE
    assert not clipped.any(), "the synthetic recording is not expected to clip (÷10 at ±1)"


def test_full_reconstruction_matches_official(case):
    ours, official = _ours(case), case["official"]
    error = _max_rel(ours["reconstruction"], official["full"])
    print(f"full reconstruction: max|Δ| = {error:.2e} of max|ref|")
    assert error <= TOLERANCE


def test_hybrid_matches_official(case):
    ours, official = _ours(case), case["official"]
    keep = ~_clipped(case)
    assert np.isfinite(ours["hybrid"]).all() and np.isfinite(official["hybrid"]).all()
    error = _max_rel(ours["hybrid"], official["hybrid"], keep)
    print(f"hybrid: max|Δ| = {error:.2e} of max|ref|; masked cells only: "
          f"{_max_rel(ours['hybrid'], official['hybrid'], keep & _official_mask(official)) :.2e}")
    assert error <= TOLERANCE


def test_hybrid_matches_official_across_the_epoch_boundary(case):
    ours, official = _ours(case), case["official"]
    c3 = list(official["ch_names"]).index(CROSSING["channel"])
    run = slice(1087, 1441)                                    # the run and its two original neighbours
    ref = official["hybrid"][c3, run]
    error = np.abs(ours["hybrid"][c3, run] - ref).max() / np.abs(official["hybrid"]).max()
    print(f"C3 run 1088-1439: max|Δ| = {error:.2e} of max|ref| (recording), "
          f"{np.abs(ours['hybrid'][c3, run] - ref).max() / np.abs(ref).max():.2e} of max|ref| on the run")
    assert error <= TOLERANCE, f"C3 samples 1088-1439 (crossing 1280): max|Δ| = {error:.2e} of max|ref|"
