import functools

import numpy as np
import pytest

from zuna_lab.errors import ZunaTypeError, ZunaValueError
from zuna_lab.viz.state import EmbeddingState, HealthState, ReconstructionState
from viz_fixtures import make_embedding, make_raw, stub_embed, stub_reconstruct


@pytest.fixture(scope="module")
def raw():
    return make_raw(duration=15.0)


def test_state_module_does_not_import_panel():
    import subprocess
    import sys

    code = "import sys, zuna_lab.viz.state; print('panel' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_reconstruction_state_basics(raw):
    st = ReconstructionState(raw=raw, reconstruct_fn=stub_reconstruct)
    assert st.n_epochs == 3 and st.param.epoch.bounds == (0, 2)
    assert st.param.masked_channels.objects == raw.ch_names
    orig = st.original()
    assert orig.dims == ("channel", "time") and orig.sizes["time"] == 1280
    st.epoch = 1
    np.testing.assert_array_equal(st.original().values, raw.get_data(start=1280, stop=2560))
    with pytest.raises(ZunaValueError, match="Nothing is masked"):
        st.run()
    assert st.status == "failed" and "Nothing is masked" in st.error
    with pytest.raises(ZunaTypeError):
        ReconstructionState(raw=np.zeros((3, 100)))


def test_mask_semantics(raw):
    st = ReconstructionState(raw=raw, reconstruct_fn=stub_reconstruct)
    st.masked_channels = ["T7"]
    assert st.mask_request() == {"bad_channels": ["T7"], "bad_segments": []}
    m = st.token_mask()
    assert m.dims == ("channel", "token") and int(m.sel(channel="T7").sum()) == 40 and int(m.sum()) == 40
    st.masked_span = (1.0, 1.5)
    assert st.mask_request() == {"bad_channels": [], "bad_segments": [(1.0, 1.5, "T7")]}
    assert int(st.token_mask().sum()) == 4
    st.masked_channels = []
    assert st.mask_request()["bad_segments"] == [(1.0, 1.5)]
    assert int(st.token_mask().sum()) == 4 * 12
    st.toggle_channel("C3"); st.toggle_channel("O1"); st.toggle_channel("C3")
    assert st.masked_channels == ["O1"]
    st.clear_mask()
    assert st.masked_channels == [] and st.masked_span is None
    with pytest.raises(ZunaValueError):
        st.toggle_channel("XYZ")


def test_run_and_metrics(raw, tmp_path):
    calls = []

    def fn(r, **kw):
        calls.append(kw)
        return stub_reconstruct(r, **kw)

    st = ReconstructionState(raw=raw, reconstruct_fn=fn, epoch=2)
    st.param.update(masked_channels=["C3", "T7"], steps=7, seed=3, cfg=1.5)
    before = raw.get_data().copy()
    rec = st.run()
    np.testing.assert_array_equal(raw.get_data(), before)  # raw not mutated
    assert calls[0]["bad_channels"] == ["C3", "T7"] and calls[0]["steps"] == 7 and calls[0]["cfg"] == 1.5
    assert calls[0]["seed"] == 3 and callable(calls[0]["callback"])
    assert st.result is rec and st.progress == 1.0 and st.status.startswith("done") and st.run_count == 1
    # the segment passed in is the chosen epoch
    np.testing.assert_allclose(rec.original.isel(epoch=0).values, raw.get_data(start=2560, stop=3840))
    m = st.metrics
    assert m.rmse.dims == ("epoch", "channel") and m.rmse.attrs["units"] == "V"
    assert np.isfinite(m.rmse.sel(channel="C3")).all() and np.isnan(m.rmse.sel(channel="F3")).all()
    tab = st.error_table()
    assert list(tab.channel) == ["C3", "T7"] and (tab.correlation > 0.9).all()
    # export
    path = st.export_fif(tmp_path / "fixed_raw.fif")
    import mne

    back = mne.io.read_raw_fif(path, preload=True, verbose="error")
    assert back.ch_names == raw.ch_names and back.n_times == 1280
    np.testing.assert_allclose(back.get_data(), rec.hybrid.isel(epoch=0).values, atol=1e-12)
    # changing the epoch clears the result
    st.epoch = 0
    assert st.result is None and st.metrics is None


def test_function_without_span_support(raw):
    def only_channels(r, *, model=None, bad_channels=(), steps=50, seed=0):
        return stub_reconstruct(r, bad_channels=bad_channels, steps=steps, seed=seed)

    st = ReconstructionState(raw=raw, reconstruct_fn=only_channels)
    st.masked_channels = ["O2"]
    rec = st.run()
    assert bool(rec.mask.sel(channel="O2").all())
    st.masked_span = (0.0, 1.0)
    assert st.run(raise_errors=False) is None and "bad_segments" in st.error


def test_background_run_progress(raw):
    st = ReconstructionState(raw=raw, reconstruct_fn=functools.partial(stub_reconstruct, delay=0.3))
    st.masked_channels = ["Fp1"]
    seen = []
    st.param.watch(lambda e: seen.append(e.new), "progress")
    th = st.start()
    assert st.running
    st.start()  # a second start while running is ignored
    th.join(5)
    assert not st.running and st.result is not None
    assert len(seen) > 3 and seen[-1] == 1.0 and all(b >= a for a, b in zip(seen, seen[1:]))


def test_samples_dimension(raw):
    st = ReconstructionState(raw=raw, reconstruct_fn=stub_reconstruct, n_samples=3)
    st.masked_channels = ["P3"]
    rec = st.run()
    assert rec.sizes["sample"] == 3 and "spread" in rec
    assert set(st.metrics.rmse.dims) == {"sample", "epoch", "channel"}
    assert len(st.error_table()) == 1


def test_health_state():
    a, b = make_embedding(seed=1), make_embedding(seed=2, shift={4: 0.7})
    hs = HealthState(embeddings={"a": a, "b": b}, n_permutations=30, max_points=300)
    assert hs.param.reference.objects == ["N(0, I)", "a", "b"] and hs.selected == "a"
    hs.compute()
    tab = hs.summary()
    assert list(tab.recording) == ["a", "b"]
    assert list(tab.verdict) == ["healthy", "shifted"] and tab.shifted_dims[1] == "4"
    assert hs.comparison.mmd2.dims == ("recording", "other")
    hs.reference = "a"
    hs.compute()
    assert hs.results["b"].attrs["reference"] == "embedding"


def test_health_state_embeds_recordings():
    r = make_raw(duration=10.0)
    hs = HealthState(recordings={"r": r}, embed_fn=stub_embed, n_permutations=10)
    hs.compute()
    assert "r" in hs.embeddings and hs.results["r"].attrs["verdict"] == "healthy"


def test_embedding_state_selection():
    emb = make_embedding(n_epochs=2, seed=5, masked_channels=["O2"])
    es = EmbeddingState(embedding=emb, max_points=500)
    assert es.coords.sizes["point"] == 500 and es.coords.attrs["method"] == "pca"
    assert "O2" not in set(es.coords.channel.values)
    es.selection = [0, 1, 2]
    df = es.selected
    assert len(df) == 3 and set(df.columns) >= {"epoch", "channel", "time", "region", "x", "y"}
    assert es.selected_channels == sorted(set(df.channel))
    m = es.selected_mask()
    assert m.dims == ("epoch", "channel", "token") and int(m.sum()) == 3
    sel = es.select_bounds((0, 0, 10, 10))
    assert sel and all(es.coords.x.values[i] >= 0 and es.coords.y.values[i] >= 0 for i in sel)
    es.max_points = 200
    assert es.selection == [] and es.coords.sizes["point"] == 200


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    import zuna_lab

    if not hasattr(zuna_lab, "reconstruct"):
        pytest.skip("zuna_lab.reconstruct is not there yet")
    from zuna_lab.testing import make_random_checkpoint

    path = make_random_checkpoint(tmp_path_factory.mktemp("ckpt"))
    return zuna_lab.load_model(path, device="cpu")


def test_real_reconstruct_with_random_checkpoint(raw, tiny_model, tmp_path):
    st = ReconstructionState(raw=raw, model=tiny_model, epoch=1, steps=3, seed=0)
    st.masked_channels = ["T7"]
    st.masked_span = (1.0, 2.0)
    seen = []
    st.param.watch(lambda e: seen.append(e.new), "progress")
    rec = st.run()
    assert set(rec.data_vars) >= {"original", "reconstruction", "hybrid", "mask"}
    m = rec.mask.isel(epoch=0)
    assert bool(m.sel(channel="T7").any()) and not bool(m.sel(channel="F3").any())
    assert int(m.sel(channel="T7").sum()) == 8  # 1 s of 0.125 s tokens
    assert seen and seen[-1] == 1.0
    assert np.isfinite(st.metrics.rmse.sel(channel="T7")).all()
    assert list(st.error_table().channel) == ["T7"]
    path = st.export_fif(tmp_path / "x_raw.fif")
    assert path.exists()
    # same seed -> same result
    again = ReconstructionState(raw=raw, model=tiny_model, epoch=1, steps=3, seed=0,
                                masked_channels=["T7"], masked_span=(1.0, 2.0)).run()
    np.testing.assert_array_equal(again.reconstruction.values, rec.reconstruction.values)


def test_real_embed_feeds_health_and_embedding_state(tiny_model):

    r = make_raw(duration=10.0)
    hs = HealthState(recordings={"r": r}, model=tiny_model, n_permutations=20, max_points=300)
    hs.compute()
    emb = hs.embeddings["r"]
    assert emb.embedding.dims == ("epoch", "channel", "token", "latent")
    assert hs.results["r"].attrs["verdict"] in ("healthy", "shifted", "collapsed dims")
    es = EmbeddingState(embedding=emb, max_points=200)
    es.selection = [0, 1]
    assert len(es.selected) == 2
