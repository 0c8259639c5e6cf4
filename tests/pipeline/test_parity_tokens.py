"""Token parity with the official packages: our preprocessing + tokenisation must produce the
exact encoder input of zuna 0.1.1 (ZUNA) and zuna 1.1.6 (ZUNA1.1).

The official code runs in its own venv (tests/oracle/setup_venvs.sh) through
tests/oracle/official_preprocess.py. Without the venvs these tests skip, unless
ZUNA_LAB_REQUIRE_ORACLE=1, where they fail. The recordings are ../shared/data/sample1_raw.fif
and sample2_raw.fif when present, else 15 s stand-ins cut from data/sample_synthetic_raw.fif
(oracle_support.sample_recordings).
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import mne
import numpy as np
import pytest

from zuna_lab.pipeline.masks import bad_annotation_spans
from zuna_lab.io.read import read_raw
from zuna_lab.pipeline.preprocessing import preprocess
from zuna_lab.pipeline.tokens import detokenize, mask_to_sequence, tokenize
from zuna_lab.pipeline.tokens import epoch_token_mask

from oracle_support import VERSIONS, oracle_python, sample_recordings

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "oracle" / "official_preprocess.py"
SEGMENTS = (5.0, 4.0)  # ZUNA1.1: equal segments, and a shorter last one (15 s = 4 + 4 + 4 + 3)
FILES = ("sample1_raw", "sample2_raw", "sample1_500hz_raw", "sample2_bads_raw")
TOLERANCE = 1e-5

pytestmark = pytest.mark.oracle


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    return sample_recordings(tmp_path_factory.mktemp("samples"))


@pytest.fixture(scope="module")
def inputs(samples, tmp_path_factory):
    folder = tmp_path_factory.mktemp("oracle_inputs")
    for name, path in samples.items():
        (folder / f"{name}.fif").symlink_to(path)
    # Resampling path: a 500 Hz copy.
    raw = mne.io.read_raw_fif(samples["sample1_raw"], preload=True, verbose="error")
    raw.resample(500.0, verbose="error")
    raw.save(folder / "sample1_500hz_raw.fif", verbose="error")
    # Bad channel + BAD_ annotation: reference/statistics (ZUNA) and masking (ZUNA1.1) rules.
    raw = mne.io.read_raw_fif(samples["sample2_raw"], preload=True, verbose="error")
    raw.info["bads"] = ["F3"]
    raw.set_annotations(
        mne.Annotations([raw.first_time + 6.21], [0.6], ["BAD_motion"], orig_time=raw.annotations.orig_time)
    )
    raw.save(folder / "sample2_bads_raw.fif", verbose="error")
    return folder


@pytest.fixture(scope="module")
def oracle(inputs, tmp_path_factory):
    pythons = {variant: oracle_python(variant) for variant in VERSIONS}
    out = tmp_path_factory.mktemp("oracle_out")
    fifs = [str(inputs / f"{name}.fif") for name in FILES]
    # Both venvs run at once: each spends most of its time importing torch and MNE.
    runs = {
        variant: subprocess.Popen(
            [str(python), str(SCRIPT), "--out", str(out), "--segment-sec", ",".join(map(str, SEGMENTS)), *fifs],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for variant, python in pythons.items()
    }
    for variant, run in runs.items():
        stdout, stderr = run.communicate(timeout=300)
        assert run.returncode == 0, f"official {variant} preprocessing failed:\n{stderr[-4000:]}"
    return out


def _official(oracle, variant, name, segment=None):
    tag = "" if variant == "ZUNA" else f"_seg{segment:g}".replace(".", "p")
    return np.load(oracle / f"{variant}_{name}{tag}.npz")


_OURS = {}


def _ours(inputs, variant, name, segment=None):
    key = (str(inputs), variant, name, segment)
    if key not in _OURS:
        raw = read_raw(inputs / f"{name}.fif", verbose="error")
        _OURS[key] = raw, preprocess(raw, variant, segment_duration=segment, verbose="error")
    return _OURS[key]


def _our_mask(pre, raw, index):
    # ZUNA (0.1.1) hides nothing by default; ZUNA1.1 hides info["bads"] and BAD_ annotations.
    if pre.variant == "ZUNA":
        return None
    return epoch_token_mask(pre, index, bad_channels=pre.bads, bad_spans=bad_annotation_spans(raw))


CASES = [("ZUNA", name, None) for name in FILES] + [("ZUNA1.1", name, seg) for name in FILES for seg in SEGMENTS]


@pytest.mark.parametrize("variant,name,segment", CASES)
def test_encoder_input_matches_official(oracle, inputs, variant, name, segment):
    official = _official(oracle, variant, name, segment)
    raw, pre = _ours(inputs, variant, name, segment)
    assert list(official["ch_names"]) == list(pre.ch_names)
    n_official = len([k for k in official.files if k.startswith("tokens_")])
    assert pre.n_epochs == n_official
    for i in range(pre.n_epochs):
        mask = _our_mask(pre, raw, i)
        tokens, tok_idx = tokenize(pre.data[i], pre.ch_pos, variant=variant, mask=mask)
        assert tokens.shape == official[f"tokens_{i}"].shape
        assert np.abs(tokens - official[f"tokens_{i}"]).max() <= TOLERANCE
        np.testing.assert_array_equal(tok_idx, official[f"tok_idx_{i}"])
        if mask is None:
            assert not official[f"token_mask_{i}"].any()
        else:
            np.testing.assert_array_equal(mask_to_sequence(mask, variant=variant), official[f"token_mask_{i}"])


def test_bad_annotation_drops_zuna_epoch_and_masks_zuna11_tokens(oracle, inputs):
    _, pre = _ours(inputs, "ZUNA", "sample2_bads_raw")
    np.testing.assert_allclose(pre.epoch_start, [0.0, 10.0])  # the epoch 5–10 s overlaps BAD_motion
    raw, pre11 = _ours(inputs, "ZUNA1.1", "sample2_bads_raw", 5.0)
    mask = epoch_token_mask(pre11, 1, bad_channels=pre11.bads, bad_spans=bad_annotation_spans(raw))
    assert mask[pre11.ch_names.index("F3")].all()
    assert mask[:, 9:15].all() and not mask[0, :9].any()  # 6.21–6.81 s → tokens 9–14 of the 2nd segment


@pytest.mark.parametrize("name", ["sample1_raw", "sample2_bads_raw", "sample1_500hz_raw"])
def test_zuna_normalisation_matches_official(oracle, inputs, name):
    official = _official(oracle, "ZUNA", name)
    _, pre = _ours(inputs, "ZUNA", name)
    for key in ("global_mean", "global_std", "final_mean", "final_std"):
        assert pre.params[key] == pytest.approx(float(official[key]), rel=1e-9, abs=1e-20)


@pytest.mark.parametrize("segment", SEGMENTS)
def test_zuna11_normalisation_and_inverse_match_official(oracle, inputs, segment):
    official = _official(oracle, "ZUNA1.1", "sample2_raw", segment)
    _, pre = _ours(inputs, "ZUNA1.1", "sample2_raw", segment)
    np.testing.assert_allclose(pre.scale, official["seg_std"], rtol=1e-5)
    np.testing.assert_allclose(pre.offset, official["seg_mean"], atol=1e-11)
    for i in range(pre.n_epochs):
        np.testing.assert_allclose(pre.reference[i], official[f"avg_ref_offset_{i}"], atol=1e-10)
        # The official FifReconstructor inverse applied to the official tokens equals our to_volts.
        n_samples = pre.n_samples(i)
        grid = detokenize(official[f"tokens_{i}"], pre.n_channels, n_samples, variant="ZUNA1.1")
        theirs = grid * 10.0 * official["seg_std"][i][:, None] + official["seg_mean"][i][:, None] + official[f"avg_ref_offset_{i}"]
        ours = pre.to_volts(grid, i)
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-3 * np.abs(theirs).max())


@pytest.mark.parametrize("variant", ["ZUNA", "ZUNA1.1"])
def test_inverse_returns_to_filtered_volts(variant, samples):
    """Unclipped samples go back to the resampled, 0.5 Hz high-passed recording (own reference)."""
    raw = read_raw(samples["sample1_raw"], verbose="error")
    filtered = raw.copy().filter(0.5, None, verbose="error").get_data()
    pre = preprocess(raw, variant, verbose="error")
    for i in range(pre.n_epochs):
        start = int(round(pre.epoch_start[i] * pre.sfreq))
        expected = filtered[:, start:start + pre.n_samples(i)]
        back = pre.to_volts(pre.data[i], i)
        keep = ~pre.clipped(i)
        # float32 model input: relative error ~1e-7 of the signal's scale
        assert np.abs(back - expected)[keep].max() < 1e-5 * np.abs(expected).max()
        np.testing.assert_allclose(pre.volts[i], expected, atol=1e-12)
