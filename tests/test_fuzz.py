"""Bad input, generated (issue R): hypothesis draws each option of the public entry points from valid values
and from what careless or unlucky users pass (wrong types, NaN and infinities, negatives, huge values, empty
and repeated collections, one-shot generators, paths to folders, files and missing places). Every call must
either give a finite result of the documented kind or raise one of zuna_lab's own errors in one sentence — and
leave no file behind that it was not asked to write.

Covered: reconstruct, embed, read_raw of arrays, the writers, to_raw, check_montage, mmd_health,
evaluate_dropout, screen, embed_many and reconstruct_many (on one shared dask worker process), and every
``zuna-lab`` command run in-process (embed, reconstruct, demo, doctor, screen, embed-many, reconstruct-many:
exit 0 with its summary and output, or exit 2 with one ``error:`` line on stderr — 1 for a study with failed
recordings, each listed —, no traceback, no other file and no temp file).

Bounded for CI: a tiny random model, a 10 s recording, derandomised (the same examples every run); 150 examples
per library entry point (30 for evaluate_dropout, screen, embed_many and reconstruct_many), 50 per command (30
for screen, 10 for demo, 30 for the two study commands together). The whole file: 41 s measured on 2 cores with little else
running (load average 1.9), 8 minutes on 2 cores shared with other test runs (load average about 10; the
library part alone took 4 of them). ``ZUNA_LAB_FUZZ_EXAMPLES`` raises the counts for a longer hunt.

What it found in the commands, screen and the studies (each fixed, with a regression test beside the related
tests): a refused ``zuna-lab demo`` left an empty output folder; ``--verbose`` put MNE's log lines on stdout
among the summary; ``embed_many``/``reconstruct_many`` with a number as the store (pathlib's TypeError) or
``""`` (the current folder); ``screen`` crashing with numpy's LinAlgError once every channel was found bad in a
ZUNA pass, and suggesting every channel with ``bad_fraction=0``; ``--scheduler`` of an unknown scheme refused
only after a 20 s timeout; ``zuna-lab doctor FILE --fix ""`` exiting 0 without writing anything; ``--device meta`` (so
``load_model(device="meta")``) failing in the first forward pass with torch's RuntimeError.
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


def outcome(call, folder, output=None):
    """Run ``call``: a result, or our one-sentence error; nothing left in ``folder`` either way (but ``output``,
    the name asked for, after a result)."""
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
    new = set(os.listdir(folder)) ^ before
    assert new <= ({output} if result is not None else set()), sorted(new)
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


# ----------------------------------------------------------------------------------------- the command line
# Each example runs `zuna-lab ...` in-process (zuna_lab.cli.main) in a folder of its own, with the temp folder
# pointed at an empty one: exit 0 with the command's summary and the output asked for, or exit 2 with one
# line "zuna-lab COMMAND: error: ..." on stderr (1 for the study commands: some recordings failed, each listed),
# no traceback, and no other file or temp file, written or left.

CLI_EXAMPLES = max(10, EXAMPLES // 3)             # 50 by default
CLI = settings(FUZZ, max_examples=CLI_EXAMPLES)
TAKEN = ("taken.nc", "taken.fif", "taken_raw.fif", "taken.zarr")


def flag(name, good, bad=()):
    """``[name, value]``, the value one of ``good`` (three times in four) or of ``bad``."""
    values = st.sampled_from(good) if not bad else st.one_of(st.sampled_from(good), st.sampled_from(good),
                                                             st.sampled_from(good), st.sampled_from(bad))
    return st.tuples(st.just(name), values).map(list)


def many(name, good, bad=(), max_size=3):
    """``[name, *values]``, 0 to ``max_size`` of them (none: argparse's usage error), mostly from ``good``."""
    return st.lists(flag("", good, bad).map(lambda pair: pair[1]), max_size=max_size).map(lambda items: [name, *items])


def argv_of(command, positional, pool, max_options=5):
    """``[command, *positional, *options]``: positional a strategy of token lists, options drawn from ``pool``."""
    return st.tuples(positional, st.lists(st.one_of(*pool), max_size=max_options)).map(
        lambda parts: [command, *parts[0], *[token for option in parts[1] for token in option]])


CLI_NAMES = (CHANNELS, ("cz", "XYZ", "", "Cz ", "FCz"))
FILES = ("{rec}", "{csv}", "{events}"), ("{junk}", "{empty}", "{inputs}", "{inputs}/missing.fif", "", "-")
MODEL_OPTIONS = [flag("--model", ("{ckpt}", "{ckpt_zuna}"),
                      ("{inputs}/missing", "{rec}", "Zyphra/ZUNA", "", "{inputs}")),
                 flag("--device", ("cpu", "auto"), ("cuda", "cuda:3", "tpu", "", "meta")),
                 flag("--dtype", ("fp32",), ("bf16", "mixed", "fp16", "fp64")),
                 flag("--batch-size", ("1", "2", "64"), ("0", "-1", "1.5", "x", "10000000000"))]
COMMON = MODEL_OPTIONS + [
    flag("--segment-duration", ("5", "2.5", "0.5", "30"), ("0", "-1", "nan", "inf", "abc", "1e9", "0.001")),
    many("--bad-channels", *CLI_NAMES), st.just(["--no-annotations"]), st.just(["--overwrite"]),
    st.just(["--quiet"]), st.just(["--verbose"])]
TIMES = ("-1", "0", "0.5", "4"), ("nan", "inf", "-inf", "1e9", "-1e9", "x")
SEGMENTS = (("2:3", "0:inf", "9.999:inf", "2:3:Cz", "0:1e300", "9:12"),
            ("2:3:XX", "3:2", "-1:2", "x", "1:2:", "0:0", "100:200", "nan:1"))
OUTPUTS = ("out.nc", "out.zarr", "out.safetensors"), ("out.fif", "out", "missing/out.nc", "taken.nc", "folder.nc", "",
                                                     ".")


def out(good, bad):
    return flag("-o", good, bad)


def positional(outputs, *defaults):
    """FILE -o OUT, then ``defaults`` (options a drawn one overrides: argparse keeps the last)."""
    return st.tuples(flag("", *FILES).map(lambda pair: pair[1:]), out(*outputs)).map(
        lambda p: p[0] + p[1] + list(defaults))


CLI_ARGV = {
    "embed": argv_of("embed", positional(OUTPUTS), COMMON + [
        flag("--events", ("annotations", "stim", "STI 014"), ("Cz", "nope")),
        many("--event-id", ("left", "right", "left=1", "right=2"), ("=", "a=b", "1")),
        flag("--tmin", *TIMES), flag("--tmax", *TIMES)]),
    "reconstruct": argv_of("reconstruct", positional((("out.fif", "out_raw.fif", *OUTPUTS[0]),
                                                      ("out.edf", "missing/out.fif", "taken.fif", "folder.nc", "")),
                                                     "--steps", "1"),
                           COMMON + [
        many("--bad-segments", *SEGMENTS), many("--add-channels", ("FCz", "CPz"), ("Cz", "XYZ", "fcz", "")),
        flag("--steps", ("1",), ("0", "-3", "1001", "x", "1.5")),
        flag("--cfg", ("1", "0", "2.5"), ("-1", "nan", "21")),
        flag("--seed", ("0", "5"), ("-1", "x", "99999999999999999999")),
        flag("--n-samples", ("1",), ("2", "0", "1000000000000", "x")),
        flag("--kind", ("hybrid", "reconstruction", "original"), ("nope",))]),
    "demo": argv_of("demo", st.just(["--duration", "6", "--steps", "1"]), MODEL_OPTIONS + [
        st.just(["--random-weights"]), st.just(["--overwrite"]), st.just(["--quiet"]),
        flag("--output-dir", ("demo_out", "missing/deeper", "."), ("taken.nc", "folder.nc", "")),
        flag("--duration", ("5", "10"), ("1", "0.01", "0", "-1", "nan", "inf", "x", "1e9")),
        flag("--steps", ("1",), ("2", "0", "-1", "x", "100000"))], max_options=6),
    "doctor": argv_of("doctor", flag("", *FILES).map(lambda pair: pair[1:]), [
        flag("--model", ("ZUNA", "ZUNA1.1", "{ckpt}", "Zyphra/ZUNA1.1"), ("zuna", "{inputs}/missing", "", "3")),
        flag("--fix", ("out_raw.fif", "out.fif"), ("out.edf", "missing/out_raw.fif", "taken_raw.fif", "folder.nc", "")),
        st.just(["--overwrite"]), st.just(["--verbose"])]),
    "screen": argv_of("screen", flag("", *FILES).map(lambda pair: pair[1:] + ["--steps", "1", "--groups", "2",
                                                                               "--compare", "none"]), MODEL_OPTIONS + [
        flag("--apply", ("out_raw.fif",), ("out.edf", "missing/out_raw.fif", "taken_raw.fif", "folder.nc", "")),
        many("--estimators", ("spline", "zuna"), ("nope",)), many("--compare", ("lof", "none", "pyprep"), ("x",)),
        flag("--groups", ("2", "3"), ("1", "0", "100", "x")),
        flag("--threshold", ("4", "1e-300", "2"), ("0", "-1", "nan", "inf")),
        flag("--bad-fraction", ("0.5", "0", "1"), ("1.5", "-0.1", "nan")),
        flag("--segment-threshold", ("6", "1"), ("0", "nan", "inf")), many("--bad-channels", *CLI_NAMES),
        many("--bad-segments", *SEGMENTS), flag("--segment-duration", ("5", "2.5"), ("0", "nan", "1e9", "0.001")),
        flag("--steps", ("1",), ("0", "1001")), flag("--seed", ("0", "3"), ("-1", "x")), st.just(["--overwrite"]),
        st.just(["--quiet"]), st.just(["--verbose"])], max_options=6),
}


@pytest.fixture(scope="module")
def cli_inputs(tmp_path_factory, raw):
    """The files a command line names: recordings (FIF, CSV, with events), junk, an empty file, checkpoints."""
    folder = tmp_path_factory.mktemp("cli_inputs")
    raw.save(folder / "rec_raw.fif", verbose="error")
    table = np.column_stack([raw.times, raw.get_data().T])
    np.savetxt(folder / "rec.csv", table, delimiter=",", header="time," + ",".join(raw.ch_names), comments="")
    events = raw.copy()
    stim = np.zeros((1, events.n_times))
    stim[0, [512, 1536]] = [1, 2]
    events.add_channels([mne.io.RawArray(stim, mne.create_info(["STI 014"], events.info["sfreq"], "stim"),
                                         verbose="error")], force_update_info=True)
    events.set_annotations(mne.Annotations([2.0, 6.0], [0.0, 0.0], ["left", "right"]))
    events.save(folder / "events_raw.fif", verbose="error")
    (folder / "junk.fif").write_text("not a recording")
    (folder / "empty.edf").write_bytes(b"")
    return {"rec": folder / "rec_raw.fif", "csv": folder / "rec.csv", "events": folder / "events_raw.fif",
            "junk": folder / "junk.fif", "empty": folder / "empty.edf", "inputs": folder,
            "ckpt": make_random_checkpoint(folder / "ZUNA1.1", variant="ZUNA1.1"),
            "ckpt_zuna": make_random_checkpoint(folder / "ZUNA", variant="ZUNA")}


@pytest.fixture
def cli_env(monkeypatch, cli_inputs):
    """The default model (``$ZUNA_LAB_MODEL``) a random checkpoint; the hub never asked (offline)."""
    monkeypatch.setenv("ZUNA_LAB_MODEL", str(cli_inputs["ckpt"]))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cli_inputs


def tree(folder):
    """{relative path: modification time} of everything under ``folder``."""
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


def last(argv, name, default=None):
    """The value of option ``name`` in ``argv`` as argparse takes it (the last one given), or ``default``."""
    values = [argv[i + 1] for i, token in enumerate(argv[:-1]) if token == name]
    return values[-1] if values else default


def cli_outputs(argv):
    """The paths a command line asks to write (relative to its folder), and its --overwrite."""
    wanted = [last(argv, name) for name in ("-o", "--fix", "--apply")]
    if argv[0] == "demo":
        wanted.append(last(argv, "--output-dir", "zuna_lab_demo"))
    return [os.path.normpath(w) for w in wanted if w], "--overwrite" in argv


def cli_outcome(argv, inputs, folder, capsys, codes=(0, 2)):
    """Run the command line ``argv`` in ``folder``; check the contract; return (code, stdout, stderr)."""
    import contextlib
    import tempfile

    from zuna_lab.cli import main

    places = {key: str(value) for key, value in inputs.items()}
    argv = [token.format(**places) if "{" in token else token for token in argv]
    (folder / "folder.nc").mkdir(exist_ok=True)
    for name in TAKEN:
        (folder / name).write_text("mine")
    scratch = folder.parent / (folder.name + "_tmp")
    scratch.mkdir()
    before, before_inputs = tree(folder), tree(inputs["inputs"])
    capsys.readouterr()
    with contextlib.chdir(folder), pytest.MonkeyPatch.context() as patch:
        patch.setattr(tempfile, "tempdir", str(scratch))
        try:
            code = main(argv)
        except BaseException as error:      # noqa: BLE001 — the point: anything raised out of main is a hole
            pytest.fail(f"zuna-lab {' '.join(argv)}: {type(error).__name__} escaped: {error}")
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err, captured.err[-2000:]
    assert code in codes, (argv, code, captured.err[-1000:])
    errors = [line for line in captured.err.splitlines() if ": error: " in line]
    if code == 2:
        assert len(errors) == 1 and captured.err.strip().splitlines()[-1] == errors[0], (argv, captured.err)
        assert errors[0].startswith("zuna-lab"), errors[0]
        event(f"{argv[0]}: exit 2")
    else:
        assert not errors, (argv, captured.err)
        event(f"{argv[0]}: exit {code}")
    assert list(scratch.iterdir()) == [], (argv, list(scratch.iterdir()))        # no temp file left
    assert tree(inputs["inputs"]) == before_inputs, argv                          # nothing written beside the input
    wanted, overwrite = cli_outputs(argv)
    after = tree(folder)
    changed = {p for p in after if before.get(p) != after[p]} | (set(before) - set(after))
    inside = {p for p in changed if any(p == w or p.startswith(w + os.sep) or w == "." for w in wanted)}
    if argv[0] == "demo":       # --output-dir is created with its parents
        inside |= {p for p in changed if any(w.startswith(p + os.sep) for w in wanted)}
    assert changed == (inside if code != 2 else set()), (argv, code, sorted(changed), captured.err[-500:])
    if code != 2 and not overwrite:
        assert all(before.get(p) is None or p == "." for p in inside), (argv, sorted(inside))
    return code, captured.out, captured.err, argv


@CLI
@given(argv=CLI_ARGV["embed"])
def test_cli_embed(cli_env, tmp_path_factory, capsys, argv):
    folder = tmp_path_factory.mktemp("embed")
    code, stdout, _, argv = cli_outcome(argv, cli_env, folder, capsys)
    if code == 0:
        target = folder / last(argv, "-o")
        assert target.exists() and ("--quiet" in argv or f"zuna-lab embed: {argv[1]} -> " in stdout), stdout
        if target.suffix == ".nc":
            with xr.open_dataset(target) as emb:
                assert emb["embedding"].dims == ("epoch", "channel", "token", "latent")


@CLI
@given(argv=CLI_ARGV["reconstruct"])
def test_cli_reconstruct(cli_env, tmp_path_factory, capsys, argv):
    folder = tmp_path_factory.mktemp("reconstruct")
    code, stdout, _, argv = cli_outcome(argv, cli_env, folder, capsys)
    if code == 0:
        target = folder / last(argv, "-o")
        assert target.exists() and ("--quiet" in argv or f"zuna-lab reconstruct: {argv[1]} -> " in stdout), stdout
        if target.suffix == ".fif":
            assert np.isfinite(mne.io.read_raw_fif(target, preload=True, verbose="error").get_data()).all()


@settings(CLI, max_examples=max(5, CLI_EXAMPLES // 5))
@given(argv=CLI_ARGV["demo"])
def test_cli_demo(cli_env, tmp_path_factory, capsys, monkeypatch, argv):
    monkeypatch.setenv("ZUNA_LAB_MODEL", str(cli_env["ckpt_zuna"]))
    folder = tmp_path_factory.mktemp("demo")
    code, stdout, _, argv = cli_outcome(argv, cli_env, folder, capsys)
    if code == 0:
        outdir = folder / cli_outputs(argv)[0][-1]
        assert {"sample_repaired_raw.fif", "sample_reconstruction.nc", "sample_embedding.nc"} <= set(os.listdir(outdir))
        assert "zuna-lab demo: " in stdout


@CLI
@given(argv=CLI_ARGV["doctor"])
def test_cli_doctor(cli_env, tmp_path_factory, capsys, argv):
    folder = tmp_path_factory.mktemp("doctor")
    code, stdout, _, argv = cli_outcome(argv, cli_env, folder, capsys)
    if code == 0:
        lines = stdout.strip().splitlines()
        assert lines and all(line.startswith("zuna-lab doctor: ") for line in lines), stdout
        if "--fix" in argv:
            assert (folder / last(argv, "--fix")).is_file()


@settings(CLI, max_examples=max(10, EXAMPLES // 5))
@given(argv=CLI_ARGV["screen"])
def test_cli_screen(cli_env, tmp_path_factory, capsys, argv):
    folder = tmp_path_factory.mktemp("screen")
    code, stdout, _, argv = cli_outcome(argv, cli_env, folder, capsys)
    if code == 0:
        lines = stdout.strip().splitlines()
        assert lines and lines[-1].startswith("zuna-lab screen: "), stdout
        if "--apply" in argv:
            assert (folder / last(argv, "--apply")).is_file()


# ----------------------------------------------------------------------------------------- screening and studies

def mostly(good, bad):
    """A value of the strategy ``good`` three times in four, else of ``bad``."""
    return st.one_of(good, good, good, bad)


@settings(FUZZ, max_examples=max(10, EXAMPLES // 5))
@given(kwargs=st.one_of(st.just({}), options("bad_channels", "bad_segments", "seed", "segment_duration", "batch_size",
                                              "progress", "verbose")),
       estimators=mostly(st.sampled_from([("spline",), ("zuna", "spline"), ("zuna",), ["spline"]]),
                         st.sampled_from([(), ("spline", "spline"), ("nope",), "spline", None])),
       compare=mostly(st.sampled_from([(), ("lof",), ["lof"]]), st.sampled_from([("pyprep",), ("lof", "lof"), "lof",
                                                                               None, ("x",)])),
       groups=mostly(st.sampled_from([None, 2, 3]), st.one_of(st.integers(-1, 9), st.sampled_from([10**9, 1.5, "2",
                                                                                                   True]))),
       numbers=st.one_of(st.just({}), st.fixed_dictionaries({}, optional={
           "threshold": st.one_of(st.floats(-1, 10), st.sampled_from([math.nan, math.inf, 1e-300, "4"])),
           "bad_fraction": st.one_of(st.floats(-0.5, 1.5), st.sampled_from([math.nan, None])),
           "segment_threshold": st.one_of(st.floats(-1, 10), st.sampled_from([math.nan, math.inf])),
           "segment_window": st.sampled_from([0.5, 0.125, 0.3, 0, -1, math.nan, math.inf, 1e6, 20.0, "0.5"]),
           "bridge_threshold": st.one_of(st.floats(-0.5, 1.5), st.sampled_from([math.nan, None])),
           "max_passes": st.one_of(st.integers(-1, 4), st.sampled_from([10**9, 1.5, None]))})),
       steps=mostly(st.just(1), st.sampled_from([0, -1, 10**6, 1.5, None, "1"])),
       data_given=st.sampled_from(["raw", "raw", "raw", "raw", "file", "missing", "array", "junk"]))
def test_screen(model, raw, cli_inputs, tmp_path, kwargs, estimators, compare, groups, numbers, steps, data_given):
    data = {"raw": raw, "file": cli_inputs["rec"], "missing": tmp_path / "nope.fif", "array": raw.get_data(),
            "junk": 3}[data_given]
    if data_given == "array":
        kwargs.update(sfreq=raw.info["sfreq"], ch_names=raw.ch_names)
    report = outcome(lambda: zl.screen(data, model=model, estimators=estimators, compare=compare, groups=groups,
                                       steps=steps, **numbers, **kwargs), tmp_path)
    if report is not None:
        assert set(report.bad_channels) <= set(raw.ch_names) and list(report.table["channel"]) == raw.ch_names
        assert all(raw.ch_names.count(c) for _, _, c in report.segments)
        scores = report.scores.to_array().values if hasattr(report.scores, "to_array") else report.scores.values
        assert not np.isinf(np.asarray(scores, dtype=float)).any()


@pytest.fixture(scope="module")
def client():
    """One dask worker process (2 threads), loopback only, shared by the study examples."""
    distributed = require_module("distributed")
    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=True, host="127.0.0.1",
                                       dashboard_address="127.0.0.1:0", silence_logs=40)
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


@pytest.fixture(scope="module")
def study_inputs(tmp_path_factory, raw, cli_inputs):
    """Recordings to study: a folder of two (FIF, CSV), a folder with a junk one, an empty folder."""
    folder = tmp_path_factory.mktemp("study_inputs")
    (folder / "two").mkdir()
    raw.save(folder / "two" / "a_raw.fif", verbose="error")
    (folder / "two" / "b.csv").write_bytes(cli_inputs["csv"].read_bytes())
    (folder / "junk").mkdir()
    (folder / "junk" / "x_raw.fif").write_text("not a recording")
    (folder / "empty").mkdir()
    return folder


def study_sources(inputs, choice):
    a, b = inputs / "two" / "a_raw.fif", inputs / "two" / "b.csv"
    return {"folder": inputs / "two", "file": str(a), "list": [a, b], "pairs": [("s1", a), ("s2", b)],
            "dict": {"s1": a}, "generator": (p for p in [a, b]), "glob": str(inputs / "two" / "*.fif"),
            "missing file": inputs / "nope.fif", "no match": str(inputs / "*.edf"), "empty folder": inputs / "empty",
            "junk folder": inputs / "junk", "same id twice": [("s", a), ("s", b)], "bad id": [("a/b", a)],
            "none": None, "number": 3, "empty string": "", "empty list": []}[choice]


STUDY = settings(FUZZ, max_examples=max(10, EXAMPLES // 5))
study_choices = dict(
    source=st.sampled_from(["folder", "folder", "folder", "file", "list", "list", "pairs", "dict", "generator", "glob",
                            "missing file",
                            "no match", "empty folder", "junk folder", "same id twice", "bad id", "none", "number",
                            "empty string", "empty list"]),
    target=st.sampled_from(["new", "new", "new", "new", "new", "taken.nc", "missing/x", "stuff", None, 3, ""]),
    model_given=st.sampled_from(["checkpoint", "checkpoint", "loaded", None, "missing", 3]),
    client_given=st.sampled_from(["client", "client", "client", "client", "junk"]),
    overwrite=st.sampled_from([False, False, False, True, None, "yes"]),
    filters=st.one_of(st.just({}), st.just({}), st.just({}), st.fixed_dictionaries({}, optional={
        "subjects": st.sampled_from(["01", ["01"], [], 3]),
        "tasks": st.sampled_from(["rest", None, one_shot(["rest"])])})),
)


def study_call(function, inputs, folder, model, client, cli_env, source, target, model_given, client_given, **kwargs):
    """``function`` (embed_many / reconstruct_many) called as drawn, in ``folder``: (index or None, target path)."""
    import contextlib

    (folder / "taken.nc").write_text("mine")
    (folder / "stuff").mkdir(exist_ok=True)
    (folder / "stuff" / "keep.txt").write_text("mine")
    name = {"new": "study.zarr" if function is zl.embed_many else "repaired"}.get(target, target)
    model = {"checkpoint": str(cli_env["ckpt"]), "loaded": model, "missing": str(folder / "nope")}.get(
        model_given, model_given)
    client = client if client_given == "client" else "tcp://nowhere"
    before, before_inputs = tree(folder), tree(inputs)
    with contextlib.chdir(folder):
        index = outcome(lambda: function(study_sources(inputs, source), name, model=model, client=client,
                                         progress=False, **kwargs), folder, output=os.path.normpath(str(name)))
    assert tree(inputs) == before_inputs
    after = tree(folder)
    changed = {p for p in after if before.get(p) != after[p]}
    if index is None:
        assert not changed, sorted(changed)
        return None, None
    path = folder / os.path.normpath(name)
    assert all((folder / p).resolve().is_relative_to(path.resolve()) for p in changed), sorted(changed)
    assert set(index.status) <= {"done", "failed"} and len(index) >= 1
    assert not [p for p in path.rglob("*") if ".tmp" in p.name], "a temporary file left in the store"
    return index, path


@STUDY
@given(**study_choices, kwargs=options("bad_channels", "segment_duration", "batch_size", "use_annotations", "verbose"),
       unknown=st.sampled_from([{}, {}, {}, {"mask": None}, {"steps": 1}]))
def test_embed_many(model, client, study_inputs, cli_env, tmp_path_factory, source, target, model_given,
                    client_given, overwrite, filters, kwargs, unknown):
    folder = tmp_path_factory.mktemp("embed_many")
    index, path = study_call(zl.embed_many, study_inputs, folder, model, client, cli_env, source, target, model_given,
                             client_given, overwrite=overwrite, **filters, **kwargs, **unknown)
    if index is not None:
        study = zl.open_embeddings(path)
        for rec_id in index.recording[index.status == "done"]:
            emb = study[rec_id]
            assert emb["embedding"].dims == ("epoch", "channel", "token", "latent")
            assert np.isfinite(emb["embedding"].values[~emb["padding"].values]).all()


@STUDY
@given(**study_choices, kwargs=options("bad_channels", "bad_segments", "add_channels", "cfg", "seed", "n_samples",
                                       "segment_duration", "use_annotations", "verbose"),
       kind=st.sampled_from(["hybrid", "hybrid", "reconstruction", "original", "nope", None]))
def test_reconstruct_many(model, client, study_inputs, cli_env, tmp_path_factory, source, target, model_given,
                          client_given, overwrite, filters, kwargs, kind):
    if isinstance(kwargs.get("n_samples"), int) and kwargs["n_samples"] > 2:
        kwargs["n_samples"] = 2                     # valid but long
    folder = tmp_path_factory.mktemp("reconstruct_many")
    index, path = study_call(zl.reconstruct_many, study_inputs, folder, model, client, cli_env, source, target,
                             model_given, client_given, overwrite=overwrite, kind=kind, steps=1, **filters, **kwargs)
    if index is not None:
        for output in index.output[index.status == "done"]:
            back = mne.io.read_raw_fif(path / output, preload=True, verbose="error")
            assert np.isfinite(back.get_data()).all()


STUDY_OPTIONS = [
    flag("--model", ("{ckpt}",), ("{inputs}/missing", "{rec}", "")), flag("--batch-size", ("1", "8"), ("0", "x")),
    flag("--segment-duration", ("5", "2.5"), ("0", "nan", "1e9")), many("--bad-channels", *CLI_NAMES),
    many("--subjects", ("01",), ("",)), st.just(["--no-annotations"]), st.just(["--overwrite"]), st.just(["--quiet"]),
    st.just(["--verbose"]), flag("--scheduler", ("{scheduler}",), ("nonsense://x",))]
STUDY_SOURCES = ("{two}", "{two}/a_raw.fif", "{two}/*.fif", "{junkdir}"), ("{empty_dir}", "{inputs}/missing.fif",
                                                                          "{inputs}/*.nothing", "")


def study_argv(command, outputs, extra=()):
    positional = st.tuples(many("", *STUDY_SOURCES, max_size=2).map(lambda items: items[1:]), flag("-o", *outputs))
    return argv_of(command, positional.map(lambda p: p[0] + p[1] + ["--scheduler", "{scheduler}"]),
                   STUDY_OPTIONS + list(extra))


CLI_ARGV["embed-many"] = study_argv("embed-many", (("study.zarr", "s"), ("taken.nc", "missing/s.zarr", "")))
CLI_ARGV["reconstruct-many"] = study_argv("reconstruct-many", (("repaired", "."), ("taken.nc", "missing/r", "")), [
    many("--bad-segments", *SEGMENTS), flag("--steps", ("1",), ("0", "1001")), flag("--cfg", ("1",), ("-1", "nan")),
    flag("--seed", ("0", "3"), ("-1",)), flag("--n-samples", ("1",), ("0",)),
    many("--add-channels", ("FCz",), ("Cz", "XYZ")), flag("--kind", ("hybrid", "original"), ("nope",))])


@pytest.fixture
def study_env(cli_env, study_inputs, client):
    return dict(cli_env, two=study_inputs / "two", junkdir=study_inputs / "junk", empty_dir=study_inputs / "empty",
                scheduler=client.scheduler.address)


@settings(CLI, max_examples=max(10, EXAMPLES // 5))
@given(command=st.sampled_from(["embed-many", "reconstruct-many"]), data=st.data())
def test_cli_studies(study_env, study_inputs, tmp_path_factory, capsys, command, data):
    argv = data.draw(CLI_ARGV[command])
    if "--steps" not in argv:
        argv += ["--steps", "1"] if command == "reconstruct-many" else []
    folder = tmp_path_factory.mktemp("studies")
    before = tree(study_inputs)
    code, stdout, stderr, argv = cli_outcome(argv, study_env, folder, capsys, codes=(0, 1, 2))
    assert tree(study_inputs) == before
    if code in (0, 1):
        target = folder / last(argv, "-o")
        assert target.is_dir() and ("--quiet" in argv or f"zuna-lab {command}: " in stdout), stdout
        assert (code == 1) == (" failed: " in stderr), stderr
