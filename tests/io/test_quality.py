"""read_raw's signal checks on a recording read lazily: the spans are read and reduced on threads, and the
per-channel statistics computed on groups of rows at once — the same values, verdicts and sentences as one
thread, and as the loaded recording."""
from __future__ import annotations

import warnings

import mne
import numpy as np
import pytest

from zuna_lab.errors import RecordingError
from zuna_lab.io import quality
from zuna_lab.pipeline.preprocessing import highpass

N_CHANNELS, N_TIMES = 16, 300_000         # more than the sampled blocks (64 x 4096 samples)


def _write(folder, data):
    names = mne.channels.make_standard_montage("standard_1005").ch_names[:len(data)]
    raw = mne.io.RawArray(data, mne.create_info(names, 256.0, "eeg"), verbose="error")
    raw.set_montage("standard_1005", verbose="error")
    path = folder / "long_raw.fif"
    raw.save(path, fmt="single", verbose="error")
    return path


def _signal(seed=0):
    rng = np.random.default_rng(seed)
    data = np.cumsum(rng.standard_normal((N_CHANNELS, N_TIMES)), axis=1) * 2e-7
    data += rng.standard_normal((N_CHANNELS, N_TIMES)) * 2e-5
    data[5] *= 1e-3                         # a channel a thousand times quieter: flat
    return data


@pytest.fixture(scope="module")
def path(tmp_path_factory):
    return _write(tmp_path_factory.mktemp("quality"), _signal())


@pytest.fixture
def small_spans(monkeypatch):
    """Spans of 4096 samples (73 of them here) instead of 262,144, so that many run on the threads."""
    monkeypatch.setattr(quality.SpanReader, "VALUES", 1 << 16)


def _checked(raw, workers, monkeypatch):
    monkeypatch.setattr(quality, "WORKERS", workers)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        flat = quality.check_signal(raw, warn=True)
    return flat, [str(w.message) for w in caught]


def test_span_reductions_on_threads_equal_one_thread_and_the_loaded_recording(path, small_spans, monkeypatch):
    lazy = mne.io.read_raw(path, preload=False, verbose="error")
    reader = quality.SpanReader(lazy)
    assert reader.SPAN == 4096
    results = {}
    for workers in (1, 4):
        monkeypatch.setattr(quality, "WORKERS", workers)
        results[workers] = [reader.sum(axis=1), reader.max(axis=1), reader.min(axis=1), reader.finite_rows()]
    for one, many in zip(*results.values()):
        np.testing.assert_array_equal(one, many)          # the same bits: combined in the same order
    loaded = lazy.get_data()
    np.testing.assert_allclose(results[4][0], loaded.sum(axis=1), rtol=1e-10)
    np.testing.assert_array_equal(results[4][1], loaded.max(axis=1))
    np.testing.assert_array_equal(results[4][2], loaded.min(axis=1))
    assert results[4][3].all()


def test_check_signal_on_threads_gives_the_same_verdict_and_sentences(path, small_spans, monkeypatch):
    lazy = mne.io.read_raw(path, preload=False, verbose="error")
    loaded = mne.io.read_raw(path, preload=True, verbose="error")
    one = _checked(lazy, 1, monkeypatch)
    many = _checked(lazy, 4, monkeypatch)
    assert one == many == _checked(loaded, 4, monkeypatch)
    assert many[0] == [lazy.ch_names[5]]                   # the quiet channel, and only it, is flat


def test_nan_in_a_late_span_is_refused_alike(tmp_path, small_spans, monkeypatch):
    data = _signal(seed=1)
    data[3, 250_000] = np.nan
    lazy = mne.io.read_raw(_write(tmp_path, data), preload=False, verbose="error")
    sentences = []
    for workers in (1, 4):
        monkeypatch.setattr(quality, "WORKERS", workers)
        with pytest.raises(RecordingError, match="NaN or Inf") as error:
            quality.check_signal(lazy)
        sentences.append(str(error.value))
    assert sentences[0] == sentences[1] and lazy.ch_names[3] in sentences[0]


def test_row_groups_on_threads_give_every_row_its_own_value(monkeypatch):
    monkeypatch.setattr(quality, "WORKERS", 4)
    array = np.random.default_rng(2).standard_normal((61, 40_000))        # > 1 M values: split over threads
    np.testing.assert_array_equal(quality.by_rows(lambda rows: rows.std(axis=1), array), array.std(axis=1))
    np.testing.assert_array_equal(quality.by_rows(lambda rows: quality._window_std(rows, 256.0), array),
                                  quality._window_std(array, 256.0))


def test_highpass_of_a_streamed_span_on_threads_is_mnes_single_call():
    span = np.random.default_rng(3).standard_normal((64, 69_000)) * 1e-5    # 64 channels: 4.4 M values
    expected = mne.filter.filter_data(span.copy(), 256.0, 0.5, None, method="fir", verbose="error")
    np.testing.assert_array_equal(highpass(span.copy(), 256.0, "error"), expected)


# A FIF file's NaN/Inf pass judged on its stored buffers (fif_samples_finite): the same verdicts as the pass
# through MNE, which still names the channels.

def _fif(folder, data, fmt="single", name="buffers_raw.fif", extra=None):
    names = mne.channels.make_standard_montage("standard_1005").ch_names[:len(data)]
    info = mne.create_info(names, 256.0, "eeg")
    if extra is not None:           # a non-EEG channel after the EEG ones
        data = np.vstack([data, extra[None]])
        info = mne.create_info([*names, "STI"], 256.0, ["eeg"] * len(names) + ["stim"])
    if fmt in ("short", "int"):        # integers in steps of 10 nV (short) or 0.1 nV (int): the signal survives
        for channel in info["chs"]:
            channel["cal"] = 1e-8 if fmt == "short" else 1e-10
    raw = mne.io.RawArray(data, info, verbose="error")
    path = folder / name
    raw.save(path, fmt=fmt, buffer_size_sec=1.0, verbose="error")
    return path


def _no_mne_pass(monkeypatch):
    """Fail if the NaN/Inf pass reads the recording through MNE (the sums over every span)."""
    def refuse(self, axis):
        raise AssertionError("the recording was read through MNE for its NaN/Inf pass")
    monkeypatch.setattr(quality.SpanReader, "sum", refuse)


@pytest.mark.parametrize("fmt", ["single", "double", "short", "int"])
def test_a_clean_fif_is_judged_on_its_buffers_with_the_same_verdict(tmp_path, fmt, monkeypatch):
    data = _signal(seed=4)[:, :40_000]
    lazy = mne.io.read_raw(_fif(tmp_path, data, fmt), preload=False, verbose="error")
    assert quality.fif_samples_finite(lazy) is True
    loaded = mne.io.read_raw(tmp_path / "buffers_raw.fif", preload=True, verbose="error")
    expected = _checked(loaded, 4, monkeypatch)
    _no_mne_pass(monkeypatch)
    assert _checked(lazy, 4, monkeypatch) == expected


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("fmt", ["single", "double"])
def test_a_non_finite_sample_in_any_buffer_goes_to_the_pass_that_names_its_channel(tmp_path, fmt, value):
    data = _signal(seed=5)[:, :40_000]
    for row, sample in ((0, 0), (9, 20_000), (15, 39_999)):     # first, middle and last buffers
        bad = data.copy()
        bad[row, sample] = value
        lazy = mne.io.read_raw(_fif(tmp_path, bad, fmt, name=f"bad{row}_raw.fif"), preload=False, verbose="error")
        assert quality.fif_samples_finite(lazy) is None
        with pytest.raises(RecordingError, match="NaN or Inf") as error:
            quality.check_signal(lazy)
        assert f"channels {lazy.ch_names[row]})" in str(error.value)


def test_only_the_raws_channels_and_samples_count(tmp_path, monkeypatch):
    data = _signal(seed=6)[:, :40_000]
    trigger = np.zeros(40_000)
    trigger[30_000] = np.nan                       # in a channel read_raw leaves out
    path = _fif(tmp_path, data, extra=trigger)
    lazy = mne.io.read_raw(path, preload=False, verbose="error")
    assert quality.fif_samples_finite(lazy) is None
    eeg = lazy.copy().pick("eeg")
    assert quality.fif_samples_finite(eeg) is True
    late = data.copy()
    late[2, 35_000] = np.nan                       # beyond the crop (its last sample is 25,600)
    cropped = mne.io.read_raw(_fif(tmp_path, late, name="late_raw.fif"), preload=False, verbose="error").crop(0, 100)
    assert quality.fif_samples_finite(cropped) is True          # buffers past the crop are not read
    late[2, 25_700] = np.nan                       # in the crop's last buffer, after its last sample
    cropped = mne.io.read_raw(_fif(tmp_path, late, name="edge_raw.fif"), preload=False, verbose="error").crop(0, 100)
    assert quality.fif_samples_finite(cropped) is None          # the buffer is read whole: unsure ...
    expected = _checked(cropped.copy().load_data(), 1, monkeypatch)
    assert _checked(cropped, 1, monkeypatch) == expected         # ... and the exact pass finds nothing to refuse


def test_two_files_projections_and_other_readers(tmp_path):
    data = _signal(seed=7)[:, :40_000]
    first = mne.io.read_raw(_fif(tmp_path, data, name="a_raw.fif"), preload=False, verbose="error")
    bad = data.copy()
    bad[4, 100] = np.nan
    second = mne.io.read_raw(_fif(tmp_path, bad, name="b_raw.fif"), preload=False, verbose="error")
    both = mne.concatenate_raws([first.copy(), second.copy()])
    assert len(both._raw_extras) == 2 and quality.fif_samples_finite(both) is None
    assert quality.fif_samples_finite(mne.concatenate_raws([first.copy(), first.copy()])) is True
    projected = first.copy().set_eeg_reference(projection=True, verbose="error").apply_proj(verbose="error")
    assert quality.fif_samples_finite(projected) is None        # a projector mixes channels: MNE's pass decides
    assert quality.fif_samples_finite(first.copy().load_data()) is None
    array = mne.io.RawArray(data, first.info, verbose="error")
    assert quality.fif_samples_finite(array) is None


def test_a_raw_that_starts_late_in_its_file(tmp_path):
    """Buffers are found by absolute sample numbers: a crop's start, and a file saved from a crop (first_samp > 0)."""
    data = _signal(seed=8)[:, :40_000]
    early = data.copy()
    early[6, 100] = np.nan                          # in the first buffer (samples 0-255)
    lazy = mne.io.read_raw(_fif(tmp_path, early, name="early_raw.fif"), preload=False, verbose="error")
    assert quality.fif_samples_finite(lazy) is None
    late_start = lazy.copy().crop(10.0, None)       # from sample 2560 on
    assert quality.fif_samples_finite(late_start) is True
    saved = tmp_path / "from_crop_raw.fif"
    late_start.save(saved, buffer_size_sec=1.0, verbose="error")
    again = mne.io.read_raw(saved, preload=False, verbose="error")
    assert again.first_samp == 2560 and quality.fif_samples_finite(again) is True
    bad = again.copy().load_data()
    bad._data[6, 30_000] = np.inf
    bad.save(tmp_path / "from_crop_bad_raw.fif", buffer_size_sec=1.0, verbose="error")
    lazy_bad = mne.io.read_raw(tmp_path / "from_crop_bad_raw.fif", preload=False, verbose="error")
    assert lazy_bad.first_samp == 2560 and quality.fif_samples_finite(lazy_bad) is None
    with pytest.raises(RecordingError, match="NaN or Inf"):
        quality.check_signal(lazy_bad)


@pytest.mark.parametrize("read_bytes", [1, 40_000, 1 << 23])
def test_buffers_read_one_by_one_or_in_runs_give_the_same_answer(tmp_path, monkeypatch, read_bytes):
    """Buffers that follow one another are read together up to _READ_BYTES (16 KB buffers here): one at a
    time, a few at a time or a whole task's at once, on tasks of 3 buffers — the same verdicts."""
    monkeypatch.setattr(quality, "_READ_BYTES", read_bytes)
    monkeypatch.setattr(quality, "_BUFFERS_AT_ONCE", 3)
    data = _signal(seed=9)[:, :40_000]
    clean = mne.io.read_raw(_fif(tmp_path, data, name="clean_raw.fif"), preload=False, verbose="error")
    assert quality.fif_samples_finite(clean) is True
    for sample in (0, 255, 256, 767, 768, 20_000, 39_999):     # buffer edges, and task edges (3 x 256)
        bad = data.copy()
        bad[11, sample] = np.nan
        lazy = mne.io.read_raw(_fif(tmp_path, bad, name=f"n{sample}_raw.fif"), preload=False, verbose="error")
        assert quality.fif_samples_finite(lazy) is None, sample
