"""read_raw, check_recording, channel names and positions."""
from __future__ import annotations

import warnings

import mne
import numpy as np
import pytest

from zuna_lab.errors import RecordingError, RecordingFileError, ZunaLabWarning, ZunaTypeError, ZunaValueError
from zuna_lab.pipeline.masks import bad_annotation_spans
from zuna_lab.io.montage import channel_positions, clean_channel_name
from zuna_lab.pipeline.preprocessing import check_recording
from zuna_lab.io.read import read_raw

from oracle_support import require_module, sample_recordings

NAMES = ["Fp1", "Fp2", "C3", "C4", "O1", "O2"]


def _noise(n_channels=len(NAMES), seconds=6.0, sfreq=256.0, scale=20e-6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(0.0, scale, (n_channels, int(round(seconds * sfreq))))


def _raw(names=NAMES, seconds=6.0, sfreq=256.0, montage=None, **kw):
    info = mne.create_info(list(names), sfreq, "eeg")
    raw = mne.io.RawArray(_noise(len(names), seconds, sfreq, **kw), info, verbose="error")
    if montage:
        raw.set_montage(montage, verbose="error")
    return raw


@pytest.fixture(scope="module")
def sample_raw(tmp_path_factory):
    path = sample_recordings(tmp_path_factory.mktemp("samples"))["sample1_raw"]
    return mne.io.read_raw_fif(path, preload=True, verbose="error")


# ---------------------------------------------------------------- names


@pytest.mark.parametrize(
    "label,expected",
    [
        ("EEG Fp1-REF", "Fp1"), ("EEG FP1-Ref", "FP1"), ("Fp1-LE", "Fp1"), ("C3-A2", "C3"), ("C4-M1", "C4"),
        ("EEG-O1", "O1"), ("Cz_AVG", "Cz"), ("Fc5.", "Fc5"), ("Cz..", "Cz"), (" Pz ", "Pz"), ("POL T3", "T3"),
        ("Fp1-F7", "Fp1-F7"), ("A1", "A1"), ("M2", "M2"), ("EEG", "EEG"),
    ],
)
def test_clean_channel_name(label, expected):
    assert clean_channel_name(label) == expected


def test_warnings_point_at_the_users_line():
    """A ZunaLabWarning names the caller's file and line, not the library's (nor the verbose decorator's)."""
    import zuna_lab

    raw = _raw(names=NAMES + ["X1"])
    with pytest.warns(ZunaLabWarning, match="Dropped 1 EEG channel") as caught:
        zuna_lab.read_raw(raw, verbose="error")
    assert caught[0].filename == __file__


def test_positions_by_cleaned_name_case_insensitive():
    raw = read_raw(_noise(3), ch_names=["EEG FP1-REF", "c3-le", "o2."], sfreq=256, verbose="error")
    assert raw.ch_names == ["EEG FP1-REF", "c3-le", "o2."]  # names are kept as they are
    pos = channel_positions(raw)
    assert np.isfinite(pos).all()
    reference = read_raw(_noise(3), ch_names=["Fp1", "C3", "O2"], sfreq=256, verbose="error")
    np.testing.assert_allclose(pos, channel_positions(reference))
    assert pos[0, 1] > 0.05 and pos[2, 1] < -0.05  # Fp1 in front, O2 at the back (head frame, metres)


def test_channels_without_position_are_dropped_with_warning():
    with pytest.warns(ZunaLabWarning, match=r"Dropped 2 EEG channel\(s\) without a 3-D position: X1, ECG"):
        raw = read_raw(_noise(4), ch_names=["Cz", "X1", "Pz", "ECG"], sfreq=256, verbose="error")
    assert raw.ch_names == ["Cz", "Pz"]


def test_file_positions_win_when_complete(sample_raw):
    moved = sample_raw.copy()
    for ch in moved.info["chs"]:
        ch["loc"][:3] = ch["loc"][:3] * 0.9
    raw = read_raw(moved, verbose="error")
    np.testing.assert_allclose(channel_positions(raw), channel_positions(moved))


def test_montage_none_keeps_only_file_positions():
    with pytest.raises(RecordingError, match="No EEG channel has a 3-D position"):
        read_raw(_noise(2), ch_names=["Cz", "Pz"], sfreq=256, montage=None, verbose="error")


def test_non_eeg_channels_are_removed():
    info = mne.create_info(["Cz", "Pz", "STI 014", "EOG1"], 256.0, ["eeg", "eeg", "stim", "eog"])
    data = np.vstack([_noise(2), np.zeros((1, 1536)), _noise(1)])
    raw = read_raw(mne.io.RawArray(data, info, verbose="error"), verbose="error")
    assert raw.ch_names == ["Cz", "Pz"]


def test_input_raw_is_not_mutated():
    original = _raw(names=["Cz", "Pz", "X9"])
    before = original.get_data().copy()
    with pytest.warns(ZunaLabWarning):
        out = read_raw(original, verbose="error")
    assert out is not original
    assert original.ch_names == ["Cz", "Pz", "X9"]
    assert np.isnan(channel_positions(original)).all()
    np.testing.assert_array_equal(original.get_data(), before)
    out._data[:] = 0  # the result does not share memory with the input
    np.testing.assert_array_equal(original.get_data(), before)


# ---------------------------------------------------------------- sources


def test_numpy_input():
    data = _noise()
    raw = read_raw(data, ch_names=NAMES, sfreq=256.0, verbose="error")
    np.testing.assert_array_equal(raw.get_data(), data)
    assert raw.info["sfreq"] == 256.0 and raw.preload


def test_csv_with_time_column(tmp_path):
    data = _noise(3, seconds=2.0, sfreq=200.0)
    times = np.arange(data.shape[1]) / 200.0
    path = tmp_path / "rec.csv"
    np.savetxt(path, np.column_stack([times, data.T]), delimiter=",", header="time,Cz,Pz,Oz", comments="", fmt="%.10e")
    raw = read_raw(path, verbose="error")
    assert raw.ch_names == ["Cz", "Pz", "Oz"]
    assert raw.info["sfreq"] == pytest.approx(200.0)
    np.testing.assert_allclose(raw.get_data(), data, rtol=1e-9)


def test_csv_time_in_milliseconds(tmp_path):
    """A time column in ms: read as ms when its name says so ('time_ms'); under 'time' it would read as
    0.256 Hz and ~10,000 s — refused with the fix named instead (issue R)."""
    data = _noise(3, seconds=10.0)
    ms = np.arange(data.shape[1]) * 1000.0 / 256.0
    for header in ("time_ms", "time"):
        path = tmp_path / f"{header}.csv"
        np.savetxt(path, np.column_stack([ms, data.T]), delimiter=",", header=f"{header},Cz,Pz,Oz", comments="",
                   fmt="%.6f")
    raw = read_raw(tmp_path / "time_ms.csv", verbose="error")
    assert raw.info["sfreq"] == 256.0 and raw.n_times == data.shape[1] and raw.times[-1] < 10.0
    np.testing.assert_allclose(raw.get_data(), data, atol=1e-6)
    with pytest.raises(RecordingError, match=r"in seconds is 0\.256 Hz — no EEG rate; if its times are in "
                                             "milliseconds, name the column 'time_ms'"):
        read_raw(tmp_path / "time.csv")


def test_complex_raw_is_refused():
    raw = _raw()
    complex_raw = mne.io.RawArray(raw.get_data() + 1j * raw.get_data(), raw.info, verbose="error")
    with pytest.raises(RecordingError, match="holds complex samples"):
        read_raw(complex_raw)


def test_csv_without_time_column_needs_sfreq(tmp_path):
    path = tmp_path / "rec.csv"
    np.savetxt(path, _noise(2, seconds=1.0).T, delimiter=",", header="Cz,Pz", comments="")
    with pytest.raises(ZunaValueError, match="has no time column; pass sfreq="):
        read_raw(path)
    assert read_raw(path, sfreq=256.0, verbose="error").info["sfreq"] == 256.0


def test_edf_roundtrip_finds_positions_from_names(tmp_path, sample_raw):
    require_module("edfio")
    source = sample_raw.copy().rename_channels({name: f"EEG {name}-REF" for name in sample_raw.ch_names})
    path = tmp_path / "rec.edf"
    mne.export.export_raw(path, source, fmt="edf", verbose="error")
    raw = read_raw(path, verbose="error")
    assert raw.ch_names == source.ch_names
    np.testing.assert_allclose(channel_positions(raw), channel_positions(sample_raw), atol=1e-6)
    # EDF stores 16-bit integers: the signal comes back to within the quantisation step.
    np.testing.assert_allclose(raw.get_data(), sample_raw.get_data(), atol=2e-7)


def test_brainvision_roundtrip(tmp_path, sample_raw):
    require_module("pybv")
    path = tmp_path / "rec.vhdr"
    mne.export.export_raw(path, sample_raw, fmt="brainvision", verbose="error")
    raw = read_raw(path, verbose="error")
    assert raw.ch_names == sample_raw.ch_names
    np.testing.assert_allclose(channel_positions(raw), channel_positions(sample_raw), atol=1e-6)
    np.testing.assert_allclose(raw.get_data(), sample_raw.get_data(), atol=1e-7)


def test_fif_keeps_bads_and_annotations(sample_raw):
    source = sample_raw.copy()
    source.info["bads"] = ["C3"]
    source.set_annotations(mne.Annotations([source.first_time + 2.0], [0.5], ["BAD_blink"], orig_time=source.annotations.orig_time))
    raw = read_raw(source, verbose="error")
    assert raw.info["bads"] == ["C3"]
    assert bad_annotation_spans(raw) == [pytest.approx((2.0, 2.5))]


# ---------------------------------------------------------------- refusals


def test_missing_file():
    with pytest.raises(RecordingFileError, match=r"does not exist; check the path\.") as info:
        read_raw("/no/such/recording.edf")
    assert isinstance(info.value, FileNotFoundError)


def test_unknown_file_type(tmp_path):
    path = tmp_path / "notes.xyz"
    path.write_text("hello")
    with pytest.raises(RecordingFileError, match=r"\.xyz is not a recording format MNE reads"):
        read_raw(path)


def test_wrong_source_type():
    with pytest.raises(ZunaTypeError, match="Cannot read a recording from list"):
        read_raw([[0.0, 1.0]])


def test_array_needs_names_and_sfreq():
    with pytest.raises(ZunaValueError, match="needs ch_names= and sfreq="):
        read_raw(_noise())
    with pytest.raises(ZunaValueError, match="ch_names has 2 names but the array has 6 rows"):
        read_raw(_noise(), ch_names=["Cz", "Pz"], sfreq=256)


def test_no_channel_with_position():
    with pytest.raises(RecordingError, match=r"No EEG channel has a 3-D position .*raw\.set_montage"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            read_raw(_noise(2), ch_names=["X1", "X2"], sfreq=256)


def test_shorter_than_one_token():
    with pytest.raises(RecordingError, match=r"shorter than one ZUNA token \(0\.125 s\)"):
        read_raw(_noise(seconds=0.1), ch_names=NAMES, sfreq=256)


def test_nan_or_inf():
    data = _noise()
    data[2, 100] = np.nan
    with pytest.raises(RecordingError, match=r"NaN or Inf samples \(channels C3\)"):
        read_raw(data, ch_names=NAMES, sfreq=256)
    data[2, 100] = np.inf
    with pytest.raises(RecordingError, match="NaN or Inf"):
        read_raw(data, ch_names=NAMES, sfreq=256)


def test_microvolts_stored_as_volts():
    with pytest.raises(RecordingError, match=r"too large for volts .* multiply by 1e-6"):
        read_raw(_noise(scale=20.0), ch_names=NAMES, sfreq=256)


def test_large_dc_offset_is_not_mistaken_for_microvolts():
    data = _noise() + 0.2  # DC-coupled amplifiers store offsets of tens to hundreds of mV
    assert read_raw(data, ch_names=NAMES, sfreq=256, verbose="error").n_times == data.shape[1]


def test_flat_recording():
    with pytest.raises(RecordingError, match=r"recording is flat"):
        read_raw(np.zeros((3, 512)), ch_names=["Cz", "Pz", "Oz"], sfreq=256)


def test_check_recording_variant_minimum():
    raw = read_raw(_noise(seconds=3.0), ch_names=NAMES, sfreq=256, verbose="error")
    with pytest.raises(RecordingError, match=r"lasts 3\.000 s but ZUNA needs at least 5 s .* variant 'ZUNA1\.1'"):
        check_recording(raw, "ZUNA")
    check_recording(raw, "ZUNA1.1")
    with pytest.raises(ZunaValueError, match="Unknown model variant"):
        check_recording(raw, "ZUNA2")


def test_check_recording_single_channel_and_missing_positions():
    raw = read_raw(_noise(1), ch_names=["Cz"], sfreq=256, verbose="error")
    with pytest.raises(RecordingError, match="at least 2 EEG channels"):
        check_recording(raw, "ZUNA1.1")
    with pytest.raises(RecordingError, match=r"have no 3-D position; read the recording with zuna_lab\.read_raw"):
        check_recording(_raw(), "ZUNA")
    with pytest.raises(ZunaTypeError, match="Expected an mne.io.Raw"):
        check_recording(_noise(), "ZUNA")
