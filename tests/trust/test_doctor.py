"""The montage doctor on crafted recordings: each issue alone and mixed, found and named; fix=True repairs
what can be repaired, the fixed copy embeds, and the input is never changed."""
from __future__ import annotations

import copy
import warnings

import mne
import numpy as np
import pytest

import zuna_lab
from zuna_lab.trust.doctor import check_montage, montage_warning
from zuna_lab.errors import RecordingError, ZunaLabWarning, ZunaTypeError, ZunaValueError
from zuna_lab.synthetic import make_synthetic_raw

from oracle_support import require_module

COLUMNS = {"channel", "type", "standard", "name", "note", "position", "x", "y", "z", "status", "issue", "problem", "fix"}


@pytest.fixture(scope="module")
def clean():
    return make_synthetic_raw(duration=5.0, seed=3, verbose="error")


@pytest.fixture(scope="module")
def model(random_checkpoint):
    return zuna_lab.load_model(random_checkpoint("ZUNA"), device="cpu")


def _moved(raw, function):
    """A copy whose positions are function(name, position) (NaN for none)."""
    out = raw.copy()
    for ch in out.info["chs"]:
        ch["loc"][:3] = function(ch["ch_name"], np.array(ch["loc"][:3], float))
    return out


def _extra(raw, names, kind="eeg", positions=None):
    """A copy with channels appended (random 20 µV signals, positions or none)."""
    data = np.random.default_rng(len(names)).normal(0, 20e-6, (len(names), raw.n_times))
    extra = mne.io.RawArray(data, mne.create_info(list(names), raw.info["sfreq"], kind), verbose="error")
    for ch, pos in zip(extra.info["chs"], positions or [None] * len(names)):
        if pos is not None:
            ch["loc"][:3] = pos
    out = raw.copy()
    out.add_channels([extra], force_update_info=True)
    return out


def _rotated(raw):
    angle = np.radians(90)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    return _moved(raw, lambda name, pos: rotation @ pos + np.array([0.0, 0.02, 0.06]))


def _near_cz(raw):
    cz = raw.info["chs"][raw.ch_names.index("Cz")]["loc"][:3]
    return _extra(raw, ["Cz2"], positions=[cz + np.array([0.0006, 0.0006, 0.0])])


# name -> (make the recording, {channel: expected issue code}, words of the verdict, repairable)
CASES = {
    "names": (lambda r: r.copy().rename_channels({"Fp1": "EEG Fp1-Ref", "Fp2": "FP2", "O1": "O1-A2"}),
              {}, "OK for ZUNA", True),
    "unrecognised": (lambda r: _extra(r, ["X1", "Fp1-F7"]), {"X1": "dropped", "Fp1-F7": "dropped"},
                     "without a usable position", True),
    "missing": (lambda r: _moved(r, lambda n, p: p * np.nan if n in ("T7", "O2") else p),
                {"T7": "missing", "O2": "missing"}, "missing or NaN", True),
    "range": (lambda r: _moved(r, lambda n, p: np.array([0.0, 0.02, 0.2]) if n == "Pz" else p),
              {"Pz": "range"}, "outside ZUNA's ±0.12 m grid", True),
    "millimetres": (lambda r: _moved(r, lambda n, p: p * 1000), {"Fz": "units", "O1": "units"}, "millimetres", True),
    "centimetres": (lambda r: _moved(r, lambda n, p: p * 100), {"Cz": "units"}, "centimetres", True),
    "device frame": (_rotated, {"Fp1": "frame", "T8": "frame"}, "device frame", True),
    "shared bin": (_near_cz, {"Cz": "bin", "Cz2": "bin"}, "sharing a ZUNA position bin", False),
    "repeat": (lambda r: _extra(r, ["EEG Fp1-REF"], positions=[r.info["chs"][0]["loc"][:3]]),
               {"Fp1": "same", "EEG Fp1-REF": "same"}, "at one position", True),
    "non-EEG typed EEG": (lambda r: _extra(r, ["EOG", "ECG"]), {"EOG": "type", "ECG": "type"}, "typed EEG", True),
    "mixed": (lambda r: _extra(_moved(r.copy().rename_channels({"Cz": "EEG Cz-Ref"}), lambda n, p: p * 1000),
                               ["VEOG", "Q1"], positions=[EYE * 1000, Q1 * 1000]),
              {"Fz": "units", "EEG Cz-Ref": "units", "VEOG": "type", "Q1": "units"}, "millimetres", True),
}
EYE, Q1 = np.array([-0.03, 0.10, -0.02]), np.array([0.0, -0.06, 0.11])    # below the left eye; between Pz and CPz


def _snapshot(raw):
    return (list(raw.ch_names), raw.get_channel_types(), copy.deepcopy([ch["loc"].copy() for ch in raw.info["chs"]]),
            raw.get_data().sum())


def test_clean_recording_is_ok(clean):
    report = check_montage(clean)
    assert report.ok and report.verdict.startswith("OK for ZUNA: 19 EEG channels")
    assert COLUMNS <= set(report.table.columns) and len(report.table) == 19
    assert list(report.table["channel"]) == clean.ch_names and report.fixed is None
    assert (report.table["standard"] == report.table["channel"]).all()
    assert (report.table["problem"] == "").all() and montage_warning(clean) is None
    # the vertex lies above ZUNA's ±0.12 m grid, as in ZUNA's training: a note, not a problem
    assert "edge bin" in report.table.set_index("channel").loc["Cz", "note"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", ZunaLabWarning)
        zuna_lab.read_raw(clean, verbose="error")


@pytest.mark.parametrize("case", list(CASES))
def test_each_issue_found_named_and_fixed(case, clean, model):
    make, expected, words, repairable = CASES[case]
    raw = make(clean)
    before = _snapshot(raw)
    report = check_montage(raw, fix=True)
    table = report.table.set_index("channel")
    assert len(table) == len(raw.ch_names)
    for name, code in expected.items():
        assert code in table.loc[name, "issue"].split(","), (name, table.loc[name].to_dict())
        assert table.loc[name, "problem"].endswith(".") and table.loc[name, "problem"].count(". ") == 0
    flagged = set(table.index[table["problem"] != ""])
    assert flagged >= set(expected) and (not expected or not report.ok)
    assert words in report.verdict and "\n" not in report.verdict
    assert report.fixes or not expected or not repairable
    assert (report.remaining == 0) == repairable
    after = check_montage(report.fixed)
    assert after.ok == repairable
    with warnings.catch_warnings():    # the fixed copy embeds, without a word from zuna_lab once repaired
        warnings.simplefilter("error" if repairable else "ignore", ZunaLabWarning)
        emb = zuna_lab.embed(report.fixed, model=model, progress=False, verbose="error")
    assert np.isfinite(emb.embedding.values).all()
    now = _snapshot(raw)                                                                  # the input is unchanged
    assert now[:2] == before[:2] and now[3] == before[3]
    np.testing.assert_array_equal(np.array(now[2]), np.array(before[2]))
    if case == "names":
        assert list(table.loc[["EEG Fp1-Ref", "FP2", "O1-A2"], "standard"]) == ["Fp1", "Fp2", "O1"]
        assert set(table.loc[["EEG Fp1-Ref", "FP2", "O1-A2"], "name"]) == {"cleaned"}
        assert "prefix or reference suffix" in table.loc["EEG Fp1-Ref", "note"]
    if case == "unrecognised":
        assert table.loc["X1", "name"] == "unrecognised" and table.loc["Fp1-F7", "name"] == "bipolar"
        assert "X1" not in report.fixed.ch_names and "Fp1-F7" not in report.fixed.ch_names
    if case in ("millimetres", "centimetres", "device frame"):
        # the repaired positions are the head-frame metres the recording had before the damage
        np.testing.assert_allclose(zuna_lab.pipeline.results.channel_positions(report.fixed),
                                   zuna_lab.pipeline.results.channel_positions(clean), atol=1e-9)
    if case == "non-EEG typed EEG":
        assert report.fixed.get_channel_types(picks=["EOG", "ECG"]) == ["eog", "ecg"]
        assert list(emb.channel.values) == clean.ch_names


def test_file_positions_read_raw_replaces_are_notes(clean):
    """A channel without a position makes read_raw take the standard cap for every 10-05 name: the file's
    millimetres then do not reach ZUNA, so they are a note, not a problem."""
    report = check_montage(_extra(_moved(clean, lambda n, p: p * 1000), ["X1"]))
    table = report.table.set_index("channel")
    assert list(table.index[table["problem"] != ""]) == ["X1"] and set(table["position"][:19]) == {"standard"}
    assert "file position in millimetres, not metres; the standard position is used" in table.loc["Fz", "note"]


def test_typed_non_eeg_channels_are_not_problems(clean):
    raw = _extra(clean, ["EOG061", "STI 014"], kind=["eog", "stim"])
    report = check_montage(raw)
    table = report.table.set_index("channel")
    assert report.ok and list(table.loc[["EOG061", "STI 014"], "status"]) == ["not EEG", "not EEG"]
    assert "2 non-EEG channel(s) left out" in report.verdict


def test_variant_bins(clean):
    # 2 mm apart in x: one bin of ZUNA's 4.8 mm, two of ZUNA1.1's 2.4 mm
    raw = _extra(clean, ["X2", "X3"], positions=[np.array([0.0101, 0.0, 0.10]), np.array([0.0121, 0.0, 0.10])])
    assert "bin" in check_montage(raw).table.set_index("channel").loc["X2", "issue"]
    assert check_montage(raw, model="ZUNA1.1").ok


def test_read_raw_warns_once_in_one_sentence(clean):
    raw = _extra(_moved(clean, lambda n, p: p * 1000), ["EOG"], positions=[EYE * 1000])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        zuna_lab.read_raw(raw, verbose="error")
    notes = [str(w.message) for w in caught if "montage looks off" in str(w.message)]
    assert len(notes) == 1 and "millimetres" in notes[0] and "typed EEG" in notes[0]
    assert notes[0].count(". ") == 0 and notes[0].endswith(".")


def test_paths_and_arrays(clean, tmp_path):
    path = tmp_path / "mm_raw.fif"
    _moved(clean, lambda n, p: p * 1000).save(path, verbose="error")
    assert "millimetres" in check_montage(path).verdict
    report = check_montage(np.zeros((2, 1280)) + 1e-5, ch_names=["Cz", "Q9"], sfreq=256.0)
    assert list(report.table["position"]) == ["standard", "none"] and list(report.table["status"]) == ["ok", "dropped"]


def test_bad_arguments(clean):
    with pytest.raises(ZunaValueError, match="model must be a ZunaModel, a variant name"):
        check_montage(clean, model="ZUNA2")
    with pytest.raises(ZunaTypeError, match="fix must be True or False"):
        check_montage(clean, fix="yes")
    with pytest.raises(ZunaTypeError, match="Cannot read a recording from int"):
        check_montage(42)


def test_cli_doctor(clean, tmp_path, capsys):
    from zuna_lab.cli.commands import main

    path, out = tmp_path / "mm_raw.fif", tmp_path / "fixed_raw.fif"
    _extra(_moved(clean, lambda n, p: p * 1000), ["EOG"], positions=[EYE * 1000]).save(path, verbose="error")
    assert main(["doctor", str(path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and "millimetres" in lines[0] and "EOG: named like an EOG channel" in lines[1]
    assert "need attention" in lines[-1] and not out.exists()
    assert main(["doctor", str(path), "--fix", str(out), "--model", "ZUNA1.1"]) == 0
    assert "fixed: scaled the positions" in capsys.readouterr().out and out.is_file()
    assert main(["doctor", str(out)]) == 0 and "OK for ZUNA" in capsys.readouterr().out
    assert main(["doctor", str(tmp_path / "missing.edf")]) == 2
    (tmp_path / "broken.edf").write_text("not an EDF file")
    assert main(["doctor", str(tmp_path / "broken.edf")]) == 2
    assert "error:" in capsys.readouterr().err


def test_montage_map(clean):
    hv = require_module("holoviews")
    from zuna_lab.viz import plots

    report = check_montage(_extra(_near_cz(clean), ["X1"]))
    view = plots.montage_map(report)
    hv.render(view, backend="bokeh")
    points = {layer.label: layer for layer in view if isinstance(layer, hv.Points)}
    assert set(points) == {"ok", "problem"}
    assert sorted(points["problem"].dimension_values("channel")) == ["Cz", "Cz2"]
    assert "not drawn (no position): X1" in view.opts.get().kwargs["title"]


def test_fix_that_would_drop_every_channel_is_refused():
    """No channel with a position or a 10-05 name: fix=True would drop them all (was MNE's 'All channels would be
    dropped'): one sentence, the input unchanged."""
    raw = mne.io.RawArray(np.random.default_rng(0).normal(0, 2e-5, (4, 2560)),
                          mne.create_info(["X1", "X2", "X3", "X4"], 256.0, "eeg"), verbose="error")
    with pytest.raises(RecordingError, match="fix=True would drop them all; rename the channels to 10-05 names"):
        check_montage(raw, fix=True)
    assert raw.ch_names == ["X1", "X2", "X3", "X4"]
