"""Back to the user's recording: reconstruct -> write_fif -> read back keeps everything but the repaired EEG.

A FIF with stim, EOG and ECG channels, events and a BAD_ span as annotations, and a meas_date;
13 s long, so that ZUNA (5 s epochs) leaves a 3 s tail it does not process.
"""
import datetime
import gc

import mne
import numpy as np
import pytest

import zuna_lab
from zuna_lab.errors import ZunaLabWarning, ZunaValueError
from zuna_lab.synthetic import make_synthetic_raw

MEAS_DATE = datetime.datetime(2021, 3, 4, 5, 6, 7, tzinfo=datetime.timezone.utc)


@pytest.fixture(scope="module", params=["ZUNA", "ZUNA1.1"])
def model(request, random_checkpoint):
    return zuna_lab.load_model(random_checkpoint(request.param, seed=3), device="cpu")


def make_recording(sfreq, tmp_path):
    eeg = make_synthetic_raw(duration=13.0, seed=4)
    if sfreq != eeg.info["sfreq"]:
        eeg.resample(sfreq, verbose="error")
    n = eeg.n_times
    rng = np.random.default_rng(0)
    stim = np.zeros(n)
    stim[[int(1.0 * sfreq), int(6.0 * sfreq), int(11.5 * sfreq)]] = [1, 2, 1]
    extra = mne.io.RawArray(np.vstack([stim, rng.normal(0, 50e-6, n), rng.normal(0, 200e-6, n)]),
                            mne.create_info(["STI 014", "EOG061", "ECG063"], sfreq, ["stim", "eog", "ecg"]),
                            verbose="error")
    extra.set_meas_date(eeg.info["meas_date"])
    raw = eeg.add_channels([extra], force_update_info=True)
    raw.set_meas_date(MEAS_DATE)
    events = mne.Annotations([1.0, 6.0, 11.5, 7.4], [0.0, 0.0, 0.0, 0.5], ["stim/1", "stim/2", "stim/1", "BAD_move"],
                             ch_names=[[], [], [], ["O1"]], orig_time=MEAS_DATE)
    raw.set_annotations(raw.annotations + events)
    path = tmp_path / f"rec{int(sfreq)}_raw.fif"
    raw.save(path, verbose="error")
    return path


@pytest.mark.parametrize("sfreq", [256.0, 500.0])
def test_write_fif_keeps_everything_but_the_repaired_eeg(model, sfreq, tmp_path):
    path = make_recording(sfreq, tmp_path)
    source = mne.io.read_raw_fif(path, preload=True, verbose="error")
    rec = zuna_lab.reconstruct(path, model=model, steps=2, seed=0, bad_channels=["T7"],
                               bad_segments=[(4.6, 5.4, "Cz")], add_channels=["FCz"])
    out = tmp_path / "repaired_raw.fif"
    zuna_lab.write_fif(rec, out)
    back = mne.io.read_raw_fif(out, preload=True, verbose="error")

    assert back.ch_names == source.ch_names + ["FCz"]
    assert back.info["sfreq"] == source.info["sfreq"] and back.n_times == source.n_times   # the tail is kept
    assert back.info["meas_date"] == source.info["meas_date"]
    non_eeg = ["STI 014", "EOG061", "ECG063"]
    assert back.get_channel_types(picks=non_eeg) == source.get_channel_types(picks=non_eeg)
    np.testing.assert_array_equal(back.get_data(picks=non_eeg), source.get_data(picks=non_eeg))
    theirs = [(a["onset"], a["duration"], a["description"], a["ch_names"]) for a in source.annotations]
    ours = [(a["onset"], a["duration"], a["description"], a["ch_names"]) for a in back.annotations
            if not a["description"].startswith("ZUNA_")]
    assert ours == theirs
    theirs_only = "^(?!ZUNA_)"
    np.testing.assert_array_equal(mne.events_from_annotations(back, regexp=theirs_only, verbose="error")[0],
                                  mne.events_from_annotations(source, regexp=theirs_only, verbose="error")[0])

    # EEG: unchanged outside the masked cells, changed inside them
    sf = source.info["sfreq"]
    data, original = back.get_data(), source.get_data()
    masked = np.zeros(original.shape, bool)
    t = np.arange(source.n_times) / sf
    last = float(rec.epoch_start[-1]) + rec.sizes["time"] / 256.0
    masked[source.ch_names.index("T7")] = t < last
    masked[source.ch_names.index("Cz")] = (t >= 4.5) & (t < 5.5)       # whole tokens around 4.6-5.4 s
    masked[source.ch_names.index("O1")] = (t >= 7.375) & (t < 8.0)     # the BAD_move annotation
    eeg = [source.ch_names.index(c) for c in source.copy().pick("eeg").ch_names]
    kept = ~masked
    kept[[i for i in range(len(source.ch_names)) if i not in eeg]] = False
    np.testing.assert_array_equal(data[:len(source.ch_names)][kept], original[kept])
    for name in ("T7", "Cz", "O1"):
        row = source.ch_names.index(name)
        assert np.abs(data[row][masked[row]] - original[row][masked[row]]).max() > 1e-7
    infilled = {a["ch_names"] for a in back.annotations if a["description"] == "ZUNA_infilled"}
    assert {("Cz",), ("O1",)} <= infilled and any("T7" in c for c in infilled)
    unprocessed = [a for a in back.annotations if a["description"] == "ZUNA_unprocessed"]
    if model.variant == "ZUNA":       # 13 s -> two 5 s epochs, the last 3 s kept as they were
        assert len(unprocessed) == 1 and unprocessed[0]["onset"] == pytest.approx(10.0)
        assert unprocessed[0]["duration"] == pytest.approx(3.0, abs=2 / sf)
        np.testing.assert_array_equal(data[source.ch_names.index("T7")][t >= 10.0], original[source.ch_names.index("T7")][t >= 10.0])
    else:
        assert len(unprocessed) == 0
    fcz = back.ch_names.index("FCz")
    assert back.get_channel_types(picks=["FCz"]) == ["eeg"]
    np.testing.assert_allclose(back.info["chs"][fcz]["loc"][:3], [rec.ch_x.sel(channel="FCz"), rec.ch_y.sel(channel="FCz"),
                                                                    rec.ch_z.sel(channel="FCz")], atol=1e-6)
    assert np.isfinite(data[fcz][t < last]).all()


def test_hybrid_joins_the_original_at_the_seams(model, tmp_path):
    path = make_recording(256.0, tmp_path)
    rec = zuna_lab.reconstruct(path, model=model, steps=2, seed=0, bad_segments=[(4.6, 5.4, "Cz")])
    fixed = zuna_lab.to_raw(rec)
    source = mne.io.read_raw_fif(path, preload=True, verbose="error")
    cz = source.ch_names.index("Cz")
    start, stop = int(4.5 * 256), int(5.5 * 256)
    data, original = fixed.get_data()[cz], source.get_data()[cz]
    # the run's first and last samples meet the recording's own neighbours (linear re-anchoring)
    assert data[start] == pytest.approx(original[start - 1], abs=1e-12)
    assert data[stop - 1] == pytest.approx(original[stop], abs=1e-12)


def test_to_raw_checks_the_recording(model, tmp_path):
    path = make_recording(256.0, tmp_path)
    rec = zuna_lab.reconstruct(path, model=model, steps=1, seed=0, bad_channels=["T7"])
    other = mne.io.read_raw_fif(path, preload=True, verbose="error").crop(0, 8.0)
    with pytest.raises(ZunaValueError, match="does not hold the EEG this result was reconstructed from"):
        zuna_lab.to_raw(rec, raw=other)
    target = tmp_path / "never_raw.fif"
    with pytest.raises(ZunaValueError, match="does not hold the EEG"):
        zuna_lab.write_fif(rec, target, raw=other)
    assert not target.exists() and not list(tmp_path.glob(".never*"))
    # an in-memory recording (changed since it was read): to_raw finds it again while it lives
    raw = mne.io.read_raw_fif(path, preload=True, verbose="error")
    raw.filter(1.0, None, verbose="error")
    raw.set_annotations(raw.annotations + mne.Annotations([2.0], [0.1], ["added_in_memory"], orig_time=MEAS_DATE))
    rec = zuna_lab.reconstruct(raw, model=model, steps=1, seed=0, bad_channels=["T7"])
    fixed = zuna_lab.to_raw(rec)
    np.testing.assert_array_equal(fixed.get_data(), zuna_lab.to_raw(rec, raw=raw).get_data())
    assert "added_in_memory" in fixed.annotations.description and fixed.ch_names == raw.ch_names
    raw._data[0] += 1e-6                      # changed after reconstruct: refused, not silently mixed
    with pytest.raises(ZunaValueError, match="changed since"):
        zuna_lab.to_raw(rec)
    del raw, fixed
    gc.collect()
    with pytest.raises(ZunaValueError, match="pass raw="):
        zuna_lab.to_raw(rec)          # gone from memory: the file on disk is not the filtered recording
    rec.attrs["source_file"] = ""
    with pytest.warns(ZunaLabWarning, match="pass raw="):
        alone = zuna_lab.to_raw(rec)
    assert alone.ch_names == list(rec.channel.values)


def test_kind_reconstruction_and_original(model, tmp_path):
    path = make_recording(256.0, tmp_path)
    source = mne.io.read_raw_fif(path, preload=True, verbose="error")
    rec = zuna_lab.reconstruct(path, model=model, steps=1, seed=0, bad_channels=["T7"])
    np.testing.assert_array_equal(zuna_lab.to_raw(rec, kind="original").get_data(), source.get_data())
    full = zuna_lab.to_raw(rec, kind="reconstruction")
    pz = source.ch_names.index("Pz")
    n = min(int(float(rec.epoch_start[-1]) * 256) + rec.sizes["time"], source.n_times)
    # every processed EEG sample is the model's output; the stim channel is untouched
    np.testing.assert_allclose(full.get_data()[pz, :n], rec.reconstruction.sel(channel="Pz").values.reshape(-1)[:n])
    np.testing.assert_array_equal(full.get_data(picks=["STI 014"]), source.get_data(picks=["STI 014"]))



def test_streamed_templates_keep_boolean_masks_boolean(tmp_path):
    """A result streamed to zarr keeps its masks boolean, as in memory (dask ignores a positional dtype:
    ``da.zeros(shape, bool)`` was float64, so a streamed ``~emb.mask`` failed)."""
    import xarray as xr

    from zuna_lab.io.write import ZarrRegions
    from zuna_lab.pipeline.results import embedding_template, reconstruction_template

    common = dict(chunk_epochs=2, ch_names=["Cz", "Pz"], ch_pos=np.zeros((2, 3)), epoch_start=np.arange(4) * 5.0,
                  samples_per_token=32, sfreq=256.0, attrs={})
    embedding = embedding_template(4, 2, 3, 32, **common)
    regions = ZarrRegions(tmp_path / "e.zarr", embedding)
    for first in (0, 2):
        regions.write(first, mask=np.full((2, 2, 3), first == 2), padding=np.zeros((2, 2, 3), bool),
                      embedding=np.zeros((2, 2, 3, 32), np.float32))
    back = xr.open_zarr(tmp_path / "e.zarr", consolidated=True)
    assert back.mask.dtype == bool and back.padding.dtype == bool and back.embedding.dtype == np.float32
    assert (~back.mask).values[:2].all() and not (~back.mask).values[2:].any()
    reconstruction = reconstruction_template(1, 4, 2, 96, **common)
    assert all(reconstruction[name].dtype == bool for name in reconstruction.data_vars if "mask" in name)
    assert any("mask" in name for name in reconstruction.data_vars)
