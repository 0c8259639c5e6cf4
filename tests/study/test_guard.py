"""A study started from a script's unguarded top level (issue K): one sentence, before any worker starts."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

from zuna_lab.synthetic import make_synthetic_raw

SENTENCE = ("zl.embed_many starts worker processes that re-run {script}, so call it under "
            "'if __name__ == \"__main__\":' in the script (a notebook needs nothing).")


def _run(folder, body, timeout=30):
    script = folder / "study_script.py"
    script.write_text(textwrap.dedent(body))
    start = time.perf_counter()
    done = subprocess.run([sys.executable, str(script)], cwd=folder, capture_output=True, text=True, timeout=timeout)
    return done, time.perf_counter() - start


@pytest.fixture()
def recording(tmp_path):
    path = tmp_path / "rec_raw.fif"
    make_synthetic_raw(duration=10.0, seed=0, verbose=False).save(path, verbose="error")
    return path


def test_unguarded_script_stops_with_one_sentence_and_writes_nothing(tmp_path, recording, random_checkpoint):
    done, seconds = _run(tmp_path, f"""
        import zuna_lab as zl
        index = zl.embed_many([{str(recording)!r}], "study.zarr", model={str(random_checkpoint("ZUNA"))!r})
        print("finished", len(index))
    """)
    assert done.returncode != 0 and seconds < 30
    last = done.stderr.strip().splitlines()[-1]
    assert last == "zuna_lab.errors.UnguardedScriptError: " + SENTENCE.format(script="study_script.py")
    assert "finished" not in done.stdout
    assert "bootstrapping" not in done.stderr and "Nanny" not in done.stderr      # no worker was started
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rec_raw.fif", "study_script.py"]


@pytest.mark.parametrize("body, refused", [
    # guarded: the call (or a function that makes it) under the guard passes
    ("""
     from zuna_lab.study.guard import check_main_guard
     if __name__ == "__main__":
         check_main_guard("embed_many")
     """, False),
    ("""
     from zuna_lab.study.guard import check_main_guard
     def main():
         check_main_guard("embed_many")
     if "__main__" == __name__:
         main()
     """, False),
    # a function called from the unguarded top level is refused too
    ("""
     from zuna_lab.study.guard import check_main_guard
     def main():
         check_main_guard("embed_many")
     main()
     """, True),
])
def test_the_guard_is_read_from_where_the_script_makes_the_call(tmp_path, body, refused):
    done, _ = _run(tmp_path, body)
    assert (done.returncode != 0) == refused, done.stderr
    assert ("UnguardedScriptError" in done.stderr) == refused


def test_python_c_and_notebooks_pass():
    # no script file to re-run: nothing to say (a notebook's __main__ has no __file__ either)
    done = subprocess.run([sys.executable, "-c", "from zuna_lab.study.guard import check_main_guard; "
                           "check_main_guard('embed_many'); print('ok')"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "ok"
