"""The zuna-lab command line, run in-process through zuna_lab.cli.commands.main."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import mne
import numpy as np
import pytest
import xarray as xr

import zuna_lab as zl
from zuna_lab.cli.commands import main
from zuna_lab.testing import make_random_checkpoint

SAMPLE = Path(zl.__file__).resolve().parents[1] / "data" / "sample_synthetic_raw.fif"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_random_checkpoint(tmp_path_factory.mktemp("ckpt") / "ZUNA", variant="ZUNA")


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """The first 20 s of the sample (4 epochs): quick to embed and reconstruct."""
    path = tmp_path_factory.mktemp("data") / "short_raw.fif"
    mne.io.read_raw_fif(SAMPLE, preload=True, verbose="error").crop(0, 20, include_tmax=False).save(path, verbose="error")
    return path


@pytest.fixture
def env(monkeypatch, tmp_path, checkpoint):
    monkeypatch.setenv("ZUNA_LAB_MODEL", str(checkpoint))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_embed_netcdf(env, recording, capsys):
    out = env / "emb.nc"
    assert main(["embed", str(recording), "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert "4 epochs x 19 channels x 40 tokens x 32 latents" in captured.out
    assert str(out) in captured.out and "embed: 100%" in captured.err      # summary and progress (tqdm)
    with xr.open_dataset(out) as emb:
        assert emb.embedding.dims == ("epoch", "channel", "token", "latent")
        assert emb.embedding.shape == (4, 19, 40, 32)
        assert emb.attrs["source_file"] == str(recording)


def test_embed_other_variant_and_segments(env, recording, tmp_path_factory, capsys):
    ckpt = make_random_checkpoint(tmp_path_factory.mktemp("ckpt11") / "ZUNA1.1", variant="ZUNA1.1")
    out = env / "emb.safetensors"
    assert main(["embed", str(recording), "-o", str(out), "--model", str(ckpt), "--segment-duration", "2.5",
                 "--bad-channels", "O1", "--quiet"]) == 0
    assert capsys.readouterr().out == ""
    from safetensors.numpy import load_file

    tensors = load_file(out)
    assert int(tensors["n_samples"][0]) == 8 and tensors["embeddings_0"].shape[1] == 32


def test_reconstruct_fif(env, recording, capsys):
    out = env / "fixed_raw.fif"
    code = main(["reconstruct", str(recording), "-o", str(out), "--bad-channels", "T7", "--bad-segments", "2.0:3.5",
                 "11:12:O1", "--add-channels", "FCz", "--steps", "3", "--seed", "1"])
    assert code == 0
    summary = capsys.readouterr().out
    assert "T7, FCz entirely" in summary and "added      FCz" in summary and "3 steps, cfg 1, seed 1" in summary
    raw = mne.io.read_raw_fif(out, preload=True, verbose="error")
    assert raw.ch_names[-1] == "FCz" and len(raw.ch_names) == 20
    original = mne.io.read_raw_fif(recording, preload=True, verbose="error")
    # the recording's own annotations are kept, the infilled cells added
    assert set(raw.annotations.description) == set(original.annotations.description) | {"ZUNA_infilled"}
    assert np.isfinite(raw.get_data()).all()
    assert raw.n_times == original.n_times and raw.info["meas_date"] == original.info["meas_date"]


def test_reconstruct_netcdf_is_reproducible(env, recording):
    args = ["--bad-channels", "T7", "--steps", "2", "--seed", "0", "--quiet"]
    assert main(["reconstruct", str(recording), "-o", "a.nc", *args]) == 0
    assert main(["reconstruct", str(recording), "-o", "b.nc", *args]) == 0
    with xr.open_dataset(env / "a.nc") as a, xr.open_dataset(env / "b.nc") as b:
        assert {"original", "reconstruction", "hybrid", "mask"} <= set(a.data_vars)
        assert bool(a.mask.sel(channel="T7").all()) and not bool(a.mask.sel(channel="Cz").any())
        xr.testing.assert_equal(a.reconstruction, b.reconstruction)


def test_demo_random_weights(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("ZUNA_LAB_MODEL", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--random-weights", "--duration", "10", "--steps", "2"]) == 0
    captured = capsys.readouterr()
    assert "RANDOM WEIGHTS" in captured.out and "MEANINGLESS" in captured.out and "RANDOM WEIGHTS" in captured.err
    assert "infilled T7 entirely" in captured.out and "2 epochs" in captured.out
    outdir = tmp_path / "zuna_lab_demo"
    assert sorted(p.name for p in outdir.iterdir()) == [
        "sample_embedding.nc", "sample_reconstruction.nc", "sample_repaired_raw.fif"]
    raw = mne.io.read_raw_fif(outdir / "sample_repaired_raw.fif", verbose="error")
    assert "RANDOM WEIGHTS" in raw.info["description"]
    with xr.open_dataset(outdir / "sample_embedding.nc") as emb:
        assert "MEANINGLESS" in emb.attrs["warning"] and emb.embedding.shape == (2, 19, 40, 32)


def test_demo_without_hub_runs_on_random_weights(tmp_path):
    """The README's main command on a machine without the hub: `zuna-lab demo` with its defaults.

    "No hub" is a closed local port (HF_ENDPOINT=http://127.0.0.1:9) and an empty HF cache: the
    demo says so in one line within seconds, runs on a labelled random checkpoint, writes its
    three outputs and exits 0 in under a minute.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("ZUNA_LAB_MODEL", "HF_HUB_OFFLINE", "HF_HUB_CACHE")}
    env.update(HF_ENDPOINT="http://127.0.0.1:9", HF_HOME=str(tmp_path / "hf_home"))
    start = time.perf_counter()
    run = subprocess.Popen([sys.executable, "-m", "zuna_lab.cli", "demo"], cwd=tmp_path, env=env, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    err_lines, notice_after = [], None
    for line in run.stderr:                          # stdout is small: it cannot fill its pipe meanwhile
        err_lines.append(line.rstrip("\n"))
        if notice_after is None and "hub cannot be reached" in line:
            notice_after = time.perf_counter() - start
    out = run.stdout.read()
    assert run.wait(timeout=120) == 0, "\n".join(err_lines[-20:])
    elapsed = time.perf_counter() - start
    err = "\n".join(err_lines)
    notices = [line for line in err_lines if "hub cannot be reached" in line]
    assert len(notices) == 1 and notices[0].startswith("zuna-lab demo: ")
    assert "127.0.0.1:9" in notices[0] and "RANDOM weights" in notices[0] and "--model /path/to/ZUNA" in notices[0]
    assert notice_after < 15                         # process start, imports included
    assert "Retrying" not in err and "Traceback" not in err and "thrown while requesting" not in err
    assert "*** RANDOM WEIGHTS" in err and "*** RANDOM WEIGHTS" in out and "MEANINGLESS" in out
    assert "RANDOM tiny model (outputs meaningless)" in out and "infilled T7 entirely" in out
    assert "4 epochs x 19 channels x 40 tokens x 32 latents" in out            # the CPU default: 20 s
    outdir = tmp_path / "zuna_lab_demo"
    assert sorted(p.name for p in outdir.iterdir()) == [
        "sample_embedding.nc", "sample_reconstruction.nc", "sample_repaired_raw.fif"]
    raw = mne.io.read_raw_fif(outdir / "sample_repaired_raw.fif", verbose="error")
    assert "RANDOM WEIGHTS" in raw.info["description"]
    with xr.open_dataset(outdir / "sample_reconstruction.nc") as rec:
        assert "MEANINGLESS" in rec.attrs["warning"] and bool(rec.mask.sel(channel="T7").all())
    assert elapsed < 60, f"the offline demo took {elapsed:.0f} s"


def test_demo_named_weights_missing_exit_2(monkeypatch, tmp_path, capsys):
    """Weights the user names are never silently replaced by random ones."""
    monkeypatch.delenv("ZUNA_LAB_MODEL", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--model", "Zyphra/ZUNA1.1", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("zuna-lab demo: error: ") and "--model /path/to/ZUNA" in err and "RANDOM" not in err
    assert not (tmp_path / "zuna_lab_demo").exists()


def test_demo_keeps_earlier_results(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("ZUNA_LAB_MODEL", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    outdir = tmp_path / "zuna_lab_demo"
    outdir.mkdir()
    (outdir / "sample_embedding.nc").write_text("keep me")
    assert main(["demo", "--random-weights", "--duration", "5", "--steps", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("zuna-lab demo: error: ")
    assert "sample_embedding.nc" in err[0] and "--overwrite" in err[0] and "--output-dir" in err[0]
    assert [p.name for p in outdir.iterdir()] == ["sample_embedding.nc"]
    assert (outdir / "sample_embedding.nc").read_text() == "keep me"
    assert main(["demo", "--random-weights", "--duration", "5", "--steps", "1", "--overwrite", "--quiet"]) == 0
    with xr.open_dataset(outdir / "sample_embedding.nc") as emb:
        assert emb.embedding.shape == (1, 19, 40, 32)


@pytest.mark.parametrize("argv, message", [
    (["embed", "missing.edf", "-o", "out.nc"], "does not exist"),
    (["reconstruct", "missing.fif", "-o", "out.fif"], "does not exist"),
    (["reconstruct", "{rec}", "-o", "out.fif", "--bad-channels", "XX"], "'XX', which is not a channel"),
    (["reconstruct", "{rec}", "-o", "out.fif", "--bad-segments", "200:201"], "starts after the recording ends"),
    (["reconstruct", "{rec}", "-o", "out.fif", "--add-channels", "Cz"], "already has"),
    (["embed", "{rec}", "-o", "out.fif"], "must end in .nc"),
    (["embed", "{rec}", "-o", "nowhere/out.nc"], "does not exist"),
    (["embed", "{rec}", "-o", "out.nc", "--model", "/no/such/checkpoint"], "neither an existing directory"),
    (["doctor", "{rec}", "--fix", ""], "must end in .fif"),      # found by test_fuzz: was exit 0, nothing written
])
def test_errors_exit_2_with_one_line(env, recording, capsys, argv, message):
    argv = [a.replace("{rec}", str(recording)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("zuna-lab ") and ": error: " in last and message in last
    assert "Traceback" not in err
    assert not any(p.name.startswith(("out", ".out")) for p in env.iterdir())   # nothing written, no temp files


def test_existing_output_is_kept(env, recording, capsys):
    out = env / "emb.nc"
    out.write_text("keep me")
    assert main(["embed", str(recording), "-o", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert out.read_text() == "keep me"
    assert main(["embed", str(recording), "-o", str(out), "--overwrite", "--quiet"]) == 0
    with xr.open_dataset(out) as emb:
        assert emb.embedding.shape[0] == 4


def test_usage(capsys):
    assert main(["--version"]) == 0
    assert zl.__version__ in capsys.readouterr().out
    assert main([]) == 2
    assert main(["reconstruct", "x.fif", "-o", "y.fif", "--bad-segments", "2-3"]) == 2
    assert "START:STOP" in capsys.readouterr().err
    assert main(["embed", "--help"]) == 0


def test_warnings_are_one_line(env, recording, capsys):
    raw = mne.io.read_raw_fif(recording, preload=True, verbose="error").crop(0, 10, include_tmax=False)
    data = raw.get_data(picks=["Cz", "Pz", "O1"])
    csv = env / "three.csv"
    header = "time,Cz,Pz,O1,X1"
    rows = np.column_stack([raw.times, data.T, data[0]])
    np.savetxt(csv, rows, delimiter=",", header=header, comments="")
    assert main(["embed", str(csv), "-o", "emb.nc", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "zuna-lab: warning: Dropped 1 EEG channel(s) without a 3-D position: X1." in err
    assert "Traceback" not in err and "warnings.warn" not in err


@pytest.fixture(scope="module")
def with_events(tmp_path_factory):
    """20 s of the sample with a stim channel (codes 1 and 2) and annotations at the same times."""
    raw = mne.io.read_raw_fif(SAMPLE, preload=True, verbose="error").crop(0, 20, include_tmax=False)
    times, codes = [6.0, 9.5, 13.0], [1, 2, 1]
    stim = np.zeros((1, raw.n_times))
    for t, c in zip(times, codes):
        stim[0, int(t * raw.info["sfreq"])] = c
    raw.add_channels([mne.io.RawArray(stim, mne.create_info(["STI 014"], raw.info["sfreq"], "stim"), verbose="error")],
                     force_update_info=True)
    raw.set_annotations(raw.annotations + mne.Annotations(times, [0.0] * 3, ["left", "right", "left"]))
    path = tmp_path_factory.mktemp("events") / "events_raw.fif"
    raw.save(path, verbose="error")
    return path


def test_embed_events_from_a_stim_channel_and_from_annotations(env, with_events, capsys):
    """ZUNA: 5 s trials, 1 s before each event; the same trials whether the events come from the stim
    channel or the annotations."""
    by_stim, by_annotation = env / "stim.nc", env / "annotations.nc"
    assert main(["embed", str(with_events), "-o", str(by_stim), "--events", "STI 014", "--event-id", "left=1",
                 "right=2", "--tmin", "-1", "--tmax", "4", "--quiet", "--no-annotations"]) == 0
    assert main(["embed", str(with_events), "-o", str(by_annotation), "--events", "annotations", "--event-id",
                 "left", "right", "--tmin", "-1", "--tmax", "4", "--quiet", "--no-annotations"]) == 0
    with xr.open_dataset(by_stim) as stim, xr.open_dataset(by_annotation) as annotation:
        assert stim.sizes["epoch"] == 3 and list(stim.event.values) == ["left", "right", "left"]
        np.testing.assert_allclose(stim.event_time.values, [6.0, 9.5, 13.0], atol=1 / 256)
        assert float(stim.token_time[0]) == -1.0
        np.testing.assert_allclose(annotation.embedding.values, stim.embedding.values, rtol=1e-6, atol=1e-6)
        assert list(annotation.event.values) == ["left", "right", "left"]


def test_embed_event_options_are_checked(env, with_events, recording, capsys):
    for argv, message in (
            (["--tmin", "-1"], "--event-id, --tmin and --tmax go with --events"),
            (["--events", "stim"], "--events needs --tmin and --tmax"),
            (["--events", "EEG 999", "--tmin", "0", "--tmax", "5"], "is not a channel of the file"),
            (["--events", "annotations", "--event-id", "up", "--tmin", "0", "--tmax", "5"], "no annotation \\['up'\\]"),
            (["--events", "STI 014", "--event-id", "left", "--tmin", "0", "--tmax", "5"], "NAME=CODE pairs")):
        assert main(["embed", str(with_events), "-o", str(env / "x.nc"), *argv]) == 2
        assert message.replace("\\", "") in capsys.readouterr().err, message


def test_screen_apply_changes_only_bads_and_annotations(env, with_events, capsys):
    """zuna-lab screen --apply: the whole recording (EEG, a stim channel, its annotations, meas_date) written back
    with only info['bads'] and BAD_screen annotations added; a dead channel and a burst are what it finds."""
    from zuna_lab.trust.faults import inject_faults

    source = mne.io.read_raw_fif(with_events, preload=True, verbose="error")
    eeg = source.copy().pick("eeg")
    faulty, truth = inject_faults(eeg, {"dead": ["P3"], "burst": ["F4"]}, seed=1)
    source._data[mne.pick_types(source.info, eeg=True)] = faulty.get_data()
    source.info["bads"] = ["T8"]
    path = env / "faulty_raw.fif"
    source.save(path, fmt="double", verbose="error")
    out = env / "screened_raw.fif"
    assert main(["screen", str(path), "--estimators", "spline", "--compare", "none", "--apply", str(out),
                 "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "P3: flat or dead" in printed and "BAD_screen on F4" in printed and f"wrote {out.resolve()}" in printed
    before, after = mne.io.read_raw_fif(path, preload=True, verbose="error"), mne.io.read_raw_fif(out, verbose="error")
    assert after.info["bads"] == ["T8", "P3"]
    np.testing.assert_array_equal(after.get_data(), before.get_data())              # every channel, stim too
    assert after.ch_names == before.ch_names and after.get_channel_types() == before.get_channel_types()
    assert after.info["meas_date"] == before.info["meas_date"] and after.first_samp == before.first_samp
    for key in ("sfreq", "highpass", "lowpass", "line_freq"):
        assert after.info[key] == before.info[key], key
    np.testing.assert_array_equal([c["loc"] for c in after.info["chs"]], [c["loc"] for c in before.info["chs"]])
    new = after.annotations.description == "BAD_screen"
    assert after.annotations[np.flatnonzero(~new)] == before.annotations
    start, stop = truth["bursts"]["F4"]
    spans = [(a["onset"] - after.first_time, a["onset"] - after.first_time + a["duration"])
             for a in after.annotations[np.flatnonzero(new)] if a["ch_names"] == ("F4",)]
    assert sum(max(0.0, min(b, stop) - max(a, start)) for a, b in spans) == pytest.approx(stop - start)
    # the same report as the library's, and an existing output is kept
    report = zl.screen(path, estimators=("spline",), compare=(), verbose="error")
    assert report.bad_channels == ["P3"] and report.marked == ["T8"]
    assert main(["screen", str(path), "--estimators", "spline", "--compare", "none", "--apply", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["screen", "missing.fif"], "does not exist"),
    (["screen", "{rec}", "--apply", "out.edf"], "must end in .fif"),
    (["screen", "{rec}", "--apply", "nowhere/out_raw.fif"], "does not exist"),
    (["screen", "{rec}", "--bad-channels", "XX", "--apply", "out_raw.fif"], "'XX', which is not a channel"),
    (["screen", "{rec}", "--compare", "none", "lof"], "--compare none runs no other detector"),
    (["screen", "{rec}", "--threshold", "-1"], "argument --threshold: must be a positive number"),
    (["screen", "{rec}", "--model", "/no/such/checkpoint", "--apply", "out_raw.fif"], "neither an existing directory"),
])
def test_screen_errors_exit_2_with_one_line(env, recording, capsys, argv, message):
    argv = [a.replace("{rec}", str(recording)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("zuna-lab ") and ": error: " in last and message in last and "Traceback" not in err
    assert not any(p.name.startswith(("out", ".out")) for p in env.iterdir())


def test_screen_with_zuna_says_random_weights(env, recording, capsys):
    assert main(["screen", str(recording), "--groups", "3", "--steps", "1", "--compare", "none", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1].startswith("zuna-lab screen: ") and "RANDOM weights" in out


def test_demo_refused_leaves_no_folder(monkeypatch, tmp_path, capsys):
    """Found by test_fuzz (issue R): a demo refused once its model was loaded (1 s is shorter than ZUNA's 5 s
    epoch) left an empty zuna_lab_demo/ behind; the folder is now made only when there is something to write."""
    monkeypatch.delenv("ZUNA_LAB_MODEL", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--random-weights", "--duration", "1", "--steps", "1", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("zuna-lab demo: error: ") and "at least 5 s" in err[-1] and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_verbose_log_on_stderr_the_summary_alone_on_stdout(env, recording, capsys):
    """Found by test_fuzz (issue R): with --verbose, MNE's log lines ("Opening raw data file ...") went to stdout
    among the summary; they go to stderr with the progress, as the module says."""
    assert main(["doctor", str(recording), "--verbose"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert lines and all(line.startswith("zuna-lab doctor: ") for line in lines), captured.out
    assert "Opening raw data file" in captured.err
    assert main(["embed", str(recording), "-o", "emb.nc", "--verbose"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("zuna-lab embed: ") and "Opening raw data file" not in captured.out


def test_scheduler_of_an_unknown_scheme_is_refused_at_once(tmp_path, monkeypatch, capsys):
    """Found by test_fuzz (issue R): --scheduler nonsense://x was refused only after distributed's 20 s connect
    timeout; an address whose scheme dask does not know is refused before any connection is tried."""
    monkeypatch.chdir(tmp_path)
    pytest.importorskip("distributed")              # imported before the clock starts

    start = time.perf_counter()
    assert main(["embed-many", str(tmp_path), "-o", "s.zarr", "--scheduler", "nonsense://x"]) == 2
    assert time.perf_counter() - start < 5
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Cannot reach the dask scheduler at 'nonsense://x'" in err[0] and "unknown address" in err[0]
    assert list(tmp_path.iterdir()) == []
