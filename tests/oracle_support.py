"""Locating the official-package venvs (tests/oracle/setup_venvs.sh builds them)."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ORACLE_DIR = Path(os.environ.get("ZUNA_LAB_ORACLE_DIR", REPO / ".oracle"))
VERSIONS = {"ZUNA": "0.1.1", "ZUNA1.1": "1.1.6"}


def oracle_python(variant: str) -> Path:
    """The python of the venv holding the official package for ``variant``; skip (or fail in CI) if absent."""
    python = ORACLE_DIR / f"zuna-{VERSIONS[variant]}" / "bin" / "python"
    if not python.exists():
        message = f"official zuna=={VERSIONS[variant]} venv missing at {python}; run tests/oracle/setup_venvs.sh"
        if os.environ.get("ZUNA_LAB_REQUIRE_ORACLE") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return python


def run_oracle(variant: str, script: str, *args: str, timeout: float = 900) -> None:
    cmd = [str(oracle_python(variant)), str(REPO / "tests" / "oracle" / script), *map(str, args)]
    env = dict(os.environ, TORCHDYNAMO_DISABLE="1", PYTHONWARNINGS="ignore")
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"oracle {script} {' '.join(map(str, args))} failed:\n{done.stderr[-4000:]}")
