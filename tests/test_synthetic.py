"""Tests of zuna_lab.synthetic and of the committed synthetic sample recording."""

import importlib.util
from pathlib import Path

import mne
import numpy as np
import pytest
from mne.io.constants import FIFF

from zuna_lab.errors import ZunaTypeError, ZunaValueError
from zuna_lab.synthetic import DEFAULT_CH_NAMES, make_synthetic_raw

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
OCCIPITAL = ["O1", "O2", "Pz"]
FRONTAL_POLE = ["Fp1", "Fp2"]


@pytest.fixture(scope="module")
def raw():
    return make_synthetic_raw(seed=0, verbose=False)


def _band_power(psd, freqs, low, high):
    return psd[..., (freqs >= low) & (freqs <= high)].mean(axis=-1)


def _welch(raw, picks, tmin=None, tmax=None):
    spectrum = raw.compute_psd(
        method="welch", picks=picks, tmin=tmin, tmax=tmax, fmax=100, n_fft=512, verbose=False
    )
    return spectrum.get_data(), spectrum.freqs


def _annotation_spans(raw, description):
    return [
        (onset, onset + duration)
        for onset, duration, desc in zip(
            raw.annotations.onset, raw.annotations.duration, raw.annotations.description
        )
        if desc == description
    ]


def test_same_seed_gives_identical_recording(raw):
    again = make_synthetic_raw(seed=0, verbose=False)
    np.testing.assert_array_equal(raw.get_data(), again.get_data())
    np.testing.assert_array_equal(raw.annotations.onset, again.annotations.onset)
    assert list(raw.annotations.description) == list(again.annotations.description)
    assert raw.info["description"] == again.info["description"]


def test_different_seed_gives_different_recording(raw):
    other = make_synthetic_raw(seed=1, verbose=False)
    assert other.get_data().shape == raw.get_data().shape
    assert not np.allclose(raw.get_data(), other.get_data())


def test_shape_channels_and_metadata(raw):
    assert raw.ch_names == list(DEFAULT_CH_NAMES)
    assert raw.info["sfreq"] == 256.0
    assert raw.n_times == 60 * 256
    assert set(raw.get_channel_types()) == {"eeg"}
    assert raw.info["line_freq"] == 50.0
    description = raw.info["description"]
    assert "SYNTHETIC" in description and "seed=0" in description and "not a real" in description


def test_amplitudes_are_plausible_eeg_in_volts(raw):
    data = raw.get_data()
    std = data.std(axis=1)
    assert np.all(std > 5e-6) and np.all(std < 50e-6), std  # volts, not µV
    assert np.abs(data).max() < 400e-6
    # Background alone (eyes-open, blink-free, non-frontal) stays in the 10-30 µV band.
    no_blink = raw.copy().pick(["C3", "Cz", "C4", "T7", "T8"]).crop(10, 12).get_data()
    assert np.all((no_blink.std(axis=1) > 5e-6) & (no_blink.std(axis=1) < 35e-6))


def test_alpha_peak_at_occipital_channels(raw):
    psd, freqs = _welch(raw, OCCIPITAL + ["Fz"])
    alpha = _band_power(psd, freqs, 8, 12)
    neighbours = (_band_power(psd, freqs, 4, 7) + _band_power(psd, freqs, 13, 16)) / 2
    ratio = alpha / neighbours
    assert np.all(ratio[:3] > 3), ratio
    assert ratio[3] < 1.5, ratio  # frontal: no alpha peak to speak of
    # Alpha is strongest at O1, O2 and Pz among all channels.
    all_psd, freqs = _welch(raw, "eeg")
    strongest = np.argsort(_band_power(all_psd, freqs, 8, 12))[::-1][:3]
    assert {raw.ch_names[i] for i in strongest} == set(OCCIPITAL)


def test_alpha_is_stronger_with_eyes_closed(raw):
    def alpha_power(description):
        powers = []
        for start, stop in _annotation_spans(raw, description):
            # Skip the ramps at the edges of each block.
            psd, freqs = _welch(raw, ["O1", "O2"], tmin=start + 1, tmax=stop - 1)
            powers.append(_band_power(psd, freqs, 8, 12).mean())
        return np.array(powers)

    closed, opened = alpha_power("eyes_closed"), alpha_power("eyes_open")
    assert len(closed) == 3 and len(opened) == 3
    assert closed.min() > opened.max(), (closed, opened)
    assert closed.mean() > 4 * opened.mean(), (closed, opened)
    # The blocks tile the recording and alternate, eyes closed first.
    blocks = sorted(
        _annotation_spans(raw, "eyes_closed") + _annotation_spans(raw, "eyes_open")
    )
    assert blocks[0][0] == 0 and np.isclose(blocks[-1][1], raw.times[-1] + 1 / 256)
    assert all(np.isclose(a[1], b[0]) for a, b in zip(blocks, blocks[1:]))


def test_blinks_are_annotated_and_frontal(raw):
    blinks = _annotation_spans(raw, "blink")
    assert 2 <= len(blinks) <= 15  # a few per minute
    eyes_open = _annotation_spans(raw, "eyes_open")
    assert all(any(s <= start and stop <= e for s, e in eyes_open) for start, stop in blinks)

    data = raw.get_data(picks=["Fp1", "Fp2", "Fz", "Cz", "O1"])
    for start, stop in blinks:
        first, last = raw.time_as_index([start, stop])
        segment = data[:, first:last]
        deflection = np.abs(segment - segment[:, :1]).max(axis=1)
        fp1, fp2, fz, cz, o1 = deflection
        # Each blink is 100-200 µV at Fp1/Fp2; the background can add or take some.
        assert min(fp1, fp2) > 60e-6 and max(fp1, fp2) < 300e-6, deflection
    # Blink-locked average (background averages out): falls off with distance from the eyes.
    starts = raw.time_as_index([start for start, _ in blinks])
    width = int(0.4 * raw.info["sfreq"])
    locked = np.mean([data[:, s : s + width] - data[:, s : s + 1] for s in starts], axis=0)
    fp1, fp2, fz, cz, o1 = np.abs(locked).max(axis=1)
    assert min(fp1, fp2) > 1.5 * fz and fz > cz and fz > o1, (fp1, fp2, fz, cz, o1)
    # Outside blinks, Fp1 stays well below blink amplitude.
    mask = np.ones(raw.n_times, bool)
    for start, stop in blinks:
        first, last = raw.time_as_index([start - 0.1, stop + 0.1])
        mask[first:last] = False
    assert np.abs(raw.get_data(picks="Fp1")[0, mask]).max() < 150e-6


@pytest.mark.parametrize("line_freq", [50.0, 60.0])
def test_line_noise_peak(line_freq):
    raw = make_synthetic_raw(duration=20.0, seed=3, line_freq=line_freq, verbose=False)
    psd, freqs = _welch(raw, "eeg")
    peak = psd[:, np.argmin(np.abs(freqs - line_freq))]
    around = (freqs > line_freq - 6) & (freqs < line_freq + 6) & (np.abs(freqs - line_freq) > 2)
    ratio = peak / np.median(psd[:, around], axis=1)
    assert np.all(ratio > 3), ratio
    assert raw.info["line_freq"] == line_freq


def test_no_line_noise():
    raw = make_synthetic_raw(duration=20.0, seed=3, line_freq=None, verbose=False)
    psd, freqs = _welch(raw, "eeg")
    around = (freqs > 44) & (freqs < 56) & (np.abs(freqs - 50) > 2)
    ratio = psd[:, freqs == 50][:, 0] / np.median(psd[:, around], axis=1)
    assert np.all(ratio < 3), ratio


def test_montage_positions_in_head_frame(raw):
    montage = raw.get_montage()
    assert montage is not None
    positions = montage.get_positions()
    assert positions["coord_frame"] == "head"
    assert set(positions["ch_pos"]) == set(raw.ch_names)
    for ch in raw.info["chs"]:
        assert ch["coord_frame"] == FIFF.FIFFV_COORD_HEAD
        radius = np.linalg.norm(ch["loc"][:3])
        assert 0.05 < radius < 0.2, (ch["ch_name"], radius)  # metres on a head


def test_custom_channels_and_sampling():
    raw = make_synthetic_raw(
        duration=12.5, sfreq=200.0, ch_names=["Fpz", "Cz", "Oz", "POz"], seed=5, verbose=False
    )
    assert raw.ch_names == ["Fpz", "Cz", "Oz", "POz"]
    assert raw.n_times == 2500 and raw.info["sfreq"] == 200.0
    assert np.all(np.isfinite(raw.get_data()))


@pytest.mark.parametrize(
    "kwargs, error",
    [
        (dict(duration=0), ZunaValueError),
        (dict(sfreq=-1), ZunaValueError),
        (dict(line_freq=200.0), ZunaValueError),
        (dict(seed=1.5), ZunaTypeError),
        (dict(montage="no_such_montage"), ZunaValueError),
        (dict(ch_names=["Fp1", "XYZ"]), ZunaValueError),
    ],
)
def test_bad_arguments_raise(kwargs, error):
    with pytest.raises(error):
        make_synthetic_raw(**kwargs, verbose=False)


def test_committed_sample_equals_regeneration():
    spec = importlib.util.spec_from_file_location(
        "make_sample_recording", DATA_DIR / "make_sample_recording.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.SAMPLE_PATH == DATA_DIR / "sample_synthetic_raw.fif"
    assert script.SAMPLE_PATH.stat().st_size < 10e6

    committed = mne.io.read_raw_fif(script.SAMPLE_PATH, preload=True, verbose=False)
    fresh = script.make_sample_raw(verbose=False)
    assert committed.times[-1] + 1 / committed.info["sfreq"] >= 60
    assert committed.ch_names == fresh.ch_names
    assert committed.info["sfreq"] == fresh.info["sfreq"]
    # Stored as float32: equal to within float32 rounding.
    np.testing.assert_allclose(committed.get_data(), fresh.get_data(), rtol=1e-7, atol=0)
    np.testing.assert_allclose(committed.annotations.onset, fresh.annotations.onset, atol=1e-9)
    assert list(committed.annotations.description) == list(fresh.annotations.description)
    assert committed.info["description"] == fresh.info["description"]
    assert committed.get_montage() is not None


def test_write_sample_recording_is_atomic_and_readable(tmp_path):
    spec = importlib.util.spec_from_file_location(
        "make_sample_recording", DATA_DIR / "make_sample_recording.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    target = tmp_path / "copy_raw.fif"
    assert script.write_sample_recording(target, verbose=False) == target
    assert [p.name for p in tmp_path.iterdir()] == ["copy_raw.fif"]  # no temp file left
    assert mne.io.read_raw_fif(target, verbose=False).n_times == 120 * 256
