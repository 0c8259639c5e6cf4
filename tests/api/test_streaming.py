"""Recordings of any length (issue N): zl.embed(..., out=) streams chunk by chunk, and equals the
in-memory result; an in-memory request that would not fit is refused before any work."""
from __future__ import annotations

import tracemalloc
import warnings

import mne
import numpy as np
import pytest
import xarray as xr

import zuna_lab
from zuna_lab.api import streaming
from zuna_lab.errors import ZunaValueError
from zuna_lab.pipeline import stream
from zuna_lab.synthetic import make_synthetic_raw

from oracle_support import require_module

require_module("zarr")

#: Ten channels: enough for the masks and references to matter, few for a 30-min recording on 2 cores.
CHANNELS = ["Fp1", "Fz", "F4", "T7", "C3", "Cz", "C4", "P3", "O1", "O2"]


@pytest.fixture(scope="module", params=["ZUNA", "ZUNA1.1"])
def model(request, random_checkpoint):
    return zuna_lab.load_model(random_checkpoint(request.param, seed=3), device="cpu")


def quiet(function, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return function(*args, **kwargs)


def recording(minutes, sfreq=256.0, seed=4):
    """A synthetic recording with a bad channel and BAD_ spans (one channel-specific) across chunks."""
    raw = quiet(make_synthetic_raw, duration=minutes * 60.0 + 3.3, sfreq=sfreq, seed=seed, ch_names=CHANNELS,
                verbose=False)
    raw.info["bads"] = ["O2"]
    raw.set_annotations(mne.Annotations([61.0, 317.4, 1000.0], [7.3, 12.0, 30.0], ["BAD_jump", "BAD_muscle", "x"],
                                        ch_names=[[], ["T7"], []]))
    return raw


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("long")
    long_fif = folder / "thirty_raw.fif"
    recording(30).save(long_fif, verbose="error")
    resampled = folder / "eight_500hz.edf"
    quiet(mne.export.export_raw, resampled, recording(8, sfreq=500.0, seed=5), fmt="edf", verbose="error")
    return dict(fif=long_fif, edf=resampled, folder=folder)


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks and spans much shorter than the recording: every boundary is crossed many times."""
    monkeypatch.setattr(stream, "CHUNK_EPOCHS", 7)
    monkeypatch.setattr(stream, "SPAN_VALUES", 300_010)      # 30,001 samples of 10 channels: spans cut epochs


def assert_same(streamed, in_memory):
    loaded = streamed.load()
    assert loaded.sizes == in_memory.sizes
    np.testing.assert_array_equal(loaded["mask"].values, in_memory["mask"].values)
    np.testing.assert_array_equal(loaded["padding"].values, in_memory["padding"].values)
    a, b = loaded["embedding"].values, in_memory["embedding"].values
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    assert np.nanmax(np.abs(a - b)) <= 1e-6 * np.nanmax(np.abs(b))
    for name in in_memory.coords:
        np.testing.assert_array_equal(loaded[name].values, in_memory[name].values)
    assert {k: v for k, v in loaded.attrs.items() if k != "created"} == \
        {k: str(v) if isinstance(v, bool) else v for k, v in in_memory.attrs.items() if k != "created"}


@pytest.mark.parametrize("fmt", ["fif", "edf"])
def test_streamed_embedding_equals_the_in_memory_one(model, files, small_chunks, tmp_path, fmt):
    """30 min at 256 Hz (FIF) and 8 min at 500 Hz (EDF, resampled): chunks cut through filter spans
    and BAD_ annotations; a bad channel and a channel-specific span; both variants."""
    path = files[fmt]
    options = dict(model=model, progress=False, verbose="error", bad_channels=["Fz"])
    in_memory = quiet(zuna_lab.embed, path, **options)
    streamed = quiet(zuna_lab.embed, path, out=tmp_path / "out.zarr", **options)
    assert isinstance(streamed["embedding"].data, __import__("dask").array.Array)     # lazy, from disk
    assert_same(streamed, in_memory)
    hidden = ["Fz", "O2"] if fmt == "fif" else ["Fz"]          # EDF keeps no info["bads"]
    assert bool(in_memory["mask"].sel(channel=hidden).where(~in_memory["padding"]).all())
    assert int(in_memory["mask"].sel(channel="T7").sum()) > int(in_memory["mask"].sel(channel="C3").sum())
    assert not list(tmp_path.glob(".*"))                   # no temporary file or folder left


def test_streamed_reconstruction_equals_the_in_memory_one(model, files, small_chunks, tmp_path):
    """30 min: runs that cross chunks (a BAD_ span, a bad segment on one channel, whole bad channels),
    an added channel, two draws; then the repaired FIF equals the in-memory one."""
    n_samples = 1 if model.variant == "ZUNA" else 2           # one draw, and a sample dim with its spread
    options = dict(model=model, steps=1, seed=7, bad_channels=["Fz"], bad_segments=[(100.0, 141.0, "Cz")],
                   add_channels=["FCz"], n_samples=n_samples, progress=False, verbose="error")
    in_memory = quiet(zuna_lab.reconstruct, files["fif"], **options)
    streamed = quiet(zuna_lab.reconstruct, files["fif"], out=tmp_path / "r.zarr", **options)
    loaded = streamed.load()
    assert loaded.sizes == in_memory.sizes and set(loaded.coords) == set(in_memory.coords)
    np.testing.assert_array_equal(loaded["mask"].values, in_memory["mask"].values)
    for name in in_memory.data_vars:
        if name != "mask":
            a, b = loaded[name].values, in_memory[name].values
            np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
            assert np.nanmax(np.abs(a - b)) <= 1e-6 * np.nanmax(np.abs(b)), name
    zuna_lab.write_fif(in_memory, tmp_path / "memory_raw.fif")
    zuna_lab.write_fif(streamed, tmp_path / "streamed_raw.fif")
    a, b = (mne.io.read_raw_fif(tmp_path / f"{name}_raw.fif", preload=True, verbose="error")
            for name in ("memory", "streamed"))
    np.testing.assert_array_equal(a.get_data(), b.get_data())
    assert list(a.annotations.description) == list(b.annotations.description)


def test_the_repair_of_a_streamed_result_is_written_span_by_span(model, files, small_chunks, tmp_path):
    """to_raw of a streamed result is a Raw that is not loaded, and write_fif of it writes what the
    in-memory result writes — here at 500 Hz (EDF), where the repair is resampled back span by span.
    (Its memory: test_memory_does_not_grow_with_the_duration.)"""
    options = dict(model=model, steps=1, seed=5, bad_channels=["C3"], bad_segments=[(200.0, 230.0)], progress=False,
                   verbose="error")
    streamed = quiet(zuna_lab.reconstruct, files["edf"], out=tmp_path / "r.zarr", **options)
    lazy = zuna_lab.to_raw(streamed)
    assert not lazy.preload and lazy.info["sfreq"] == 500.0
    zuna_lab.write_fif(streamed, tmp_path / "streamed_raw.fif")
    in_memory = quiet(zuna_lab.reconstruct, files["edf"], **options)
    zuna_lab.write_fif(in_memory, tmp_path / "memory_raw.fif")
    a, b = (mne.io.read_raw_fif(tmp_path / f"{name}_raw.fif", preload=True, verbose="error")
            for name in ("memory", "streamed"))
    np.testing.assert_array_equal(a.get_data(), b.get_data())
    assert a.annotations == b.annotations and a.info["bads"] == b.info["bads"] == []
    assert any(d == "ZUNA_infilled" for d in a.annotations.description)


def test_a_user_mask_streams_too(model, files, small_chunks, tmp_path):
    header = mne.io.read_raw(files["edf"], verbose="error")
    probe = quiet(zuna_lab.embed, header.copy().crop(0, 20), model=model, progress=False)
    n_epochs = quiet(zuna_lab.embed, files["edf"], model=model, progress=False, verbose="error").sizes["epoch"]
    user = np.zeros((n_epochs, len(header.ch_names), probe.sizes["token"]), bool)
    user[::5, 3, 10:20] = True
    in_memory = quiet(zuna_lab.embed, files["edf"], model=model, mask=user, progress=False, verbose="error")
    streamed = quiet(zuna_lab.embed, files["edf"], model=model, mask=user, out=tmp_path / "m.zarr", progress=False,
                     verbose="error")
    assert_same(streamed, in_memory)
    with pytest.raises(ZunaValueError, match="mask must have shape"):
        quiet(zuna_lab.embed, files["edf"], model=model, mask=user[:-1], out=tmp_path / "bad.zarr", progress=False)
    assert not (tmp_path / "bad.zarr").exists()


def test_memory_does_not_grow_with_the_duration(random_checkpoint, tmp_path, monkeypatch):
    """Peak traced memory (NumPy's allocations) of a streamed embed: 8 min and 32 min alike (spans of
    64k values, so that both recordings are many spans long)."""
    from zuna_lab.io import quality

    monkeypatch.setattr(stream, "SPAN_VALUES", 1 << 16)
    monkeypatch.setattr(quality.SpanReader, "VALUES", 1 << 16)
    monkeypatch.setattr(quality, "SAMPLED_BLOCKS", (4096, 16))     # the checks' sample: 16 blocks of 4096
    monkeypatch.setattr(stream, "CHUNK_EPOCHS", 8)
    model = zuna_lab.load_model(random_checkpoint("ZUNA1.1", seed=3), device="cpu")
    peaks = {}
    for minutes in (8, 32):
        path = tmp_path / f"{minutes}_raw.fif"
        recording(minutes, seed=minutes).save(path, verbose="error")
        tracemalloc.start()
        quiet(zuna_lab.embed, path, model=model, out=tmp_path / f"{minutes}.zarr", progress=False, verbose="error")
        peaks[minutes] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peaks[32] <= 1.2 * peaks[8], peaks
    for minutes in (8, 32):           # reconstruct too: three signals per epoch, runs across chunks
        tracemalloc.start()
        quiet(zuna_lab.reconstruct, tmp_path / f"{minutes}_raw.fif", model=model, steps=1, seed=0, bad_channels=["C3"],
              out=tmp_path / f"{minutes}r.zarr", progress=False, verbose="error")
        peaks[f"{minutes}r"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peaks["32r"] <= 1.2 * peaks["8r"], peaks
    for minutes in (8, 32):           # the repaired recording written from the streamed result, span by span
        rec = xr.open_zarr(tmp_path / f"{minutes}r.zarr")
        zuna_lab.to_raw(rec).get_data(start=0, stop=10)       # first use of the readers, not traced
        tracemalloc.start()
        zuna_lab.write_fif(rec, tmp_path / f"{minutes}_fixed_raw.fif")
        peaks[f"{minutes}w"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peaks["32w"] <= 1.2 * peaks["8w"], peaks
    tracemalloc.start()
    quiet(zuna_lab.embed, path, model=model, progress=False, verbose="error")
    in_memory = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peaks[32] < in_memory / 2, (peaks, in_memory)


def test_out_errors_come_before_any_work(model, files, tmp_path, monkeypatch):
    existing = tmp_path / "taken.zarr"
    existing.mkdir()
    with pytest.raises(ZunaValueError, match="already exists; pass overwrite=True"):
        zuna_lab.embed(files["fif"], model=model, out=existing)
    with pytest.raises(ZunaValueError, match="trials .* are embedded in memory"):
        zuna_lab.embed(files["fif"], model=model, out=tmp_path / "x.zarr", events=np.array([[2560, 0, 1]]),
                       tmin=0.0, tmax=5.0)
    with pytest.raises(ZunaValueError, match="does not exist; create it first"):
        zuna_lab.embed(files["fif"], model=model, out=tmp_path / "missing" / "x.zarr")

    def broken(*args, **kwargs):
        raise RuntimeError("the encoder failed")

    monkeypatch.setattr(model, "encode", broken)
    with pytest.raises(RuntimeError, match="the encoder failed"):
        quiet(zuna_lab.embed, files["fif"], model=model, out=tmp_path / "half.zarr", progress=False)
    assert not (tmp_path / "half.zarr").exists() and not list(tmp_path.glob(".*"))   # nothing half-written


def test_too_large_for_memory_is_refused_before_any_work(model, files, monkeypatch):
    monkeypatch.setattr(streaming, "available_memory", lambda: 60_000_000)       # 60 MB left
    read = []
    monkeypatch.setattr(zuna_lab.api.core, "prepare", lambda *a, **k: read.append(1))
    with pytest.raises(ZunaValueError, match=r"needs about 0\.\d GB but 0\.1 GB are available; pass "
                                             r"out='thirty_raw_embedding\.zarr' to stream it"):
        zuna_lab.embed(files["fif"], model=model)
    with pytest.raises(ZunaValueError, match="Reconstructing this recording in memory needs about"):
        zuna_lab.reconstruct(str(files["fif"]), model=model)
    assert read == []
    raw = mne.io.read_raw(files["fif"], verbose="error")
    assert streaming.in_memory_bytes(raw, "reconstruct") > streaming.in_memory_bytes(raw, "embed") > 0


def test_stream_statistics_equal_the_in_memory_ones(files):
    """ZUNA's global statistics from one streamed pass equal those of the whole recording."""
    raw = quiet(zuna_lab.read_raw, files["fif"], preload=False, verbose="error")
    full = quiet(zuna_lab.read_raw, files["fif"], verbose="error")
    full.set_annotations(None)          # as zl.embed does: BAD_ spans are masks, no epoch is dropped
    raw.set_annotations(None)
    pre = zuna_lab.pipeline.preprocessing.preprocess(full, "ZUNA", samples_checked=True)
    chunks = stream.stream_preprocessed(raw, "ZUNA", files["folder"])
    plan = next(chunks)
    chunks.close()
    for key in ("global_mean", "global_std", "final_std"):
        assert plan.provenance[key] == pytest.approx(pre.params[key], rel=1e-9)
    assert plan.n_epochs == pre.n_epochs
    np.testing.assert_allclose(plan.epoch_start, pre.epoch_start)
    assert not list(files["folder"].glob(".*.f64"))          # the spill is removed when the stream ends


def test_a_stream_encodes_chunk_by_chunk_and_equals_the_in_memory_result(files, tmp_path, monkeypatch,
                                                                         random_checkpoint):
    """ZUNA1.1 read under the encoding: spans of SPAN_VALUES are read and filtered, the model gets one chunk of
    CHUNK_EPOCHS at a time (never more, whatever the batch size) and the stored result keeps those chunks."""
    model = zuna_lab.load_model(random_checkpoint("ZUNA1.1", seed=3), device="cpu")
    monkeypatch.setattr(stream, "CHUNK_EPOCHS", 32)
    reads, encoded = [], []
    read = stream.FilteredReader.read
    monkeypatch.setattr(stream.FilteredReader, "read", lambda self, a, b: reads.append((a, b)) or read(self, a, b))
    encode = model.encode
    monkeypatch.setattr(model, "encode", lambda tokens, *args, **kw: encoded.append(len(tokens)) or
                        encode(tokens, *args, **kw))
    options = dict(model=model, progress=False, verbose="error", batch_size=64)
    streamed = quiet(zuna_lab.embed, files["fif"], out=tmp_path / "out.zarr", **options)
    span = stream.SPAN_VALUES // len(CHANNELS)
    assert reads[0] == (0, span) and reads[1][0] == span
    n_epochs = streamed.sizes["epoch"]
    ends = set(np.cumsum(encoded).tolist())      # a chunk's epochs go to the model before the next chunk's
    assert max(encoded) == 32 and ends >= set(range(32, n_epochs, 32)) and max(ends) == n_epochs > 64
    assert streamed["embedding"].data.chunksize[0] == 32
    monkeypatch.setattr(model, "encode", encode)
    in_memory = quiet(zuna_lab.embed, files["fif"], **options)
    assert_same(streamed, in_memory)
