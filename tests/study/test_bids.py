"""BIDS studies (issue M): embed_many / reconstruct_many on a BIDS dataset built here with mne-bids.

The dataset (tests/builders.py: make_bids_dataset): 5 subjects, two sessions of sub-01, two tasks
of sub-02, BrainVision, EDF, EEGLAB and FIF, T7 marked bad in one channels.tsv only, C3 measured
12 mm off the standard cap in one session's electrodes.tsv, a participants.tsv with group and age,
and sub-05's EDF cut in half. Checked: the index carries the entities; the bad channel is masked;
the stored positions are the measured ones; the filters select what they say; the corrupt file
fails alone with its one sentence; a rerun skips what is done and redoes what a sidecar changed;
pooled() has the participants' columns; outputs land under derivatives/ with a valid
dataset_description.json and the raw dataset is untouched (checksums).
"""
from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import mne
import numpy as np
import pandas as pd
import pytest
import xarray as xr

import zuna_lab as zl
from zuna_lab.errors import ZunaTypeError, ZunaValueError
from zuna_lab.study.bids import find_bids_recordings

from builders import BIDS_BAD, BIDS_GROUPS, BIDS_MOVED, BIDS_RECORDINGS, make_bids_dataset
from oracle_support import require_module

require_module("distributed")
require_module("mne_bids")
require_module("eeglabio")

GOOD = sorted(set(BIDS_RECORDINGS) - {"sub-05_ses-a_task-rest_run-01"})
CORRUPT = "sub-05_ses-a_task-rest_run-01"


def checksums(root):
    """Every file of the raw dataset (derivatives/ left out): relative path -> sha256."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(root).rglob("*")) if p.is_file() and "derivatives" not in p.relative_to(root).parts}


def quiet_embed(path, model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return zl.embed(path, model=model, progress=False, verbose="error")


def without_created(ds):
    ds = ds.copy()
    ds.attrs = {k: v for k, v in ds.attrs.items() if k != "created"}
    return ds


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, random_checkpoint):
    root = make_bids_dataset(tmp_path_factory.mktemp("bids") / "ds")
    return dict(root=root, before=checksums(root), ckpt=random_checkpoint("ZUNA1.1"))


@pytest.fixture(scope="module")
def model(dataset):
    return zl.load_model(dataset["ckpt"], device="cpu")


@pytest.fixture(scope="module")
def embedded(dataset, client):
    index = zl.embed_many(dataset["root"], model=dataset["ckpt"], client=client, progress=False)
    return index.set_index("recording")


def path_of(root, rec_id):
    fmt = BIDS_RECORDINGS[rec_id][0]
    entities = dict(part.split("-") for part in rec_id.split("_"))
    ext = {"BrainVision": ".vhdr", "EDF": ".edf", "EEGLAB": ".set", "FIF": ".fif"}[fmt]
    return Path(root) / f"sub-{entities['sub']}" / f"ses-{entities['ses']}" / "eeg" / f"{rec_id}_eeg{ext}"


# ---------------------------------------------------------------------------------------------- index
def test_index_has_the_entities_and_the_corrupt_file_fails_alone(embedded):
    assert sorted(embedded.index) == sorted(BIDS_RECORDINGS)     # sidecars, .vmrk, .eeg, .fdt: not recordings
    assert list(embedded.columns[:6]) == ["source", "subject", "session", "task", "acquisition", "run"]
    assert (embedded.loc[GOOD, "status"] == "done").all()
    row = embedded.loc["sub-02_ses-a_task-oddball_run-01"]
    assert (row.subject, row.session, row.task, row.acquisition, row.run) == ("02", "a", "oddball", "", "01")
    assert embedded.loc["sub-04_ses-a_task-rest_run-02", "run"] == "02"
    assert "run_id" in embedded.columns and embedded.loc[GOOD, "run_id"].nunique() == 1   # the store's own counter
    failed = embedded.loc[CORRUPT]
    assert failed.status == "failed" and "truncated" in failed.error and failed.error.count(". ") == 0
    assert failed.error.endswith(".") and "\n" not in failed.error
    assert {Path(embedded.loc[r, "source"]).suffix for r in GOOD} == {".vhdr", ".edf", ".set", ".fif"}


def test_stored_recordings_equal_embed_of_the_file(embedded, dataset, model):
    study = zl.open_embeddings(dataset["root"])            # the root finds its derivative store
    assert study.path == (dataset["root"] / "derivatives" / "zuna_lab").resolve()
    for rec_id in ("sub-01_ses-a_task-rest_run-01", "sub-03_ses-a_task-rest_run-01", "sub-04_ses-a_task-rest_run-02"):
        expected = quiet_embed(path_of(dataset["root"], rec_id), model)
        xr.testing.assert_identical(without_created(study[rec_id].load()), without_created(expected))


def test_channels_tsv_bad_is_masked(embedded, dataset):
    rec_id, bad = BIDS_BAD
    ds = zl.open_embeddings(dataset["root"])[rec_id]
    assert bool((ds["mask"] | ds["padding"]).sel(channel=bad).all())         # every real token of T7
    assert not bool(ds["mask"].drop_sel(channel=bad).any())
    raw = mne.io.read_raw(path_of(dataset["root"], rec_id), verbose="error")
    assert raw.info["bads"] == []                           # the file itself does not say so
    other = zl.open_embeddings(dataset["root"])["sub-01_ses-b_task-rest_run-01"]
    assert not bool(other["mask"].any())


def test_stored_positions_are_the_measured_ones(embedded, dataset):
    prefix, channel, offset = BIDS_MOVED
    study = zl.open_embeddings(dataset["root"])
    moved = study[f"{prefix}_task-rest_run-01"].sel(channel=channel)
    same = study["sub-01_ses-b_task-rest_run-01"].sel(channel=channel)      # the other session: the cap's
    measured = np.array([float(moved.ch_x), float(moved.ch_y), float(moved.ch_z)])
    standard = np.array([float(same.ch_x), float(same.ch_y), float(same.ch_z)])
    np.testing.assert_allclose(measured - standard, offset, atol=1e-6)
    table = pd.read_csv(dataset["root"] / "sub-01" / "ses-a" / "eeg" / "sub-01_ses-a_space-CapTrak_electrodes.tsv",
                        sep="\t")
    row = table.set_index("name").loc[channel]
    np.testing.assert_allclose(measured, [row.x, row.y, row.z], atol=1e-6)      # CapTrak = MNE's head frame


def test_a_bids_file_read_alone_reads_its_sidecars(dataset):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = zl.read_raw(path_of(dataset["root"], "sub-02_ses-a_task-oddball_run-01"), verbose="error")
        bad = zl.read_raw(path_of(dataset["root"], BIDS_BAD[0]), verbose="error")
    assert sorted(set(raw.annotations.description)) == ["standard", "target"]   # from events.tsv
    assert bad.info["bads"] == [BIDS_BAD[1]]


# ---------------------------------------------------------------------------------------------- filters
def test_filters_select_what_they_say(dataset, embedded):
    root = dataset["root"]

    def ids(**filters):
        return [r.rec_id for r in find_bids_recordings(root, **filters)]

    assert ids(subjects="01") == ["sub-01_ses-a_task-rest_run-01", "sub-01_ses-b_task-rest_run-01"]
    assert ids(subjects=["sub-01", "03"], sessions="a") == ["sub-01_ses-a_task-rest_run-01",
                                                            "sub-03_ses-a_task-rest_run-01"]
    assert ids(tasks="oddball") == ["sub-02_ses-a_task-oddball_run-01"]
    assert ids(runs="02") == ["sub-04_ses-a_task-rest_run-02"]
    with pytest.raises(ZunaValueError, match="matching subjects=.*its subjects: 01, 02, 03, 04, 05"):
        find_bids_recordings(root, subjects="09")
    with pytest.raises(ZunaTypeError, match="subjects must hold labels"):
        find_bids_recordings(root, subjects=[1.5])


def test_filtered_run_adds_to_the_store(dataset, client, tmp_path):
    store = tmp_path / "filtered.zarr"
    first = zl.embed_many(dataset["root"], store, model=dataset["ckpt"], client=client, progress=False,
                          sessions="b")
    assert first.recording.tolist() == ["sub-01_ses-b_task-rest_run-01"]
    second = zl.embed_many(dataset["root"], store, model=dataset["ckpt"], client=client, progress=False,
                           tasks="oddball")
    assert second.recording.tolist() == ["sub-01_ses-b_task-rest_run-01", "sub-02_ses-a_task-oddball_run-01"]
    assert (store / "dataset_description.json").is_file()       # a derivative wherever it is put


def test_filters_and_defaults_need_a_bids_dataset(tmp_path, dataset):
    folder = tmp_path / "plain"
    folder.mkdir()
    with pytest.raises(ZunaValueError, match="subjects= selects recordings of a BIDS dataset"):
        zl.embed_many(folder, tmp_path / "x.zarr", subjects="01", progress=False)
    with pytest.raises(ZunaValueError, match="only a BIDS dataset has a default"):
        zl.embed_many(folder, progress=False)
    with pytest.raises(ZunaValueError, match="inside the raw BIDS dataset"):
        zl.embed_many(dataset["root"], dataset["root"] / "sub-01" / "study.zarr", progress=False)
    assert not (dataset["root"] / "sub-01" / "study.zarr").exists()


# ---------------------------------------------------------------------------------------------- reruns
def test_rerun_skips_what_is_done_and_redoes_a_changed_sidecar(dataset, embedded, client, tmp_path):
    root = dataset["root"]
    again = zl.embed_many(root, model=dataset["ckpt"], client=client, progress=False).set_index("recording")
    for rec_id in GOOD:
        assert again.loc[rec_id, ["run_id", "computed_at", "output"]].tolist() == \
            embedded.loc[rec_id, ["run_id", "computed_at", "output"]].tolist()
    # a copy of the dataset, a bad channel marked in one channels.tsv: only that recording is redone
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns("derivatives"))
    store = tmp_path / "copy.zarr"
    before = zl.embed_many(copy, store, model=dataset["ckpt"], client=client, progress=False, subjects=["01", "02"])
    table = copy / "sub-02" / "ses-a" / "eeg" / "sub-02_ses-a_task-rest_run-01_channels.tsv"
    channels = pd.read_csv(table, sep="\t", keep_default_na=False)
    channels.loc[channels.name == "Cz", "status"] = "bad"
    channels.to_csv(table, sep="\t", index=False)
    after = zl.embed_many(copy, store, model=dataset["ckpt"], client=client, progress=False, subjects=["01", "02"])
    changed = set(after.recording[after.run_id != before.run_id])
    assert changed == {"sub-02_ses-a_task-rest_run-01"}
    redone = zl.open_embeddings(store)["sub-02_ses-a_task-rest_run-01"]
    assert bool((redone["mask"] | redone["padding"]).sel(channel="Cz").all())


# ---------------------------------------------------------------------------------------------- pooled
def test_pooled_joins_the_participants(dataset, embedded):
    study = zl.open_embeddings(dataset["root"])
    pooled = study.pooled()
    assert pooled.recording.tolist() == GOOD
    assert list(pooled.columns[:6]) == ["recording", "subject", "session", "task", "acquisition", "run"]
    assert {"group", "age", "sex"} <= set(pooled.columns) and "participant_id" not in pooled.columns
    assert pooled.columns.get_loc("group") < pooled.columns.get_loc("latent_0")
    for row in pooled.itertuples():
        assert row.group == BIDS_GROUPS[row.subject]
    per_epoch = study.pooled(per="epoch")
    assert list(per_epoch.columns[:4]) == ["recording", "epoch", "epoch_start", "subject"]
    assert set(per_epoch.group) == {"patient", "control"}
    # the latents are the plain pooled ones: the join adds columns and changes no value
    plain = [c for c in pooled.columns if c.startswith("latent_")]
    first = study[GOOD[0]]
    visible = ~(first["mask"] | first["padding"])
    expected = first["embedding"].astype("float64").where(visible).mean(("epoch", "channel", "token")).values
    np.testing.assert_allclose(pooled.loc[0, plain].to_numpy(np.float64), expected, rtol=1e-6)


# ---------------------------------------------------------------------------------------------- derivatives
def test_outputs_are_a_derivative_dataset_and_the_raw_data_is_untouched(dataset, embedded, client, model, tmp_path):
    root = dataset["root"]
    index = zl.reconstruct_many(root, model=dataset["ckpt"], client=client, progress=False, steps=2, seed=0,
                                subjects=["01", "03", "05"]).set_index("recording")
    derivative = root / "derivatives" / "zuna_lab"
    description = json.loads((derivative / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative" and description["BIDSVersion"]
    assert description["GeneratedBy"][0]["Name"] == "zuna_lab"
    assert description["GeneratedBy"][0]["Version"] == zl.__version__
    assert description["GeneratedBy"][1]["Name"] == "ZUNA1.1"
    assert str(dataset["ckpt"]) in description["GeneratedBy"][1]["Description"]
    assert index.loc[CORRUPT, "status"] == "failed"
    rec_id = "sub-01_ses-a_task-rest_run-01"
    assert index.loc[rec_id, "output"] == f"sub-01/ses-a/eeg/{rec_id}_desc-zuna_eeg.fif"
    written = mne.io.read_raw_fif(derivative / index.loc[rec_id, "output"], preload=True, verbose="error")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rec = zl.reconstruct(path_of(root, rec_id), model=model, steps=2, seed=0, progress=False, verbose="error")
        zl.write_fif(rec, tmp_path / "expected_eeg.fif")
    np.testing.assert_array_equal(written.get_data(), mne.io.read_raw_fif(tmp_path / "expected_eeg.fif",
                                                                          verbose="error").get_data())
    assert BIDS_BAD[1] in written.ch_names
    # the embeddings store shares the derivative dataset and is still readable
    assert zl.open_embeddings(root).recordings == GOOD
    assert checksums(root) == dataset["before"]



# ---------------------------------------------------------------------------------------------- command line
def test_cli_embeds_a_bids_dataset_with_filters(dataset, client, tmp_path, capsys):
    from zuna_lab.cli.commands import main

    store = tmp_path / "cli.zarr"
    status = main(["embed-many", str(dataset["root"]), "-o", str(store), "--subjects", "02", "05", "--tasks", "rest",
                   "--scheduler", client.scheduler.address, "--model", str(dataset["ckpt"]), "--quiet"])
    assert status == 1 and f"{CORRUPT} failed:" in capsys.readouterr().err         # sub-05's file is corrupt
    index = zl.open_embeddings(store).index
    assert index.recording.tolist() == ["sub-02_ses-a_task-rest_run-01", CORRUPT]
    assert index.subject.tolist() == ["02", "05"]
    status = main(["embed-many", str(tmp_path), "--subjects", "01", "--quiet"])
    assert status == 2 and "selects recordings of a BIDS dataset" in capsys.readouterr().err
    status = main(["embed-many", str(dataset["root"]), str(tmp_path), "-o", str(tmp_path / "x.zarr"), "--quiet"])
    assert status == 2 and "is a BIDS dataset; pass it alone" in capsys.readouterr().err
