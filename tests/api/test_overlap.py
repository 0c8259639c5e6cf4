"""``zl.embed(path)`` of a long file on a GPU runs the streamed stages in memory (issue #21, the hour): the file
read and preprocessed chunk by chunk on a thread while the encoder works. Checked here on the CPU through a
model that says it is on a GPU: when the route is taken, and that it gives the in-memory pipeline's result."""
import tempfile

import mne
import numpy as np
import pytest
import torch
import xarray as xr

import zuna_lab as zl
from zuna_lab.api import streaming
from zuna_lab.synthetic import make_synthetic_raw

CHANNELS = ["Fp1", "Fz", "F4", "T7", "Cz", "C4", "P3", "O2"]


class OnGpu:
    """The model, saying it is on a GPU (the GPU-only code paths then run on the CPU)."""

    device = torch.device("cuda")

    def __init__(self, model):
        self._model = model

    def __getattr__(self, name):
        return getattr(self._model, name)


@pytest.fixture(scope="module")
def models(random_checkpoint):
    return {variant: zl.load_model(random_checkpoint(variant, seed=5), device="cpu") for variant in ("ZUNA", "ZUNA1.1")}


def recording(folder, seconds, sfreq=256.0, name="r_raw.fif"):
    raw = make_synthetic_raw(duration=seconds, ch_names=CHANNELS, seed=2, verbose=False)
    if sfreq != raw.info["sfreq"]:
        raw.resample(sfreq, verbose="error")
    raw.set_annotations(mne.Annotations([21.0], [7.0], ["BAD_jump"]))
    path = folder / name
    raw.save(path, overwrite=True, verbose="error")
    return path


def test_the_route_is_taken_for_long_files_on_a_gpu_only(models, tmp_path):
    long = recording(tmp_path, 5.0 * streaming.OVERLAP_EPOCHS + 2)
    short = recording(tmp_path, 5.0 * streaming.OVERLAP_EPOCHS - 10, name="short_raw.fif")
    other_rate = recording(tmp_path, 5.0 * streaming.OVERLAP_EPOCHS + 2, sfreq=200.0, name="rate_raw.fif")
    zuna11 = models["ZUNA1.1"]
    assert streaming.overlaps(long, OnGpu(zuna11)) and streaming.overlaps(str(long), OnGpu(zuna11))
    assert not streaming.overlaps(long, zuna11)                                   # on the CPU: stages take turns
    assert not streaming.overlaps(short, OnGpu(zuna11))                           # fewer than two chunks
    assert not streaming.overlaps(other_rate, OnGpu(zuna11))                      # resampled whole first
    assert not streaming.overlaps(long, OnGpu(models["ZUNA"]))                    # global statistics: a first pass
    assert not streaming.overlaps(long, OnGpu(zuna11), events=np.array([[256, 0, 1]]))
    assert not streaming.overlaps(mne.io.read_raw_fif(long, verbose="error"), OnGpu(zuna11))   # a Raw: in memory
    assert not streaming.overlaps(tmp_path, OnGpu(zuna11))                        # a folder


def test_overlapped_embed_is_the_in_memory_result(models, tmp_path, monkeypatch):
    model = models["ZUNA1.1"]
    path = recording(tmp_path, 90.0)
    options = dict(bad_channels=["T7"], batch_size=3, progress=False, verbose="error")
    expected = zl.embed(path, model=model, **options)
    encode_chunks = streaming._encode_chunks
    spills = tmp_path / "tmp"
    spills.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spills))                        # where the spill goes
    monkeypatch.setattr(streaming, "_encode_chunks", lambda m, *args: encode_chunks(OnGpu(m), *args))  # threaded
    got = streaming.embed_overlapped(path, model, **options)
    got.attrs["created"] = expected.attrs["created"]
    xr.testing.assert_identical(got, expected)
    assert got.mask.values[:, CHANNELS.index("T7")].all() and got.mask.values.any(axis=(1, 2))[4:6].all()
    assert not list(spills.iterdir())                                              # the spill removed
