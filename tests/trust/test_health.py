import numpy as np
import pytest
import xarray as xr

from zuna_lab.trust import health
from zuna_lab.errors import ZunaTypeError, ZunaValueError
from builders import make_embedding, make_reconstruction


def test_standard_normal_is_healthy():
    emb = make_embedding(seed=1)
    h = health.mmd_health(emb, n_permutations=100)
    assert h.attrs["verdict"] == "healthy", h.attrs["summary"]
    assert h["mean"].dims == ("latent",)
    assert list(h.latent.values) == list(range(32))
    assert float(h.p_value) > 0.01
    assert np.all(np.abs(h["mean"]) < 0.15)
    assert np.all(np.abs(h["std"] - 1) < 0.1)
    assert np.all(h["kl"] < 0.02)
    assert h.attrs["kernel"] == "imq" and h.attrs["bandwidth"] > 0
    assert h.attrs["threshold_alpha"] == 0.01


def test_shifted_dims_detected():
    emb = make_embedding(seed=2, shift={3: 0.5, 7: 0.5, 11: 0.5})
    h = health.mmd_health(emb, n_permutations=100)
    assert h.attrs["verdict"] == "shifted"
    assert h.attrs["shifted_dims"] == [3, 7, 11]
    assert float(h.p_value) < 0.01
    assert abs(float(h.mean_shift.sel(latent=3)) - 0.5) < 0.1


def test_collapsed_dims_named():
    emb = make_embedding(seed=3, scale={5: 0.01, 20: 0.0})
    h = health.mmd_health(emb, n_permutations=50)
    assert h.attrs["verdict"] == "collapsed dims"
    assert h.attrs["collapsed_dims"] == [5, 20]
    assert "5, 20" in h.attrs["summary"]
    assert np.isinf(float(h.kl.sel(latent=20)))


def test_masked_tokens_excluded():
    emb = make_embedding(seed=4, masked_channels=["C3", "O2"])  # masked latents = 25
    h = health.mmd_health(emb, n_permutations=50)
    assert h.attrs["verdict"] == "healthy", h.attrs["summary"]
    n_vis = int((~emb.mask).sum()) 
    assert h.attrs["n_points_moments"] == n_vis
    bad = health.mmd_health(emb, n_permutations=50, include_masked=True)
    assert bad.attrs["verdict"] == "shifted"
    pts = health.latent_samples(emb)
    assert pts.dims == ("point", "latent")
    assert not set(pts.channel.values) & {"C3", "O2"}


def test_pvalue_behaviour_and_determinism():
    a = make_embedding(seed=5)
    r1 = health.mmd(a, n_permutations=99, seed=0)
    r2 = health.mmd(a, n_permutations=99, seed=0)
    assert float(r1.mmd2) == float(r2.mmd2) and float(r1.p_value) == float(r2.p_value)
    # p-value lies on the permutation grid and in (0, 1]
    p = float(r1.p_value)
    assert 1 / 100 <= p <= 1 and np.isclose(p * 100, round(p * 100))
    # under the null, p-values are spread out, not all tiny
    ps = [float(health.mmd(make_embedding(seed=s, n_epochs=1), n_permutations=49, seed=s).p_value)
          for s in range(10, 16)]
    assert np.median(ps) > 0.1
    # a clear difference gives the smallest attainable p
    b = make_embedding(seed=6, shift={0: 1.0, 1: 1.0})
    assert float(health.mmd(b, n_permutations=49).p_value) == pytest.approx(1 / 50)
    # no permutations: NaN p
    assert np.isnan(float(health.mmd(a, n_permutations=0).p_value))
    # bounded subsample
    assert health.mmd(a, max_points=200, n_permutations=10).attrs["n_points"] == 200


def test_gaussian_kernel_and_fixed_bandwidth():
    b = make_embedding(seed=7, shift={0: 1.0})
    r = health.mmd(b, kernel="gaussian", bandwidth=64.0, n_permutations=49)
    assert r.attrs["bandwidth"] == 64.0 and r.attrs["kernel"] == "gaussian"
    assert float(r.p_value) < 0.05
    with pytest.raises(ZunaValueError):
        health.mmd(b, kernel="laplace")


def test_drift_between_recordings():
    a = make_embedding(seed=8)
    b = make_embedding(seed=9, shift={2: 0.6})
    d = health.embedding_drift(b, a, n_permutations=50)
    assert float(d.mean_shift.sel(latent=2)) == pytest.approx(0.6, abs=0.1)
    assert abs(float(d.mean_shift.sel(latent=3))) < 0.1
    assert float(d.p_value) < 0.05
    h = health.mmd_health(b, reference=a, n_permutations=50)
    assert h.attrs["verdict"] == "shifted" and h.attrs["shifted_dims"] == [2]
    h0 = health.mmd_health(make_embedding(seed=10), reference=a, n_permutations=50)
    assert h0.attrs["verdict"] == "healthy", h0.attrs["summary"]
    cmp = health.compare_recordings({"a": a, "b": b, "c": make_embedding(seed=11)}, n_permutations=20)
    assert cmp.mmd2.dims == ("recording", "other")
    assert float(cmp.mmd2.sel(recording="a", other="b")) > float(cmp.mmd2.sel(recording="a", other="c"))
    assert cmp["mean"].dims == ("recording", "latent")


def test_inputs_not_mutated_and_dataarray_input():
    emb = make_embedding(seed=12)
    before = emb.copy(deep=True)
    health.mmd_health(emb, n_permutations=10)
    xr.testing.assert_identical(emb, before)
    st = health.latent_stats(emb["embedding"])  # DataArray: all points visible
    assert st["mean"].dims == ("latent",)
    assert st.attrs["n_points"] == emb.embedding.size // 32


def test_bad_input_errors():
    with pytest.raises(ZunaTypeError):
        health.mmd_health(np.zeros((10, 32)))
    with pytest.raises(ZunaValueError, match="latent"):
        health.mmd_health(xr.DataArray(np.zeros((10, 3)), dims=("a", "b")))
    emb = make_embedding(n_epochs=1)
    all_masked = emb.assign(mask=xr.ones_like(emb.mask))
    with pytest.raises(ZunaValueError, match="visible"):
        health.mmd_health(all_masked)
    with pytest.raises(ZunaValueError, match="thresholds"):
        health.mmd_health(emb, thresholds={"nope": 1})


def test_reconstruction_errors():
    rec = make_reconstruction(masked_channels=("C3", "T7"), noise=0.2)
    err = health.reconstruction_errors(rec)
    assert err.rmse.dims == ("epoch", "channel")
    assert err.rmse.attrs["units"] == "V"
    c3 = err.sel(channel="C3", epoch=0)
    assert 0 < float(c3.rmse) < 10e-6
    assert float(c3.correlation) > 0.9
    assert np.isnan(float(err.rmse.sel(channel="F3", epoch=0)))
    allc = health.reconstruction_errors(rec, masked_only=False)
    assert np.isfinite(float(allc.rmse.sel(channel="F3", epoch=0)))
    hyb = health.reconstruction_errors(rec, kind="hybrid", masked_only=False)
    assert float(hyb.rmse.sel(channel="F3", epoch=0)) == 0.0
    recs = make_reconstruction(n_samples=3)
    e3 = health.reconstruction_errors(recs)
    assert set(e3.rmse.dims) == {"sample", "epoch", "channel"}
