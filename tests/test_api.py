"""One API (issue K), checked over the public functions themselves, table by table: shared
parameters named and defaulted alike (read from the signatures), every recording form accepted
by every function that takes a recording, ``verbose`` with MNE's meaning, and no result dim or
coord that xarray's indexing methods would take for one of their own keywords."""
from __future__ import annotations

import inspect
import logging
import warnings

import mne
import numpy as np
import pytest
import xarray as xr

import zuna_lab as zl
from zuna_lab.synthetic import make_synthetic_raw
from zuna_lab.viz import plots, projections

#: Every public function: zuna_lab's namespace, its health/evaluation helpers and the plots.
PUBLIC = {name: getattr(zl, name) for name in zl.__all__ if inspect.isfunction(getattr(zl, name))}
PUBLIC.update({f"health.{n}": getattr(zl.health, n) for n in zl.health.__all__ if inspect.isfunction(getattr(zl.health, n))})
PUBLIC.update({f"evaluation.{n}": getattr(zl.evaluation, n) for n in zl.evaluation.__all__
               if inspect.isfunction(getattr(zl.evaluation, n))})
PUBLIC.update({f"plots.{n}": getattr(plots, n) for n in plots.__all__ if inspect.isfunction(getattr(plots, n))})
PUBLIC.update({f"projections.{n}": getattr(projections, n) for n in projections.__all__
               if inspect.isfunction(getattr(projections, n))})

#: The shared vocabulary: each name means one thing and has one default wherever it appears.
SHARED = {"model": None, "bad_channels": None, "bad_segments": None, "add_channels": None, "seed": 0, "n_samples": 1,
          "steps": 50, "cfg": 1.0, "batch_size": None, "progress": None, "verbose": None, "sfreq": None,
          "ch_names": None, "segment_duration": None, "overwrite": False, "use_annotations": True}
#: Names the vocabulary replaced (or that would say the same thing another way): in no public signature.
NOT_OURS = {"segments", "variant", "methods", "method_names", "random_state", "n_draws", "show_progress",
            "quiet", "verbosity", "n_steps", "guidance", "added_channels", "bads"}


#: xarray's indexing methods (its API reference, "Indexing"), those a user types a dim name into.
INDEXING = ("sel", "isel", "reindex", "interp", "drop_sel", "drop_isel", "head", "tail", "thin", "query")


def _xarray_keywords():
    """The named parameters of xarray's indexing methods that also take dims as keywords (``sel(channel=...)``): a
    dim named like one of them is swallowed by the method's own keyword (``sel(method="spline")``)."""
    names = set()
    for cls in (xr.Dataset, xr.DataArray):
        for method in INDEXING:
            parameters = inspect.signature(getattr(cls, method)).parameters.values()
            if any(p.kind is p.VAR_KEYWORD and p.name.endswith("_kwargs") for p in parameters):
                names |= {p.name for p in parameters if p.kind is not p.VAR_KEYWORD and p.name != "self"}
    return names


XARRAY_KEYWORDS = _xarray_keywords()


def test_xarray_keywords_are_read_from_xarray():
    assert {"method", "tolerance", "drop", "indexers", "missing_dims", "fill_value"} <= XARRAY_KEYWORDS


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_shared_parameters_are_named_and_defaulted_alike(name):
    parameters = inspect.signature(PUBLIC[name]).parameters
    for param, default in SHARED.items():
        if param in parameters and parameters[param].default is not inspect.Parameter.empty:
            assert parameters[param].default == default, f"{name}({param}={parameters[param].default!r})"
    assert not NOT_OURS & set(parameters), f"{name} takes {sorted(NOT_OURS & set(parameters))}"
    if "verbose" in parameters and name != "set_log_level":     # MNE's layout: verbose keyword-only, last
        assert parameters["verbose"].kind is inspect.Parameter.KEYWORD_ONLY
        last = [p for p in parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD][-1]
        assert last.name == "verbose", name
        assert hasattr(PUBLIC[name], "__wrapped__"), f"{name}'s verbose has no meaning (not @zuna_lab.logs.verbose)"
    if "data" in parameters:                                     # the recording first, the only positional-or-keyword
        assert list(parameters)[0] == "data"


# ------------------------------------------------------------------------------- calls on every form
@pytest.fixture(scope="module")
def model(random_checkpoint):
    return zl.load_model(random_checkpoint("ZUNA", seed=3), device="cpu")


@pytest.fixture(scope="module")
def recording():
    """12 channels, 10 s, as a Raw that holds no more than an array can say (no line frequency, no extra digitised
    points: screen's spline fits its sphere to the digitisation)."""
    raw = make_synthetic_raw(duration=10.0, seed=4, verbose=False)
    return zl.read_raw(raw.get_data()[:12], sfreq=raw.info["sfreq"], ch_names=raw.ch_names[:12], verbose="error")


@pytest.fixture(scope="module")
def forms(recording, tmp_path_factory):
    """The same recording as each form ``embed`` takes: (data, keyword arguments)."""
    folder = tmp_path_factory.mktemp("forms")
    fif = folder / "rec_raw.fif"
    recording.save(fif, fmt="double", verbose="error")
    csv = folder / "rec.csv"
    columns = np.vstack([recording.times, recording.get_data()]).T
    np.savetxt(csv, columns, delimiter=",", header=",".join(["time", *recording.ch_names]), comments="", fmt="%.17g")
    array = recording.get_data()
    return {"path": (str(fif), {}), "raw": (recording, {}), "numpy": (array, dict(sfreq=recording.info["sfreq"],
                                                                                   ch_names=recording.ch_names)),
            "csv": (csv, {})}


def _calls(model):
    """Every public function that takes a recording, as ``name -> call(data, **form)``, cheap options."""
    return {
        "read_raw": lambda data, **kw: zl.read_raw(data, **kw),
        "embed": lambda data, **kw: zl.embed(data, model=model, **kw),
        "reconstruct": lambda data, **kw: zl.reconstruct(data, model=model, bad_channels=["Cz"], steps=1, **kw),
        "evaluate_dropout": lambda data, **kw: zl.evaluate_dropout(data, model=model, bad_channels=["Cz"], steps=1, **kw),
        "check_montage": lambda data, **kw: zl.check_montage(data, **kw),
        "screen": lambda data, **kw: zl.screen(data, model=model, estimators=("spline",), compare=(), groups=3, **kw),
    }


def _values(name, result):
    """What a call says about the recording, to compare across forms."""
    if name == "read_raw":
        return result.get_data()
    if name == "embed":
        return result["embedding"].values
    if name == "reconstruct":
        return result["hybrid"].values
    if name == "evaluate_dropout":
        return result["nmse"].values
    if name == "check_montage":
        return result.table["status"].to_numpy()
    return result.scores["badness"].values


def test_the_table_names_every_function_that_takes_a_recording(model):
    takes = {n for n in zl.__all__ if inspect.isfunction(getattr(zl, n))
             and list(inspect.signature(getattr(zl, n)).parameters)[:1] == ["data"]} | {"read_raw"}
    assert takes - {"dashboard"} == set(_calls(model))       # the dashboard is an app: tests/viz test its inputs


@pytest.mark.parametrize("name", ["read_raw", "embed", "reconstruct", "evaluate_dropout", "check_montage", "screen"])
def test_every_function_taking_a_recording_accepts_every_form(name, model, forms):
    call = _calls(model)[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = {form: _values(name, call(data, **kwargs)) for form, (data, kwargs) in forms.items()}
    reference = results["raw"]
    assert np.size(reference) > 0
    for form, values in results.items():
        if values.dtype.kind == "f":
            np.testing.assert_allclose(values, reference, rtol=1e-6, atol=1e-12, equal_nan=True, err_msg=form)
        else:
            assert (values == reference).all(), form


# ------------------------------------------------------------------------------- verbose, MNE's meaning
class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture()
def records():
    """The records zuna_lab's and MNE's loggers pass on (at their level of the moment)."""
    handler = _Records()
    loggers = [logging.getLogger("zuna_lab"), mne.utils.logger]
    for one in loggers:
        one.addHandler(handler)
    yield handler.records
    for one in loggers:
        one.removeHandler(handler)


def _verbose_calls(model, recording, tmp_path):
    """Every public function of zuna_lab's namespace that has ``verbose``, called cheaply, by name."""
    rec = zl.reconstruct(recording, model=model, bad_channels=["Cz"], steps=1, verbose="error")
    emb = zl.embed(recording, model=model, verbose="error")
    calls = {name: (lambda call: lambda verbose: call(recording, verbose=verbose))(call)
             for name, call in _calls(model).items()}
    calls.update({
        "load_model": lambda verbose: zl.load_model(model.source, device="cpu", verbose=verbose),
        "to_raw": lambda verbose: zl.to_raw(rec, verbose=verbose),
        "write_fif": lambda verbose: zl.write_fif(rec, tmp_path / f"w{len(list(tmp_path.iterdir()))}_raw.fif",
                                                  verbose=verbose),
        "mmd_health": lambda verbose: zl.mmd_health(emb, n_permutations=10, max_points=200, verbose=verbose),
    })
    return calls


def test_every_verbose_function_is_in_the_table(model, recording, tmp_path):
    having = {n for n in zl.__all__ if inspect.isfunction(getattr(zl, n)) and n != "set_log_level"
              and "verbose" in inspect.signature(getattr(zl, n)).parameters}
    assert having - {"embed_many", "reconstruct_many"} == set(_verbose_calls(model, recording, tmp_path))
    # embed_many / reconstruct_many: tests/study (their workers are processes of their own)


@pytest.mark.parametrize("name", ["read_raw", "load_model", "embed", "reconstruct", "to_raw", "write_fif",
                                  "mmd_health", "evaluate_dropout", "check_montage", "screen"])
def test_verbose_error_silences_and_info_shows_the_calls_log(name, model, recording, tmp_path, records):
    call = _verbose_calls(model, recording, tmp_path)[name]
    ours, mnes = logging.getLogger("zuna_lab"), mne.utils.logger
    before = ours.level, mnes.level
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        del records[:]
        call("error")
        silenced = [r for r in records if r.levelno < logging.ERROR]
        del records[:]
        call(None)                          # the current level: zuna_lab's default is WARNING
        default = [r for r in records if r.name == "zuna_lab" and r.levelno < logging.WARNING]
        del records[:]
        call("info")
        shown = [r.getMessage() for r in records if r.name == "zuna_lab"]
    assert silenced == [] and default == []
    assert any(line.startswith(f"{name}: ") for line in shown), shown
    assert (ours.level, mnes.level) == before                   # the level is the call's only


def test_bad_verbose_is_one_sentence_before_any_work(recording):
    with pytest.raises(zl.ZunaValueError, match="verbose must be None, True/False"):
        zl.embed(recording, model="/nonexistent/checkpoint", verbose="loud")


def test_set_log_level_changes_the_current_level(recording, records):
    try:
        zl.set_log_level("info")
        zl.read_raw(recording)
        assert any(r.getMessage().startswith("read_raw: 12 EEG channels") for r in records)
    finally:
        zl.set_log_level(None)
    assert logging.getLogger("zuna_lab").level == logging.WARNING


# ------------------------------------------------------------------------------- result names
def test_no_result_has_a_dim_or_coord_named_like_an_xarray_keyword(model, recording):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        emb = zl.embed(recording, model=model)
        results = {
            "embed": emb,
            "reconstruct": zl.reconstruct(recording, model=model, bad_channels=["Cz"], steps=1, n_samples=2),
            "mmd_health": zl.mmd_health(emb, n_permutations=10, max_points=200),
            "evaluate_dropout": zl.evaluate_dropout(recording, model=model, fraction=0.25, n_repeats=2, steps=1,
                                                    n_samples=2),
            "screen": zl.screen(recording, model=model, compare=(), groups=3, steps=1).scores,
            "compare_recordings": zl.health.compare_recordings({"a": emb, "b": emb}, n_permutations=10),
            "embedding_coords": projections.embedding_coords(emb, max_points=100),
        }
    for name, ds in results.items():
        names = set(ds.dims) | set(ds.coords)
        assert names and not names & XARRAY_KEYWORDS, f"{name}: {sorted(names & XARRAY_KEYWORDS)}"


def test_the_keyword_sel_picks_one_estimator(model, recording):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = zl.evaluate_dropout(recording, model=model, bad_channels=["Cz", "F3", "T7"], steps=1)
    assert list(scores["estimator"].values) == ["zuna", "spline"]
    nmse = scores["nmse"]
    spline, zuna = nmse.sel(estimator="spline"), nmse.sel(estimator="zuna")
    assert "estimator" not in spline.dims and spline.sizes == zuna.sizes
    index = list(scores["estimator"].values).index("spline")
    assert float(spline.mean()) == pytest.approx(float(np.nanmean(nmse.values[index])))
    assert float(spline.mean()) != pytest.approx(float(zuna.mean()))          # the two really differ
    assert float(scores["calibration_scale"].sel(estimator="spline").isnull())


# ------------------------------------------------------------------------------- the command line
#: Each command and the function it runs: the options they share must have the function's defaults.
COMMANDS = {"embed": "embed", "reconstruct": "reconstruct", "reconstruct-many": "reconstruct",
            "embed-many": "embed", "doctor": "check_montage", "screen": "screen"}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_cli_options_are_the_functions_with_their_defaults(command):
    from zuna_lab.cli.commands import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    options = {a.dest: a for a in sub._actions if a.option_strings}
    function = inspect.signature(getattr(zl, COMMANDS[command])).parameters
    shared = {"steps", "cfg", "seed", "n_samples", "add_channels", "bad_segments", "bad_channels", "segment_duration",
              "batch_size", "model", "verbose"} & set(function)
    assert shared <= set(options), f"{command} lacks {sorted(shared - set(options))}"
    for name in shared & {"steps", "cfg", "seed", "n_samples", "batch_size", "segment_duration", "model"}:
        assert options[name].default == function[name].default, f"{command} --{name}"
