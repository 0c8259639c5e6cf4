"""zl.screen where the faults are known: clean recordings get no suggestion, injected dead and noisy channels
and bridged pairs are found, a burst is covered by a suggested segment; the spline is MNE's, ZUNA's
prediction is zl.reconstruct's; the input is never changed; bad input is refused in one sentence."""
from __future__ import annotations

import datetime
import re

import mne
import numpy as np
import pytest
import xarray as xr

import zuna_lab as zl
from zuna_lab.errors import RecordingFileError, ZunaLabWarning, ZunaTypeError, ZunaValueError
from zuna_lab.pipeline.masks import bad_annotation_spans
from zuna_lab.synthetic import make_synthetic_raw
from zuna_lab.trust import prediction
from zuna_lab.trust.faults import inject_faults
from zuna_lab.trust.screen_report import SEGMENT_DESCRIPTION

from oracle_support import require_module

SPLINE = dict(estimators=("spline",), compare=(), verbose="error")


def recording(seed, duration=20.0):
    """19 channels (10-20), 20 s: four 5 s epochs."""
    return make_synthetic_raw(duration=duration, seed=seed, verbose="error")


@pytest.fixture(scope="module")
def model(random_checkpoint):
    return zl.load_model(random_checkpoint("ZUNA", seed=1), device="cpu")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clean_recording_gets_no_suggestion(seed):
    report = zl.screen(recording(seed), **SPLINE)
    assert report.bad_channels == [] and report.reasons == {} and report.segments == []
    assert set(report.table["status"]) == {"ok"} and len(report.bad_segments) == 0
    assert "nothing suggested" in repr(report)


@pytest.mark.parametrize("seed,faults", [
    (0, {"dead": ["C3"], "noise": ["P4"]}),
    (1, {"dead": ["O2"], "noise": ["Fp1"]}),
    (2, {"dead": ["T8", "Fz"], "noise": ["F7", "Pz"]}),
    (3, {"noise": ["O1"]}),
])
def test_each_dead_or_noisy_channel_is_found(seed, faults):
    faulty, _ = inject_faults(recording(seed), faults, seed=seed)
    report = zl.screen(faulty, **SPLINE)
    injected = [c for kind in faults.values() for c in kind]
    assert sorted(report.bad_channels) == sorted(injected)
    for name in faults.get("dead", []):
        assert report.reasons[name].startswith("flat or dead")
    for name in faults.get("noise", []):
        assert report.reasons[name].startswith(("high-frequency noise", "noisy"))
    table = report.table.set_index("channel")
    assert (table.loc[injected, "status"] == "suggested").all() and (table.loc[injected, "spline"] == "bad").all()
    assert (table.drop(index=injected)["status"] == "ok").all()


def test_bridged_pair_and_flat_channel_are_suggested():
    faulty, _ = inject_faults(recording(4), {"bridge": [("C3", "Cz")]}, seed=4)
    faulty._data[faulty.ch_names.index("O2")] = 0.0                        # flat: read_raw marks it bad itself
    with pytest.warns(ZunaLabWarning, match="O2 is flat"):                  # said once, by read_raw
        report = zl.screen(faulty, **SPLINE)
    assert sorted(report.bad_channels) == ["C3", "Cz", "O2"]
    assert report.reasons["C3"].startswith("bridged with Cz") and report.reasons["Cz"].startswith("bridged with C3")
    assert report.reasons["O2"].startswith("flat")
    assert report.table.set_index("channel").loc["C3", "bridged_with"] == "Cz"


def test_suggested_segments_cover_an_injected_burst():
    raw = recording(5)
    faulty, truth = inject_faults(raw, {"burst": ["Fz"]}, seed=5)
    report = zl.screen(faulty, **SPLINE)
    start, stop = truth["bursts"]["Fz"]
    on_fz = [(a, b) for a, b, c in report.segments if c == "Fz"]
    covered = sum(max(0.0, min(b, stop) - max(a, start)) for a, b in on_fz)
    assert covered == pytest.approx(stop - start) and report.bad_channels == []
    assert sum(b - a for a, b in on_fz) <= (stop - start) + 1.0            # at most one 0.5 s window each side
    annotations = report.bad_segments
    assert set(annotations.description) == {SEGMENT_DESCRIPTION} and {c for ch in annotations.ch_names for c in ch} \
        >= {"Fz"}
    # ready for raw.set_annotations: MNE and zuna_lab read the same spans back, with a measurement date too
    for meas_date in (None, datetime.datetime(2024, 1, 2, tzinfo=datetime.timezone.utc)):
        target = faulty.copy().set_meas_date(meas_date)
        screened = zl.screen(target, **SPLINE)
        target.set_annotations(target.annotations + screened.bad_segments)
        spans = [s for s in bad_annotation_spans(target) if len(s) == 3]
        assert sorted((round(a, 6), round(b, 6), c) for a, b, c in spans) == sorted(screened.segments)


def test_apply_changes_only_bads_and_annotations():
    source = recording(6)
    raw = mne.io.RawArray(source.get_data(), source.info, first_samp=512, verbose="error")      # starts at 2 s
    raw.set_meas_date(datetime.datetime(2024, 1, 2, tzinfo=datetime.timezone.utc))
    own = source.annotations
    raw.set_annotations(mne.Annotations(own.onset, own.duration, own.description))      # from the first sample
    faulty, truth = inject_faults(raw, {"dead": ["P3"], "burst": ["F4"]}, seed=6)
    before = faulty.copy()
    report = zl.screen(faulty, **SPLINE)
    fixed = report.apply(faulty)
    assert fixed.info["bads"] == ["P3"] and faulty.info["bads"] == []
    np.testing.assert_array_equal(fixed.get_data(), faulty.get_data())
    ours = fixed.annotations.description == SEGMENT_DESCRIPTION
    kept = fixed.annotations[np.flatnonzero(~ours)]
    assert kept == faulty.annotations and ours.sum() == len(report.segments) > 0
    spans = [s for s in bad_annotation_spans(fixed) if len(s) == 3]
    assert sorted((round(a, 6), round(b, 6), c) for a, b, c in spans) == sorted(report.segments)
    # nothing else moved, and the input is unchanged
    np.testing.assert_array_equal(faulty.get_data(), before.get_data())
    assert faulty.annotations == before.annotations and faulty.info["bads"] == before.info["bads"]
    with pytest.raises(ZunaValueError, match="has no channel"):
        report.apply(faulty.copy().drop_channels(["P3"]))


def test_the_spline_is_mnes_interpolate_bads():
    raw = zl.read_raw(recording(7), verbose="error")
    data = raw.get_data()
    origin = prediction.sphere_origin(raw.info)
    positions = zl.io.montage.channel_positions(raw)
    for hidden in (["Cz"], ["T7", "O1", "Fp2"]):
        rows = [raw.ch_names.index(c) for c in hidden]
        sources = [i for i in range(len(raw.ch_names)) if i not in rows]
        ours = prediction.spline_matrix(positions, sources, rows, origin=origin) @ data[sources]
        mne_raw = raw.copy()
        mne_raw.info["bads"] = hidden
        mne_raw.interpolate_bads(reset_bads=True, origin="auto", verbose="error")
        np.testing.assert_allclose(ours, mne_raw.get_data()[rows], rtol=1e-9, atol=1e-15)
    # leave-one-out predictions: each row from all the others
    truth, n = data[None, :, :1280], len(raw.ch_names)
    loo = prediction.spline_predictions(truth, positions, origin, hidden_sets=prediction.held_out_sets(positions),
                                        excluded=np.zeros(n, bool), bad_cells=np.zeros((1, n), bool))
    i = raw.ch_names.index("Pz")
    others = [j for j in range(n) if j != i]
    np.testing.assert_allclose(loo[0, i], prediction.spline_matrix(positions, others, [i], origin=origin)[0]
                               @ truth[0, others], rtol=1e-12)


def test_held_out_groups_split_neighbours():
    raw = zl.read_raw(recording(0), verbose="error")
    positions = zl.io.montage.channel_positions(raw)
    sets = prediction.held_out_sets(positions, 4)
    assert sorted(c for s in sets for c in s) == list(range(19)) and sorted(len(s) for s in sets) == [4, 5, 5, 5]
    for group in sets:               # no two members of a group closer than 4 cm
        pos = positions[list(group)]
        distance = np.linalg.norm(pos[:, None] - pos[None], axis=-1) + np.eye(len(group))
        assert distance.min() > 0.04


def test_scores_dataset_and_both_estimators(model):
    faulty, _ = inject_faults(recording(8), {"dead": ["C4"]}, seed=8)
    report = zl.screen(faulty, model=model, groups=4, steps=1, compare=(), verbose="error")
    scores = report.scores
    assert list(scores["estimator"].values) == ["zuna", "spline"] and report.decided_by == "zuna"
    assert scores["error"].dims == ("estimator", "epoch", "channel") and scores["error"].attrs["units"] == "V"
    assert scores["window_z"].dims == ("estimator", "epoch", "channel", "window")
    assert not {"method", "tolerance", "drop"} & (set(scores.dims) | set(scores.coords))
    spline = scores.sel(estimator="spline")                      # the keyword form selects one estimator
    assert spline["badness"].dims == ("epoch", "channel")
    z = np.stack([spline[f"{c}_z"].values for c in zl.trust.screen.CRITERIA])
    np.testing.assert_allclose(spline["badness"].values, np.nanmax(z, axis=0))
    assert (spline["bad"] == (spline["badness"] > scores.attrs["threshold"])).all()
    assert float(spline["amplitude_ratio"].sel(channel="C4").median()) < 0.1      # dead: ~2 % of the prediction
    assert scores.attrs["model_random"] and "RANDOM weights" in repr(report)
    table = report.table.set_index("channel")
    assert {"zuna", "zuna_badness", "spline", "spline_badness", "segments_s"} <= set(table.columns)
    assert "C4" in report.bad_channels and table.loc["C4", "spline"] == "bad"
    assert "<table" in report._repr_html_()


def test_scores_go_to_netcdf(tmp_path):
    require_module("netCDF4")
    faulty, _ = inject_faults(recording(13), {"noise": ["Cz"]}, seed=13)
    report = zl.screen(faulty, **SPLINE)
    report.scores.to_netcdf(tmp_path / "screen.nc")
    with xr.open_dataset(tmp_path / "screen.nc") as back:
        xr.testing.assert_allclose(back.load(), report.scores)
        assert back.attrs["decided_by"] == "spline" and back.attrs["model_random"] == 0


def test_every_channel_found_bad_ends_the_passes_without_a_crash(model, tmp_path):
    """Found by test_fuzz (issue R): a threshold every cell passes made the next ZUNA pass predict from no channel at
    all (numpy's LinAlgError "Singular matrix"); now a set with fewer than 3 channels left is not predicted, as the
    spline does, and the report says every channel is bad."""
    before = set(tmp_path.iterdir())
    report = zl.screen(recording(3, duration=10.0), model=model, estimators=("zuna",), threshold=1e-300,
                       bad_fraction=1e-9, groups=3, steps=1, compare=(), verbose="error")
    assert report.bad_channels == report.table["channel"].tolist() and len(report.bad_channels) == 19
    assert set(tmp_path.iterdir()) == before


def test_zuna_prediction_is_zl_reconstruct_of_the_spline_filled_recording(model):
    raw = zl.read_raw(recording(9), verbose="error")
    pre = zl.api.core.prepare(raw, model.variant).pre
    truth = np.stack(pre.volts)
    origin = prediction.sphere_origin(raw.info)
    sets = [(3,), (7, 12)]
    none = np.zeros(len(raw.ch_names), bool)
    predicted = prediction.zuna_predictions(raw, truth, pre.epoch_start, model, hidden_sets=sets, excluded=none,
                                            bad_cells=np.zeros(truth.shape[:2], bool), origin=origin, steps=2, seed=5)
    positions = zl.io.montage.channel_positions(raw)
    for index, group in enumerate(sets):
        filled = raw.copy()
        sources = [i for i in range(len(raw.ch_names)) if i not in group]
        filled._data[list(group)] = prediction.spline_matrix(positions, sources, group, origin=origin) @ raw._data[sources]
        seed = int(np.random.SeedSequence([5, index]).generate_state(1)[0] % (2 ** 31))
        rec = zl.reconstruct(filled, model=model, bad_channels=[raw.ch_names[i] for i in group], steps=2, seed=seed)
        np.testing.assert_array_equal(predicted[:, list(group)], rec["reconstruction"].values[:, list(group)])
        # the recording of the held-out channels never reached ZUNA: changing it changes nothing
        changed = raw.copy()
        changed._data[list(group)] *= -7.0
        again = prediction.zuna_predictions(changed, truth, pre.epoch_start, model, hidden_sets=[group],
                                            excluded=none, bad_cells=np.zeros(truth.shape[:2], bool), origin=origin,
                                            steps=2, seed=5)
        if index == 0:
            np.testing.assert_array_equal(again[:, list(group)], predicted[:, list(group)])


def test_known_bads_are_neither_scored_nor_suggested_and_input_is_unchanged():
    faulty, _ = inject_faults(recording(10), {"dead": ["C3"], "noise": ["O1"]}, seed=10)
    faulty.info["bads"] = ["C3"]
    before_data, before_annotations = faulty.get_data().copy(), faulty.annotations.copy()
    report = zl.screen(faulty, bad_segments=[(4.0, 6.0)], **SPLINE)
    assert report.bad_channels == ["O1"] and report.marked == ["C3"]
    assert report.table.set_index("channel").loc["C3", "status"] == "marked"
    assert report.scores["badness"].sel(channel="C3").isnull().all()
    assert bool(report.scores["marked"].sel(channel="C3"))
    # cells under the known bad span (epochs 0 and 1 touch 4-6 s) are not scored
    assert report.scores["badness"].sel(epoch=[0, 1]).isnull().all()
    np.testing.assert_array_equal(faulty.get_data(), before_data)
    assert faulty.annotations == before_annotations and faulty.info["bads"] == ["C3"]


def test_numpy_and_path_inputs_give_the_same_report(tmp_path):
    faulty, _ = inject_faults(recording(11), {"noise": ["T7"]}, seed=11)
    path = tmp_path / "faulty_raw.fif"
    faulty.save(path, fmt="double", verbose="error")
    from_raw = zl.screen(faulty, **SPLINE)
    from_array = zl.screen(faulty.get_data(), sfreq=faulty.info["sfreq"], ch_names=faulty.ch_names, **SPLINE)
    from_path = zl.screen(path, **SPLINE)
    assert from_raw.bad_channels == from_array.bad_channels == from_path.bad_channels == ["T7"]
    xr.testing.assert_allclose(from_raw.scores.drop_attrs(), from_path.scores.drop_attrs())
    assert from_path.scores.attrs["source_file"] == str(path)


def test_other_detectors_beside_ours(monkeypatch):
    require_module("pyprep")
    faulty, _ = inject_faults(recording(12), {"dead": ["Cz"], "noise": ["P8"]}, seed=12)
    report = zl.screen(faulty, estimators=("spline",), verbose="error")
    table = report.table.set_index("channel")
    assert {"pyprep", "lof", "lof_score"} <= set(table.columns)
    assert table.loc["P8", "pyprep"] != "" and not table["pyprep"].str.startswith(("failed", "not installed")).any()
    assert table["lof_score"].notnull().all() and set(table["lof"]) <= {"", "lof"}
    import sys

    monkeypatch.setitem(sys.modules, "pyprep", None)                         # as if it were not installed
    report = zl.screen(faulty, estimators=("spline",), compare=("pyprep",), verbose="error")
    assert set(report.table["pyprep"]) == {"not installed"} and "pyprep: not installed" in repr(report)


@pytest.mark.parametrize("kwargs,error,message", [
    (dict(estimators="spline"), ZunaValueError, "estimators must be a tuple"),
    (dict(estimators=("spline", "ransac")), ZunaValueError, "estimators must be a tuple"),
    (dict(compare=("autoreject",)), ZunaValueError, "compare must be a tuple"),
    (dict(threshold=0), ZunaValueError, "threshold must be a positive number"),
    (dict(bad_fraction=1.5), ZunaValueError, "bad_fraction must be a finite number from 0 to 1"),
    (dict(bad_fraction=0), ZunaValueError, "bad_fraction must be above 0 .*0 would suggest every channel"),
    (dict(segment_window=0.3), ZunaValueError, "whole number of 0.125 s tokens"),
    (dict(groups=1), ZunaValueError, "groups must be an integer of at least 2"),
    (dict(bad_channels="O1"), ZunaTypeError, "write bad_channels=\\['O1'\\]"),
    (dict(bad_channels=["Xx"]), ZunaValueError, "not a channel of the recording"),
    (dict(seed=None), ZunaTypeError, "seed must be a non-negative integer"),
    (dict(steps=0), ZunaValueError, "steps must be an integer from 1 to 1000"),
])
def test_bad_input_is_one_sentence_before_any_work(kwargs, error, message, monkeypatch):
    monkeypatch.setattr(zl.api.core, "get_model", lambda *a, **k: pytest.fail("the model was loaded before the check"))
    options = dict(estimators=("zuna", "spline"), model="no/such-model", compare=())
    options.update(kwargs)
    with pytest.raises(error, match=message) as info:
        zl.screen(recording(0, duration=10.0), **options)
    text = str(info.value)
    assert "\n" not in text and text.endswith(".") and re.search(r"[.!?]\s+[A-Z]", text) is None    # one sentence


def test_bad_data_is_one_sentence(tmp_path):
    with pytest.raises(RecordingFileError, match="does not exist"):
        zl.screen(tmp_path / "missing.edf", **SPLINE)
    with pytest.raises(ZunaValueError, match="needs ch_names= and sfreq="):
        zl.screen(np.zeros((3, 2560)), **SPLINE)
    with pytest.raises(ZunaTypeError, match="Cannot read a recording from dict"):
        zl.screen({"a": 1}, **SPLINE)
    few = recording(0, duration=10.0).pick(["Cz", "Pz", "Fz", "O1"])
    with pytest.raises(ZunaValueError, match="needs at least 3"):
        zl.screen(few, bad_channels=["Cz", "Pz"], **SPLINE)
    with pytest.raises(ZunaTypeError, match="apply needs the mne Raw"):
        zl.screen(recording(0, duration=10.0), **SPLINE).apply("file.fif")


def test_a_recording_too_long_to_screen_in_memory_is_refused_before_any_work(tmp_path, monkeypatch):
    """Screening holds the whole recording: what would not fit is refused in one sentence that says how to
    screen a part, before reading the samples (a 24 h file used to run out of memory without a word)."""
    from zuna_lab.api import streaming

    path = tmp_path / "r_raw.fif"
    make_synthetic_raw(duration=20.0, seed=1, verbose=False).save(path, verbose="error")
    read = []
    monkeypatch.setattr(streaming, "available_memory", lambda: 1000)            # a machine with 1 kB free
    monkeypatch.setattr(mne.io.BaseRaw, "get_data", lambda *a, **k: read.append(1))
    with pytest.raises(ZunaValueError, match=r"^Screening this recording in memory needs about .* GB but .* are "
                                             r"available; screen a part of it \(zl.read_raw\(path, preload=False\)"
                                             r"\.crop\(tmin, tmax\)\)\.$") as info:
        zl.screen(path, compare=(), estimators=("spline",))
    assert not read and info.value.args[0].count(". ") == 0
