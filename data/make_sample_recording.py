"""Write data/sample_synthetic_raw.fif, the project's bundled SYNTHETIC sample recording.

Run from anywhere::

    python3 data/make_sample_recording.py

The file is regenerated from a seed with zuna_lab.synthetic.make_synthetic_raw;
tests/test_synthetic.py checks that the committed file equals a fresh run.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

SAMPLE_PATH = Path(__file__).resolve().with_name("sample_synthetic_raw.fif")
# Everything that determines the recording; the default 19-channel 10-20 cap and montage.
SAMPLE_PARAMETERS = dict(duration=120.0, sfreq=256.0, seed=0, line_freq=50.0)


def make_sample_raw(*, verbose=None):
    """Build the sample recording in memory (what the committed file must contain)."""
    try:
        from zuna_lab.synthetic import make_synthetic_raw
    except ImportError:  # run from a checkout without `pip install -e .`
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from zuna_lab.synthetic import make_synthetic_raw
    return make_synthetic_raw(**SAMPLE_PARAMETERS, verbose=verbose)


def write_sample_recording(path=SAMPLE_PATH, *, verbose=None):
    """Write the sample recording to ``path`` atomically and return the path."""
    path = Path(path)
    raw = make_sample_raw(verbose=verbose)
    # Temp file in the same directory so os.replace is an atomic rename; the
    # "_raw.fif" suffix follows MNE's naming convention (no warning on save).
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix="_raw.fif")
    os.close(fd)
    try:
        raw.save(tmp_name, fmt="single", overwrite=True, verbose=verbose)
        os.chmod(tmp_name, 0o644)  # mkstemp makes it private; the data file is for everyone
        os.replace(tmp_name, path)
    finally:
        if os.path.exists(tmp_name):
            os.remove(tmp_name)
    return path


if __name__ == "__main__":
    written = write_sample_recording(verbose="warning")
    print(f"wrote {written} ({written.stat().st_size / 1e6:.2f} MB)")
