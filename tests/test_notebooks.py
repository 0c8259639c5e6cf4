"""Every notebook in tutorials/ and notebooks/ runs headless, start to finish, against a tiny random checkpoint.

Each notebook is copied into a scratch folder laid out like the repository (``tutorials/``,
``notebooks/`` and a link to ``data/``), so whatever it writes stays out of the working tree.
The kernel sees ``ZUNA_LAB_MODEL`` pointing at a random checkpoint made here (or, for the
newcomer path, no ``ZUNA_LAB_MODEL`` and ``HF_HUB_OFFLINE=1`` so the notebook's own
random-weights fallback runs). After the notebook, a check cell added to the in-memory copy
prints a JSON summary of its key results, which the test asserts on.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import numpy as np

import zuna_lab
from zuna_lab.testing import make_random_checkpoint

from oracle_support import require_module

nbformat = require_module("nbformat")
nbclient = require_module("nbclient")
require_module("ipykernel")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(ROOT.glob("tutorials/*.ipynb")) + sorted(ROOT.glob("notebooks/*.ipynb"))
MARK = "ZUNA_LAB_CHECKS="

# Appended to the notebook of the same name; prints what the test asserts on.
CHECKS = {
    "01_quickstart": """
import json, pandas as pd
print("ZUNA_LAB_CHECKS=" + json.dumps(dict(
    variant=model.variant, df_type=type(df).__name__, columns=list(df.columns), n_rows=len(df),
    dims=list(emb.embedding.dims), saved=Path("outputs/sample_embedding.nc").is_file())))
""",
    "02_reconstruction_and_repair": """
import json
print("ZUNA_LAB_CHECKS=" + json.dumps(dict(
    variables=sorted(rec.data_vars), t7_all_masked=bool(rec.mask.sel(channel="T7").all()),
    o1_masked=int(rec.mask.sel(channel="O1").sum()), fz_masked=int(rec.mask.sel(channel="Fz").sum()),
    added=[str(c) for c in up.channel[up.added].values], n_samples=int(multi.sizes["sample"]),
    has_std="reconstruction_std" in multi, annotations=sorted(set(fixed.annotations.description)),
    source_annotations=sorted(set(raw.annotations.description)),
    fif=Path("outputs/sample_repaired_raw.fif").is_file())))
""",
    # The verdicts against the documented rule applied to moments computed here with NumPy.
    "08_events_and_decoding": """
import json
print("ZUNA_LAB_CHECKS=" + json.dumps(dict(
    sizes=dict(emb.sizes), events=[str(e) for e in emb.event.values], event_time=[float(t) for t in emb.event_time.values],
    first_token=float(emb.token_time[0]), same_as_epochs=float(abs(emb_epochs.embedding - emb.embedding).max()),
    block=[int(b) for b in emb_epochs.block.values], zuna=[float(s) for s in zuna_scores],
    baseline=[float(s) for s in mne_scores], cache=cache_info(), n_trials=len(epochs), variant=model.variant,
    riemann=None if riemann_scores is None else [float(s) for s in riemann_scores])))
""",
    # What the screening found on the planted faults, its table and the recording it wrote back.
    "09_screening": """
import json
_t = compared.table.set_index("channel")
print("ZUNA_LAB_CHECKS=" + json.dumps(dict(
    clean=clean.bad_channels, clean_segments=clean.segments, found=report.bad_channels,
    reasons={c: report.reasons[c] for c in report.bad_channels}, segments=report.segments, burst=list(burst),
    annotations=sorted(set(report.bad_segments.description)), pyprep={c: str(_t.loc[c, "pyprep"]) for c in _t.index},
    lof=sorted(set(_t["lof"].astype(str))), zuna_estimators=[str(e) for e in with_zuna.scores.estimator.values],
    zuna_random=bool(with_zuna.scores.attrs["model_random"]), zuna_groups=with_zuna.scores.attrs["held_out"],
    bads=fixed.info["bads"], hidden=sorted(hidden[hidden].index), fz_tokens=int(rec["mask"].sel(channel="Fz").sum()),
    same_samples=bool(np.array_equal(fixed.get_data(), faulty.get_data())),
    written=Path("outputs/screened_repaired_raw.fif").is_file())))
""",
    "03_mmd_health": """
import json
import numpy as np

def _visible(e):
    x = e.embedding.values[~e.mask.values].astype(np.float64)
    return x[np.isfinite(x).all(axis=1)]

def _rule(x, ref, p, th):
    mean, std = x.mean(0), x.std(0, ddof=1)
    ref_mean, ref_std = (np.zeros(x.shape[1]), np.ones(x.shape[1])) if ref is None else (ref.mean(0), ref.std(0, ddof=1))
    if (std < th["collapse_std"]).any():
        return "collapsed dims"
    ratio = std / ref_std
    if p < th["alpha"] or (np.abs(mean - ref_mean) > th["mean_tol"]).any() or (ratio < th["std_low"]).any() \\
            or (ratio > th["std_high"]).any():
        return "shifted"
    return "healthy"

_x, _xo, _th = _visible(emb), _visible(other), dict(zl.health.HEALTH_THRESHOLDS)
_pair = zl.health.mmd(emb, other, n_permutations=100, max_points=500, seed=0)
print("ZUNA_LAB_CHECKS=" + json.dumps(dict(
    verdict=health.attrs["verdict"], verdict_expected=_rule(_x, None, float(health.p_value), _th),
    strict=strict.attrs["verdict"],
    strict_expected=_rule(_x, None, float(strict.p_value), {**_th, "alpha": 0.001, "mean_tol": 0.1}),
    drift=drift.attrs["verdict"], drift_expected=_rule(_x, _xo, float(drift.p_value), _th),
    n_points=int(health.attrs["n_points_moments"]), n_visible=len(_x),
    moments_error=float(max(np.abs(health["mean"].values - _x.mean(0)).max(),
                            np.abs(health["std"].values - _x.std(0, ddof=1)).max())),
    drift_shift_error=float(np.abs(drift["mean_shift"].values - (_x.mean(0) - _xo.mean(0))).max()),
    p_value=float(health.p_value), n_permutations=int(health.sizes["permutation"]),
    cmp_shape=list(cmp.mmd2.shape), cmp_diagonal=[float(v) for v in np.diag(cmp.mmd2.values)],
    cmp_pair=[float(cmp.mmd2.values[0, 1]), float(cmp.mmd2.values[1, 0])], pair=float(_pair.mmd2))))
""",
    # The features and labels themselves: the test recomputes both accuracies on its own.
    "04_exploring_embeddings": """
import json
print("ZUNA_LAB_CHECKS=" + json.dumps(dict(
    n_epochs=int(len(closed)), n_closed=int(closed.sum()), n_blocks=int(len(set(block.tolist()))),
    closed=closed.tolist(), block=block.tolist(), features=features.tolist(), alpha_power=alpha_power.tolist(),
    probe=probe_accuracy, baseline=baseline_accuracy)))
""",
    "05_weights_devices_performance": """
import json
import numpy as np
_a, _b = (results[k].embedding.values.astype(np.float64) for k in ("fp32", "bf16"))
print("ZUNA_LAB_CHECKS=" + json.dumps(dict(
    precisions=sorted(results), same_dims=results["fp32"].embedding.shape == results["bf16"].embedding.shape,
    attrs_precision=[results[k].attrs["model_precision"] for k in ("fp32", "bf16")],
    diff=float(diff), diff_expected=float(np.abs(_b - _a).max()), scale=float(np.abs(_a).max()),
    rel_l2=float(np.linalg.norm(_b - _a) / np.linalg.norm(_a)))))
""",
    # What the doctor found and fixed, and the dropout scores recomputed from the Dataset itself.
    "07_trust_on_your_data": """
import json
_t = report.table.set_index("channel")
_nmse = {m: float(dropout["nmse"].sel(estimator=m).mean()) for m in ("zuna", "spline")}
print("ZUNA_LAB_CHECKS=" + json.dumps(dict(
    issues=sorted({c for v in report.table["issue"] for c in v.split(",") if c}), verdict=report.verdict,
    problem_channels=sorted(_t.index[_t["problem"] != ""]), cleaned=sorted(_t.index[_t["name"] == "cleaned"]),
    n_warnings=len(doctor_warnings), fixes=list(fixed_report.fixes), after_ok=bool(after.ok),
    eog_type=fixed_report.fixed.get_channel_types(picks=["EOG"])[0],
    input_scale=float(np.abs(messy.get_montage().get_positions()["ch_pos"]["F7"]).max()),
    loo_dims=list(one_at_a_time["nmse"].dims), curve_dims=list(dropout["nmse"].dims),
    loo_scored=int(one_at_a_time["nmse"].notnull().sum()), zuna_nmse=_nmse["zuna"], spline_nmse=_nmse["spline"],
    summary_nmse=zl.evaluation.summary(dropout)["nmse"].tolist(),
    recomputed=[float(dropout["nmse"].sel(estimator=m, fraction=f).mean()) for m in ("zuna", "spline")
                for f in (0.1, 0.25, 0.5)],
    n_hidden=dropout["hidden"].sum("channel").values.tolist(), n_cells=sorted(set(
        dropout["n_cells"].where(dropout["hidden"]).values[dropout["hidden"].values].tolist())),
    expected_1sd=dropout.attrs["expected_coverage_1sd"], scale=scale,
    band_ordered=bool(((band.lower <= band.center) & (band.center <= band.upper)).all()),
    winners=sorted(set(zl.evaluation.winner(one_at_a_time).values.tolist())))))
""",
    # The index, the pooled features and the test statistic, which the test recomputes from zl.embed.
    "06_many_recordings": """
import json
print("ZUNA_LAB_CHECKS=" + json.dumps(dict(
    status=dict(zip(index.recording, index.status)), errors=dict(zip(index.recording, index.error)),
    sources=dict(zip(index.recording, index.source)), recomputed=recomputed,
    formats=sorted({Path(s).suffix for s in index.source}), subjects=index.subject.tolist(),
    groups=dict(zip(features.recording, features.group)), ages=dict(zip(features.recording, features.age.tolist())),
    n_tokens=dict(zip(features.recording, features.n_tokens.tolist())),
    features={r: features.set_index("recording").loc[r, latents].tolist() for r in features.recording},
    lazy=hasattr(study["sub-02_task-rest"].embedding.data, "dask"), o1_hidden=o1_hidden,
    description=json.loads((study.path / "dataset_description.json").read_text()),
    store=str(study.path.relative_to(Path.cwd().resolve())), observed=observed, p_value=p_value, n_null=len(null))))
""",
    "blink_repair": """
import json
print("ZUNA_LAB_CHECKS=" + json.dumps(dict(
    n_blinks=len(blinks), masked_frontal=int(rec.mask.sel(channel=frontal).sum()),
    masked_other=int(rec.mask.sum()) - int(rec.mask.sel(channel=frontal).sum()),
    n_ptp=len(ptp_after), annotations=sorted(set(fixed.annotations.description)),
    source_annotations=sorted(set(raw.annotations.description)),
    fif=Path("outputs/sample_blinks_repaired_raw.fif").is_file())))
""",
    "dashboard": """
import json
print("ZUNA_LAB_CHECKS=" + json.dumps(dict(
    app=type(app).__name__, n_tabs=len(app.tabs.objects), banner=len(banner))))
""",
}


def leave_one_block_out_accuracy(X, y, groups):
    """Nearest class centroid after standardising on the training epochs, one block held out at a time."""
    hits = 0
    for g in sorted(set(groups.tolist())):
        test, train = groups == g, groups != g
        mu, sd = X[train].mean(0), X[train].std(0) + 1e-12
        z_train, z_test = (X[train] - mu) / sd, (X[test] - mu) / sd
        centroid_closed, centroid_open = z_train[y[train]].mean(0), z_train[~y[train]].mean(0)
        for z, label in zip(z_test, y[test]):
            predicted = np.linalg.norm(z - centroid_closed) < np.linalg.norm(z - centroid_open)
            hits += int(predicted == label)
    return hits / len(y)


def check_many_recordings(checks, checkpoint):
    """06: a BIDS study of 13 subjects: 12 recordings done, the broken one failed (and only it tried again),
    features = zl.embed's of the file (read through mne-bids), participants joined, exact p."""
    import itertools

    ids = [f"sub-{i:02d}_task-rest" for i in range(1, 14)]
    assert sorted(checks["status"]) == ids and checks["subjects"] == [f"{i:02d}" for i in range(1, 14)]
    assert sum(status == "done" for status in checks["status"].values()) == 12
    assert checks["status"]["sub-13_task-rest"] == "failed" and "truncated" in checks["errors"]["sub-13_task-rest"]
    assert checks["recomputed"] == ["sub-13_task-rest"] and checks["lazy"] and checks["o1_hidden"]
    assert checks["formats"] == [".edf", ".set", ".vhdr"]
    assert checks["store"] == "outputs/bids_study/derivatives/zuna_lab"
    assert checks["description"]["DatasetType"] == "derivative"
    assert checks["description"]["GeneratedBy"][0]["Name"] == "zuna_lab"
    assert checks["groups"] == {f"sub-{i:02d}_task-rest": ["control", "patient"][(i - 1) % 2] for i in range(1, 13)}
    assert checks["ages"] == {f"sub-{i:02d}_task-rest": 25 + 3 * (i - 1) for i in range(1, 13)}
    model = zuna_lab.load_model(checkpoint, device="cpu")
    for name in ("sub-01_task-rest", "sub-03_task-rest", "sub-05_task-rest"):      # BrainVision, EDF, EEGLAB
        emb = zuna_lab.embed(checks["sources"][name], model=model, progress=False, verbose="error")
        visible = ~(emb["mask"].values | emb["padding"].values)
        np.testing.assert_allclose(checks["features"][name], emb.embedding.values.astype(np.float64)[visible].mean(0),
                                   rtol=1e-9, atol=1e-12)
        assert checks["n_tokens"][name] == int(visible.sum())
    names = sorted(checks["features"])
    X = np.array([checks["features"][n] for n in names])
    patient = np.array([checks["groups"][n] == "patient" for n in names])
    Z = (X - X.mean(0)) / X.std(0)
    distance = lambda labels: np.linalg.norm(Z[labels].mean(0) - Z[~labels].mean(0))   # noqa: E731
    null = []
    for chosen in itertools.combinations(range(12), 6):
        labels = np.zeros(12, bool)
        labels[list(chosen)] = True
        null.append(distance(labels))
    assert checks["n_null"] == len(null) == 924
    assert np.isclose(checks["observed"], distance(patient), rtol=1e-9)
    assert checks["p_value"] == np.mean(np.array(null) >= distance(patient) - 1e-12)
    assert checks["p_value"] <= 0.05      # the 6 Hz frontal theta of the patients is found


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("checkpoints")
    return {variant: make_random_checkpoint(root / variant, variant=variant) for variant in ("ZUNA", "ZUNA1.1")}


def run_notebook(path: Path, tmp_path: Path, env: dict) -> tuple[dict, str]:
    """Execute a copy of ``path`` in a repository-shaped scratch folder; return (checks, all text output)."""
    work = tmp_path / "repo"
    folder = work / path.parent.name
    folder.mkdir(parents=True)
    (work / "data").symlink_to(ROOT / "data", target_is_directory=True)
    (tmp_path / "tmp").mkdir()
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(CHECKS[path.stem]))
    old = {key: os.environ.get(key) for key in (*env, "TMPDIR")}
    for key, value in {**env, "TMPDIR": str(tmp_path / "tmp")}.items():   # the kernel inherits this environment
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    try:
        nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                resources={"metadata": {"path": str(folder)}}).execute()
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    text, stderr = [], []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out["output_type"] != "error", f"{path.name}: {out.get('ename')}: {out.get('evalue')}"
            text.append(out.get("text", "") or out.get("data", {}).get("text/plain", ""))
            if out.get("name") == "stderr":
                stderr.append(out["text"])
            # nothing fetched from the internet to render: Panel's stylesheets inline with its JavaScript
            assert "cdn.holoviz.org" not in json.dumps(out), f"{path.name}: a stylesheet linked to Panel's CDN"
    text = "\n".join(text)
    # quiet outputs: no MNE reader log, and what the text explains (expected failures too) not on stderr
    assert "Opening raw data file" not in text and "Ready." not in text.splitlines(), f"{path.name}: MNE's log"
    assert not stderr, f"{path.name} wrote to stderr: {stderr}"
    line = next(line for line in text.splitlines() if line.startswith(MARK))
    return json.loads(line[len(MARK):]), text


def test_every_notebook_has_checks():
    assert NOTEBOOKS, "no notebooks found"
    assert {p.stem for p in NOTEBOOKS} == set(CHECKS), "add a CHECKS entry for each notebook"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{path.name}: commit notebooks without outputs"


@pytest.mark.parametrize("path", sorted(ROOT.glob("tutorials/*.ipynb")), ids=lambda p: p.name)
def test_tutorial_structure(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[0].cell_type == "markdown" and "What you will learn" in nb.cells[0].source
    assert nb.cells[-1].cell_type == "markdown" and "## Next" in nb.cells[-1].source
    assert any(cell.cell_type == "code" and "load_model" in cell.source for cell in nb.cells[:3])
    plots = any("plots." in c.source or "hv.Points" in c.source for c in nb.cells if c.cell_type == "code")
    if plots:   # offline rendering needs the JavaScript inlined
        assert any("pn.extension(inline=True)" in c.source for c in nb.cells if c.cell_type == "code")


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if p.stem != "01_quickstart"],
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_notebook_runs(path, tmp_path, checkpoints):
    checks, text = run_notebook(path, tmp_path, {"ZUNA_LAB_MODEL": str(checkpoints["ZUNA"]), "HF_HUB_OFFLINE": "1"})
    assert "RANDOM-WEIGHTS checkpoint instead" not in text   # ZUNA_LAB_MODEL was used
    name = path.stem
    if name == "02_reconstruction_and_repair":
        assert {"original", "reconstruction", "hybrid", "mask"} <= set(checks["variables"])
        assert checks["t7_all_masked"]
        assert checks["o1_masked"] > checks["fz_masked"] > 0      # BAD_ annotation on O1 on top of the segment
        assert checks["added"] == ["FCz", "CPz"]
        assert checks["n_samples"] == 3 and checks["has_std"]
        # the recording's own annotations are kept; the infilled spans (and an unprocessed tail) are added
        added = set(checks["annotations"]) - set(checks["source_annotations"])
        assert set(checks["source_annotations"]) <= set(checks["annotations"]) and checks["fif"]
        assert "ZUNA_infilled" in added and added <= {"ZUNA_infilled", "ZUNA_unprocessed"}
    elif name == "03_mmd_health":
        # each verdict is the documented rule applied to NumPy moments of the visible latents
        assert checks["verdict"] == checks["verdict_expected"]
        assert checks["strict"] == checks["strict_expected"] and checks["drift"] == checks["drift_expected"]
        assert checks["n_points"] == checks["n_visible"] == 12 * 19 * 40      # 60 s, nothing masked
        assert checks["moments_error"] < 1e-9 and checks["drift_shift_error"] < 1e-9
        # a permutation p-value: (1 + #null >= observed) / (1 + n_permutations)
        k = checks["p_value"] * (checks["n_permutations"] + 1)
        assert abs(k - round(k)) < 1e-9 and 1 <= round(k) <= checks["n_permutations"] + 1
        assert checks["cmp_shape"] == [2, 2] and checks["cmp_diagonal"] == [0.0, 0.0]
        assert checks["cmp_pair"] == [checks["pair"], checks["pair"]]      # = health.mmd on the same pair
    elif name == "04_exploring_embeddings":
        # the sample's known structure: 12 alternating 10 s blocks, eyes closed first, 2 epochs each
        assert checks["closed"] == [(i // 2) % 2 == 0 for i in range(24)]
        assert checks["block"] == [i // 2 for i in range(24)]
        assert checks["n_epochs"] == 24 and checks["n_closed"] == 12 and checks["n_blocks"] == 12
        # the features are the O1/O2 latents of zl.embed, and the accuracies are leave-one-block-out
        features = np.asarray(checks["features"])
        assert features.shape == (24, 128)
        emb = zuna_lab.embed(ROOT / "data" / "sample_synthetic_raw.fif",
                             model=zuna_lab.load_model(checkpoints["ZUNA"], device="cpu"))
        occipital = emb.embedding.sel(channel=["O1", "O2"]).values          # epoch, channel, token, latent
        expected = np.concatenate([occipital.mean(2).reshape(24, -1), occipital.std(2).reshape(24, -1)], axis=1)
        np.testing.assert_allclose(features, expected, rtol=1e-6, atol=1e-7)
        closed, block = np.array(checks["closed"]), np.array(checks["block"])
        assert checks["probe"] == leave_one_block_out_accuracy(features, closed, block)
        assert checks["baseline"] == leave_one_block_out_accuracy(np.asarray(checks["alpha_power"]), closed, block)
        assert checks["baseline"] >= 0.9     # the synthetic sample's eyes-closed alpha is easy to find
    elif name == "05_weights_devices_performance":
        assert checks["precisions"] == ["bf16", "fp32"] and checks["same_dims"]
        assert checks["attrs_precision"] == ["fp32", "bf16"]
        assert checks["diff"] == checks["diff_expected"]
        # bf16 really ran (the latents differ) and stays within the bf16 tolerance of the parity tests
        assert 0 < checks["diff"] and 0 < checks["rel_l2"] <= 2e-2
    elif name == "07_trust_on_your_data":
        # the doctor names each planted issue, read_raw warns once, and the fixed copy is clean
        assert {"units", "type"} <= set(checks["issues"]) and "millimetres" in checks["verdict"]
        assert "EOG" in checks["problem_channels"] and checks["cleaned"] == ["EEG Fp1-Ref", "FP2"]
        assert checks["n_warnings"] == 1 and checks["after_ok"] and checks["eog_type"] == "eog"
        assert any("millimetres to metres" in fix for fix in checks["fixes"])
        assert checks["input_scale"] > 1      # the input still holds its millimetres: never modified
        # one channel at a time: all 19 scored once; fractions: round(f * 19) hidden per repeat, whole 5 s epochs
        assert checks["loo_dims"] == ["estimator", "repeat", "channel"] and checks["loo_scored"] == 2 * 19
        assert checks["curve_dims"] == ["estimator", "fraction", "repeat", "channel"]
        assert checks["n_hidden"] == [[2, 2], [5, 5], [10, 10]] and checks["n_cells"] == [1280]
        np.testing.assert_allclose(checks["summary_nmse"], checks["recomputed"], rtol=1e-12)
        # random weights lose to the spline, as the notebook says plainly
        assert checks["zuna_nmse"] > checks["spline_nmse"] and set(checks["winners"]) <= {"zuna", "spline"}
        assert checks["expected_1sd"] == pytest.approx(zuna_lab.trust.evaluation.expected_coverage(1, 3))
        assert checks["scale"] > 0 and checks["band_ordered"]
    elif name == "08_events_and_decoding":
        # 40 alternating events every 6 s from 5 s; 5 s trials from 1 s before each (ZUNA: 5 s only)
        assert checks["sizes"] == {"epoch": 40, "channel": 19, "token": 40, "latent": 32}
        assert checks["events"] == ["standard", "target"] * 20
        np.testing.assert_allclose(checks["event_time"], 5.0 + 6.0 * np.arange(40))
        assert checks["first_token"] == -1.0 and checks["same_as_epochs"] < 1e-6
        assert checks["block"] == [i // 10 for i in range(40)]
        # the planted 40 µV frontal burst is easy for MNE's baseline; random weights: no claim
        assert np.mean(checks["baseline"]) >= 0.9 and len(checks["zuna"]) == 5
        assert checks["riemann"] is not None and np.mean(checks["riemann"]) >= 0.9      # pyriemann: a dev dependency
        assert all(0 <= s <= 1 for s in checks["zuna"])
        # ZUNA normalises over the trials given together: each fold's train and test sets are embedded
        assert checks["variant"] == "ZUNA" and checks["cache"]["misses"] == 5 * checks["n_trials"]
    elif name == "06_many_recordings":
        check_many_recordings(checks, checkpoints["ZUNA"])
    elif name == "09_screening":
        # the clean crop gets nothing; every planted fault is found, with its reason, and the burst is covered
        assert checks["clean"] == [] and checks["clean_segments"] == []
        assert sorted(checks["found"]) == ["C3", "Cz", "P3", "T8"]
        assert checks["reasons"]["P3"].startswith("flat or dead") and checks["reasons"]["C3"].startswith("bridged with Cz")
        assert checks["reasons"]["T8"].startswith(("high-frequency noise", "noisy"))
        start, stop = checks["burst"]
        on_fz = [(a, b) for a, b, c in checks["segments"] if c == "Fz"]
        assert sum(max(0.0, min(b, stop) - max(a, start)) for a, b in on_fz) == pytest.approx(stop - start)
        assert checks["annotations"] == ["BAD_screen"]
        # pyprep (a dev dependency) ran and flagged the noisy and the dead channel; LOF ran
        assert not any(v.startswith(("failed", "not installed")) for v in checks["pyprep"].values())
        assert checks["pyprep"]["T8"] and checks["pyprep"]["P3"] and set(checks["lof"]) <= {"", "lof"}
        # ZUNA ran (random weights, said so), and the suggestions went back into the recording and were infilled
        assert checks["zuna_estimators"] == ["zuna", "spline"] and checks["zuna_random"]
        assert checks["zuna_groups"] == "4 groups"
        assert checks["bads"] == checks["found"] and checks["same_samples"] and checks["written"]
        assert checks["hidden"] == sorted(checks["found"] + ["Fz"]) and 0 < checks["fz_tokens"] < 6 * 40
    elif name == "blink_repair":
        assert checks["n_blinks"] > 0 and checks["n_ptp"] == checks["n_blinks"]
        assert checks["masked_frontal"] > 0 and checks["masked_other"] == 0    # channel-specific BAD_ spans
        # the recording's own annotations are kept; the infilled spans (and an unprocessed tail) are added
        added = set(checks["annotations"]) - set(checks["source_annotations"])
        assert set(checks["source_annotations"]) <= set(checks["annotations"]) and checks["fif"]
        assert "ZUNA_infilled" in added and added <= {"ZUNA_infilled", "ZUNA_unprocessed"}
    elif name == "dashboard":
        assert checks["app"] == "Dashboard" and checks["banner"] == 0
        assert checks["n_tabs"] == 4       # reconstruction, latent health, embeddings, screening


@pytest.mark.parametrize("setup", ["ZUNA1.1 via ZUNA_LAB_MODEL", "no weights: random fallback"])
def test_quickstart(setup, tmp_path, checkpoints):
    path = ROOT / "tutorials" / "01_quickstart.ipynb"
    if setup.startswith("ZUNA1.1"):
        env = {"ZUNA_LAB_MODEL": str(checkpoints["ZUNA1.1"]), "HF_HUB_OFFLINE": "1"}
    else:   # a newcomer without weights: the hub fails at once offline and the notebook falls back
        env = {"ZUNA_LAB_MODEL": None, "HF_HUB_OFFLINE": "1"}
    checks, text = run_notebook(path, tmp_path, env)
    assert checks["df_type"] == "DataFrame"
    assert {"embedding", "mask"} <= set(checks["columns"])
    assert checks["n_rows"] == 24 * 19 * 40 * 32
    assert checks["dims"] == ["epoch", "channel", "token", "latent"]
    assert checks["saved"]
    if setup.startswith("ZUNA1.1"):
        assert checks["variant"] == "ZUNA1.1"
        assert "RANDOM-WEIGHTS" not in text
    else:
        assert checks["variant"] == "ZUNA"
        assert "RANDOM-WEIGHTS checkpoint instead" in text and "MEANINGLESS" in text
