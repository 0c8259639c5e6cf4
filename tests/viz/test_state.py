"""The dashboard's state classes against the library: same numbers as zl.reconstruct / zl.embed / zl.mmd_health.

Tiny random checkpoints of both variants run the real library on the CPU.
"""
import threading

import numpy as np
import pytest

import zuna_lab as zl
from zuna_lab.api.core import prepare
from zuna_lab.errors import ZunaTypeError, ZunaValueError
from zuna_lab.viz.state import EmbeddingState, HealthState, Recording, ReconstructionState
from builders import make_embedding, make_raw

VARIANTS = ("ZUNA", "ZUNA1.1")


@pytest.fixture(scope="module")
def raw():
    # 16 s: ZUNA keeps three 5 s epochs, ZUNA1.1 four segments (the last one 1 s)
    return make_raw(duration=16.0)


@pytest.fixture(scope="module")
def models(random_checkpoint):
    return {v: zl.load_model(random_checkpoint(v, seed=2), device="cpu") for v in VARIANTS}


@pytest.fixture(scope="module")
def model(models):
    return models["ZUNA"]


def _same(a, b):
    """Bit-identical arrays (NaN where the other is NaN)."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape
    np.testing.assert_array_equal(a, b)


def _assert_epoch_of(rec, ref, epoch):
    """``rec`` (one epoch from the dashboard) is epoch ``epoch`` of the library's whole-recording result."""
    one = ref.sel(epoch=[epoch])
    assert rec["epoch"].values.tolist() == [epoch]
    _same(rec["epoch_start"].values, one["epoch_start"].values)
    assert set(rec.data_vars) == set(ref.data_vars)
    for name in rec.data_vars:
        _same(rec[name].values, one[name].values)
    for attr in ("model_variant", "steps", "cfg", "seed", "n_samples", "source_fingerprint"):
        assert rec.attrs[attr] == ref.attrs[attr], attr


def test_state_module_does_not_import_panel():
    import subprocess
    import sys

    code = "import sys, zuna_lab.viz.state; print('panel' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_reconstruction_state_epochs_are_the_preprocessed_recording(raw, models):
    for variant, n_epochs, last_s in (("ZUNA", 3, 5.0), ("ZUNA1.1", 4, 1.0)):
        st = ReconstructionState(raw=raw, model=models[variant])
        pre = prepare(raw, variant).pre
        assert st.ready and st.n_epochs == pre.n_epochs == n_epochs
        assert st.param.epoch.bounds == (0, n_epochs - 1)
        assert st.param.masked_channels.objects == list(pre.ch_names) == raw.ch_names
        assert st.sfreq == 256.0 and st.epoch_duration(n_epochs - 1) == last_s
        st.epoch = 1
        assert st.epoch_start() == pytest.approx(5.0)
        orig = st.original()
        assert orig.dims == ("channel", "time") and orig.sizes["time"] == 1280
        _same(orig.values, pre.volts[1])          # the preprocessed volts, not a crop of the Raw
    with pytest.raises(ZunaValueError, match="Nothing is masked"):
        st.run()
    assert st.status == "failed" and "Nothing is masked" in st.error
    with pytest.raises(ZunaTypeError):
        ReconstructionState(raw=np.zeros((3, 100)))


def test_mask_semantics(raw, model):
    st = ReconstructionState(raw=raw, model=model)
    st.masked_channels = ["T7"]
    assert st.mask_request() == {"bad_channels": ["T7"], "bad_segments": []}
    m = st.token_mask()
    assert m.dims == ("channel", "token") and int(m.sel(channel="T7").sum()) == 40 and int(m.sum()) == 40
    st.masked_span = (1.0, 1.5)
    assert st.mask_request() == {"bad_channels": [], "bad_segments": [(1.0, 1.5, "T7")]}
    assert int(st.token_mask().sum()) == 4
    st.epoch = 2                                  # the span is within the epoch; the library wants recording s
    assert st.mask_request() == {"bad_channels": [], "bad_segments": [(11.0, 11.5, "T7")]}
    st.masked_channels = []
    assert st.mask_request()["bad_segments"] == [(11.0, 11.5)]
    assert int(st.token_mask().sum()) == 4 * 12
    st.toggle_channel("C3"); st.toggle_channel("O1"); st.toggle_channel("C3")
    assert st.masked_channels == ["O1"]
    st.clear_mask()
    assert st.masked_channels == [] and st.masked_span is None
    # what the apps' streams call: a click on the scalp map, a drag over the traces
    from zuna_lab.viz.projections import scalp_coords

    assert st.toggle_at(*scalp_coords(st.positions).sel(channel="O1").values) == "O1"
    assert st.masked_channels == ["O1"] and st.toggle_at(5.0, 5.0) is None    # far from every electrode
    st.select_span((1.0, 1.0))                    # an empty drag changes nothing
    assert st.masked_span is None
    st.select_span((0.5, 2.0))
    assert st.mask_request()["bad_segments"] == [(10.5, 12.0, "O1")]
    with pytest.raises(ZunaValueError):
        st.toggle_channel("XYZ")


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("masks", ["channels", "span", "channels+span"])
def test_epoch_equals_library_reconstruct(raw, models, variant, masks):
    """(a) original / reconstruction / hybrid / mask of the dashboard's epoch == zl.reconstruct's, bit for bit."""
    model = models[variant]
    st = ReconstructionState(raw=raw, model=model, epoch=1, steps=3, seed=7)
    before = st.original().values.copy()
    if "channels" in masks:
        st.masked_channels = ["T7", "O1"]
    if "span" in masks:
        st.masked_span = (1.0, 2.5)
    req = st.mask_request()
    rec = st.run()
    ref = zl.reconstruct(raw, model=model, steps=3, seed=7, **req)
    _assert_epoch_of(rec, ref, 1)
    _same(before, ref["original"].sel(epoch=1).values)      # the trace shown before the run too
    _same(st.token_mask().values, rec["mask"].isel(epoch=0).values)
    hidden = rec["mask"].isel(epoch=0)
    if masks == "channels":
        assert bool(hidden.sel(channel=["T7", "O1"]).all()) and int(hidden.sum()) == 80
    elif masks == "span":
        assert int(hidden.sum()) == 12 * 12       # 1.0-2.5 s: 12 tokens on every channel
    else:
        assert int(hidden.sum()) == 2 * 12 and int(hidden.sel(channel="T7").sum()) == 12
    masked = np.repeat(hidden.values, 32, axis=1)
    hybrid, original = rec["hybrid"].isel(epoch=0).values, rec["original"].isel(epoch=0).values
    _same(hybrid[~masked], original[~masked])    # the hybrid keeps the original outside the mask
    assert not np.allclose(hybrid[masked], original[masked])


def test_zuna11_short_last_segment(raw, models):
    model = models["ZUNA1.1"]
    st = ReconstructionState(raw=raw, model=model, epoch=3, steps=2, seed=1, masked_span=(0.25, 0.75))
    assert st.mask_request()["bad_segments"] == [(15.25, 15.75)]
    rec = st.run()
    ref = zl.reconstruct(raw, model=model, steps=2, seed=1, bad_segments=[(15.25, 15.75)])
    _assert_epoch_of(rec, ref, 3)
    assert rec.sizes["time"] == 1280 and np.isnan(rec["original"].values[..., 256:]).all()


def test_run_and_metrics(raw, model, tmp_path):
    import mne

    st = ReconstructionState(raw=raw, model=model, epoch=2)
    st.param.update(masked_channels=["C3", "T7"], steps=4, seed=3, cfg=1.5)
    before = raw.get_data().copy()
    rec = st.run()
    np.testing.assert_array_equal(raw.get_data(), before)  # raw not mutated
    assert (rec.attrs["steps"], rec.attrs["seed"], rec.attrs["cfg"]) == (4, 3, 1.5)
    assert st.result is rec and st.progress == 1.0 and st.status.startswith("done") and st.run_count == 1
    m = st.metrics
    assert m.rmse.dims == ("epoch", "channel") and m.rmse.attrs["units"] == "V"
    assert np.isfinite(m.rmse.sel(channel="C3")).all() and np.isnan(m.rmse.sel(channel="F3")).all()
    err = zl.health.reconstruction_errors(rec)
    np.testing.assert_array_equal(m.rmse.values, err.rmse.values)
    tab = st.error_table()
    assert list(tab.channel) == ["C3", "T7"]
    np.testing.assert_allclose(tab.rmse_uV, err.rmse.sel(channel=["C3", "T7"]).values.ravel() * 1e6)
    # export: the user's recording with this epoch's infill spliced in
    path = st.export_fif(tmp_path / "fixed_raw.fif")
    back = mne.io.read_raw_fif(path, preload=True, verbose="error")
    assert back.ch_names == raw.ch_names and back.n_times == raw.n_times
    data = back.get_data()
    outside = np.ones(raw.n_times, bool)
    outside[2560:3840] = False
    np.testing.assert_allclose(data[:, outside], before[:, outside], atol=1e-12)
    c3 = raw.ch_names.index("C3")
    assert not np.allclose(data[c3, 2560:3840], before[c3, 2560:3840])
    # changing the epoch clears the result
    st.epoch = 0
    assert st.result is None and st.metrics is None


def test_background_run_progress(raw, model):
    st = ReconstructionState(raw=raw, model=model, steps=3, n_samples=3)
    st.masked_channels = ["Fp1"]
    seen = []
    st.param.watch(lambda e: seen.append(e.new), "progress")
    th = st.start()
    assert st.running
    assert st.start() is th  # a second start while running is ignored
    th.join(120)
    assert not st.running and st.result is not None and st.error == ""
    assert seen[-1] == 1.0 and len(seen) >= 3 and all(b >= a for a, b in zip(seen, seen[1:]))


def test_samples_dimension(raw, model):
    st = ReconstructionState(raw=raw, model=model, n_samples=3, steps=3, seed=5, epoch=1)
    st.masked_channels = ["P3"]
    rec = st.run()
    ref = zl.reconstruct(raw, model=model, n_samples=3, steps=3, seed=5, bad_channels=["P3"])
    _assert_epoch_of(rec, ref, 1)
    assert rec.sizes["sample"] == 3
    draws = rec.reconstruction.sel(channel="P3").values
    assert not np.allclose(draws[0], draws[1]) and not np.allclose(draws[1], draws[2])
    np.testing.assert_allclose(rec.reconstruction_std.values, rec.reconstruction.std("sample", ddof=1).values,
                               rtol=1e-12)
    assert float(rec.reconstruction_std.sel(channel="P3").mean()) > 0
    hybrid = rec.hybrid.sel(channel="F3").values                 # kept cells: the same in every draw
    assert (hybrid == hybrid[:1]).all() and float(rec.hybrid.std("sample").sel(channel="P3").min()) > 1e-9
    assert set(st.metrics.rmse.dims) == {"sample", "epoch", "channel"}
    assert list(st.error_table().channel) == ["P3"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_two_states_share_one_model_in_threads(raw, models, variant):
    """(b) two dashboards reconstructing at once on ONE model == the same runs one after the other."""
    model = models[variant]
    settings = [dict(epoch=0, steps=3, seed=1, masked_channels=["T7"]),
                dict(epoch=2, steps=4, seed=2, masked_span=(0.5, 2.0), n_samples=2)]

    def states():   # fresh recordings: the preprocessing runs concurrently as well
        return [ReconstructionState(recording=Recording(raw), model=model, **s) for s in settings]

    one_by_one = [st.run() for st in states()]
    together = states()
    barrier, out, errors = threading.Barrier(2), [None, None], []

    def work(i):
        try:
            barrier.wait()
            out[i] = together[i].run()
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(300)
    assert not errors, errors
    for a, b in zip(one_by_one, out):
        for name in a.data_vars:
            _same(a[name].values, b[name].values)


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


def test_health_state_equals_library(raw, model):
    """The health tab's result is zl.mmd_health(zl.embed(raw, model)) with the same options."""
    hs = HealthState(recordings={"r": raw}, model=model, n_permutations=20, max_points=300, seed=4)
    assert hs.names == ["r"] and not hs.complete
    hs.compute()
    assert hs.complete and hs.status.startswith("done: 20 permutations, 300 tokens, seed 4") and hs.progress == 1.0
    emb = zl.embed(raw, model=model)
    for name in emb.data_vars:
        _same(hs.embeddings["r"][name].values, emb[name].values)
    ref = zl.mmd_health(emb, n_permutations=20, max_points=300, seed=4)
    got = hs.results["r"]
    assert set(got.data_vars) == set(ref.data_vars)
    for name in ref.data_vars:
        _same(got[name].values, ref[name].values)
    assert got.attrs["verdict"] == ref.attrs["verdict"] and got.attrs["summary"] == ref.attrs["summary"]


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


def test_embedding_state_embeds_the_recording(raw, model):
    es = EmbeddingState(raw=raw, model=model, max_points=200)
    assert es.embedding is None and es.coords is None
    emb = es.compute()
    ref = zl.embed(raw, model=model)
    _same(emb.embedding.values, ref.embedding.values)
    assert es.coords.sizes["point"] == 200 and es.status == "done"
    es.selection = [0, 1]
    assert len(es.selected) == 2
    e = es.selected_epochs[0]
    # the traces under the selection are the preprocessed epoch the tokens came from
    _same(es.original(e).values, prepare(raw, model.variant).pre.volts[e])
    # the recording is shared: a second state with it does not embed again
    rec = es.recording
    assert rec.has_embedding(model) and EmbeddingState(recording=rec, model=model).compute() is emb


def test_recording_prepares_once_per_set_of_masked_channels(raw, model, monkeypatch):
    """ZUNA's preprocessing depends on the hidden channels (left out of its average reference), so the
    state keeps one Prepared per set of masked channels, and prepares each set once."""
    import zuna_lab.api.core as core

    assert not np.allclose(prepare(raw, "ZUNA", bad_channels=["T7"]).pre.data[0], prepare(raw, "ZUNA").pre.data[0])
    calls = []
    real = core.prepare

    def counting(data, variant, **kw):
        calls.append(tuple(kw.get("bad_channels") or ()))
        return real(data, variant, **kw)

    monkeypatch.setattr(core, "prepare", counting)
    st = ReconstructionState(raw=raw, model=model, steps=1)
    assert calls == [()]                                  # the whole recording, once, at start
    st.masked_channels = ["T7"]
    st.run()
    st.epoch = 2
    st.run()
    st.masked_span = (1.0, 2.0)                           # channels + span: bad_segments, base preprocessing
    st.run()
    st.masked_channels = ["O1", "T7"]
    st.masked_span = None
    st.run()
    assert calls == [(), ("T7",), ("O1", "T7")]
    assert st.recording.is_prepared("ZUNA", ["T7", "O1"])


def test_dashboard_reads_a_file_too_long_for_memory_lazily(tmp_path, monkeypatch):
    """zl.dashboard("night.edf"): a file whose reconstruction would not fit is read lazily (its apps prepare the
    epochs they show); one that fits is loaded as before."""
    from zuna_lab.api import streaming
    from zuna_lab.viz.apps.dashboard import _as_raw

    path = tmp_path / "r_raw.fif"
    make_raw(duration=30.0).save(path, verbose="error")
    assert _as_raw(path).preload and _as_raw(str(path)).preload
    monkeypatch.setattr(streaming, "available_memory", lambda: 1000)          # a machine with 1 kB free
    lazy = _as_raw(path)
    assert not lazy.preload and Recording(lazy).lazy


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_long_recordings_embedding_is_streamed_and_shown_in_part(models, variant, tmp_path, monkeypatch):
    """A lazy recording is embedded with out= (bounded memory) into a folder removed with the recording; the
    apps hold SHOWN_EPOCHS evenly spaced epochs, the same values as the in-memory embedding's."""
    import gc

    import mne

    from zuna_lab.viz.state import recording as recording_module

    model = models[variant]
    path = tmp_path / "r_raw.fif"
    make_raw(duration=61.0).save(path, verbose="error")
    expected = zl.embed(path, model=model, progress=False, verbose="error")
    monkeypatch.setattr(recording_module, "SHOWN_EPOCHS", 4)
    rec = Recording(mne.io.read_raw_fif(path, preload=False, verbose="error"))
    emb = rec.embedding(model)
    n = expected.sizes["epoch"]
    shown = np.unique(np.linspace(0, n - 1, 4).round().astype(int))
    assert emb.sizes["epoch"] == 4 and emb["epoch"].values.tolist() == expected["epoch"].values[shown].tolist()
    assert emb.embedding.chunks is None and emb.mask.dtype == bool                       # held in memory
    assert emb.attrs["shown_epochs"].startswith(f"4 of {n} epochs, evenly spaced")       # said, not silent
    _same(emb.embedding, expected.embedding.isel(epoch=shown))
    _same(emb.epoch_start, expected.epoch_start.isel(epoch=shown))
    assert rec.embedding(model) is emb                                                    # cached
    folder = rec._folder
    assert folder.is_dir() and any(folder.iterdir())
    hs = HealthState(recordings={"r": rec}, model=model, n_permutations=10, max_points=100, seed=1)
    hs.compute()                                                                          # on the epochs shown
    assert hs.complete and hs.embeddings["r"] is emb
    ref = zl.mmd_health(emb, n_permutations=10, max_points=100, seed=1)
    for name in ref.data_vars:
        _same(hs.results["r"][name].values, ref[name].values)
    del rec, emb, hs
    gc.collect()
    assert not folder.exists()                                                            # removed with the recording


def test_the_reconstruction_app_exports_a_long_recording_without_loading_it(model, tmp_path):
    """On a lazy recording the reconstruction app puts its epoch back span by span (a SplicedRaw): the same
    FIF as with the recording loaded, the recording never loaded whole."""
    import mne

    from zuna_lab.io.splice import SplicedRaw

    path = tmp_path / "r_raw.fif"
    make_raw(duration=40.0).save(path, fmt="double", verbose="error")
    files = {}
    for label, preload in (("lazy", False), ("loaded", True)):
        raw = mne.io.read_raw_fif(path, preload=preload, verbose="error")
        st = ReconstructionState(raw=raw, model=model, epoch=5, steps=2, seed=3, masked_channels=["C3"])
        st.run()
        if not preload:
            assert isinstance(st.to_raw(), SplicedRaw) and not raw.preload
        files[label] = mne.io.read_raw_fif(st.export_fif(tmp_path / f"{label}_raw.fif"), preload=True,
                                           verbose="error")
    np.testing.assert_array_equal(files["lazy"].get_data(), files["loaded"].get_data())
    assert files["lazy"].annotations == files["loaded"].annotations
    c3 = files["lazy"].ch_names.index("C3")
    assert not np.allclose(files["lazy"].get_data()[c3, 25 * 256:30 * 256],
                           mne.io.read_raw_fif(path, verbose="error").get_data()[c3, 25 * 256:30 * 256])
