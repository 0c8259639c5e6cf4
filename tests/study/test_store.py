"""The study store at corpus scale (issue #30), without a cluster: the journal, compaction, pooled table, old formats.

A commit appends one line to the journal and leaves the snapshot alone; a reader sees every
complete line and never an unfinished one; compaction folds the journal into the next snapshot
(and a reader racing it reads again); a run killed mid-line resumes; pooled features come from
one table that equals pooling the embeddings themselves; /1 and /2 stores (one zarr folder per
recording, the whole index.json per commit) are read as they are and a run moves them to /3.
"""
from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import zuna_lab as zl
from zuna_lab.errors import ZunaValueError
from zuna_lab.study import journal, store as store_module
from zuna_lab.study.archive import open_recording, write_recording
from zuna_lab.study.journal import read_index
from zuna_lab.study.layout import FORMAT, RECORDING_SUFFIX
from zuna_lab.study.pooled import epoch_sums, read_table, recording_sums
from zuna_lab.study.store import StudyStore
from zuna_lab.synthetic import make_synthetic_raw
from zuna_lab.testing import make_random_checkpoint

from oracle_support import require_module

require_module("zarr")

SETTINGS = {"model": "ckpt", "variant": "ZUNA1.1"}
CH8 = ["F3", "F4", "C3", "C4", "P3", "P4", "O1", "O2"]


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """Three real embeddings: 12.5 s (a padded last segment), 20 s with a bad channel and a BAD_ span, 7 s."""
    root = tmp_path_factory.mktemp("store")
    model = zl.load_model(make_random_checkpoint(root / "ZUNA1.1", variant="ZUNA1.1"), device="cpu")
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, duration, names, seed in (("a", 12.5, None, 1), ("b", 20.0, CH8, 2), ("c", 7.0, None, 3)):
            raw = make_synthetic_raw(duration=duration, ch_names=names, seed=seed, verbose=False)
            if name == "b":
                raw.info["bads"] = ["C3"]
                raw.annotations.append(4.0, 1.5, "BAD_movement")
            out[name] = zl.embed(raw, model=model, progress=False, verbose="error")
    return out


def commit_recording(target, name, ds, run="r1"):
    """What a worker and the driver do for one recording: its zip under .tmp/, then the commit."""
    written = target.tmp / f"{name}@{run}{RECORDING_SUFFIX}"
    sums = epoch_sums(ds)
    write_recording(ds, written, sums=sums)
    totals = recording_sums(sums)
    target.commit({"recording": name, "status": "done", "source": f"/data/{name}.fif", "source_stamp": "1:1",
                   "run_id": run, "n_epochs": ds.sizes["epoch"]}, written=str(written), pooled=totals)


def fake_commit(target, name, run="r1", seed=0):
    """A commit with a stand-in output file and made-up sums (the store's code, no embedding)."""
    written = target.tmp / f"{name}@{run}{RECORDING_SUFFIX}"
    written.write_bytes(b"x")
    rng = np.random.default_rng(seed)
    totals = {"sum": rng.normal(size=32), "n": int(rng.integers(1, 100)), "sum_all": rng.normal(size=32),
              "n_all": int(rng.integers(100, 200))}
    target.commit({"recording": name, "status": "done", "run_id": run}, written=str(written), pooled=totals)
    return totals


def journal_lines(path):
    state = read_index(path, "embeddings")
    return (path / journal.IndexWriter(path, "embeddings").journal_path(state.generation).name).read_bytes()


def legacy_pooled(study, per="recording", include_masked=False):
    """pooled() as it was before the table: every recording's embedding pooled with dask."""
    return study._from_embeddings(study.recordings, per, include_masked)


# ---------------------------------------------------------------------------------------------- journal
def test_a_commit_is_one_journal_line_and_the_snapshot_stays(tmp_path):
    path = tmp_path / "s.zarr"
    target = StudyStore(path, "embeddings").open(SETTINGS)
    snapshot = (path / "index.json").read_bytes()
    for i in range(5):
        fake_commit(target, f"r{i}", seed=i)
        assert journal_lines(path).count(b"\n") == i + 1           # one more line per commit
        assert (path / "index.json").read_bytes() == snapshot     # the snapshot is not rewritten
        seen = zl.open_embeddings(path)                           # a reader sees every committed row
        assert seen.recordings == [f"r{j}" for j in range(i + 1)]
    target.commit({"recording": "bad", "status": "failed", "error": "Broken."})
    target.close()                                                # end of the run: compacted
    state = read_index(path, "embeddings")
    assert state.format == FORMAT and state.lines == 0 and len(state.rows) == 6 and state.generation == 2
    assert [p.name for p in path.glob("journal-*.jsonl")] == ["journal-000002.jsonl"]   # the old one removed
    assert not (path / ".lock").exists() and not (path / ".tmp").exists()
    table = read_table(path / state.table)
    assert sorted(table["recording"]) == [f"r{i}" for i in range(5)]      # failed rows have no features


def test_an_unfinished_last_line_is_no_commit_and_the_next_run_cuts_it(tmp_path):
    path = tmp_path / "s.zarr"
    target = StudyStore(path, "embeddings").open(SETTINGS)
    fake_commit(target, "r0")
    fake_commit(target, "r1")
    journal_file = target._log.journal
    whole = journal_file.read_bytes()
    # killed while writing the third line: half of it on disk, no newline
    line = json.dumps({"row": {"recording": "r2", "status": "done", "output": "recordings/r2@x.zarr.zip"}})
    journal_file.write_bytes(whole + line[: len(line) // 2].encode())
    assert zl.open_embeddings(path).recordings == ["r0", "r1"]
    target._log.close()
    (path / ".lock").write_text(json.dumps({"host": os.uname().nodename, "pid": 2 ** 22 + 12345, "since": "x"}))
    target = StudyStore(path, "embeddings").open(SETTINGS)         # the dead run's lock is taken over
    state = read_index(path, "embeddings")
    assert state.lines == 0 and sorted(state.rows) == ["r0", "r1"] and not state.torn
    assert not journal_file.exists()                               # folded into the new snapshot
    fake_commit(target, "r2", run="r2")
    target.close()
    assert zl.open_embeddings(path).recordings == ["r0", "r1", "r2"]


def test_a_damaged_line_inside_the_journal_is_said(tmp_path):
    path = tmp_path / "s.zarr"
    target = StudyStore(path, "embeddings").open(SETTINGS)
    fake_commit(target, "r0")
    fake_commit(target, "r1")
    journal_file = target._log.journal
    lines = journal_file.read_bytes().split(b"\n")
    journal_file.write_bytes(b"\n".join([b'{"row": garbage', *lines[1:]]))
    with pytest.raises(ZunaValueError, match="Line 1 of .* is damaged"):
        zl.open_embeddings(path)
    target.close(compact=False)


def test_compaction_when_the_journal_grows(tmp_path, monkeypatch):
    monkeypatch.setattr(store_module, "COMPACT_MIN_LINES", 4)
    path = tmp_path / "s.zarr"
    target = StudyStore(path, "embeddings").open(SETTINGS)
    generations, sums = [], {}
    for i in range(40):
        sums[f"r{i:02d}"] = fake_commit(target, f"r{i:02d}", seed=i)
        generations.append(read_index(path, "embeddings").generation)
        assert target._log.lines < max(4, len(target.rows) / 2) + 1
    # compacted at 4, 8, 16, 32 rows: the journal never holds more than half the rows (or 4 lines)
    assert sorted(set(generations)) == [1, 2, 3, 4, 5]
    assert [generations.index(g) + 1 for g in (2, 3, 4, 5)] == [4, 8, 16, 32]
    # a recording done again replaces its row and its features; the old file goes
    old = target.rows["r03"]["output"]
    sums["r03"] = fake_commit(target, "r03", run="r2", seed=99)
    assert not (path / old).exists() and target.rows["r03"]["output"].endswith(f"r03@r2{RECORDING_SUFFIX}")
    mid_run = zl.open_embeddings(path).pooled().set_index("recording")       # the table still has r03's old sums
    np.testing.assert_array_equal(mid_run.loc["r03", "latent_0"], sums["r03"]["sum"][0] / sums["r03"]["n"])
    target.commit({"recording": "r05", "status": "failed", "error": "Broken now."})    # done before, failed now
    del sums["r05"]
    assert "r05" not in set(zl.open_embeddings(path).pooled().recording)
    target.close()
    assert len(list(path.glob("pooled-*"))) == 1 and len(list(path.glob("journal-*"))) == 1
    pooled = zl.open_embeddings(path).pooled().set_index("recording")
    assert list(pooled.index) == sorted(sums)
    for name, total in sums.items():
        np.testing.assert_array_equal(pooled.loc[name, [f"latent_{i}" for i in range(32)]].to_numpy(float),
                                      total["sum"] / total["n"])
        assert pooled.loc[name, "n_tokens"] == total["n"]


def test_a_reader_racing_a_compaction_reads_again(tmp_path, monkeypatch):
    path = tmp_path / "s.zarr"
    target = StudyStore(path, "embeddings").open(SETTINGS)
    for i in range(3):
        fake_commit(target, f"r{i}", seed=i)
    load, calls = journal._load_snapshot, []

    def load_then_compact(snapshot, kind):
        content = load(snapshot, kind)
        if not calls:               # between the reader's snapshot and its journal, the writer compacts
            fake_commit(target, "r3", seed=3)
            target.compact()
        calls.append(content["generation"])
        return content

    monkeypatch.setattr(journal, "_load_snapshot", load_then_compact)
    state = read_index(path, "embeddings")
    assert calls[0] == 1 and calls[-1] == 2                        # read snapshot 1, its journal was gone: again
    assert sorted(state.rows) == ["r0", "r1", "r2", "r3"] and state.lines == 0
    target.close()


def test_two_runs_on_one_store_are_refused(tmp_path):
    path = tmp_path / "s.zarr"
    first = StudyStore(path, "embeddings").open(SETTINGS)
    with pytest.raises(ZunaValueError, match="in use by another run"):
        StudyStore(path, "embeddings").open(SETTINGS)
    fake_commit(first, "r0")                                        # the first run goes on untouched
    first.close()
    assert zl.open_embeddings(path).recordings == ["r0"]


# ---------------------------------------------------------------------------------------------- recordings
def test_a_recording_is_one_file_equal_to_embed(tmp_path, datasets):
    path = tmp_path / "s.zarr"
    target = StudyStore(path, "embeddings").open(SETTINGS)
    for name, ds in datasets.items():
        commit_recording(target, name, ds)
    target.close()
    outputs = sorted((path / "recordings").iterdir())
    assert [p.name for p in outputs] == [".zgroup", *(f"{n}@r1{RECORDING_SUFFIX}" for n in sorted(datasets))]
    assert all(p.is_file() for p in outputs)                        # one file per recording
    study = zl.open_embeddings(path)
    for name, ds in datasets.items():
        lazy = study[name]
        assert hasattr(lazy.embedding.data, "dask")
        xr.testing.assert_identical(lazy.load(), ds)                # created included: the very Dataset


def test_pooled_table_equals_pooling_the_embeddings(tmp_path, datasets, monkeypatch):
    path = tmp_path / "s.zarr"
    target = StudyStore(path, "embeddings").open(SETTINGS)
    for name, ds in datasets.items():
        commit_recording(target, name, ds)
    study_mid_run = zl.open_embeddings(path)            # the features still in the journal
    target.close()
    study = zl.open_embeddings(path)                    # the features in the table
    for per in ("recording", "epoch"):
        for include_masked in (False, True):
            expected = legacy_pooled(study, per, include_masked)
            for seen in (study, study_mid_run):
                got = seen.pooled(per, include_masked=include_masked)
                pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=1e-12, atol=0)
                pd.testing.assert_series_equal(got.n_tokens, expected.n_tokens)
    # the hidden channel and span count only with include_masked
    b = datasets["b"]
    visible = ~(b["mask"].values | b["padding"].values)
    assert study.pooled().set_index("recording").loc["b", "n_tokens"] == visible.sum() < (~b.padding.values).sum()
    # per recording, no recording is opened: one table
    monkeypatch.setattr("zuna_lab.study.archive.open_recording", lambda path: pytest.fail(f"opened {path}"))
    assert len(study.pooled()) == 3 and list(study.pooled(recordings=["c", "a"]).recording) == ["c", "a"]
    with pytest.raises(ZunaValueError, match="no recording 'zz'"):
        study.pooled(recordings=["a", "zz"])


def test_epoch_sums_match_numpy(datasets):
    ds = datasets["b"]
    sums = epoch_sums(ds)
    x = ds.embedding.values.astype(np.float64)
    visible = ~(ds["mask"].values | ds["padding"].values)
    for e in range(ds.sizes["epoch"]):
        np.testing.assert_allclose(sums["sum"][e], x[e][visible[e]].sum(0), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(sums["n"], visible.sum((1, 2)))
    np.testing.assert_array_equal(sums["n_all"], (~ds["padding"].values).sum((1, 2)))
    # a NaN latent in a counted token is skipped (as xarray's sum skips it), the other epochs untouched
    broken = ds.copy(deep=True)
    e, c, t = np.argwhere(visible)[len(np.argwhere(visible)) // 2]
    broken.embedding.values[e, c, t, :3] = np.nan
    again = epoch_sums(broken)
    x[e, c, t, :3] = np.nan
    np.testing.assert_allclose(again["sum"][e], np.nansum(x[e][visible[e]], 0), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(np.delete(again["sum"], e, 0), np.delete(sums["sum"], e, 0))
    assert not np.isnan(again["sum"]).any() and again["n"][e] == sums["n"][e]


# ---------------------------------------------------------------------------------------------- old stores
def old_store(path, datasets, format_):
    """A store as /1 or /2 wrote it: index.json with every row, one zarr folder per recording."""
    from zuna_lab.io.write import netcdf_ready

    (path / "recordings").mkdir(parents=True)
    for folder in (path, path / "recordings"):
        (folder / ".zgroup").write_text(json.dumps({"zarr_format": 2}))
    rows = []
    for name in ("a", "b"):
        output = f"recordings/{name}@old"
        netcdf_ready(datasets[name]).to_zarr(path / output, mode="w", zarr_format=2, consolidated=True)
        run = {"run": "old"} if format_.endswith("/1") else {"run_id": "old"}
        rows.append({"recording": name, "source": f"/data/{name}.fif", "status": "done", "output": output,
                     "source_stamp": "1:1", **run})
    rows.append({"recording": "x", "source": "/data/x.edf", "status": "failed", "error": "Truncated."})
    (path / "index.json").write_text(json.dumps({"format": format_, "kind": "embeddings", "settings": SETTINGS,
                                                 "updated": "then", "rows": rows}, indent=1))


@pytest.mark.parametrize("format_", ["zuna_lab.study.api/1", "zuna_lab.study.api/2"])
def test_older_stores_are_read_and_moved_to_the_journal(tmp_path, datasets, format_):
    path = tmp_path / "old.zarr"
    old_store(path, datasets, format_)
    study = zl.open_embeddings(path)
    assert study.recordings == ["a", "b"] and list(study.index.run_id[:2]) == ["old", "old"]
    xr.testing.assert_identical(study["b"].load(), datasets["b"])
    before = study.pooled(per="epoch")
    pd.testing.assert_frame_equal(before, legacy_pooled(study, "epoch"))      # no sums there: from the embeddings
    # a run on it: the index moves to /3, the old folders stay and are read, the new recording is a zip
    target = StudyStore(path, "embeddings").open(SETTINGS)
    assert json.loads((path / "index.json").read_text())["format"] == FORMAT
    commit_recording(target, "c", datasets["c"], run="new")
    target.close()
    study = zl.open_embeddings(path)
    assert study.recordings == ["a", "b", "c"] and study.index.set_index("recording").loc["a", "run_id"] == "old"
    assert (path / "recordings" / "a@old").is_dir() and (path / "recordings" / f"c@new{RECORDING_SUFFIX}").is_file()
    xr.testing.assert_identical(open_recording(path / "recordings" / "a@old").load(), datasets["a"])
    for per in ("recording", "epoch"):     # mixed: the table for c, the embeddings for a and b
        pd.testing.assert_frame_equal(study.pooled(per), legacy_pooled(study, per), check_exact=False,
                                      rtol=1e-12, atol=0)
    shutil.rmtree(path)


# ---------------------------------------------------------------------------------------------- source stamps
def test_source_stamps_list_each_folder_once(tmp_path, monkeypatch):
    """A study's stamps cost one listing per folder, not one per recording, and are what a glob of the stem gives."""
    import glob

    from zuna_lab.study.store import source_stamps

    folder = tmp_path / "flat"
    folder.mkdir()
    paths = []
    for i in range(200):
        for suffix in (".vhdr", ".eeg", ".vmrk") if i % 2 else (".edf",):
            (folder / f"s.{i:03d}{suffix}").write_bytes(b"x" * (i + len(suffix)))
        paths.append(folder / (f"s.{i:03d}.vhdr" if i % 2 else f"s.{i:03d}.edf"))
    (folder / ".s.001.vhdr.swp").write_bytes(b"hidden")           # hidden: not a companion
    (folder / "s.002.edf.d").mkdir()                               # a folder: not a companion
    os.utime(folder / "s.003.vmrk", ns=(1, 2 * 10**18))            # the newest file of s.003 decides its mtime
    listed = []
    scandir = os.scandir
    monkeypatch.setattr(os, "scandir", lambda path: listed.append(path) or scandir(path))
    stamps = source_stamps(paths + [folder / "gone.edf"])
    assert listed == [str(folder)]                                 # once, for 201 recordings
    for path, stamp in zip(paths, stamps):
        stem = path.name.rsplit(".", 1)[0]
        files = [Path(p) for p in glob.glob(str(folder / f"{glob.escape(stem)}.*")) if Path(p).is_file()]
        stats = [f.stat() for f in files]
        assert stamp == f"{sum(s.st_size for s in stats)}:{max(s.st_mtime_ns for s in stats)}"
    assert stamps[3].endswith(f":{2 * 10**18}") and stamps[-1] == "missing"


def test_a_snapshot_that_cannot_be_written_leaves_nothing(tmp_path, monkeypatch):
    """Settings JSON cannot hold (a set of names from a careless call) used to leave .index.json.XXXX behind
    (issue R); embed_many now stores names given as a set in one order, and a failed snapshot is removed."""
    from zuna_lab.study.api import _settings

    assert _settings({"source": "ckpt"}, "ZUNA1.1", {"bad_channels": {"Pz", "Cz"}})["bad_channels"] == ["Cz", "Pz"]
    path = tmp_path / "s.zarr"
    with pytest.raises(TypeError):
        StudyStore(path, "embeddings").open(dict(SETTINGS, bad_channels={"Pz"}))
    assert [p.name for p in path.iterdir() if p.name.startswith(".index")] == []
