"""Shared test fixtures. The tests mirror the package (tests/io/ tests zuna_lab/io/, and so on);
helpers that several folders use live here (builders.py, oracle_support.py), so this folder is
put on the import path for all of them."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="session")
def random_checkpoint(tmp_path_factory):
    """``random_checkpoint(variant="ZUNA", seed=0)``: the folder of a small random checkpoint in the
    Hugging Face layout (zuna_lab.testing), written once per session for each variant and seed.
    Each test module loads its own model from it (models are not shared: tests may change them)."""
    from zuna_lab.testing import make_random_checkpoint

    written = {}

    def checkpoint(variant="ZUNA", seed=0):
        if (variant, seed) not in written:
            folder = tmp_path_factory.mktemp(f"checkpoint_{variant}_{seed}")
            written[variant, seed] = make_random_checkpoint(folder / variant, variant=variant, seed=seed)
        return written[variant, seed]

    return checkpoint
