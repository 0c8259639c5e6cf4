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

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

from zuna_lab.testing import make_random_checkpoint  # noqa: E402

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
    fif=Path("outputs/sample_repaired_raw.fif").is_file())))
""",
    "03_mmd_health": """
import json
print("ZUNA_LAB_CHECKS=" + json.dumps(dict(
    verdict=health.attrs["verdict"], strict=strict.attrs["verdict"], drift=drift.attrs["verdict"],
    p_value=float(health.p_value), cmp_shape=list(cmp.mmd2.shape))))
""",
    "04_exploring_embeddings": """
import json
print("ZUNA_LAB_CHECKS=" + json.dumps(dict(
    n_epochs=int(len(closed)), n_closed=int(closed.sum()), n_blocks=int(len(set(block.tolist()))),
    features=list(features.shape), probe=probe_accuracy, baseline=baseline_accuracy)))
""",
    "05_weights_devices_performance": """
import json
print("ZUNA_LAB_CHECKS=" + json.dumps(dict(
    precisions=sorted(results), same_dims=results["fp32"].embedding.shape == results["bf16"].embedding.shape,
    diff=float(diff))))
""",
    "blink_repair": """
import json
print("ZUNA_LAB_CHECKS=" + json.dumps(dict(
    n_blinks=len(blinks), masked_frontal=int(rec.mask.sel(channel=frontal).sum()),
    masked_other=int(rec.mask.sum()) - int(rec.mask.sel(channel=frontal).sum()),
    n_ptp=len(ptp_after), annotations=sorted(set(fixed.annotations.description)),
    fif=Path("outputs/sample_blinks_repaired_raw.fif").is_file())))
""",
    "dashboard": """
import json
print("ZUNA_LAB_CHECKS=" + json.dumps(dict(
    app=type(app).__name__, n_tabs=len(app.tabs.objects), banner=len(banner))))
""",
}


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
    text = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out["output_type"] != "error", f"{path.name}: {out.get('ename')}: {out.get('evalue')}"
            text.append(out.get("text", "") or out.get("data", {}).get("text/plain", ""))
    text = "\n".join(text)
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
        assert checks["annotations"] == ["ZUNA_infilled"] and checks["fif"]
    elif name == "03_mmd_health":
        verdicts = {"healthy", "shifted", "collapsed dims"}
        assert {checks["verdict"], checks["strict"], checks["drift"]} <= verdicts
        assert 0.0 < checks["p_value"] <= 1.0 and checks["cmp_shape"] == [2, 2]
    elif name == "04_exploring_embeddings":
        assert checks["n_epochs"] == 24 and checks["n_closed"] == 12 and checks["n_blocks"] == 12
        assert checks["features"] == [24, 128]
        assert 0.0 <= checks["probe"] <= 1.0
        assert checks["baseline"] >= 0.9     # the synthetic sample's eyes-closed alpha is easy to find
    elif name == "05_weights_devices_performance":
        assert checks["precisions"] == ["bf16", "fp32"] and checks["same_dims"]
        assert 0.0 <= checks["diff"] < 1.0
    elif name == "blink_repair":
        assert checks["n_blinks"] > 0 and checks["n_ptp"] == checks["n_blinks"]
        assert checks["masked_frontal"] > 0 and checks["masked_other"] == 0    # channel-specific BAD_ spans
        assert checks["annotations"] == ["ZUNA_infilled"] and checks["fif"]
    elif name == "dashboard":
        assert checks["app"] == "Dashboard" and checks["banner"] == 0
        assert checks["n_tabs"] == 3


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
