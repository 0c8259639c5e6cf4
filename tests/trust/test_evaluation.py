"""evaluate_dropout where the truth is known: a smooth spatial field the spline must recover, ZUNA and the
spline scored on the same cells, a dropout curve rising with the fraction hidden, and calibration helpers
that give a calibrated Gaussian toy its nominal coverage."""
from __future__ import annotations

import mne
import numpy as np
import pytest
import xarray as xr

import zuna_lab
from zuna_lab.trust import dropout_data, evaluation as ev
from zuna_lab.errors import ZunaTypeError, ZunaValueError
from zuna_lab.io.montage import standard_positions
from zuna_lab.synthetic import make_synthetic_raw

from oracle_support import require_module

CAP = ["Fp1", "Fp2", "AF3", "AF4", "F7", "F3", "Fz", "F4", "F8", "FC5", "FC1", "FC2", "FC6", "T7", "C3", "Cz",
       "C4", "T8", "CP5", "CP1", "CP2", "CP6", "P7", "P3", "Pz", "P4", "P8", "PO3", "PO4", "O1", "Oz", "O2"]


def smooth_field_raw(names=CAP, *, duration=10.0, sfreq=256.0, seed=0, n_sources=12, width=0.6):
    """EEG that is a smooth field over the scalp: broad Gaussian bumps on the head sphere, 2-20 Hz time courses."""
    table = standard_positions("standard_1005")
    pos = np.array([table[name.lower()][1] for name in names])
    unit = pos - np.array([0.0, 0.0144, 0.037])
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_sources, 3))
    centres[:, 2] = np.abs(centres[:, 2])
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    gain = np.exp(-((unit[:, None] - centres[None]) ** 2).sum(-1) / (2 * width ** 2))
    sources = mne.filter.filter_data(rng.standard_normal((n_sources, int(duration * sfreq))), sfreq, 2.0, 20.0,
                                     verbose="error")
    data = gain @ sources
    data *= 20e-6 / data.std()                                   # 20 µV, in volts
    raw = mne.io.RawArray(data, mne.create_info(list(names), sfreq, "eeg"), verbose="error")
    raw.set_montage(mne.channels.make_dig_montage(dict(zip(names, pos)), coord_frame="head"), verbose="error")
    return raw


@pytest.fixture(scope="module")
def field():
    return smooth_field_raw()


@pytest.fixture(scope="module", params=["ZUNA", "ZUNA1.1"])
def model(request, random_checkpoint):
    return zuna_lab.load_model(random_checkpoint(request.param), device="cpu")


@pytest.fixture(scope="module")
def small():
    return make_synthetic_raw(duration=5.0, ch_names=["Fp1", "F3", "Fz", "C3", "Cz", "C4", "P3", "O1"], seed=4,
                              verbose="error")


def test_spline_recovers_a_smooth_field(field):
    scores = zuna_lab.evaluate_dropout(field, estimators=("spline",))      # no model needed, none loaded
    nmse = scores["nmse"].sel(estimator="spline").squeeze("repeat")
    assert set(scores.dims) == {"estimator", "repeat", "channel", "level"} and nmse.notnull().all()
    assert float(nmse.max()) < 0.05 and float(nmse.median()) < 0.005      # measured: max 0.029, mean 0.0039
    assert float(scores["correlation"].min()) > 0.98
    # units: the truth is 20 µV RMS in volts, so an NMSE of ~0.004 is an RMSE of ~1 µV
    assert scores["rmse"].attrs["units"] == "V" and 1e-8 < float(scores["rmse"].median()) < 3e-6
    assert (scores["n_cells"] == 2 * 1280).all()                         # both 5 s epochs, every sample
    # the same number from MNE directly, on the recording filtered as ZUNA's preprocessing does
    filtered = field.copy().filter(0.5, None, method="fir", verbose="error")
    for name in ("Cz", "Oz", "T7"):
        alone = filtered.copy()
        alone.info["bads"] = [name]
        alone.interpolate_bads(reset_bads=True, origin="auto", verbose="error")
        truth, est = filtered.get_data(picks=name)[0, :2560], alone.get_data(picks=name)[0, :2560]
        assert float(nmse.sel(channel=name)) == pytest.approx(np.mean((est - truth) ** 2) / np.mean(truth ** 2),
                                                              rel=1e-6)


def test_dropout_curve_rises_with_the_fraction_hidden(field):
    fractions = [0.1, 0.3, 0.5, 0.7]
    scores = zuna_lab.evaluate_dropout(field, estimators=("spline",), fraction=fractions, n_repeats=20)
    assert scores["nmse"].dims == ("estimator", "fraction", "repeat", "channel")
    hidden = scores["hidden"].sum("channel")
    assert (hidden == xr.DataArray([3, 10, 16, 22], dims="fraction")).all()           # round(f · 32)
    per_repeat = scores["nmse"].sel(estimator="spline").mean("channel")             # 20 draws per fraction
    # rising in the mean and in the median over repeats (measured: 0.008, 0.022, 0.036, 0.125 / 0.004, 0.009,
    # 0.038, 0.098)
    assert (np.diff(per_repeat.mean("repeat").values) > 0).all() and (np.diff(per_repeat.median("repeat").values) > 0).all()
    table = ev.summary(scores)
    assert list(table.index.names) == ["estimator", "fraction"] and len(table) == 4
    np.testing.assert_allclose(table["nmse"].values, scores["nmse"].sel(estimator="spline").mean(["repeat", "channel"]))


def test_zuna_and_spline_are_scored_on_the_same_cells(model, small):
    scores = zuna_lab.evaluate_dropout(small, model, fraction=0.25, n_repeats=2, steps=1, n_samples=2, seed=3)
    assert list(scores["estimator"].values) == ["zuna", "spline"]
    for r in range(2):
        hidden = [str(c) for c in scores.channel.values[scores["hidden"].isel(fraction=0, repeat=r).values]]
        assert len(hidden) == 2
        # ZUNA as zl.reconstruct gives it with that seed; the spline from MNE on the same truth
        rec = zuna_lab.reconstruct(small, model=model, bad_channels=hidden, steps=1, n_samples=2,
                                   seed=int(scores["seed"].isel(fraction=0, repeat=r)))
        truth = rec["original"].sel(channel=hidden).values
        zuna = rec["reconstruction"].mean("sample").sel(channel=hidden).values
        spline = dropout_data.spline_estimate(rec["original"].values[0], list(rec.channel.values),
                                     zuna_lab.pipeline.results.channel_positions(rec), hidden, 256.0, "error")
        spline = spline[[list(rec.channel.values).index(h) for h in hidden]][None]
        for i, name in enumerate(hidden):
            cell = scores.isel(fraction=0, repeat=r).sel(channel=name)
            assert int(cell["n_cells"]) == 1280
            for estimator, estimate in (("zuna", zuna), ("spline", spline)):
                expected = np.mean((estimate[:, i] - truth[:, i]) ** 2) / np.mean(truth[:, i] ** 2)
                assert float(cell["nmse"].sel(estimator=estimator)) == pytest.approx(expected, rel=1e-9)
            std = rec["reconstruction_std"].sel(channel=name).values
            inside = np.abs(truth[:, i] - zuna[:, i]) <= std
            assert float(cell["coverage_1sd"].sel(estimator="zuna")) == pytest.approx(inside.mean())
    assert scores["coverage_1sd"].sel(estimator="spline").isnull().all()
    # random weights lose to the spline, as the tutorial says
    assert float(scores["nmse"].sel(estimator="zuna").mean()) > float(scores["nmse"].sel(estimator="spline").mean())
    assert set(ev.winner(scores).values) <= {"zuna", "spline", ""}


def test_segments_score_only_the_hidden_span(model, small):
    scores = zuna_lab.evaluate_dropout(small, model, bad_channels=["Cz", "O1"], bad_segments=[(1.0, 2.0)], steps=1)
    assert scores.attrs["segments"] == "1-2 s"
    assert list(scores["n_cells"].sel(channel=["Cz", "O1"]).values.ravel()) == [256, 256]   # tokens 8-15
    assert scores["nmse"].sel(channel=["Cz", "O1"]).notnull().all()
    middle = zuna_lab.evaluate_dropout(small, model, bad_channels=["Cz"], bad_segments=0.5, steps=1, estimators=("spline",))
    assert middle["n_cells"].sel(channel="Cz").item() == 128                                   # 2.25-2.75 s


def test_spline_input_hides_the_truth_from_zuna(model, small):
    """hidden_input='spline': ZUNA's result does not depend on the hidden channel's recorded samples."""
    changed = small.copy()
    changed._data[changed.ch_names.index("Cz")] *= -3.0
    outputs = []
    for raw in (small, changed):
        filled = dropout_data.spline_filled(zuna_lab.read_raw(raw, verbose="error"), ("Cz",), set(), None, "error")
        rec = zuna_lab.reconstruct(filled, model=model, bad_channels=["Cz"], steps=1, seed=0)
        outputs.append(rec["reconstruction"].sel(channel="Cz").values)
    np.testing.assert_array_equal(outputs[0], outputs[1])
    scores = zuna_lab.evaluate_dropout(changed, model, bad_channels=["Cz"], hidden_input="spline", steps=1, seed=0)
    assert scores.attrs["hidden_input"] == "spline" and scores["nmse"].notnull().sum() == 2


@pytest.mark.parametrize("n", [3, 10])
def test_calibrated_gaussian_toy_has_nominal_coverage(n):
    rng = np.random.default_rng(n)
    cells = 40000
    mu = rng.normal(size=cells)
    truth = xr.DataArray(mu + rng.normal(size=cells), dims="cell")
    draws = xr.DataArray(mu + rng.normal(size=(n, cells)), dims=("sample", "cell"))
    coverage = ev.spread_coverage(truth, draws)
    for k, level in zip((1.0, 2.0), coverage.attrs["expected"]):
        error = 4 * np.sqrt(level * (1 - level) / cells)                       # 4 standard errors
        assert abs(float(coverage.sel(k=k)) - level) < error
    observed = ev.reliability(truth, draws)
    assert float(np.abs(observed - observed["level"]).max()) < 4 * np.sqrt(0.25 / cells)
    assert ev.calibration_scale(truth, draws) == pytest.approx(1.0, abs=0.03)


def test_expected_coverage_tends_to_the_gaussian_levels():
    assert ev.expected_coverage(1, 10_000) == pytest.approx(0.6827, abs=1e-3)
    assert ev.expected_coverage(2, 10_000) == pytest.approx(0.9545, abs=1e-3)
    assert ev.expected_coverage(1, 3) < ev.expected_coverage(1, 10) < 0.6827


def test_calibration_scale_repairs_an_overconfident_spread():
    rng = np.random.default_rng(7)
    n, cells, c = 10, 40000, 2.0
    mu = rng.normal(size=cells)
    truth = xr.DataArray(mu + c * rng.normal(size=cells), dims="cell")         # errors twice the spread
    samples = mu + rng.normal(size=(n, cells))
    draws = xr.DataArray(samples, dims=("sample", "cell"))
    scale = ev.calibration_scale(truth, draws)
    assert scale == pytest.approx(np.sqrt((c ** 2 + 1 / n) / (1 + 1 / n)), rel=0.03)
    assert float(ev.reliability(truth, draws).sel(level=0.9)) < 0.7                # overconfident: 0.63
    assert float(np.abs(ev.reliability(truth, draws, scale=scale) - ev.LEVELS).max()) < 0.02
    rec = xr.Dataset({"reconstruction": (("sample", "epoch", "channel", "time"), samples.reshape(n, 1, 1, cells)),
                      "reconstruction_std": (("epoch", "channel", "time"), draws.std("sample", ddof=1).values.reshape(
                          1, 1, cells))})
    band = ev.calibrated_interval(rec, scale, level=0.9)
    inside = (band["lower"].values.ravel() <= truth.values) & (truth.values <= band["upper"].values.ravel())
    assert inside.mean() == pytest.approx(0.9, abs=0.01) and band["center"].attrs["units"] == "V"


def test_dropout_scores_formulas():
    truth = xr.DataArray([[1.0, -2.0, 3.0, np.nan]], dims=("channel", "time"))
    est = xr.DataArray([[0.0, -2.0, 2.0, 5.0]], dims=("channel", "time"))
    s = ev.dropout_scores(truth, est, dim="time")
    assert float(s.nmse[0]) == pytest.approx(2 / 14) and float(s.rmse[0]) == pytest.approx(np.sqrt(2 / 3))
    assert int(s.n_cells[0]) == 3 and float(s.correlation[0]) == pytest.approx(np.corrcoef([1, -2, 3], [0, -2, 2])[0, 1])


def test_bad_arguments(field):
    with pytest.raises(ZunaValueError, match="estimators must be a tuple"):
        zuna_lab.evaluate_dropout(field, estimators="spline")
    with pytest.raises(ZunaValueError, match="strictly between 0 and 1"):
        zuna_lab.evaluate_dropout(field, estimators=("spline",), fraction=[0.2, 1.0])
    with pytest.raises(ZunaValueError, match="keep at least 3 visible"):
        zuna_lab.evaluate_dropout(field, estimators=("spline",), fraction=0.95)
    with pytest.raises(ZunaValueError, match="not a channel of the recording"):
        zuna_lab.evaluate_dropout(field, estimators=("spline",), bad_channels=["Xx"])
    with pytest.raises(ZunaValueError, match="hidden_input"):
        zuna_lab.evaluate_dropout(field, estimators=("spline",), hidden_input="zeros")
    bad = field.copy()
    bad.info["bads"] = ["Cz"]
    with pytest.raises(ZunaValueError, match="in info\\['bads'\\]"):
        zuna_lab.evaluate_dropout(bad, estimators=("spline",), bad_channels=["Cz"])
    with pytest.raises(ZunaTypeError):
        ev.summary(xr.Dataset())


def test_trust_plots(field):
    hv = require_module("holoviews")
    from zuna_lab.viz import plots

    scores = zuna_lab.evaluate_dropout(field, estimators=("spline",), fraction=[0.1, 0.5], n_repeats=3)
    curve = plots.dropout_curve(scores, metric="rmse")
    hv.render(curve, backend="bokeh")
    curves = [layer for layer in curve if type(layer) is hv.Curve]
    assert [c.label for c in curves] == ["spline"] and curves[0].vdims[0].name == "mean"
    expected = scores["rmse"].mean("channel").mean("repeat").sel(estimator="spline").values * 1e6      # µV
    np.testing.assert_allclose(curves[0].dimension_values("mean"), expected)
    one = zuna_lab.evaluate_dropout(field, estimators=("spline",), bad_channels=["Cz", "O1"])
    hv.render(plots.winners_map(one), backend="bokeh")
    with pytest.raises(ZunaValueError, match="fraction"):
        plots.dropout_curve(one)
    with pytest.raises(ZunaValueError, match="n_samples >= 2"):
        plots.reliability_diagram(scores)
    toy = scores.copy()
    toy["reliability"] = toy["reliability"].copy(data=np.array([ev.LEVELS]) * 0.5)
    toy = toy.assign_coords(estimator=["zuna"])
    points = [layer for layer in plots.reliability_diagram(toy) if type(layer) is hv.Scatter][0]
    np.testing.assert_allclose(points.dimension_values("observed"), np.array(ev.LEVELS) * 0.5)
