"""Long recordings for the epochs one looks at (issue N, item 3): a span of epochs of a recording read lazily
is prepared, reconstructed (its seams included) and evaluated as in memory, in bounded memory."""
from __future__ import annotations

import tracemalloc
import warnings

import mne
import numpy as np
import pytest

import zuna_lab
from zuna_lab.api import streaming
from zuna_lab.api.core import prepare, reconstruct_prepared
from zuna_lab.errors import ZunaValueError
from zuna_lab.pipeline import stream
from zuna_lab.pipeline.preprocessing import preprocess
from zuna_lab.pipeline.stream import EpochSpans
from zuna_lab.synthetic import make_synthetic_raw

CHANNELS = ["Fp1", "Fz", "F4", "T7", "C3", "Cz", "C4", "P3", "O1", "O2"]


def quiet(function, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return function(*args, **kwargs)


@pytest.fixture(scope="module", params=["ZUNA", "ZUNA1.1"])
def model(request, random_checkpoint):
    return zuna_lab.load_model(random_checkpoint(request.param, seed=3), device="cpu")


def recording(minutes, sfreq=256.0, seed=4):
    """A bad channel, BAD_ spans across epochs and windows (one channel-specific), a run reaching the end."""
    raw = quiet(make_synthetic_raw, duration=minutes * 60.0 + 3.3, sfreq=sfreq, seed=seed, ch_names=CHANNELS,
                verbose=False)
    raw.info["bads"] = ["O2"]
    end = raw.times[-1]
    raw.set_annotations(mne.Annotations([61.0, 77.4, end - 22.0], [27.3, 12.0, 21.0], ["BAD_jump", "BAD_muscle", "BAD_end"],
                                        ch_names=[[], ["T7"], ["Cz"]]))
    return raw


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("spans")
    fif, edf = folder / "four_raw.fif", folder / "three_500hz.edf"
    recording(4).save(fif, verbose="error")
    quiet(mne.export.export_raw, edf, recording(3, sfreq=500.0, seed=5), fmt="edf", verbose="error")
    return dict(fif=fif, edf=edf)


@pytest.mark.parametrize("fmt", ["fif", "edf"])
@pytest.mark.parametrize("variant", ["ZUNA", "ZUNA1.1"])
def test_a_span_of_epochs_is_prepared_as_in_the_whole_recording(files, variant, fmt):
    """First, middle (cut by BAD_ spans) and last epochs; the filter's length crosses every span's edges."""
    full = quiet(zuna_lab.read_raw, files[fmt], verbose="error")
    full.info["bads"] = ["O2", "Fz"]
    full.set_annotations(None)          # BAD_ spans are masks, not dropped epochs (as zl.prepare does)
    whole = preprocess(full, variant, samples_checked=True)
    lazy = quiet(zuna_lab.read_raw, files[fmt], preload=False, verbose="error")
    lazy.info["bads"] = ["O2", "Fz"]
    spans = EpochSpans(lazy, variant, window_epochs=5)
    assert (spans.n_epochs, spans.n_times, spans.sfreq) == (whole.n_epochs, whole.n_times, whole.sfreq)
    np.testing.assert_array_equal(spans.epoch_start, whole.epoch_start)
    worst = 0.0
    for first, stop in [(0, 2), (12, 17), (whole.n_epochs - 3, whole.n_epochs)]:
        part = spans.epochs(first, stop)
        np.testing.assert_array_equal(part.epoch_start, whole.epoch_start[first:stop])
        for i in range(stop - first):
            for name in ("data", "volts", "reference"):
                a, b = getattr(part, name)[i], getattr(whole, name)[first + i]
                assert a.shape == b.shape
                worst = max(worst, float(np.max(np.abs(a - b)) / np.max(np.abs(b))))
            np.testing.assert_allclose(part.scale[i], whole.scale[first + i], rtol=1e-9)
            np.testing.assert_allclose(part.offset[i], whole.offset[first + i], rtol=1e-9, atol=1e-12)
    assert worst <= 1e-9, worst
    print(f"{variant} {fmt}: span epochs vs whole, worst relative difference {worst:.1e}")


@pytest.mark.parametrize("fmt", ["fif", "edf"])
def test_reconstructing_epochs_of_a_lazy_recording_equals_the_whole(model, files, fmt):
    """Hybrid seams of runs that leave the window (a BAD_ span over 6 epochs, a channel's span to the end,
    a user span across two windows) equal the whole recording's; bad channel and added channel too."""
    options = dict(steps=3, seed=7, bad_segments=[(36.0, 52.0, "C3"), (9.5, 10.5)], add_channels=["Pz"],
                   progress=False)
    whole = quiet(prepare, files[fmt], model.variant, bad_channels=["F4"])
    lazy = quiet(prepare, files[fmt], model.variant, bad_channels=["F4"], preload=False)
    assert isinstance(lazy.pre, EpochSpans)
    n = whole.pre.n_epochs
    chosen = [0, 1, 8, 13, n - 1]
    expected = quiet(reconstruct_prepared, whole, model, epochs=chosen, **options)
    got = quiet(reconstruct_prepared, lazy, model, epochs=chosen, **options)
    assert got.sizes == expected.sizes
    for name in ("mask",):
        np.testing.assert_array_equal(got[name].values, expected[name].values)
    worst = {}
    for name in ("original", "reconstruction", "hybrid"):
        a, b = got[name].values, expected[name].values
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
        worst[name] = float(np.nanmax(np.abs(a - b)) / np.nanmax(np.abs(b)))
        assert worst[name] <= 1e-6, name
    print(f"{model.variant} {fmt}: epochs {chosen} of a lazy recording vs in memory, worst relative difference "
          + ", ".join(f"{name} {value:.1e}" for name, value in worst.items()))
    assert not np.allclose(got["hybrid"].values, np.where(got["mask"].values.repeat(32, -1)[..., :got.sizes["time"]],
                                                          got["reconstruction"].values, got["original"].values),
                           equal_nan=True)                          # the seams were corrected
    np.testing.assert_array_equal(got["epoch"].values, chosen)


def test_evaluate_dropout_on_epochs_equals_the_whole_reconstruction_restricted(model, files):
    """Scores of epochs read lazily = scores of the in-memory zl.reconstruct of the whole recording, on those
    epochs' hidden cells (minus BAD_ tokens), with the same seeds."""
    path, chosen = files["fif"], [0, 13, 14, 47]
    scores = quiet(zuna_lab.evaluate_dropout, path, model, bad_channels=["C3", "T7"], epochs=chosen, steps=3, seed=5,
                   progress=False)
    assert scores.attrs["epochs"] == "0, 13, 14, 47"
    annotated = quiet(zuna_lab.reconstruct, path, model=model, steps=1, progress=False)["mask"].isel(epoch=chosen)
    worst = 0.0
    for channel in ("C3", "T7"):
        seed = int(scores["seed"].sel(repeat=0, channel=channel))
        rec = quiet(zuna_lab.reconstruct, path, model=model, bad_channels=[channel], steps=3, seed=seed,
                    progress=False).isel(epoch=chosen)
        cells = (rec["mask"] & ~annotated).sel(channel=channel).values.repeat(32, axis=-1)[:, :rec.sizes["time"]]
        truth = rec["original"].sel(channel=channel).values
        target = xr_array(np.where(cells, truth, np.nan))
        expected = zuna_lab.evaluation.dropout_scores(target, xr_array(rec["reconstruction"].sel(channel=channel).values))
        for var in ("nmse", "correlation", "rmse"):
            got, want = float(scores[var].sel(estimator="zuna", repeat=0, channel=channel)), float(expected[var])
            worst = max(worst, abs(got - want) / abs(want))
        assert int(scores["n_cells"].sel(repeat=0, channel=channel)) == int(expected["n_cells"]) == cells.sum() > 0
    assert worst <= 1e-6, worst
    assert np.isfinite(scores["nmse"].sel(estimator="spline", channel=["C3", "T7"])).all()
    print(f"{model.variant}: evaluate_dropout on epochs vs in memory, worst relative difference {worst:.1e}")


def xr_array(values):
    import xarray as xr

    return xr.DataArray(values, dims=("epoch", "time"))


def test_evaluate_dropout_refuses_a_recording_too_long_and_names_epochs(files, monkeypatch):
    monkeypatch.setattr(streaming, "available_memory", lambda: 1_000_000)
    with pytest.raises(ZunaValueError, match=r"pass epochs=\[\.\.\.\]") as error:
        quiet(zuna_lab.evaluate_dropout, files["fif"], "unused", bad_channels=["C3"])
    assert str(error.value).count(". ") == 0
    with pytest.raises(ZunaValueError, match="hidden_input='spline'"):
        quiet(zuna_lab.evaluate_dropout, files["fif"], "unused", epochs=[0], hidden_input="spline")


def traced_peaks(model, path):
    """Traced peaks (tracemalloc) of the dashboard's state reconstructing epoch 60 with C3 hidden, and of
    evaluate_dropout on epochs 60 and 61, on ``path`` read lazily."""
    from zuna_lab.viz.state.reconstruction import ReconstructionState
    from zuna_lab.viz.state.recording import Recording

    tracemalloc.start()
    try:
        shared = quiet(Recording, str(path))
        state = quiet(ReconstructionState, recording=shared, model=model, steps=2, seed=0)
        state.param.update(epoch=60, masked_channels=["C3"])
        result = quiet(state.run)
        assert int(result["epoch"][0]) == 60 and state.original().shape == (len(CHANNELS), 1280)
        assert shared.lazy and isinstance(shared.prepared(model.variant).pre, EpochSpans)
        _, dashboard = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        scores = quiet(zuna_lab.evaluate_dropout, path, model, bad_channels=["C3"], epochs=[60, 61], steps=2,
                       progress=False)
        assert np.isfinite(float(scores["nmse"].sel(estimator="zuna", repeat=0, channel="C3")))
        _, evaluation = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return dashboard, evaluation


def test_the_dashboard_and_evaluate_dropout_hold_the_epochs_shown_not_the_recording(model, tmp_path, monkeypatch):
    """The same peaks for 8 and 32 minutes (within 15 %): the spans read, filtered and prepared do not grow with
    the recording; the whole 32-min recording as float64 would add 39 MB. The spans read at a time (the sample
    checks', the statistics') and the sample checks' blocks are made smaller than 8 minutes, so that both
    recordings hold several (with the defaults, read_raw's checks alone reach their fixed size only past 17 min)."""
    from zuna_lab.io import quality

    monkeypatch.setattr(quality.SpanReader, "VALUES", 1 << 18)        # 26,214 samples of 10 channels
    monkeypatch.setattr(quality, "SAMPLED_BLOCKS", (1024, 16))
    monkeypatch.setattr(stream, "SPAN_VALUES", 1 << 18)
    monkeypatch.setattr(stream, "CHUNK_EPOCHS", 8)
    peaks = {}
    for minutes in (8, 32):
        path = tmp_path / f"{minutes}_raw.fif"
        recording(minutes).save(path, verbose="error")
        peaks[minutes] = traced_peaks(model, path)
    whole = len(CHANNELS) * 32 * 60 * 256 * 8
    print(f"{model.variant}: traced peaks (dashboard, evaluate_dropout) 8 min {peaks[8][0] / 1e6:.1f}, "
          f"{peaks[8][1] / 1e6:.1f} MB; 32 min {peaks[32][0] / 1e6:.1f}, {peaks[32][1] / 1e6:.1f} MB; "
          f"the 32-min recording {whole / 1e6:.0f} MB")
    for short, long in zip(peaks[8], peaks[32]):
        assert long < 1.15 * short and long - short < whole / 4
