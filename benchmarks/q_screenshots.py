"""Screenshots of tutorial 02's traces and tutorial 03's pairwise MMD matrix, as a notebook column shows them.

Each plot is built as the tutorial builds it (a tiny random checkpoint: the numbers mean nothing, the
look is what counts), put in a 860 px column (JupyterLab's at a 1400 px window with the file browser
open) and saved as a standalone page with its resources inline; headless Chromium draws the page and
the column is saved as a PNG.

    python benchmarks/q_screenshots.py benchmarks/results/q/after
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
COLUMN = 860


def views():
    import zuna_lab as zl
    from zuna_lab.synthetic import make_synthetic_raw
    from zuna_lab.testing import make_random_checkpoint
    from zuna_lab.viz import plots

    model = zl.load_model(make_random_checkpoint(Path(tempfile.mkdtemp()) / "ckpt"), device="cpu")
    raw = zl.read_raw(ROOT / "data" / "sample_synthetic_raw.fif", verbose="error").crop(0, 20)
    raw.annotations.append(onset=11.0, duration=1.0, description="BAD_electrode_pop", ch_names=[["O1"]])
    rec = zl.reconstruct(raw, model=model, bad_channels=["T7"], bad_segments=[(2.0, 3.5)], steps=10, seed=0,
                         progress=False, verbose="error")
    traces = plots.traces(rec, epoch=0, channels=["F7", "F3", "T7", "C3", "Cz", "P7"], kinds=("original", "hybrid"))
    emb = zl.embed(raw.copy().crop(0, 20), model=model, progress=False, verbose="error")
    other = zl.embed(make_synthetic_raw(duration=20.0, seed=1, line_freq=60.0), model=model, progress=False,
                     verbose="error")
    cmp = zl.health.compare_recordings({"sample (50 Hz)": emb, "other lab (60 Hz)": other})
    return {"02_traces": traces, "03_mmd_matrix": plots.drift_matrix(cmp)}


def main(out):
    import panel as pn
    from bokeh.resources import INLINE
    from playwright.sync_api import sync_playwright

    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    pages = {}
    for name, obj in views().items():
        html = out / f"{name}.html"
        pn.Column(pn.pane.HoloViews(obj), width=COLUMN,
                  styles={"border-right": "1px dashed #bbb"}).save(html, resources=INLINE)
        pages[name] = html
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": COLUMN + 40, "height": 900})
        for name, html in pages.items():
            page.goto(html.as_uri(), wait_until="networkidle")
            page.wait_for_timeout(800)
            page.screenshot(path=str(out / f"{name}.png"), full_page=True)
            html.unlink()
            print(out / f"{name}.png")
        browser.close()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ROOT / "benchmarks" / "results" / "q" / "after")
