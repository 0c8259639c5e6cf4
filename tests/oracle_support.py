"""What the tests need from outside the package: the official-package venvs
(tests/oracle/setup_venvs.sh builds them), the sample recordings, optional modules and tools.

The rule for anything missing: the test skips with a message saying how to get it, unless one of
the ``ZUNA_LAB_REQUIRE_*`` variables that tests/run_tests.sh sets is 1 — then it FAILS, so the
project's test command never passes with checks silently left out.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ORACLE_DIR = Path(os.environ.get("ZUNA_LAB_ORACLE_DIR", REPO / ".oracle"))
VERSIONS = {"ZUNA": "0.1.1", "ZUNA1.1": "1.1.6"}
# The real sample recordings, beside the checkout (ZUNA_LAB_SHARED_DATA points elsewhere, e.g. nowhere).
SHARED_DATA = Path(os.environ.get("ZUNA_LAB_SHARED_DATA", REPO.parent / "shared" / "data"))
SYNTHETIC_SAMPLE = REPO / "data" / "sample_synthetic_raw.fif"
SAMPLE_NAMES = ("sample1_raw", "sample2_raw")
# The shared recordings' 12 channels, in their order (all of them are in the synthetic sample),
# and where the stand-ins start in the synthetic sample: 15 s each, eyes closed then open
# (alpha drops), and eyes open with two blinks then closed.
SAMPLE_CHANNELS = ("Fp1", "Fp2", "F3", "F4", "C3", "C4", "P3", "P4", "O1", "O2", "F7", "F8")
STAND_IN_STARTS = {"sample1_raw": 0.0, "sample2_raw": 50.0}
SAMPLE_SECONDS = 15.0


def missing(message: str, *require: str):
    """Skip with ``message``, or fail when any of the ``require`` variables (default: all) is 1."""
    names = require or ("ZUNA_LAB_REQUIRE_ORACLE", "ZUNA_LAB_REQUIRE_BROWSER", "ZUNA_LAB_REQUIRE_TRITON",
                        "ZUNA_LAB_REQUIRE_DEPS")
    if any(os.environ.get(name) == "1" for name in names):
        pytest.fail(f"{message} (required here: {' or '.join(n for n in names if os.environ.get(n) == '1')}=1)")
    pytest.skip(message, allow_module_level=True)


#: The browser the Playwright tests drive (Debian's chromium).
CHROMIUM = "/usr/bin/chromium"


def need_browser(*modules: str):
    """Chromium and ``modules`` (e.g. playwright): skip without them, fail for Chromium under
    ``ZUNA_LAB_REQUIRE_BROWSER=1`` (apt-get install -y chromium)."""
    if not os.path.exists(CHROMIUM):
        missing(f"{CHROMIUM} is missing (apt-get install -y chromium)", "ZUNA_LAB_REQUIRE_BROWSER")
    for name in modules:
        pytest.importorskip(name)


def require_module(name: str):
    """``pytest.importorskip`` that fails instead under ``ZUNA_LAB_REQUIRE_DEPS=1`` (tests/run_tests.sh)."""
    try:
        return __import__(name)
    except ImportError as err:
        missing(f"optional module {name!r} is not installed ({err}); pip install -e '.[dev]'", "ZUNA_LAB_REQUIRE_DEPS")


def sample_recordings(folder: Path) -> dict[str, Path]:
    """The two 15 s, 12-channel sample recordings of the parity and I/O tests, by name.

    ``../shared/data/sample1_raw.fif`` and ``sample2_raw.fif`` when they are beside the checkout;
    otherwise stand-ins cut from the project's own synthetic sample and written to ``folder``:
    the same channels, length, sampling rate, measurement date and first-sample offset (10 s),
    so every test runs the same way on any clone.
    """
    if all((SHARED_DATA / f"{name}.fif").is_file() for name in SAMPLE_NAMES):
        return {name: SHARED_DATA / f"{name}.fif" for name in SAMPLE_NAMES}
    import datetime

    import mne

    if not SYNTHETIC_SAMPLE.is_file():
        missing(f"neither {SHARED_DATA} nor the bundled {SYNTHETIC_SAMPLE} exists", "ZUNA_LAB_REQUIRE_ORACLE")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    source = mne.io.read_raw_fif(SYNTHETIC_SAMPLE, preload=True, verbose="error").pick(list(SAMPLE_CHANNELS))
    sfreq = source.info["sfreq"]
    n_times = int(round(SAMPLE_SECONDS * sfreq))
    first_samp = int(round(10.0 * sfreq))
    date = datetime.datetime(2023, 12, 20, 15, 40, 20, tzinfo=datetime.timezone.utc)
    paths = {}
    for name in SAMPLE_NAMES:
        start = int(round(STAND_IN_STARTS[name] * sfreq))
        info = source.info.copy()
        with info._unlock():
            info["description"] = f"SYNTHETIC stand-in for {name}: {SYNTHETIC_SAMPLE.name} from {start / sfreq:g} s"
        raw = mne.io.RawArray(source.get_data(start=start, stop=start + n_times), info, first_samp=first_samp,
                              verbose="error")
        raw.set_meas_date(date)
        t0, t1 = start / sfreq, (start + n_times) / sfreq       # annotations clipped to the window
        kept = [(max(a["onset"], t0), min(a["onset"] + a["duration"], t1), a["description"])
                for a in source.annotations if a["onset"] < t1 and a["onset"] + a["duration"] > t0]
        raw.set_annotations(mne.Annotations([on - t0 + raw.first_time for on, _, _ in kept],
                                            [off - on for on, off, _ in kept], [d for _, _, d in kept],
                                            orig_time=date))
        paths[name] = folder / f"{name}.fif"
        raw.save(paths[name], overwrite=True, verbose="error")
    return paths


def oracle_python(variant: str) -> Path:
    """The python of the venv holding the official package for ``variant``; skip (or fail in CI) if absent."""
    python = ORACLE_DIR / f"zuna-{VERSIONS[variant]}" / "bin" / "python"
    if not python.exists():
        missing(f"official zuna=={VERSIONS[variant]} venv missing at {python}; run tests/oracle/setup_venvs.sh",
                "ZUNA_LAB_REQUIRE_ORACLE")
    return python


def run_oracle(variant: str, script: str, *args: str, timeout: float = 900) -> None:
    cmd = [str(oracle_python(variant)), str(REPO / "tests" / "oracle" / script), *map(str, args)]
    env = dict(os.environ, TORCHDYNAMO_DISABLE="1", PYTHONWARNINGS="ignore")
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"oracle {script} {' '.join(map(str, args))} failed:\n{done.stderr[-4000:]}")
