"""Bad input ends in one clear sentence from zuna_lab.errors, before any work (issue #11, part 4).

Library calls: the exact error class and message. Command line: exit status 2, one line on
stderr, no traceback, no output file left. Suspicious but usable data: one ZunaLabWarning.
"""
from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import mne
import numpy as np
import pytest

import zuna_lab as zl
import zuna_lab.api.core as core
from zuna_lab import validation
from zuna_lab.cli.commands import main
from zuna_lab.errors import RecordingError, RecordingFileError, ZunaLabWarning, ZunaTypeError, ZunaValueError
from zuna_lab.io.read import read_raw
from zuna_lab.pipeline.preprocessing import preprocess
from zuna_lab.testing import make_random_checkpoint
from zuna_lab.pipeline.tokens import token_mask

from oracle_support import require_module

ROOT = Path(zl.__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample_synthetic_raw.fif"
SHARED = ROOT.parent / "shared" / "data"
NAMES = ["Fp1", "Fp2", "C3", "C4", "O1", "O2"]


def _noise(n_channels=len(NAMES), seconds=10.0, sfreq=256.0, scale=20e-6, seed=0):
    return np.random.default_rng(seed).normal(0.0, scale, (n_channels, int(round(seconds * sfreq))))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_random_checkpoint(tmp_path_factory.mktemp("ckpt") / "ZUNA", variant="ZUNA")


@pytest.fixture(scope="module")
def model(checkpoint):
    return zl.load_model(checkpoint, device="cpu")


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """The first 10 s of the bundled sample (2 ZUNA epochs), as a file."""
    path = tmp_path_factory.mktemp("data") / "short_raw.fif"
    mne.io.read_raw_fif(SAMPLE, preload=True, verbose="error").crop(0, 10, include_tmax=False).save(path, verbose="error")
    return path


@pytest.fixture
def no_model(monkeypatch):
    """Arguments must be refused before the model is even looked up."""
    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(core, "get_model", refuse)


@pytest.fixture
def no_preprocessing(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("preprocessing ran before the recording-level checks")

    monkeypatch.setattr(core, "preprocess", refuse)


@pytest.fixture
def env(monkeypatch, tmp_path, checkpoint):
    monkeypatch.setenv("ZUNA_LAB_MODEL", str(checkpoint))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _cli_fails(argv, capsys, message, folder):
    """Exit 2, one line on stderr naming the problem, no traceback, nothing written in ``folder``."""
    before = set(os.listdir(folder))
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("zuna-lab") and "error: " in lines[0] and message in lines[0], lines[0]
    assert "Traceback" not in err
    assert set(os.listdir(folder)) == before          # no output, no temporary file
    return lines[0]


# ------------------------------------------------------------------------------------ batch_size

def test_batch_size_refused(no_model, recording):
    with pytest.raises(ZunaValueError, match=r"batch_size must be a positive integer or None \(epochs per forward pass\), got -1\."):
        zl.embed(recording, batch_size=-1)
    with pytest.raises(ZunaValueError, match="batch_size must be a positive integer"):
        zl.reconstruct(recording, batch_size=0)
    with pytest.raises(ZunaTypeError, match=r"batch_size must be a positive integer .*got 1\.5 \(float\)\."):
        zl.reconstruct(recording, batch_size=1.5)
    with pytest.raises(ZunaTypeError, match=r"got True \(bool\)"):
        zl.embed(recording, batch_size=True)


@pytest.mark.parametrize("value", ["-1", "1.5", "0"])
def test_cli_batch_size_refused(env, recording, capsys, value):
    line = _cli_fails(["reconstruct", recording, "-o", "out.fif", "--batch-size", value], capsys,
                      f"argument --batch-size: must be a positive integer, got '{value}'", env)
    assert line.startswith("zuna-lab reconstruct: error:")


# ------------------------------------------------------------------------------------ sampler arguments

@pytest.mark.parametrize("kwargs, error, message", [
    (dict(cfg=None), ZunaTypeError, r"cfg must be a finite number from 0 to 20 \(1\.0 disables guidance\), got None"),
    (dict(cfg=1e6), ZunaValueError, r"cfg must be a finite number from 0 to 20 .*got 1e\+06\."),
    (dict(cfg=-1.0), ZunaValueError, r"cfg must be a finite number from 0 to 20"),
    (dict(cfg=float("nan")), ZunaValueError, r"cfg must be .*got nan\."),
    (dict(cfg="1.0"), ZunaTypeError, r"cfg must be .*got '1\.0' \(str\)\."),
    (dict(steps=0), ZunaValueError, r"steps must be an integer from 1 to 1000 \(50 as the official inference\), got 0\."),
    (dict(steps=5000), ZunaValueError, r"steps must be an integer from 1 to 1000"),
    (dict(steps=2.0), ZunaTypeError, r"steps must be an integer from 1 to 1000 .*got 2\.0 \(float\)"),
    (dict(seed=-1), ZunaValueError, r"seed must be an integer from 0 to .*got -1\."),
    (dict(seed=1.5), ZunaTypeError, r"seed must be an integer"),
    (dict(n_samples=0), ZunaValueError, r"n_samples must be a positive integer, got 0\."),
    (dict(segment_duration=float("nan")), ZunaValueError, r"segment_duration must be a positive number of seconds or None, got nan\."),
    (dict(segment_duration=float("inf")), ZunaValueError, r"segment_duration must be a positive number"),
    (dict(segment_duration="5"), ZunaTypeError, r"segment_duration must be a positive number of seconds or None, got '5' \(str\)"),
    (dict(use_annotations="yes"), ZunaTypeError, r"use_annotations must be True or False, got 'yes' \(str\)\."),
    (dict(progress="yes"), ZunaTypeError, r"progress must be True or False or None"),
    (dict(verbose="loud"), ZunaValueError, r"verbose must be None, True/False, an int logging level or one of 'debug'"),
    (dict(callback=5), ZunaTypeError, r"callback must be a function callback\(done, total\) or None"),
    (dict(mask=np.zeros((2, 3), bool)), ZunaValueError, r"mask must be a 3-D boolean array \(epoch, channel, token\), got shape \(2, 3\)\."),
    (dict(mask=[[[1, 0]]]), ZunaTypeError, r"mask must be a boolean array \(epoch, channel, token\), got dtype int64\."),
    (dict(sfreq=float("inf")), ZunaValueError, r"sfreq must be a positive number of Hz or None, got inf\."),
])
def test_reconstruct_arguments_refused_before_the_model(no_model, recording, kwargs, error, message):
    with pytest.raises(error, match=message):
        zl.reconstruct(recording, **kwargs)


def test_embed_arguments_refused_before_the_model(no_model, recording):
    with pytest.raises(ZunaTypeError, match="use_annotations must be True or False"):
        zl.embed(recording, use_annotations=None)
    with pytest.raises(RecordingFileError, match=r"does not exist; check the path\."):
        zl.embed(recording.parent / "missing.edf")
    with pytest.raises(ZunaTypeError, match="Cannot read a recording from list"):
        zl.embed([[0.0, 1.0]])


def test_model_of_a_wrong_type(recording):
    with pytest.raises(ZunaTypeError, match="model must be a ZunaModel from zuna_lab.load_model, a source string or None, not int"):
        zl.embed(recording, model=3)


@pytest.mark.parametrize("option, value, message", [
    ("--cfg", "1e6", "argument --cfg: must be a number from 0 to 20, got '1e6'"),
    ("--cfg", "nan", "argument --cfg: must be a number from 0 to 20, got 'nan'"),
    ("--steps", "0", "argument --steps: must be an integer from 1 to 1000, got '0'"),
    ("--steps", "2.5", "argument --steps: must be an integer from 1 to 1000, got '2.5'"),
    ("--seed", "-1", "argument --seed: must be a non-negative integer, got '-1'"),
    ("--n-samples", "0", "argument --n-samples: must be a positive integer, got '0'"),
    ("--segment-duration", "nan", "argument --segment-duration: must be a positive number, got 'nan'"),
])
def test_cli_sampler_options_refused(env, recording, capsys, option, value, message):
    _cli_fails(["reconstruct", recording, "-o", "out.nc", option, value], capsys, message, env)


# ------------------------------------------------------------------------------------ every channel bad

def test_every_channel_bad_refused_before_preprocessing(model, recording, no_preprocessing):
    raw = mne.io.read_raw_fif(recording, preload=True, verbose="error")
    with pytest.raises(ZunaValueError, match=r"Every channel would be hidden .*keep at least one good channel\."):
        zl.reconstruct(raw, model=model, bad_channels=list(raw.ch_names), steps=1)
    raw.info["bads"] = list(raw.ch_names)
    with pytest.raises(ZunaValueError, match=r"Every channel would be hidden \(info\['bads'\] \['Fp1'"):
        zl.embed(raw, model=model)


def test_preprocess_every_channel_bad_before_the_reference(monkeypatch):
    raw = read_raw(_noise(), ch_names=NAMES, sfreq=256.0, verbose="error")
    raw.info["bads"] = list(NAMES)

    def no_filter(*args, **kwargs):
        raise AssertionError("filtered before the check")

    monkeypatch.setattr(mne.io.BaseRaw, "filter", no_filter)
    with pytest.raises(ZunaValueError, match=r"Every channel is in info\['bads'\]; ZUNA needs at least one good channel"):
        preprocess(raw, "ZUNA")


def test_cli_every_channel_bad(env, recording, capsys, monkeypatch):
    monkeypatch.setattr(zl.cli.commands, "_load_model", lambda *a, **k: pytest.fail("model loaded"))
    names = mne.io.read_raw_fif(recording, verbose="error").ch_names
    _cli_fails(["embed", recording, "-o", "out.nc", "--bad-channels", *names], capsys, "Every channel would be hidden", env)


# ------------------------------------------------------------------------------------ bad segments

@pytest.mark.parametrize("segments, error, message", [
    ([("a", "b")], ZunaTypeError, r"bad segment \('a', 'b'\) must give start and stop as numbers of seconds, e\.g\. \(2\.0, 3\.5\)\."),
    ([(float("nan"), 3.0)], ZunaValueError, r"bad segment \(nan, 3\.0\) has a NaN time; give start and stop in seconds\."),
    ([(2.0, float("nan"))], ZunaValueError, r"has a NaN time"),
    ([(float("inf"), float("inf"))], ZunaValueError, r"must start at a finite time; only stop may be inf \(to the end of the recording\)\."),
    ([(2.0, 1.0)], ZunaValueError, r"must have 0 <= start < stop"),
    ([(-1.0, 1.0)], ZunaValueError, r"must have 0 <= start < stop"),
    ((2.0, 3.0), ZunaTypeError, r"bad_segments must be a list of segments; write bad_segments=\[\(2\.0, 3\.0\)\] for a single one\."),
    ("2:3", ZunaTypeError, r"bad_segments must be a list of \(start, stop\) or \(start, stop, channel\) tuples in seconds, not a string"),
    ([(1.0, 2.0, ["O1"])], ZunaTypeError, r"must name one channel \(str\) as its third item; give one segment per channel\."),
    ([(1.0,)], ZunaValueError, r"\(start, stop\) or \(start, stop, channel\)"),
])
def test_bad_segments_refused(no_model, recording, segments, error, message):
    with pytest.raises(error, match=message):
        zl.reconstruct(recording, bad_segments=segments)


def test_bad_segment_to_infinity_runs_to_the_end(model, recording):
    rec = zl.reconstruct(recording, model=model, bad_segments=[(7.0, math.inf, "O1")], steps=1, seed=0)
    mask = rec["mask"].sel(channel="O1").values           # (epoch, token): epochs 0-5 s and 5-10 s
    assert not mask[0].any() and not mask[1, :16].any() and mask[1, 16:].all()
    assert not rec["mask"].sel(channel="O2").values.any()
    with pytest.raises(ZunaValueError, match=r"starts after the recording ends \(10\.00 s\)"):
        zl.reconstruct(recording, model=model, bad_segments=[(10.5, math.inf)], steps=1)


def test_resolve_segments_clips_to_the_recording():
    assert validation.resolve_segments([(2, math.inf), (1, 99, "c3")], ["C3", "C4"], 10.0) == [(2.0, 10.0), (1.0, 10.0, "C3")]


def test_cli_bad_segments(env, recording, capsys, monkeypatch):
    _cli_fails(["reconstruct", recording, "-o", "out.nc", "--bad-segments", "nan:3"], capsys,
               "argument --bad-segments: 'nan:3': START must be a finite number of seconds", env)
    _cli_fails(["reconstruct", recording, "-o", "out.nc", "--bad-segments", "a:b"], capsys,
               "START and STOP must be numbers of seconds", env)
    _cli_fails(["reconstruct", recording, "-o", "out.nc", "--bad-segments", "2:3:"], capsys,
               "ends in ':' without a channel", env)
    assert main(["reconstruct", str(recording), "-o", "inf.nc", "--bad-segments", "8:inf", "--steps", "1", "--quiet"]) == 0
    import xarray as xr

    with xr.open_dataset(env / "inf.nc") as rec:
        assert rec["mask"].values[1, :, 24:].all() and not rec["mask"].values[0].any()


# ------------------------------------------------------------------------------------ names: str for a list, duplicates

@pytest.mark.parametrize("kwargs, message", [
    (dict(bad_channels="O1"), r"bad_channels must be a list of channel names, not a single string; write bad_channels=\['O1'\]\."),
    (dict(add_channels="FCz"), r"add_channels must be a list of standard 10-05 channel names, not a single string; write add_channels=\['FCz'\]\."),
    (dict(ch_names="Cz"), r"ch_names must be a list of channel names, not a single string; write ch_names=\['Cz'\]\."),
    (dict(bad_channels=[3]), r"bad_channels must hold channel names \(str\), got 3 \(int\)\."),
    (dict(add_channels=True), r"add_channels must be a list of standard 10-05 channel names \(e\.g\. \['FCz'\]\) or a count, got True"),
    (dict(add_channels=2.0), r"or a count, got 2\.0 \(float\)"),
])
def test_a_string_where_a_list_is_expected(no_model, recording, kwargs, message):
    with pytest.raises(ZunaTypeError, match=message):
        zl.reconstruct(recording, **kwargs)


def test_read_raw_ch_names_checked():
    with pytest.raises(ZunaTypeError, match=r"write ch_names=\['Cz'\]"):
        read_raw(_noise(1), ch_names="Cz", sfreq=256)
    with pytest.raises(ZunaValueError, match="ch_names is empty; give at least one name."):
        read_raw(_noise(1), ch_names=[], sfreq=256)
    with pytest.raises(ZunaValueError, match="ch_names names 'Cz' twice; list each one once."):
        read_raw(_noise(2), ch_names=["Cz", "Cz"], sfreq=256)
    with pytest.raises(ZunaTypeError, match=r"ch_names must be an ordered list of channel names \(one per row\), not a set\."):
        read_raw(_noise(2), ch_names={"Cz", "Pz"}, sfreq=256)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(add_channels=["FCz", "FCz"]), ZunaValueError, r"add_channels names 'FCz' twice; list each one once\."),
    (dict(add_channels=["FCz", "fcz"]), ZunaValueError, r"add_channels names 'FCz' twice; list each new electrode once\."),
    (dict(add_channels=["XYZ1"]), ZunaValueError, r"'XYZ1', which is not in the standard 10-05 montage"),
    (dict(add_channels=0), ZunaValueError, r"add_channels must be a positive count or a list of names, got 0\."),
    (dict(bad_channels=["T7", "T7"]), ZunaValueError, r"bad_channels names 'T7' twice; list each one once\."),
    (dict(bad_channels=[""]), ZunaValueError, r"bad_channels holds an empty name"),
])
def test_duplicates_and_unknown_names_refused_before_the_model(no_model, recording, kwargs, error, message):
    with pytest.raises(error, match=message):
        zl.reconstruct(recording, **kwargs)


def test_add_channels_empty_adds_none_and_collisions_refused(model, recording):
    rec = zl.reconstruct(recording, model=model, add_channels=[], steps=1, seed=0)
    assert not rec["added"].values.any() and rec.sizes["channel"] == 19
    with pytest.raises(ZunaValueError, match=r"'Cz', which the recording already has; mask it with bad_channels instead\."):
        zl.reconstruct(recording, model=model, add_channels=["Cz"], steps=1)
    with pytest.raises(ZunaValueError, match=r"add_channels=400 but only \d+ standard 10-05 positions are free on this cap"):
        zl.reconstruct(recording, model=model, add_channels=400, steps=1)
    with pytest.raises(ZunaValueError, match=r"bad_channels names channel 'T7' twice \('T7' and 't7'\)"):
        zl.reconstruct(recording, model=model, bad_channels=["T7", "t7"], steps=1)


def test_add_channels_already_there_under_a_recorder_name(model):
    names = ["EEG Fz-REF", "EEG Cz-REF", "EEG Pz-REF", "EEG O1-REF"]
    raw = read_raw(_noise(4), ch_names=names, sfreq=256.0, verbose="error")
    with pytest.raises(ZunaValueError, match="'Fz', which the recording already has"):
        zl.reconstruct(raw, model=model, add_channels=["Fz"], steps=1)


def test_cli_duplicate_names(env, recording, capsys):
    _cli_fails(["reconstruct", recording, "-o", "out.nc", "--add-channels", "FCz", "FCz"], capsys,
               "--add-channels names 'FCz' twice", env)
    _cli_fails(["embed", recording, "-o", "out.nc", "--bad-channels", "T7", "T7"], capsys,
               "--bad-channels names 'T7' twice", env)
    _cli_fails(["reconstruct", recording, "-o", "out.nc", "--add-channels", "XYZ1"], capsys,
               "--add-channels names 'XYZ1', which is not in the standard 10-05 montage", env)


# ------------------------------------------------------------------------------------ names that clean to one electrode

def test_names_that_clean_to_the_same_electrode_are_warned():
    names = ["Fp1", "EEG Fp1-REF", "FP1", "fp1", "Cz", "Pz"]
    with pytest.warns(ZunaLabWarning, match=r"Channels Fp1, EEG Fp1-REF, FP1, fp1 \(all Fp1\) get the same electrode "
                                            r"position, so ZUNA cannot tell them apart; drop the duplicates"):
        raw = read_raw(_noise(6), ch_names=names, sfreq=256.0, verbose="error")
    assert raw.ch_names == names


def test_exact_channel_name_wins(model):
    names = ["Fp1", "fp1", "C3", "C4", "O1", "O2"]
    with pytest.warns(ZunaLabWarning, match="get the same electrode position"):
        raw = read_raw(_noise(6), ch_names=names, sfreq=256.0, verbose="error")
    assert validation.resolve_names(["Fp1", "fp1", "c3"], names, "bad_channels") == ["Fp1", "fp1", "C3"]
    with pytest.raises(ZunaValueError, match=r"bad_channels names 'FP1', which matches several channels \(Fp1, fp1\); use the exact name\."):
        validation.resolve_names(["FP1"], names, "bad_channels")
    assert token_mask(names, 64, bad_channels=["Fp1"]).any(axis=1).tolist() == [True] + [False] * 5
    with pytest.raises(ZunaValueError, match=r"Channel 'FP1' matches several channels by case \(Fp1, fp1\)"):
        token_mask(names, 64, bad_channels=["FP1"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ZunaLabWarning)
        emb = zl.embed(raw, model=model, bad_channels=["Fp1"])
    hidden = emb["mask"].all(["epoch", "token"]).values
    assert hidden.tolist() == [True, False, False, False, False, False]     # Fp1 only, not fp1


def test_bad_channels_by_cleaned_name():
    assert validation.resolve_names(["Fp1", "cz"], ["EEG Fp1-REF", "EEG Cz-REF"], "bad_channels") == ["EEG Fp1-REF", "EEG Cz-REF"]
    with pytest.raises(ZunaValueError, match=r"'Oz', which is not a channel of the recording; choose from EEG Fp1-REF"):
        validation.resolve_names(["Oz"], ["EEG Fp1-REF", "EEG Cz-REF"], "bad_channels")


# ------------------------------------------------------------------------------------ units and flat channels

def test_the_samples_pass_without_a_warning():
    paths = [SAMPLE] + sorted(SHARED.glob("*.fif"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for path in paths:
            raw = read_raw(path, verbose="error")
            assert raw.info["bads"] == []


@pytest.mark.parametrize("scale, message", [
    (100.0, r"too large for volts \(median channel std 0\.002, while scalp EEG is about 5-100 µV\); if the data are in mV, "
            r"multiply by 1e-3 \(e\.g\. raw\.apply_function\(lambda x: x \* 1e-3\)\)\."),
    (1e3, r"too large for volts .* if the data are in mV, multiply by 1e-3"),
    (1e6, r"too large for volts .* if the data are in µV, multiply by 1e-6"),
    (1e-3, r"too small for volts \(median channel std 2e-08 V, while scalp EEG is about 5-100 µV\); if the data were "
           r"scaled down twice, multiply by 1e3 \(e\.g\. raw\.apply_function\(lambda x: x \* 1e3\)\)\."),
    (1e-6, r"too small for volts .* multiply by 1e6"),
])
def test_implausible_amplitudes_refused(scale, message):
    with pytest.raises(RecordingError, match=message):
        read_raw(_noise() * scale, ch_names=NAMES, sfreq=256.0)


@pytest.mark.parametrize("scale, size", [(25.0, "large"), (0.03, "small")])
def test_suspicious_amplitudes_warned(scale, size):
    with pytest.warns(ZunaLabWarning, match=rf"Amplitudes are unusually {size} for scalp EEG in volts \(median channel std "
                                            r"[\d.]+ µV, typically 5-100 µV\); check that the data are in volts"):
        raw = read_raw(_noise() * scale, ch_names=NAMES, sfreq=256.0, verbose="error")
    assert raw.info["bads"] == []


def test_flat_channels_are_warned_and_masked(model):
    data = _noise()
    data[2] = 0.0                    # a dead channel
    data[4] = 3e-3                   # a constant offset (saturated amplifier)
    data[5] *= 1e-4                  # quantisation noise only
    with pytest.warns(ZunaLabWarning, match=r"Channels C3, O1, O2 are flat \(no signal\), so they are marked bad "
                                            r"\(info\['bads'\]\) and ZUNA infills them; drop flat channels"):
        raw = read_raw(data, ch_names=NAMES, sfreq=256.0, verbose="error")
    assert raw.info["bads"] == ["C3", "O1", "O2"]
    emb = zl.embed(raw, model=model)
    assert emb["mask"].all(["epoch", "token"]).values.tolist() == [False, False, True, False, True, True]


def test_flat_channel_in_a_file_is_masked(tmp_path, model):
    raw = read_raw(_noise(), ch_names=NAMES, sfreq=256.0, verbose="error")
    raw._data[1] = 0.0
    path = tmp_path / "dead_raw.fif"
    raw.save(path, verbose="error")
    with pytest.warns(ZunaLabWarning, match=r"Channel Fp2 is flat \(no signal\), so it is marked bad"):
        emb = zl.embed(path, model=model)
    assert emb["mask"].sel(channel="Fp2").all() and not emb["mask"].sel(channel="Fp1").any()


# ------------------------------------------------------------------------------------ unreadable and truncated files

def _edf(tmp_path):
    require_module("edfio")
    raw = read_raw(_noise(seconds=20.0), ch_names=NAMES, sfreq=256.0, verbose="error")
    path = tmp_path / "full.edf"
    mne.export.export_raw(path, raw, fmt="edf", verbose="error")
    return path


def test_empty_and_text_fif_refused(tmp_path):
    empty = tmp_path / "empty_raw.fif"
    empty.write_bytes(b"")
    with pytest.raises(RecordingError, match=r"'empty_raw\.fif' is empty \(0 bytes\); copy or export the recording again\."):
        read_raw(empty)
    text = tmp_path / "notes_raw.fif"
    text.write_text("this is not a recording\n" * 20)
    with pytest.raises(RecordingError, match=r"MNE could not read 'notes_raw\.fif' \(\w+: .*\); check that it is a "
                                             r"complete, valid \.fif file\."):
        read_raw(text)


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.999])
def test_truncated_edf_refused(tmp_path, keep):
    path = _edf(tmp_path)
    data = path.read_bytes()
    cut = tmp_path / "cut.edf"
    cut.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(RecordingError, match=r"'cut\.edf' is truncated: its header announces 20 records \(20 s\) but the "
                                             r"file holds \d+ \(\d+ s\); copy or export the complete recording again\."):
        read_raw(cut)
    assert read_raw(path, verbose="error").n_times == 20 * 256       # the whole file reads


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.95])
def test_truncated_fif_refused(tmp_path, keep):
    raw = read_raw(_noise(seconds=20.0), ch_names=NAMES, sfreq=256.0, verbose="error")
    path = tmp_path / "full_raw.fif"
    raw.save(path, verbose="error")
    data = path.read_bytes()
    cut = tmp_path / "cut_raw.fif"
    cut.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(RecordingError, match=r"'cut_raw\.fif'.*(complete, valid \.fif file|truncated or damaged)"):
        read_raw(cut)


def test_truncated_brainvision_refused(tmp_path):
    require_module("pybv")
    raw = read_raw(_noise(seconds=20.0), ch_names=NAMES, sfreq=256.0, verbose="error")
    path = tmp_path / "rec.vhdr"
    mne.export.export_raw(path, raw, fmt="brainvision", verbose="error")
    eeg = tmp_path / "rec.eeg"
    eeg.write_bytes(eeg.read_bytes()[:-5])
    with pytest.raises(RecordingError, match=r"'rec\.eeg' is truncated: its \d+ bytes are not a whole number of "
                                             r"6-channel samples"):
        read_raw(path)


def test_cli_truncated_edf_exits_2_without_output(env, capsys, tmp_path, monkeypatch):
    path = _edf(tmp_path)
    cut = env / "cut.edf"
    cut.write_bytes(path.read_bytes()[:-1000])
    monkeypatch.setattr(zl.cli.commands, "_load_model", lambda *a, **k: pytest.fail("model loaded"))
    _cli_fails(["embed", cut, "-o", "out.nc"], capsys, "'cut.edf' is truncated: its header announces 20 records", env)
    _cli_fails(["reconstruct", cut, "-o", "out.fif"], capsys, "is truncated", env)


# ------------------------------------------------------------------------------------ CSV time columns

def _csv(path, times, data, fmt):
    with open(path, "w") as handle:
        handle.write("time," + ",".join(NAMES[: len(data)]) + "\n")
        for i, t in enumerate(times):
            handle.write((fmt % t) + "," + ",".join(f"{v:.6e}" for v in data[:, i]) + "\n")
    return path


@pytest.mark.parametrize("fmt", ["%.6f", "%.3f", "%.10e"])
def test_csv_rounded_times_give_the_round_rate(tmp_path, fmt):
    data = _noise(3, seconds=10.0)
    times = np.arange(data.shape[1]) / 256.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        raw = read_raw(_csv(tmp_path / "rec.csv", times, data, fmt), verbose="error")
    assert raw.info["sfreq"] == 256.0


def test_csv_jitter_warned_and_gap_refused(tmp_path):
    data = _noise(3, seconds=10.0)
    times = np.arange(data.shape[1]) / 256.0
    jitter = times + np.random.default_rng(1).uniform(-4e-4, 4e-4, times.size)
    jitter[0] = 0.0
    with pytest.warns(ZunaLabWarning, match=r"The time column of .*jitter\.csv is irregular \(steps from [\d.e-]+ to "
                                            r"[\d.e-]+ s, more than its rounding\); zuna_lab reads the samples as evenly spaced at 256 Hz\."):
        raw = read_raw(_csv(tmp_path / "jitter.csv", jitter, data, "%.6f"), verbose="error")
    assert raw.info["sfreq"] == 256.0
    gap = times.copy()
    gap[1000:] += 0.5
    with pytest.raises(RecordingError, match=r"steps by 0\.503906 s at 3\.90\d* s where 256 Hz needs 0\.00390625 s \(a gap or "
                                             r"a repeated sample\); zuna_lab needs evenly sampled data"):
        read_raw(_csv(tmp_path / "gap.csv", gap, data, "%.6f"))


# ------------------------------------------------------------------------------------ outputs that cannot be written

def _unwritable_folder():
    """A folder the system refuses to create files in even for root (sysfs)."""
    folder = Path("/sys")
    try:
        probe = folder / ".zuna_lab_probe"
        probe.touch()
    except OSError:
        return folder
    probe.unlink()
    pytest.skip("no folder here refuses writes")


def test_writers_check_the_folder_first(tmp_path, monkeypatch):
    import xarray as xr

    ds = xr.Dataset({"x": ("a", np.arange(3.0))})
    folder = _unwritable_folder()
    with pytest.raises(ZunaValueError, match=r"Cannot write to folder '/sys' \(permission denied\); choose an output folder "
                                             r"you can write to\."):
        zl.write_netcdf(ds, folder / "out.nc")
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(ZunaValueError, match=r"is a file, not a folder; choose an output path inside a folder\."):
        zl.write_netcdf(ds, a_file / "out.nc")
    # Permission bits (what a normal user meets; root ignores them, so they are simulated here).
    monkeypatch.setattr(validation.os, "access", lambda *a, **k: False)
    with pytest.raises(ZunaValueError, match=r"Cannot write to folder .* \(permission denied\)"):
        zl.write_netcdf(ds, tmp_path / "out.nc")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]


def test_cli_unwritable_output_refused_before_the_model(env, recording, capsys, monkeypatch):
    folder = _unwritable_folder()
    monkeypatch.setattr(zl.cli.commands, "_load_model", lambda *a, **k: pytest.fail("model loaded"))
    _cli_fails(["reconstruct", recording, "-o", folder / "out.fif"], capsys,
               "Cannot write to folder '/sys' (permission denied)", env)
    (env / "out.nc").mkdir()
    _cli_fails(["embed", recording, "-o", "out.nc", "--overwrite"], capsys, "'out.nc' is a folder; choose a file name", env)


def test_numpy_input_checked_before_the_model(no_model):
    with pytest.raises(ZunaValueError, match=r"A NumPy array needs ch_names= and sfreq= \(Hz\)"):
        zl.embed(_noise())
    with pytest.raises(ZunaValueError, match=r"ch_names has 2 names but the array has 6 rows"):
        zl.reconstruct(_noise(), ch_names=["Cz", "Pz"], sfreq=256.0)
    with pytest.raises(ZunaValueError, match=r"The array must have shape \(n_channels, n_times\), got \(60,\)\."):
        zl.embed(np.zeros(60), ch_names=["Cz"], sfreq=256.0)
    with pytest.raises(ZunaValueError, match=r"sfreq must be a positive number of Hz or None, got -256"):
        zl.embed(_noise(), ch_names=NAMES, sfreq=-256)


def test_read_raw_montage_checked():
    with pytest.raises(ZunaValueError, match=r"Unknown montage 'standard_9999'; pass a name from mne\.channels\.get_builtin_montages\(\)"):
        read_raw(_noise(), ch_names=NAMES, sfreq=256.0, montage="standard_9999")
    with pytest.raises(ZunaTypeError, match=r"montage must be a montage name, a DigMontage or None, got int\."):
        read_raw(_noise(), ch_names=NAMES, sfreq=256.0, montage=5)


# ---------------------------------------------------------------- issue R: the second sweep's cases

def test_a_generator_of_bad_channels_masks_what_a_list_masks(model, recording):
    """Checking bad_channels used to consume a generator, so nothing was masked."""
    as_list = zl.reconstruct(recording, model=model, bad_channels=["C3"], steps=1, progress=False)
    as_generator = zl.reconstruct(recording, model=model, bad_channels=(c for c in ["C3"]), steps=1, progress=False)
    assert as_generator.mask.sel(channel="C3").all() and int(as_generator.mask.sum()) == int(as_list.mask.sum()) > 0


@pytest.mark.parametrize("how", ["segments", "mask"])
def test_hiding_every_cell_is_refused_like_hiding_every_channel(model, recording, monkeypatch, how):
    """Refused before the encoder runs (as every channel in bad_channels is)."""
    monkeypatch.setattr(model, "encode", lambda *a, **k: pytest.fail("the encoder ran"))
    options = (dict(bad_segments=[(0.0, math.inf)]) if how == "segments"
               else dict(mask=np.ones((2, 19, 40), bool)))
    with pytest.raises(ZunaValueError, match="Every cell would be hidden .* nothing to infill from"):
        zl.reconstruct(recording, model=model, steps=1, progress=False, **options)


def test_an_epoch_hidden_on_every_channel_is_named(model, recording):
    with pytest.warns(ZunaLabWarning, match=r"epoch\(s\) starting at 5 s are hidden on every channel"):
        rec = zl.reconstruct(recording, model=model, bad_segments=[(5.0, 10.0)], steps=1, progress=False)
    assert rec.mask.isel(epoch=1).all() and not rec.mask.isel(epoch=0).any()


def test_a_bad_annotation_of_negative_duration_is_refused(model, recording):
    raw = mne.io.read_raw_fif(recording, preload=True, verbose="error")
    raw.annotations.append(3.0, 1.0, "BAD_jump")
    raw.annotations.duration[list(raw.annotations.description).index("BAD_jump")] = -1.0
    with pytest.raises(ZunaValueError, match="'BAD_jump' at 3 s has a negative or undefined duration"):
        zl.reconstruct(raw, model=model, steps=1, progress=False)


def test_a_segment_in_the_last_sample_hides_the_last_token(model, recording):
    """(9.999, inf) on a 10 s recording touches the last token: hidden (was: nothing masked)."""
    rec = zl.reconstruct(recording, model=model, bad_segments=[(9.999, math.inf)], steps=1, progress=False)
    hidden = rec.mask.values
    assert hidden[1, :, -1].all() and int(hidden.sum()) == hidden.shape[1]
    assert not token_mask(["Cz"], 1280, bad_spans=[(1.0, 1.25)])[0, 10]     # an exact edge hides no extra token


def test_the_spline_on_too_few_channels_is_refused(model, recording):
    raw = mne.io.read_raw_fif(recording, preload=True, verbose="error").pick(["Cz", "Pz"])
    with pytest.raises(ZunaValueError, match="Hiding one of 2 good channels leaves fewer than 3 visible; "
                                             "evaluate_dropout needs at least 4 good EEG channels"):
        zl.evaluate_dropout(raw, model=model, steps=1, progress=False)


def test_a_sample_count_no_memory_holds_is_refused_before_the_encoder(model, recording, monkeypatch):
    """n_samples=10**12 used to reach a MemoryError after the encoder had run (issue R)."""
    monkeypatch.setattr(model, "encode", lambda *a, **k: pytest.fail("the encoder ran"))
    with pytest.raises(ZunaValueError, match="in memory needs about .* GB but .* GB are available"):
        zl.reconstruct(recording, model=model, bad_channels=["C3"], n_samples=10**12, steps=1, progress=False)
