"""Drive the served dashboard in headless Chromium, tab by tab, and check every plot is drawn readably.

The notebook ``notebooks/dashboard.ipynb`` is served as ``panel serve`` serves it (the user's path;
its layout wraps the dashboard in another Column, which once collapsed the health plots), with a
tiny random checkpoint through ``ZUNA_LAB_MODEL``.  Each tab is opened and its action run —
mask channels (multi-select and a click on the scalp) and reconstruct; compute health (on
opening, then again with another seed); embed (on opening) and select points — and after each
action every plot of the open tab is measured in Bokeh's rendered views: the frame must be at
least 200 x 150 px and the drawn glyphs must span a good part of it (not empty 0-1 axes, not a
collapsed canvas).  A screenshot of each tab is saved (copied to $ZUNA_LAB_SCREENSHOT_DIR when set).

Skipped when /usr/bin/chromium is absent, unless ZUNA_LAB_REQUIRE_BROWSER=1 (then it fails).
"""

import os
import shutil
import socket
import time
from pathlib import Path

import pytest

from oracle_support import CHROMIUM, need_browser

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# noise Chromium prints on GPU-less machines, not errors of the page
BENIGN = ("GL Driver Message", "WebGL", "allowHTML")

COL_JS = "((s, k) => (s.data instanceof Map ? s.data.get(k) : s.data[k]))"
MODELS_JS = """(kind) => { const out = [];
  for (const d of Bokeh.documents) for (const m of d._all_models.values())
    if (m.type === kind) out.push(m); return out; }"""
TITLES_JS = f"() => ({MODELS_JS})('Title').map(m => m.text)"

# Every rendered plot view: its frame (px) and the part of the frame its glyphs cover.
PLOTS_JS = """() => { const out = [], seen = new Set();
  function walk(v) { if (!v || seen.has(v)) return; seen.add(v);
    if (v.frame && v.model && v.model.title && v.el.isConnected) {
      const f = v.frame.bbox, r = v.el.getBoundingClientRect();
      let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity, n = 0;
      for (const rv of v.renderer_views.values()) {
        if (!rv.glyph || !rv.model.visible || !rv.glyph.bounds) continue;
        const b = rv.glyph.bounds();
        if (!isFinite(b.x0) || !isFinite(b.x1) || !isFinite(b.y0) || !isFinite(b.y1)) continue;
        const xs = [rv.coordinates.x_scale.compute(b.x0), rv.coordinates.x_scale.compute(b.x1)];
        const ys = [rv.coordinates.y_scale.compute(b.y0), rv.coordinates.y_scale.compute(b.y1)];
        x0 = Math.min(x0, ...xs); x1 = Math.max(x1, ...xs); y0 = Math.min(y0, ...ys); y1 = Math.max(y1, ...ys); n++;
      }
      const cover = (a0, a1, lo, hi) => Math.max(0, Math.min(a1, hi) - Math.max(a0, lo)) / Math.max(1, hi - lo);
      out.push({title: v.model.title.text, frame_w: f.width, frame_h: f.height, canvas_w: r.width,
                canvas_h: r.height, glyphs: n, cover_x: cover(x0, x1, f.left, f.right),
                cover_y: cover(y0, y1, f.top, f.bottom), visible: r.width > 0 && r.height > 0});
    }
    for (const c of (v.child_views ?? [])) walk(c); }
  for (const r of Bokeh.index.roots) walk(r); return out; }"""

SCALP_VIEW_JS = """() => { const out = [], seen = new Set();
  function walk(v) { if (!v || seen.has(v)) return; seen.add(v);
    if (v.frame && v.model && v.model.title) out.push(v);
    for (const c of (v.child_views ?? [])) walk(c); }
  for (const r of Bokeh.index.roots) walk(r);
  return out.find(v => v.model.title.text.startsWith('electrodes') && v.el.isConnected); }"""
# whether the scalp's electrode data shows a channel as masked
SCALP_MASKED_JS = f"""(name) => ({MODELS_JS})('ColumnDataSource').some(s => {{
  const ch = ({COL_JS})(s, 'channel'), st = ({COL_JS})(s, 'status');
  return ch && st && Array.from(ch).some((c, i) => c === name && st[i] === 'masked'); }})"""
SCALP_PX_JS = f"""([x, y]) => {{ const v = ({SCALP_VIEW_JS})(); v.el.scrollIntoView({{block: 'center'}});
  const r = (v.canvas_view ? v.canvas_view.el : v.el).getBoundingClientRect();
  return [r.x + v.frame.x_scale.compute(x), r.y + v.frame.y_scale.compute(y)]; }}"""
# page position of the first point of the embedding map
MAP_POINT_JS = """() => { const seen = new Set(); let map = null;
  function walk(v) { if (!v || seen.has(v)) return; seen.add(v);
    if (v.frame && v.model && v.model.title && v.model.title.text.startsWith('embedding map') && v.el.isConnected) map = v;
    for (const c of (v.child_views ?? [])) walk(c); }
  for (const r of Bokeh.index.roots) walk(r);
  for (const rv of map.renderer_views.values()) {
    const d = rv.model.data_source && rv.model.data_source.data; if (!d) continue;
    const get = (k) => (d instanceof Map ? d.get(k) : d[k]); const xs = get('x'), ys = get('y');
    if (!xs || !xs.length) continue;
    map.el.scrollIntoView({block: 'center'});
    const r = (map.canvas_view ? map.canvas_view.el : map.el).getBoundingClientRect();
    return [r.x + map.frame.x_scale.compute(xs[0]), r.y + map.frame.y_scale.compute(ys[0])]; }
  return null; }"""


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def served(tmp_path, monkeypatch):
    """notebooks/dashboard.ipynb served by Panel (as `panel serve` does) with a tiny random ZUNA checkpoint."""
    need_browser("playwright")
    import panel as pn

    from zuna_lab.api.core import clear_model_cache
    from zuna_lab.testing import make_random_checkpoint

    ckpt = make_random_checkpoint(tmp_path / "ckpt", variant="ZUNA", seed=3)
    monkeypatch.setenv("ZUNA_LAB_MODEL", str(ckpt))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    clear_model_cache()
    port = _free_port()
    server = pn.serve({"dashboard": str(ROOT / "notebooks" / "dashboard.ipynb")}, port=port, address="127.0.0.1",
                      show=False, threaded=True, websocket_origin=[f"127.0.0.1:{port}"])
    deadline = time.time() + 30
    while time.time() < deadline:  # wait until the port answers
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}/dashboard"
    server.stop()
    clear_model_cache()


def _plots(page):
    return [p for p in page.evaluate(PLOTS_JS) if p["visible"]]


def _assert_readable(page, expected, *, min_cover=0.3):
    """Every visible plot: frame >= 200 x 150 px, glyphs spanning >= ``min_cover`` of it both ways;
    and one plot whose title starts with each of ``expected``."""
    plots = _plots(page)
    for start in expected:
        assert any(p["title"].startswith(start) for p in plots), (start, [p["title"] for p in plots])
    for p in plots:
        assert p["frame_w"] >= 200 and p["frame_h"] >= 150, p
        assert p["glyphs"] >= 1 and p["cover_x"] >= min_cover and p["cover_y"] >= min_cover, p
    return plots


def _shot(page, tmp_path, name):
    page.wait_for_timeout(400)
    shot = tmp_path / f"{name}.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("ZUNA_LAB_SCREENSHOT_DIR"):
        shutil.copy(shot, os.path.join(os.environ["ZUNA_LAB_SCREENSHOT_DIR"], shot.name))
    return shot


def _wait_title(page, fragment, timeout=120_000):
    page.wait_for_function(f"(t) => ({MODELS_JS})('Title').some(m => m.text.includes(t))", arg=fragment,
                           timeout=timeout)


def test_every_tab_is_readable(served, tmp_path):
    from playwright.sync_api import sync_playwright

    from zuna_lab.viz.plots import scalp_coords

    url = served
    problems = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
            page.goto(url, wait_until="networkidle", timeout=120_000)

            # ---- Reconstruction: the preprocessed epoch, then mask T7 (multi-select) + T8 (scalp click), run
            _wait_title(page, "will be masked", timeout=60_000)
            _assert_readable(page, ["epoch 0 (0.0–5.0 s)", "electrodes"])
            page.locator(".choices__input--cloned").first.click()
            page.locator('.choices__list--dropdown .choices__item--choice[data-value="T7"]').first.click()
            page.keyboard.press("Escape")
            # the pending-mask shading appears: one rectangle (T7, whole epoch)
            page.wait_for_function(
                f"() => ({MODELS_JS})('ColumnDataSource').some(s => {{ const c = ({COL_JS})(s, 'left'); return c && c.length === 1; }})",
                timeout=10_000)
            # the scalp (a DynamicMap) is redrawn in place: T7 turns masked in its data
            page.wait_for_function(SCALP_MASKED_JS, arg="T7", timeout=10_000)
            page.wait_for_timeout(300)
            xy = scalp_coords(_sample_positions()).sel(channel="T8").values.tolist()
            px = page.evaluate(SCALP_PX_JS, xy)
            page.mouse.click(px[0], px[1])
            page.wait_for_function(
                f"() => ({MODELS_JS})('MultiChoice').some(m => m.value.includes('T8') && m.value.includes('T7'))",
                timeout=20_000)
            page.get_by_role("button", name="Run reconstruction").click()
            _wait_title(page, "infilled")
            page.wait_for_selector("text=done in", timeout=30_000)
            plots = _assert_readable(page, ["epoch 0 (0.0–5.0 s): hybrid / original", "electrodes"])
            # two multi-line glyphs (hybrid, original) of every channel
            n_ch = len(_sample_positions().ch_names)
            n_lines = page.evaluate(
                f"(n) => ({MODELS_JS})('ColumnDataSource').filter(s => {{ const c = ({COL_JS})(s, 'xs'); return c && c.length === n; }}).length",
                n_ch)
            assert n_lines >= 2
            table = page.locator("table").first.inner_text()
            assert "T7" in table and "T8" in table
            progress = page.evaluate(f"() => ({MODELS_JS})('panel.models.widgets.Progress').map(m => m.value)")
            assert 100 in progress
            _shot(page, tmp_path, "tab_reconstruction")

            # ---- Latent health: computed when the tab opens, then recomputed with another seed
            page.get_by_text("Latent health", exact=True).first.click()
            _wait_title(page, "latent histogram")
            page.wait_for_selector("text=status: done", timeout=60_000)
            _assert_readable(page, ["latent mean ± std per dimension", "latent histogram"])
            bars = page.evaluate(
                f"() => ({MODELS_JS})('ColumnDataSource').map(s => ({COL_JS})(s, 'top')).filter(c => c && c.length >= 20)"
                ".map(c => Array.from(c).filter(v => v > 0).length)")
            assert bars and max(bars) >= 10, bars            # the histogram has visible bars
            page.evaluate("() => { for (const d of Bokeh.documents) for (const m of d._all_models.values())"
                          " if (m.title === 'seed' && 'value' in m) m.value = 3; }")
            page.wait_for_timeout(300)
            page.get_by_role("button", name="Compute health").click()
            page.wait_for_selector("text=seed 3", timeout=60_000)
            _wait_title(page, "latent histogram")
            _assert_readable(page, ["latent mean ± std per dimension", "latent histogram"])
            _shot(page, tmp_path, "tab_health")

            # ---- Embeddings: the recording embedded when the tab opens, then points selected
            page.get_by_text("Embeddings", exact=True).first.click()
            _wait_title(page, "embedding map")
            _wait_title(page, "select points on the map")
            assert "pass raw=" not in page.content()
            _assert_readable(page, ["embedding map (PCA) by channel", "selected channels", "epoch 0 ("])
            page.wait_for_timeout(300)
            px = page.evaluate(MAP_POINT_JS)
            page.mouse.click(px[0], px[1])
            _wait_title(page, "selected tokens shaded", timeout=20_000)
            page.wait_for_selector("text=tokens selected", timeout=10_000)
            _assert_readable(page, ["embedding map (PCA) by channel", "selected channels", "epoch "])
            _shot(page, tmp_path, "tab_embeddings")

            # back to the first tab: still readable, result kept
            page.get_by_text("Reconstruction", exact=True).first.click()
            _wait_title(page, "hybrid / original")
            page.wait_for_timeout(500)
            _assert_readable(page, ["epoch 0 (0.0–5.0 s): hybrid / original", "electrodes"])
        finally:
            browser.close()
    problems = [m for m in problems if not any(b in m for b in BENIGN)]
    assert not problems, problems


def _sample_positions():
    import zuna_lab as zl

    return zl.read_raw(ROOT / "data" / "sample_synthetic_raw.fif")
