"""to_raw and the atomic writers, on small Datasets built by hand in the reconstruct/embed schema."""
from __future__ import annotations

import json
import os

import mne
import numpy as np
import pytest
import xarray as xr

from zuna_lab.errors import ZunaLabWarning, ZunaTypeError, ZunaValueError
from zuna_lab.api.core import to_raw, write_fif
from zuna_lab.io.export import INFILLED_DESCRIPTION
from zuna_lab.io.montage import standard_positions
from zuna_lab.io.write import write_netcdf, write_safetensors, write_zarr
from zuna_lab.pipeline.tokens import tokenize

from oracle_support import require_module

# These Datasets are built by hand: no source recording, so to_raw gives the EEG alone at the
# model's rate and says so (tests/io/test_write.py covers the splice into a recording).
pytestmark = pytest.mark.filterwarnings("ignore:The recording this result came from is unknown:zuna_lab.errors.ZunaLabWarning")

CHANNELS = ["Cz", "Pz", "Oz"]
SFREQ = 256.0


def _ch_pos():
    table = standard_positions("standard_1005")
    return np.array([table[name.lower()][1] for name in CHANNELS])


def _reconstruct_dataset():
    """Two segments (ZUNA1.1-like): 5 s, then 3 s NaN-padded to 5 s."""
    rng = np.random.default_rng(0)
    n_time = 1280
    shape = (2, 3, n_time)
    original = rng.normal(0, 10e-6, shape)
    reconstruction = original + rng.normal(0, 1e-6, shape)
    mask = np.zeros((2, 3, 40), dtype=bool)
    mask[0, 1] = True            # Pz hidden for the whole first segment
    mask[1, :, 2:4] = True       # every channel, 5.25–5.5 s
    for array in (original, reconstruction):
        array[1, :, 768:] = np.nan
    mask[1, :, 24:] = False
    hybrid = np.where(np.repeat(mask, 32, axis=2), reconstruction, original)
    return xr.Dataset(
        {
            "original": (("epoch", "channel", "time"), original),
            "reconstruction": (("epoch", "channel", "time"), reconstruction),
            "hybrid": (("epoch", "channel", "time"), hybrid),
            "mask": (("epoch", "channel", "token"), mask),
        },
        coords={
            "channel": CHANNELS,
            "space": ["x", "y", "z"],
            "ch_pos": (("channel", "space"), _ch_pos()),
            "epoch_start": ("epoch", [0.0, 5.0]),
            "time": np.arange(n_time) / SFREQ,
            "token": np.arange(40),
        },
        attrs={"variant": "ZUNA1.1", "preprocessing": {"highpass_hz": 0.5}, "source": "synthetic"},
    )


def _embed_dataset(variant="ZUNA1.1"):
    rng = np.random.default_rng(1)
    embedding = rng.normal(size=(2, 3, 40, 32)).astype(np.float32)
    embedding[1, :, 24:] = np.nan  # short last segment
    return xr.Dataset(
        {
            "embedding": (("epoch", "channel", "token", "latent"), embedding),
            "mask": (("epoch", "channel", "token"), np.zeros((2, 3, 40), bool)),
        },
        coords={
            "channel": CHANNELS,
            "space": ["x", "y", "z"],
            "ch_pos": (("channel", "space"), _ch_pos()),
            "epoch_start": ("epoch", [0.0, 5.0]),
            "token_time": ("token", np.arange(40) * 0.125),
            "latent": np.arange(32),
        },
        attrs={"variant": variant},
    )


def _leftovers(folder, keep):
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


# ---------------------------------------------------------------- to_raw


def test_to_raw_hybrid_is_continuous_with_montage():
    ds = _reconstruct_dataset()
    raw = to_raw(ds, kind="hybrid")
    assert raw.ch_names == CHANNELS and raw.info["sfreq"] == SFREQ
    assert raw.n_times == 1280 + 768  # NaN padding of the short last segment is trimmed
    data = raw.get_data()
    np.testing.assert_array_equal(data[:, :1280], ds["hybrid"].values[0])
    np.testing.assert_array_equal(data[:, 1280:], ds["hybrid"].values[1][:, :768])
    pos = np.array([ch["loc"][:3] for ch in raw.info["chs"]])
    np.testing.assert_allclose(pos, _ch_pos(), atol=1e-9)
    assert raw.get_montage() is not None


def test_to_raw_annotates_infilled_cells():
    raw = to_raw(_reconstruct_dataset(), kind="hybrid")
    annotations = raw.annotations
    assert list(annotations.description) == [INFILLED_DESCRIPTION] * 2
    onsets = np.asarray(annotations.onset) - raw.first_time
    np.testing.assert_allclose(onsets, [0.0, 5.25])
    np.testing.assert_allclose(annotations.duration, [5.0, 0.25])
    assert list(annotations.ch_names[0]) == ["Pz"]   # one channel
    assert list(annotations.ch_names[1]) == []       # every channel: a global span
    assert not any(d.startswith("BAD") for d in annotations.description)  # MNE keeps the data


def test_to_raw_original_has_no_infill_annotations_and_sample_dim():
    ds = _reconstruct_dataset()
    assert len(to_raw(ds, kind="original").annotations) == 0
    stacked = xr.concat([ds[["reconstruction"]], ds[["reconstruction"]] * 2], dim="sample")
    ds2 = ds.assign(reconstruction=stacked["reconstruction"])
    second = to_raw(ds2, kind="reconstruction", sample=1).get_data()
    np.testing.assert_allclose(second[:, :1280], 2 * ds["reconstruction"].values[0])
    with pytest.raises(ZunaValueError, match=r"sample must be in \[0, 2\)"):
        to_raw(ds2, kind="reconstruction", sample=2)


def test_to_raw_places_epochs_at_their_start_and_leaves_gaps_nan():
    ds = _reconstruct_dataset().assign_coords(epoch_start=("epoch", [0.0, 10.0]))
    data = to_raw(ds, kind="original").get_data()
    assert data.shape[1] == int(10 * SFREQ) + 768
    assert np.isnan(data[:, 1280:2560]).all() and np.isfinite(data[:, 2560:]).all()


def test_to_raw_refusals():
    ds = _reconstruct_dataset()
    with pytest.raises(ZunaValueError, match="kind must be one of 'hybrid', 'reconstruction', 'original'"):
        to_raw(ds, kind="model")
    with pytest.raises(ZunaValueError, match="has no 'hybrid' variable"):
        to_raw(ds.drop_vars("hybrid"))
    with pytest.raises(ZunaTypeError, match="Expected the xarray Dataset"):
        to_raw(ds["hybrid"])


# ---------------------------------------------------------------- writers


def test_write_fif_roundtrip_and_overwrite(tmp_path):
    ds = _reconstruct_dataset()
    path = write_fif(ds, tmp_path / "fixed_raw.fif", kind="hybrid")
    back = mne.io.read_raw_fif(path, preload=True, verbose="error")
    np.testing.assert_allclose(back.get_data(), to_raw(ds).get_data(), rtol=1e-6)
    assert list(back.annotations.description) == [INFILLED_DESCRIPTION] * 2
    with pytest.raises(ZunaValueError, match="already exists; pass overwrite=True"):
        write_fif(ds, path)
    write_fif(ds, path, kind="original", overwrite=True)
    assert _leftovers(tmp_path, {"fixed_raw.fif"}) == []


def test_write_is_atomic_on_error(tmp_path, monkeypatch):
    ds = _reconstruct_dataset()
    target = tmp_path / "fixed_raw.fif"
    write_fif(ds, target)
    before = target.read_bytes()

    def broken_save(self, fname, *args, **kwargs):
        with open(fname, "wb") as handle:
            handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(mne.io.BaseRaw, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        write_fif(ds, target, overwrite=True)
    assert target.read_bytes() == before  # the old file is intact
    assert _leftovers(tmp_path, {"fixed_raw.fif"}) == []  # and no temporary file is left


def test_write_netcdf_roundtrip(tmp_path):
    ds = _reconstruct_dataset()
    path = write_netcdf(ds, tmp_path / "rec.nc")
    with xr.open_dataset(path) as back:
        back = back.load()
    np.testing.assert_array_equal(back["mask"].values, ds["mask"].values)
    assert back["mask"].dtype == bool
    np.testing.assert_allclose(back["hybrid"].values, ds["hybrid"].values)
    assert json.loads(back.attrs["preprocessing"]) == {"highpass_hz": 0.5}
    assert list(back["channel"].values) == CHANNELS
    assert ds.attrs["preprocessing"] == {"highpass_hz": 0.5}  # the input Dataset is untouched
    assert _leftovers(tmp_path, {"rec.nc"}) == []


def test_write_zarr_roundtrip_and_overwrite(tmp_path):
    require_module("zarr")
    ds = _embed_dataset()
    path = write_zarr(ds, tmp_path / "emb.zarr")
    with xr.open_zarr(path) as back:
        np.testing.assert_array_equal(back["embedding"].values, ds["embedding"].values)
    with pytest.raises(ZunaValueError, match="already exists"):
        write_zarr(ds, path)
    write_zarr(ds.isel(epoch=[0]), path, overwrite=True)
    with xr.open_zarr(path) as back:
        assert back.sizes["epoch"] == 1
    assert _leftovers(tmp_path, {"emb.zarr"}) == []


def test_write_safetensors_reconstruction_layout(tmp_path):
    from safetensors import safe_open

    ds = _reconstruct_dataset()
    path = write_safetensors(ds, tmp_path / "rec.safetensors")
    with safe_open(str(path), "np") as handle:
        keys = set(handle.keys())
        assert keys == {"reconstructed_0", "reconstructed_1", "chan_pos_0", "chan_pos_1", "n_samples"}
        assert handle.get_tensor("reconstructed_0").shape == (3, 1280)
        assert handle.get_tensor("reconstructed_1").shape == (3, 768)  # padding trimmed
        assert handle.get_tensor("reconstructed_0").dtype == np.float32
        np.testing.assert_allclose(handle.get_tensor("chan_pos_1"), _ch_pos(), rtol=1e-6)
        assert handle.get_tensor("n_samples").tolist() == [2.0]
        assert handle.metadata()["units"] == "V"


@pytest.mark.parametrize("variant", ["ZUNA", "ZUNA1.1"])
def test_write_safetensors_embedding_layout(tmp_path, variant):
    from safetensors import safe_open

    ds = _embed_dataset(variant)
    path = write_safetensors(ds, tmp_path / "emb.safetensors")
    with safe_open(str(path), "np") as handle:
        assert handle.get_tensor("embeddings_0").shape == (120, 32)
        assert handle.get_tensor("embeddings_1").shape == (72, 32)
        tok_idx = handle.get_tensor("tok_idx_1")
        assert tok_idx.dtype == np.int64
        _, expected = tokenize(np.zeros((3, 24 * 32)), _ch_pos(), variant=variant)
        np.testing.assert_array_equal(tok_idx, expected)
        # token order: the embedding row of (channel 1, token 5) is where tokenize puts that token
        from zuna_lab.pipeline.tokens import sequence_index

        row = sequence_index(1, 5, 3, 40, variant=variant)
        np.testing.assert_array_equal(handle.get_tensor("embeddings_0")[row], ds["embedding"].values[0, 1, 5])
        assert handle.metadata()["variant"] == variant


def test_writers_refuse_missing_folder_and_wrong_type(tmp_path):
    ds = _reconstruct_dataset()
    with pytest.raises(ZunaValueError, match="does not exist; create it first"):
        write_netcdf(ds, tmp_path / "nope" / "rec.nc")
    with pytest.raises(ZunaTypeError, match="Expected an xarray Dataset"):
        write_netcdf(ds["hybrid"], tmp_path / "rec.nc")
    assert os.listdir(tmp_path) == []


def test_overwrite_never_replaces_a_folder_by_a_file_or_a_file_by_a_folder(tmp_path):
    """overwrite=True onto a folder (netCDF, FIF, safetensors) or a zarr store onto a file: one sentence
    before any work, nothing changed (issue R: was IsADirectoryError)."""
    ds = _reconstruct_dataset()
    folder = tmp_path / "taken"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    for write, target in ((write_netcdf, folder), (write_safetensors, folder)):
        with pytest.raises(ZunaValueError, match="is a folder; give the name of a file"):
            write(ds, target, overwrite=True)
    with pytest.raises(ZunaValueError, match="is a folder; give the name of a file"):
        write_fif(ds, folder, overwrite=True)
    a_file = tmp_path / "taken.zarr"
    a_file.write_text("not a store")
    with pytest.raises(ZunaValueError, match="is a file, not a folder"):
        write_zarr(_embed_dataset(), a_file, overwrite=True)
    assert (folder / "keep.txt").read_text() == "mine" and a_file.read_text() == "not a store"
    assert sorted(os.listdir(tmp_path)) == ["taken", "taken.zarr"]


def test_attrs_netcdf_cannot_hold_are_written_as_text(tmp_path):
    """Dates, complex numbers, sets, dicts with tuple keys and arbitrary objects in attrs: written as JSON or
    their text (was xarray's or json's TypeError); numbers, strings and 1-D arrays stay as they are."""
    import datetime

    ds = _reconstruct_dataset()
    ds.attrs.update(when=datetime.datetime(2024, 5, 6, 7, 8, 9), z=1 + 2j, tags={"a"}, grid={(1, 2): 3},
                    thing=object(), n=7, gain=0.5, name="s01", levels=np.array([1.0, 2.0]))
    ds["hybrid"].attrs["flag"] = True
    path = write_netcdf(ds, tmp_path / "rec.nc")
    with xr.open_dataset(path) as back:
        attrs, flag = dict(back.attrs), back["hybrid"].attrs["flag"]
    assert attrs["when"] == '"2024-05-06 07:08:09"' and attrs["z"] == '"(1+2j)"' and attrs["tags"] == "\"{'a'}\""
    assert attrs["grid"] == "{(1, 2): 3}" and attrs["thing"].startswith("\"<object object")
    assert attrs["n"] == 7 and attrs["gain"] == 0.5 and attrs["name"] == "s01" and flag == "true"
    np.testing.assert_array_equal(attrs["levels"], [1.0, 2.0])
    assert isinstance(ds.attrs["z"], complex)          # the input is untouched


def test_overwrite_replaces_zarr_stores_only(tmp_path):
    """write_zarr(..., overwrite=True) onto a folder of other files (the working folder, by a slip of the
    name) is refused; it used to move the folder aside and delete it (found by tests/test_fuzz.py)."""
    require_module("zarr")
    work = tmp_path / "project"
    work.mkdir()
    (work / "notes.txt").write_text("mine")
    with pytest.raises(ZunaValueError, match="is a folder but not a zarr store"):
        write_zarr(_embed_dataset(), work, overwrite=True)
    assert (work / "notes.txt").read_text() == "mine"
    store = write_zarr(_embed_dataset(), tmp_path / "emb.zarr")
    write_zarr(_embed_dataset().isel(epoch=[0]), store, overwrite=True)      # a store is replaced
    with xr.open_zarr(store) as back:
        assert back.sizes["epoch"] == 1
