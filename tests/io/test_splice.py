"""The repair spliced into the recording span by span (zuna_lab.io.splice): any span equals the same
samples of the whole; in memory it is the dense rule (reconstruction on hidden cells, seam_correct per
row); a lazy result gives a Raw that is not loaded, with the same samples."""
import warnings

import mne
import numpy as np
import pytest
import xarray as xr

import zuna_lab
from zuna_lab.io.splice import SplicedRaw, Splicer
from zuna_lab.pipeline.seams import seam_correct
from zuna_lab.synthetic import make_synthetic_raw

from oracle_support import require_module

CHANNELS = ["Fp1", "Fz", "T7", "Cz", "C4", "P3", "O1", "O2"]


@pytest.fixture(scope="module", params=["ZUNA", "ZUNA1.1"])
def model(request, random_checkpoint):
    return zuna_lab.load_model(random_checkpoint(request.param, seed=2), device="cpu")


def repaired(model, sfreq, **options):
    """A 31.3 s recording at ``sfreq`` with a channel-specific BAD_ span, and its reconstruction (O2 bad,
    Pz added)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = make_synthetic_raw(duration=31.3, sfreq=sfreq, seed=1, ch_names=CHANNELS, verbose=False)
        raw.set_annotations(mne.Annotations([12.0], [6.3], ["BAD_x"], ch_names=[["T7"]]))
        rec = zuna_lab.reconstruct(raw, model=model, bad_channels=["O2"], add_channels=["Pz"], steps=1, seed=0,
                                   progress=False, verbose="error", **options)
    return raw, rec


@pytest.mark.parametrize("sfreq", [256.0, 500.0, 200.0, 1000.0])
def test_any_span_equals_the_same_samples_of_the_whole(model, sfreq):
    """Polyphase resampling on a window with the filter's margin, the seam ramps from global indices:
    spans cut anywhere give the whole's samples bit for bit, at every rate (up- and downsampling)."""
    raw, rec = repaired(model, sfreq)
    splicer = Splicer(rec, raw, kind="hybrid")
    whole = splicer.read(0, raw.n_times)
    rng = np.random.default_rng(0)
    cuts = np.unique(np.r_[0, rng.integers(1, raw.n_times, 12), raw.n_times])
    pieces = np.concatenate([splicer.read(a, b) for a, b in zip(cuts[:-1], cuts[1:])], axis=1)
    np.testing.assert_array_equal(pieces, whole)
    assert whole.shape == (len(raw.ch_names) + 1, raw.n_times)


def test_in_memory_splice_is_the_dense_rule(model):
    """At the model's rate: the reconstruction on the hidden cells, seam_correct of each row, added channels
    where an epoch covers, the rest of the recording untouched."""
    raw, rec = repaired(model, 256.0)
    fixed = zuna_lab.to_raw(rec, raw=raw)
    data = raw.get_data()
    names = list(rec.channel.values)
    n_model = rec.attrs["model_n_times"]
    recon = np.full((len(names), raw.n_times), np.nan)
    hidden = np.zeros((len(names), raw.n_times), bool)
    for e, start in enumerate(np.rint(rec.epoch_start.values * 256).astype(int)):
        width = min(rec.sizes["time"], n_model - start)
        recon[:, start:start + width] = rec.reconstruction.values[e][:, :width]
        hidden[:, start:start + width] = np.repeat(rec.mask.values[e], 32, axis=1)[:, :width]
    for row, name in enumerate(names):
        if name == "Pz":
            np.testing.assert_array_equal(fixed.get_data(picks=["Pz"])[0], recon[row])
            continue
        k = raw.ch_names.index(name)
        dense = np.where(hidden[row], recon[row], data[k])
        expected = seam_correct(dense[None], hidden[row][None])[0] if not hidden[row].all() else dense
        np.testing.assert_array_equal(fixed.get_data(picks=[name])[0], expected)
    assert hidden[names.index("O2")].sum() > 0 and hidden[names.index("T7")].any() and not hidden[names.index("T7")].all()


def written_alike(folder, lazy, memory):
    """``write_fif`` of the two (result, recording) pairs gives the same samples, annotations and bads; the files
    read back."""
    for name, (ds, raw) in (("lazy", lazy), ("memory", memory)):
        zuna_lab.write_fif(ds, folder / f"{name}_raw.fif", raw=raw)
    a, b = (mne.io.read_raw_fif(folder / f"{name}_raw.fif", preload=True, verbose="error") for name in ("lazy", "memory"))
    np.testing.assert_array_equal(a.get_data(), b.get_data())
    assert a.annotations == b.annotations and a.info["bads"] == b.info["bads"]
    return a, b


@pytest.mark.parametrize("sfreq", [256.0, 500.0])
def test_a_lazy_result_gives_a_raw_that_is_not_loaded_with_the_same_samples(model, sfreq, tmp_path):
    require_module("zarr")
    raw, rec = repaired(model, sfreq)
    rec.to_zarr(tmp_path / "r.zarr", mode="w")
    lazy = xr.open_zarr(tmp_path / "r.zarr", chunks={"epoch": 2})
    lazy.attrs.update(rec.attrs)
    fixed = zuna_lab.to_raw(rec, raw=raw)
    spliced = zuna_lab.to_raw(lazy, raw=raw)
    assert isinstance(spliced, SplicedRaw) and not spliced.preload and spliced.ch_names == fixed.ch_names
    assert spliced.info["bads"] == fixed.info["bads"] and spliced.annotations == fixed.annotations
    np.testing.assert_array_equal(spliced.get_data(start=1234, stop=5678), fixed.get_data(start=1234, stop=5678))
    a, b = written_alike(tmp_path, (lazy, raw), (rec, raw))
    np.testing.assert_array_equal(a.info["chs"][-1]["loc"], b.info["chs"][-1]["loc"])     # Pz's position


@pytest.mark.parametrize("sfreq", [256.0, 500.0])
def test_a_recording_given_not_loaded_gives_a_raw_that_is_not_loaded(model, sfreq, tmp_path):
    """An in-memory result (the dashboard's epoch) put back into a long recording read lazily: a SplicedRaw,
    the recording never loaded whole, the same samples and file as with the recording in memory."""
    raw, rec = repaired(model, sfreq)
    raw.save(tmp_path / "r_raw.fif", fmt="double", verbose="error")                 # the samples reconstructed
    lazy_raw = mne.io.read_raw_fif(tmp_path / "r_raw.fif", preload=False, verbose="error")
    loaded = mne.io.read_raw_fif(tmp_path / "r_raw.fif", preload=True, verbose="error")
    fixed = zuna_lab.to_raw(rec, raw=loaded)
    spliced = zuna_lab.to_raw(rec, raw=lazy_raw)
    assert isinstance(spliced, SplicedRaw) and not spliced.preload and not lazy_raw.preload
    assert spliced.ch_names == fixed.ch_names and spliced.info["bads"] == fixed.info["bads"]
    assert spliced.annotations == fixed.annotations
    np.testing.assert_array_equal(spliced.get_data(), fixed.get_data())
    written_alike(tmp_path, (rec, lazy_raw), (rec, loaded))


def test_an_odd_rate_is_refused_span_by_span(model):
    """A rate with no small whole-number ratio to 256 Hz cannot be resampled by spans: one sentence."""
    raw, rec = repaired(model, 256.0)
    odd = mne.io.RawArray(raw.get_data(), mne.create_info(raw.ch_names, 999.412, "eeg"), verbose="error")
    splicer = Splicer(rec, odd, kind="hybrid")
    with pytest.raises(zuna_lab.errors.ZunaValueError, match="not a ratio of small whole numbers"):
        splicer.read(0, 100)
