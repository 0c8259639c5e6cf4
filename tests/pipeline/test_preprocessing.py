"""The per-variant pipelines on synthetic recordings (parity with the official code: test_parity_tokens)."""
from __future__ import annotations

import mne
import numpy as np
import pytest

from zuna_lab.errors import RecordingError, ZunaTypeError, ZunaValueError
from zuna_lab.io.read import read_raw
from zuna_lab.pipeline.preprocessing import preprocess
from zuna_lab.pipeline.tokens import epoch_token_mask

NAMES = ["Fp1", "Fp2", "C3", "C4", "P3", "P4", "O1", "O2"]


def _recording(seconds=15.0, sfreq=256.0, seed=0):
    rng = np.random.default_rng(seed)
    n_times = int(round(seconds * sfreq))
    t = np.arange(n_times) / sfreq
    data = rng.normal(0, 10e-6, (len(NAMES), n_times)) + 20e-6 * np.sin(2 * np.pi * 10 * t)
    return read_raw(data, ch_names=NAMES, sfreq=sfreq, verbose="error")


@pytest.fixture(scope="module")
def raw15():
    return _recording()


def test_zuna_epochs(raw15):
    pre = preprocess(raw15, "ZUNA", verbose="error")
    assert pre.variant == "ZUNA" and pre.n_epochs == 3 and pre.sfreq == 256.0
    assert [d.shape for d in pre.data] == [(8, 1280)] * 3
    np.testing.assert_allclose(pre.epoch_start, [0.0, 5.0, 10.0])
    assert all(d.dtype == np.float32 and not d.flags.writeable for d in pre.data)
    assert all(np.abs(d).max() <= 1.0 for d in pre.data)
    stacked = np.stack(pre.data).astype(float) * 10  # undo ÷ 10: the second z-score gives mean 0, std 1
    assert abs(stacked.mean()) < 1e-6 and stacked.std() == pytest.approx(1.0, rel=1e-5)
    assert set(pre.params) >= {"global_mean", "global_std", "final_mean", "final_std", "highpass_hz"}
    assert pre.ch_names == tuple(NAMES) and pre.ch_pos.shape == (8, 3)


def test_zuna_drops_the_last_partial_epoch():
    pre = preprocess(_recording(seconds=12.3), "ZUNA", verbose="error")
    assert pre.n_epochs == 2 and pre.n_times == int(round(12.3 * 256))


def test_zuna11_segments_keep_a_shorter_last_one():
    pre = preprocess(_recording(seconds=10.3), "ZUNA1.1", segment_duration=4.0, verbose="error")
    # 10.3 s = 2636 samples: 1024, 1024, then 588 -> snapped down to 576 (18 tokens)
    assert [d.shape[1] for d in pre.data] == [1024, 1024, 576]
    np.testing.assert_allclose(pre.epoch_start, [0.0, 4.0, 8.0])


def test_zuna11_drops_a_tail_shorter_than_one_token():
    pre = preprocess(_recording(seconds=5.1), "ZUNA1.1", verbose="error")
    assert [d.shape[1] for d in pre.data] == [1280]  # the 25-sample tail is not a token


def test_zuna11_segment_is_snapped_to_whole_tokens():
    pre = preprocess(_recording(seconds=6.0), "ZUNA1.1", segment_duration=0.55, verbose="error")
    assert pre.data[0].shape[1] == 128  # round(0.55 * 256) = 141 -> 128 samples
    assert pre.params["segment_samples"] == 128


def test_zuna11_per_channel_zscore_with_official_epsilon(raw15):
    pre = preprocess(raw15, "ZUNA1.1", verbose="error")
    for i in range(pre.n_epochs):
        z = pre.data[i].astype(float) * 10
        np.testing.assert_allclose(z.mean(axis=1), 0, atol=1e-6)
        # std + 1e-6 V in the denominator: with ~1e-5 V channels the std is well below 1
        expected = (pre.scale[i] - 1e-6) / pre.scale[i]
        np.testing.assert_allclose(z.std(axis=1), expected, rtol=1e-5)
        assert (z.std(axis=1) < 0.98).all()
        # the average reference was removed before the z-score
        np.testing.assert_allclose((pre.volts[i] - pre.reference[i]).mean(axis=0), 0, atol=1e-18)


@pytest.mark.parametrize("variant", ["ZUNA", "ZUNA1.1"])
def test_to_volts_round_trip(raw15, variant):
    pre = preprocess(raw15, variant, verbose="error")
    for i in range(pre.n_epochs):
        keep = ~pre.clipped(i)
        back = pre.to_volts(pre.data[i], i)
        assert np.abs(back - pre.volts[i])[keep].max() < 1e-6 * np.abs(pre.volts[i]).max()
        average = pre.to_volts(pre.data[i], i, reference="average")
        np.testing.assert_allclose(back - average, np.broadcast_to(pre.reference[i], back.shape), atol=1e-15)
    # a prefix (e.g. a shorter decoder output) and a leading batch dim are accepted
    assert pre.to_volts(np.stack([pre.data[0][:, :64]] * 2), 0).shape == (2, 8, 64)


def test_resamples_to_256():
    pre = preprocess(_recording(seconds=6.0, sfreq=512.0), "ZUNA1.1", verbose="error")
    assert pre.sfreq == 256.0 and pre.source_sfreq == 512.0 and pre.params["resampled"]
    assert pre.data[0].shape == (8, 1280) and pre.n_times == 1536


def test_input_is_not_mutated(raw15):
    before = raw15.get_data().copy()
    info_before = (list(raw15.ch_names), raw15.info["sfreq"], list(raw15.info["bads"]), raw15.info["custom_ref_applied"])
    preprocess(raw15, "ZUNA", verbose="error")
    np.testing.assert_array_equal(raw15.get_data(), before)
    assert info_before == (list(raw15.ch_names), raw15.info["sfreq"], list(raw15.info["bads"]), raw15.info["custom_ref_applied"])


def test_bad_channels_excluded_from_zuna_statistics(raw15):
    noisy = raw15.copy()
    noisy._data[2] *= 50  # a wildly noisy C3
    plain = preprocess(noisy, "ZUNA", verbose="error")
    noisy.info["bads"] = ["C3"]
    marked = preprocess(noisy, "ZUNA", verbose="error")
    assert marked.bads == ("C3",)
    assert marked.params["global_std"] < plain.params["global_std"] / 5


def test_token_mask_of_an_epoch(raw15):
    pre = preprocess(raw15, "ZUNA1.1", verbose="error")
    mask = epoch_token_mask(pre, 1, bad_channels=["o2"], bad_spans=[(6.0, 6.2), (2.0, 3.0)])
    assert mask.shape == (8, 40)
    assert mask[7].all() and mask[:7, 8:10].all() and mask[:7].sum() == 7 * 2  # the 2–3 s span lies in epoch 0


def test_refusals(raw15):
    with pytest.raises(ZunaValueError, match="ZUNA was trained on 5 s epochs only"):
        preprocess(raw15, "ZUNA", segment_duration=10.0)
    with pytest.raises(ZunaValueError, match="between 0.5 and 30 s for ZUNA1.1, got 31"):
        preprocess(raw15, "ZUNA1.1", segment_duration=31)
    with pytest.raises(ZunaTypeError, match="segment_duration must be a number"):
        preprocess(raw15, "ZUNA1.1", segment_duration="5")
    with pytest.raises(ZunaValueError, match="Unknown model variant"):
        preprocess(raw15, "zuna")
    with pytest.raises(RecordingError, match="ZUNA needs at least 5 s"):
        preprocess(_recording(seconds=4.0), "ZUNA")
    pre = preprocess(raw15, "ZUNA")
    with pytest.raises(ZunaValueError, match=r"epoch_index must be in \[0, 3\)"):
        pre.to_volts(pre.data[0], 3)
    with pytest.raises(ZunaValueError, match="has 8 channels x 1280 samples"):
        pre.to_volts(np.zeros((7, 1280)), 0)
    info = mne.create_info(["Cz", "Pz"], 256.0, "eeg")
    with pytest.raises(RecordingError, match="have no 3-D position"):
        preprocess(mne.io.RawArray(np.random.default_rng(0).normal(0, 1e-5, (2, 2560)), info, verbose="error"), "ZUNA")
