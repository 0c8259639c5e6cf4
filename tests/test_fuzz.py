"""Bad input, generated (issue R): hypothesis draws each option of the public entry points from valid values
and from what careless or unlucky users pass (wrong types, NaN and infinities, negatives, huge values, empty
and repeated collections, one-shot generators, paths to folders, files and missing places). Every call must
either give a finite result of the documented kind or raise one of zuna_lab's own errors in one sentence — and
leave no file behind that it was not asked to write.

Bounded for CI: a tiny random model, a 10 s recording, 150 examples per entry point (about a minute on
2 cores, derandomised: the same examples every run); ``ZUNA_LAB_FUZZ_EXAMPLES`` raises the count for a longer hunt.
"""
from __future__ import annotations

import math
import os
import warnings

import mne
import numpy as np
import pytest
import xarray as xr

import zuna_lab as zl
from zuna_lab.errors import ZunaLabError
from zuna_lab.synthetic import make_synthetic_raw
from zuna_lab.testing import make_random_checkpoint

from oracle_support import require_module

require_module("hypothesis")
from hypothesis import HealthCheck, event, given, settings, strategies as st  # noqa: E402

EXAMPLES = int(os.environ.get("ZUNA_LAB_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large])
CHANNELS = ["Fp1", "Fz", "F4", "T7", "Cz", "C4", "P3", "O2"]

# ----------------------------------------------------------------------------------------- strategies

#: What a careless call passes where anything goes: every kind of wrong value.
JUNK = st.one_of(st.none(), st.booleans(), st.integers(-10**13, 10**13),
                 st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6),
                 st.just(b"Cz"), st.just(object()), st.just({"Cz": 1}), st.just(np.array([np.nan, 1.0])))


def one_shot(items):
    """A generator over ``items`` (read once: an entry point must not consume it while checking it)."""
    return st.builds(lambda values: (v for v in values), st.just(items))


names = st.sampled_from(CHANNELS + ["cz", "XYZ", "", "Cz "])
name_lists = st.one_of(st.lists(names, max_size=4), st.sets(names, max_size=3), one_shot(["Cz"]), st.just(tuple(CHANNELS)))
numbers = st.one_of(st.floats(-20, 20), st.sampled_from([0.0, 9.999, 10.0, math.inf, -math.inf, math.nan]))
spans = st.one_of(st.tuples(numbers, numbers), st.tuples(numbers, numbers, names), st.tuples(numbers))
segments = st.one_of(st.lists(spans, max_size=3), one_shot([(1.0, 2.0)]), st.just([(0.0, math.inf)]))
small_ints = st.one_of(st.integers(-3, 4), st.sampled_from([10**12, 2**63]))
option = {
    "bad_channels": st.one_of(st.none(), name_lists, JUNK),
    "bad_segments": st.one_of(st.none(), segments, JUNK),
    "add_channels": st.one_of(st.none(), st.integers(-2, 3), st.sampled_from([10**9]), name_lists, JUNK),
    "steps": st.one_of(st.integers(-2, 2), st.sampled_from([1.5, math.nan, "2", True])),
    "cfg": st.one_of(st.floats(-3, 3), st.sampled_from([math.nan, math.inf, "1"])),
    "seed": st.one_of(st.none(), st.integers(-5, 2**40), st.sampled_from([1.5, "0", -1])),
    "n_samples": st.one_of(small_ints, st.sampled_from([1.0, "2"])),
    "batch_size": st.one_of(st.none(), small_ints, st.sampled_from([0.5, "8"])),
    "segment_duration": st.one_of(st.none(), st.floats(-1, 12), st.sampled_from([math.nan, math.inf, "5"])),
    "progress": st.one_of(st.none(), st.booleans(), st.sampled_from(["yes", 2])),
    "verbose": st.one_of(st.none(), st.booleans(), st.sampled_from(["error", "info", "loud", 10, -5, 1.5])),
    "use_annotations": st.one_of(st.booleans(), st.sampled_from([None, "no", 0])),
}


def options(*keys):
    """A dict of a random subset of ``keys``, each drawn from :data:`option`."""
    return st.fixed_dictionaries({}, optional={key: option[key] for key in keys})


# ----------------------------------------------------------------------------------------- contract

def one_sentence(error):
    text = str(error)
    assert isinstance(error, ZunaLabError), f"{type(error).__name__}: {text}"
    assert text and "\n" not in text and "Traceback" not in text, text
    assert text.rstrip(")").endswith((".", "?")) or text.endswith(".'"), text


def outcome(call, folder):
    """Run ``call``: a result, or our one-sentence error; nothing left in ``folder`` either way."""
    before = set(os.listdir(folder))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            result = call()
        except ZunaLabError as error:
            one_sentence(error)
            event(f"refused: {type(error).__name__}")
            result = None
        except Exception as error:      # noqa: BLE001 — the point: anything else is a hole
            pytest.fail(f"{type(error).__name__} escaped: {error}")
        else:
            event("a result")
    assert set(os.listdir(folder)) == before, sorted(set(os.listdir(folder)) ^ before)
    return result


def finite(ds, names):
    for name in names:
        values = np.asarray(ds[name].values, dtype=float)
        assert np.isfinite(values[~np.isnan(values)]).all(), name


# ----------------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return zl.load_model(make_random_checkpoint(tmp_path_factory.mktemp("ckpt") / "m", variant="ZUNA1.1"),
                         device="cpu")


@pytest.fixture(scope="module")
def raw():
    return make_synthetic_raw(duration=10.0, seed=2, ch_names=CHANNELS, verbose=False)


@pytest.fixture(scope="module")
def rec(model, raw):
    return zl.reconstruct(raw, model=model, bad_channels=["Cz"], steps=1, progress=False)


# ----------------------------------------------------------------------------------------- entry points

@FUZZ
@given(kwargs=options("bad_channels", "bad_segments", "add_channels", "steps", "cfg", "seed", "n_samples",
                      "batch_size", "segment_duration", "progress", "verbose", "use_annotations"))
def test_reconstruct(model, raw, tmp_path, kwargs):
    kwargs.setdefault("steps", 1)
    result = outcome(lambda: zl.reconstruct(raw, model=model, **kwargs), tmp_path)
    if result is not None:
        assert set(result.data_vars) >= {"original", "reconstruction", "hybrid", "mask"}
        finite(result, ("reconstruction", "hybrid"))


@FUZZ
@given(kwargs=options("bad_channels", "bad_segments", "batch_size", "segment_duration", "progress", "verbose",
                      "use_annotations"))
def test_embed(model, raw, tmp_path, kwargs):
    kwargs.pop("bad_segments", None)                 # not an embed option: the mask and bad_channels are
    result = outcome(lambda: zl.embed(raw, model=model, **kwargs), tmp_path)
    if result is not None:
        assert result["embedding"].dims == ("epoch", "channel", "token", "latent")
        padding = result["padding"].values
        assert np.isfinite(result["embedding"].values[~padding]).all()


@FUZZ
@given(sfreq=st.one_of(st.none(), st.floats(-10, 2000), st.sampled_from([math.nan, math.inf, "256"])),
       ch_names=st.one_of(st.none(), st.lists(names, max_size=9), one_shot(CHANNELS), JUNK),
       shape=st.sampled_from([(8, 2560), (2560, 8), (8, 3), (0, 0), (8,), (2, 8, 10)]),
       fill=st.sampled_from([0.0, 1e-5, math.nan, math.inf, 1.0]))
def test_read_raw_of_arrays(tmp_path, sfreq, ch_names, shape, fill):
    data = np.random.default_rng(0).normal(0, 2e-5, shape)
    data.flat[:1] = fill if data.size else data.flat[:1]
    result = outcome(lambda: zl.read_raw(data, sfreq=sfreq, ch_names=ch_names), tmp_path)
    if result is not None:
        assert isinstance(result, mne.io.BaseRaw) and np.isfinite(result.get_data()).all()


@FUZZ
@given(target=st.sampled_from(["new.nc", "folder", "missing/x.nc", "taken.nc", "", "."]),
       overwrite=st.one_of(st.booleans(), st.sampled_from([None, "yes", 1])),
       writer=st.sampled_from(["write_netcdf", "write_fif", "write_zarr"]),
       kind=st.sampled_from(["hybrid", "reconstruction", "original", "nope", None]))
def test_writers(rec, tmp_path, target, overwrite, writer, kind):
    (tmp_path / "folder").mkdir(exist_ok=True)
    (tmp_path / "taken.nc").write_text("mine")
    path = tmp_path / target
    extra = {"kind": kind} if writer == "write_fif" else {}
    before = {p: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            written = getattr(zl, writer)(rec, path, overwrite=overwrite, **extra)
        except ZunaLabError as error:
            one_sentence(error)
            written = None
        except Exception as error:      # noqa: BLE001
            pytest.fail(f"{type(error).__name__} escaped: {error}")
    assert (tmp_path / "taken.nc").exists() and (tmp_path / "folder").is_dir()
    changed = {p for p in tmp_path.iterdir() if before.get(p) != p.stat().st_mtime_ns}
    assert changed <= ({written} if written is not None else set()), changed
    if written is not None and writer == "write_netcdf":
        with xr.open_dataset(written) as back:
            assert back.sizes == rec.sizes


@FUZZ
@given(kind=st.sampled_from(["hybrid", "reconstruction", "original", "nope", None, 3]),
       sample=st.one_of(st.integers(-2, 2), st.sampled_from([None, 1.5, "0", True])),
       raw_given=st.sampled_from(["none", "same", "other", "missing file", "junk"]),
       verbose=option["verbose"])
def test_to_raw(rec, raw, tmp_path, kind, sample, raw_given, verbose):
    other = raw.copy().crop(0, 5)
    given_raw = {"none": None, "same": raw, "other": other, "missing file": tmp_path / "nope.fif", "junk": 3}[raw_given]
    result = outcome(lambda: zl.to_raw(rec, kind, raw=given_raw, sample=sample, verbose=verbose), tmp_path)
    if result is not None:
        assert isinstance(result, mne.io.BaseRaw) and np.isfinite(result.get_data()).all()


@FUZZ
@given(fix=st.one_of(st.booleans(), st.sampled_from([None, "yes", 1])),
       model_given=st.sampled_from([None, "ZUNA", "ZUNA1.1", "zuna", "Zyphra/ZUNA1.1", 3, ""]),
       montage=st.sampled_from(["standard_1005", "standard_1020", "nope", None, 5]),
       rename=st.sampled_from([{}, {"Cz": "X1"}, {c: f"X{i}" for i, c in enumerate(CHANNELS)}, {"Cz": "cz"}]),
       verbose=option["verbose"])
def test_check_montage(raw, tmp_path, fix, model_given, montage, rename, verbose):
    data = raw.copy().rename_channels(rename)
    if len(rename) == len(CHANNELS):
        data.set_montage(None)
    result = outcome(lambda: zl.check_montage(data, model=model_given, fix=fix, montage=montage, verbose=verbose),
                     tmp_path)
    if result is not None and result.fixed is not None:
        assert result.fixed is not data and len(result.fixed.ch_names) >= 1


@pytest.fixture(scope="module")
def emb(model, raw):
    return zl.embed(raw, model=model, progress=False)


@FUZZ
@given(n_permutations=st.one_of(st.integers(-2, 50), st.sampled_from([10**9, 1.5, "20", None])),
       max_points=st.one_of(st.integers(-2, 2000), st.sampled_from([0, 10**12, 2.5, None])),
       kernel=st.sampled_from(["imq", "rbf", "gaussian", "nope", None, 3]),
       bandwidth=st.one_of(st.sampled_from(["median", "nope", None]), st.floats(-1, 10),
                           st.sampled_from([math.nan, math.inf])),
       include_masked=st.one_of(st.booleans(), st.sampled_from([None, "yes"])),
       seed=option["seed"], verbose=option["verbose"])
def test_mmd_health(emb, tmp_path, n_permutations, max_points, kernel, bandwidth, include_masked, seed, verbose):
    if isinstance(n_permutations, int) and n_permutations > 500:      # valid but long: not this test's business
        n_permutations = 500
    result = outcome(lambda: zl.mmd_health(emb, n_permutations=n_permutations, max_points=max_points, kernel=kernel,
                                           bandwidth=bandwidth, include_masked=include_masked, seed=seed,
                                           verbose=verbose), tmp_path)
    if result is not None:
        assert isinstance(result, xr.Dataset)
        finite(result, [name for name in result.data_vars if result[name].dtype.kind == "f"])


@settings(FUZZ, max_examples=max(10, EXAMPLES // 5))
@given(kwargs=options("bad_channels", "bad_segments", "n_samples", "seed", "verbose", "progress"),
       fraction=st.one_of(st.none(), st.floats(-0.5, 1.5), st.lists(st.floats(0, 1), max_size=3), JUNK),
       estimators=st.one_of(st.sampled_from([("zuna", "spline"), ("spline",), ("zuna",), (), ("spline", "spline"),
                                             ("nope",), "spline", None])),
       n_repeats=st.one_of(st.none(), st.integers(-1, 2), st.sampled_from([1.5, "2"])))
def test_evaluate_dropout(model, raw, tmp_path, kwargs, fraction, estimators, n_repeats):
    if isinstance(kwargs.get("n_samples"), int) and kwargs["n_samples"] > 3:
        kwargs["n_samples"] = 3                     # valid but long
    result = outcome(lambda: zl.evaluate_dropout(raw, model=model, steps=1, fraction=fraction, estimators=estimators,
                                                 n_repeats=n_repeats, **kwargs), tmp_path)
    if result is not None:
        assert "estimator" in result.dims and np.isfinite(result["nmse"].values[~np.isnan(result["nmse"].values)]).all()
