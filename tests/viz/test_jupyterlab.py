"""Every notebook opened in a real JupyterLab in headless Chromium, run from the Run menu, and read back.

One ``jupyter lab`` server (loopback, a free port, a token) serves a scratch folder laid out like the
repository (``tutorials/``, ``notebooks/``, a link to ``data/``), with ``ZUNA_LAB_MODEL`` pointing at a
tiny random checkpoint and ``HF_HUB_OFFLINE=1``, so every notebook runs offline. For each notebook,
as a user would: open it, dismiss the news prompt, *Run > Run All Cells*, wait until every code cell
has run and the kernel is idle, then read the page back:

- no output on stderr (tracebacks included): JupyterLab draws both as the stderr mime type;
- every Bokeh plot drawn (its view finished, a glyph with finite bounds) with a frame of at least
  ``MIN_FRAME`` px both ways, inside its output area (not wider than the notebook column), and
  every cell whose displayed result is a plot has one;
- no wheel tool active (the models' ``active``) and a real mouse wheel over each plot leaves its
  x and y ranges as they were;
- no text progress bars (tqdm's ``42%|███``) in any output;
- no failed request, no response >= 400, nothing requested from outside the server, no page error.

Then ``notebooks/dashboard.ipynb`` is used by hand: every tab opened, its plots read back as above,
every button and toggle of the tab clicked once (each waited for), and finally a channel masked
and a reconstruction run, which must say ``done in``.

Screenshots (each plot cell, each dashboard tab) are saved and copied to $ZUNA_LAB_SCREENSHOT_DIR
when set (benchmarks/results/q/jupyterlab/). Skipped when /usr/bin/chromium is absent, unless
ZUNA_LAB_REQUIRE_BROWSER=1 (then it fails).
"""
from __future__ import annotations

import ast
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from oracle_support import CHROMIUM, need_browser

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
NOTEBOOKS = sorted(ROOT.glob("tutorials/*.ipynb")) + sorted(ROOT.glob("notebooks/*.ipynb"))
VIEWPORT = {"width": 1400, "height": 1000}       # the file browser stays open, as JupyterLab opens
MIN_FRAME = 150                                   # px: the smallest readable plotting area, each way
RUN_TIMEOUT = 420_000                             # ms for one notebook's Run All (the slowest takes ~2 min)
# noise Chromium prints on GPU-less machines, not errors of the page
BENIGN = ("GL Driver Message", "WebGL")
# tqdm's text bar: "42%|████▏     | 5/12 [00:01<00:02, 3.1it/s]"
PROGRESS_RE = re.compile(r"\d+%\|.*\||\d+/\d+ \[\d+:\d+|\d+\.?\d*(it/s|s/it)\]")

MODELS_JS = """(kind) => { const out = [];
  for (const d of Bokeh.documents) for (const m of d._all_models.values())
    if (m.type === kind) out.push(m); return out; }"""
# the element that holds `el`, across the shadow roots Bokeh draws in
CLOSEST_JS = """(el, sel) => { while (el) { const c = el.closest(sel); if (c) return c;
    const root = el.getRootNode(); el = root && root.host; } return null; }"""
# Every connected plot view: scrolled into view, measured against its output area and cell.
PLOTS_JS = f"""async () => {{ const closest = {CLOSEST_JS}; const out = [], views = [], seen = new Set();
  function walk(v) {{ if (!v || seen.has(v)) return; seen.add(v);
    if (v.frame && v.model && v.model.x_range && v.el.isConnected) views.push(v);
    for (const c of (v.child_views ?? [])) walk(c); }}
  if (typeof Bokeh === 'undefined') return out;
  for (const r of Bokeh.index.roots ?? Object.values(Bokeh.index)) walk(r);
  const cells = [...document.querySelectorAll('.jp-Notebook .jp-Cell')];
  for (const v of views) {{
    v.el.scrollIntoView({{block: 'center'}});
    await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
    const r = v.el.getBoundingClientRect(), f = v.frame.bbox;
    const area = closest(v.el, '.jp-OutputArea-output'), cell = closest(v.el, '.jp-Cell');
    const a = area ? area.getBoundingClientRect() : null;
    let glyphs = 0;
    for (const rv of v.renderer_views.values()) {{
      if (!rv.glyph || !rv.model.visible || !rv.glyph.bounds) continue;
      const b = rv.glyph.bounds();
      if ([b.x0, b.x1, b.y0, b.y1].every(isFinite)) glyphs++; }}
    if (r.width === 0 && r.height === 0) continue;          // a hidden tab's plot
    out.push({{title: v.model.title ? v.model.title.text : '', cell: cells.indexOf(cell),
      left: r.left, right: r.right, width: r.width, height: r.height, frame_w: f.width, frame_h: f.height,
      area_left: a ? a.left : null, area_right: a ? a.right : null, glyphs, finished: v.has_finished(),
      center: [r.left + f.left + f.width / 2, r.top + f.top + f.height / 2],
      x: [v.model.x_range.start, v.model.x_range.end], y: [v.model.y_range.start, v.model.y_range.end]}});
  }}
  return out; }}"""
RANGES_JS = """() => { const out = [], seen = new Set();
  function walk(v) { if (!v || seen.has(v)) return; seen.add(v);
    if (v.frame && v.model && v.model.x_range && v.el.isConnected) {
      const r = v.el.getBoundingClientRect();
      if (r.width || r.height) out.push([v.model.x_range.start, v.model.x_range.end, v.model.y_range.start, v.model.y_range.end]); }
    for (const c of (v.child_views ?? [])) walk(c); }
  for (const r of Bokeh.index.roots ?? Object.values(Bokeh.index)) walk(r); return out; }"""
WHEEL_ACTIVE_JS = """() => { const out = [];
  if (typeof Bokeh === 'undefined') return out;
  for (const d of Bokeh.documents) for (const m of d._all_models.values())
    if ((m.type === 'WheelZoomTool' || m.type === 'WheelPanTool') && m.active) out.push(m.type);
  return out; }"""
# models whose stylesheets link outside the page's server (Panel's CDN): type, text, URL
CDN_MODELS_JS = """() => { const out = [];
  if (typeof Bokeh === 'undefined') return out;
  for (const d of Bokeh.documents) for (const m of d._all_models.values())
    for (const s of (m.stylesheets ?? [])) if (s && typeof s.url === 'string' && /^https?:/.test(s.url)
        && !s.url.startsWith(location.origin)) {
      out.push(`${m.type} ${m.id} (${String(m.text ?? m.name ?? '').slice(0, 80)}): ${s.url}`); break; }
  return out; }"""
BUSY_JS = f"""() => typeof Bokeh !== 'undefined' && ({MODELS_JS})('panel.models.widgets.Progress').some(m => m.active)"""
# the visible, enabled buttons of the dashboard (push buttons, check and radio toggles), by label
BUTTONS_JS = """() => { const out = [];
  function walk(root) { for (const el of root.querySelectorAll('*')) {
      if (el.shadowRoot) walk(el.shadowRoot);
      if (el.matches('button.bk-btn')) { const r = el.getBoundingClientRect();
        if (r.width > 0 && r.height > 0) out.push({label: el.textContent.trim(), disabled: el.disabled}); } } }
  walk(document); return out; }"""


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    def __init__(self, base, token, repo, log):
        self.base, self.token, self.repo, self.log = base, token, repo, log

    def api(self, path, method="GET"):
        req = urllib.request.Request(f"{self.base}{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=30) as r:
            body = r.read()
        return json.loads(body) if body else None


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """``jupyter lab`` on a free loopback port, serving copies of the notebooks, offline, with a random checkpoint."""
    need_browser("playwright", "jupyterlab")
    from zuna_lab.testing import make_random_checkpoint

    tmp = tmp_path_factory.mktemp("jupyterlab")
    repo = tmp / "repo"
    for path in NOTEBOOKS:
        (repo / path.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, repo / path.parent.name / path.name)
    (repo / "data").symlink_to(ROOT / "data", target_is_directory=True)
    (tmp / "tmp").mkdir()
    ckpt = make_random_checkpoint(tmp / "ckpt" / "ZUNA", variant="ZUNA", seed=3)
    env = {**os.environ, "ZUNA_LAB_MODEL": str(ckpt), "HF_HUB_OFFLINE": "1", "TMPDIR": str(tmp / "tmp"),
           # nothing of the user's JupyterLab settings, workspaces or kernels' runtime files
           "JUPYTER_CONFIG_DIR": str(tmp / "config"), "JUPYTERLAB_SETTINGS_DIR": str(tmp / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "workspaces"), "JUPYTER_RUNTIME_DIR": str(tmp / "runtime")}
    port, token = _free_port(), secrets.token_hex(16)
    log = open(tmp / "jupyterlab.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={repo}", "--LabApp.news_url=None",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        env=env, cwd=repo, stdout=log, stderr=subprocess.STDOUT)
    server = Lab(f"http://127.0.0.1:{port}", token, repo, tmp / "jupyterlab.log")
    try:
        deadline = time.time() + 120
        while True:
            try:
                server.api("/api/status")
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    pytest.fail(f"jupyter lab did not start:\n{server.log.read_text()[-3000:]}")
                time.sleep(0.2)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def chromium(lab):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


class Watch:
    """What a page did that a user would see as broken: failed loads, requests outside the server, page errors."""

    def __init__(self, page, base):
        self.problems = []
        local = (base, "blob:", "data:", "ws://127.0.0.1")

        def request(r):
            if not r.url.startswith(local):
                print(f"  request outside the server: {r.url}")
                self.problems.append(f"request outside the server: {r.url}")

        def failed(r):
            self.problems.append(f"request failed: {r.url} ({r.failure})")

        def response(r):
            if r.status >= 400:
                self.problems.append(f"HTTP {r.status}: {r.url}")

        page.on("request", request)
        page.on("requestfailed", failed)
        page.on("response", response)
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        page.on("console", lambda m: self.problems.append(f"console error: {m.text}")
                if m.type == "error" and not any(b in m.text for b in BENIGN) else None)


def _shot_dir(tmp_path):
    return Path(os.environ["ZUNA_LAB_SCREENSHOT_DIR"]) if os.environ.get("ZUNA_LAB_SCREENSHOT_DIR") else tmp_path


def _shot(target, folder, name):
    path = folder / f"{name}.png"
    target.screenshot(path=str(path))
    assert path.stat().st_size > 5_000, path      # not a blank image
    return path


def _plot_cells(path):
    """Indices of the cells whose displayed result is a plot or a Panel layout (last statement an expression
    naming plots., hv. or pn., other than the extensions' loading)."""
    nb = json.loads(path.read_text())
    out = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        body = ast.parse(source).body
        last = ast.get_source_segment(source, body[-1]) if body and isinstance(body[-1], ast.Expr) else ""
        if re.search(r"\b(plots|hv|pn)\.", last) and ".extension(" not in last:
            out.append(i)
    return out


def _open(page, lab, rel, workspace):
    """The notebook opened in a fresh workspace (JupyterLab's default layout: the file browser open)."""
    page.goto(f"{lab.base}/lab/workspaces/{workspace}/tree/{rel}?token={lab.token}", wait_until="networkidle", timeout=120_000)
    page.wait_for_selector("text=Python 3 (ipykernel) | Idle", timeout=120_000)
    news = page.get_by_role("button", name="No", exact=True)
    if news.count():                                     # "get notified about official Jupyter news?"
        news.first.click()


def _run_all(page):
    """Run > Run All Cells, as a user; then wait until every code cell has its number and the kernel is idle."""
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator('.lm-Menu-item[data-command="runmenu:run-all"]').click()
    page.wait_for_function("""() => { const ps = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')];
        return ps.length && ps.every(p => /\\[\\d+\\]/.test(p.textContent)) &&
          document.querySelector('.jp-Notebook-ExecutionIndicator')?.dataset.status === 'idle'; }""",
                           timeout=RUN_TIMEOUT, polling=500)


def _read_back(page, where):
    """Problems a reader would see on the page now; and the plots measured."""
    problems = []
    for text in page.evaluate("""() => [...document.querySelectorAll('.jp-Notebook .jp-OutputArea-output')]
            .filter(e => e.dataset.mimeType === 'application/vnd.jupyter.stderr').map(e => e.innerText)"""):
        problems.append(f"{where}: stderr/error output: {text[:500]}")
    for text in page.evaluate("() => [...document.querySelectorAll('.jp-Notebook .jp-OutputArea-output')].map(e => e.innerText)"):
        for line in text.splitlines():
            if PROGRESS_RE.search(line):
                problems.append(f"{where}: text progress bar: {line[:200]}")
    for model in page.evaluate(CDN_MODELS_JS):
        problems.append(f"{where}: a {model} links a stylesheet outside the server")
    for tool in page.evaluate(WHEEL_ACTIVE_JS):
        problems.append(f"{where}: {tool} active")
    plots = page.evaluate(PLOTS_JS)
    for p in plots:
        name = f"{where}: plot {p['title']!r} (cell {p['cell']})"
        if not p["finished"] or p["glyphs"] < 1:
            problems.append(f"{name} not drawn: finished={p['finished']}, glyphs={p['glyphs']}")
        if p["frame_w"] < MIN_FRAME or p["frame_h"] < MIN_FRAME:
            problems.append(f"{name} frame {p['frame_w']:.0f} x {p['frame_h']:.0f} px < {MIN_FRAME}")
        if p["area_right"] is None:
            problems.append(f"{name} outside any output area")
        elif p["right"] > p["area_right"] + 1 or p["left"] < p["area_left"] - 1:
            problems.append(f"{name} {p['left']:.0f}-{p['right']:.0f} px, past its output area "
                            f"{p['area_left']:.0f}-{p['area_right']:.0f} px")
    # a real mouse wheel over each plot: the page scrolls, the plot's ranges stay
    for i, p in enumerate(plots):
        x, y = page.evaluate(CENTRE_JS, i)      # scrolled into view first
        page.wait_for_timeout(100)
        before = page.evaluate(RANGES_JS)
        page.mouse.move(x, y)
        page.mouse.wheel(0, 240)
        page.wait_for_timeout(200)
        after = page.evaluate(RANGES_JS)
        if before[i] != after[i]:
            problems.append(f"{where}: the mouse wheel over plot {p['title']!r} changed its ranges "
                            f"({before[i]} -> {after[i]})")
    return problems, plots


CENTRE_JS = """(i) => { const views = [], seen = new Set();
  function walk(v) { if (!v || seen.has(v)) return; seen.add(v);
    if (v.frame && v.model && v.model.x_range && v.el.isConnected) {
      const r = v.el.getBoundingClientRect(); if (r.width || r.height) views.push(v); }
    for (const c of (v.child_views ?? [])) walk(c); }
  for (const r of Bokeh.index.roots ?? Object.values(Bokeh.index)) walk(r);
  const v = views[i]; v.el.scrollIntoView({block: 'center'});
  const r = v.el.getBoundingClientRect(), f = v.frame.bbox;
  return [r.left + f.left + f.width / 2, r.top + f.top + f.height / 2]; }"""



SEEN_CDN = []


def _wait_idle(page, timeout=300_000):
    """Until no progress bar of the app is active and the kernel is idle, twice 0.3 s apart."""
    deadline = time.time() + timeout / 1000
    quiet = 0
    while quiet < 2:
        for model in page.evaluate(CDN_MODELS_JS):      # transient ones too (a view shown while computing)
            if model not in SEEN_CDN:
                SEEN_CDN.append(model)
                print(f"  linked outside the server: {model}")
        busy = page.evaluate(BUSY_JS) or page.evaluate(
            "() => document.querySelector('.jp-Notebook-ExecutionIndicator')?.dataset.status !== 'idle'")
        quiet = 0 if busy else quiet + 1
        assert time.time() < deadline, "the app stayed busy"
        page.wait_for_timeout(300)


def _shutdown_kernels(lab):
    for session in lab.api("/api/sessions"):
        lab.api(f"/api/sessions/{session['id']}", method="DELETE")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_notebook_in_jupyterlab(path, lab, chromium, tmp_path):
    rel = f"{path.parent.name}/{path.name}"
    shots = _shot_dir(tmp_path)
    context = chromium.new_context(viewport=VIEWPORT, accept_downloads=True)
    page = context.new_page()
    watch = Watch(page, lab.base)
    SEEN_CDN.clear()
    start = time.perf_counter()
    try:
        _open(page, lab, rel, workspace=path.stem)
        _run_all(page)
        ran = time.perf_counter() - start
        problems, plots = _read_back(page, path.stem)
        # every cell whose result is a plot shows one, drawn
        cells = {p["cell"] for p in plots}
        for i in _plot_cells(path):
            if i not in cells:
                problems.append(f"{path.stem}: cell {i} shows no drawn plot")
        for i in sorted(cells) if path.stem != "dashboard" else ():     # the dashboard: a shot of each tab below
            cell = page.locator(".jp-Notebook .jp-Cell").nth(i)
            _shot(cell.locator(".jp-Cell-outputWrapper"), shots, f"{path.stem}_cell{i:02d}")
        if path.stem == "dashboard":
            problems += _use_dashboard(page, shots)
        _shot(page, shots, f"{path.stem}_page")
        problems += watch.problems
        # a model shown for a moment while the app computed (the status line during a run) counts too
        problems += [f"{path.stem}: while busy, a {m} linked a stylesheet outside the server" for m in SEEN_CDN]
        print(f"{rel}: ran in {ran:.1f} s, read back in {time.perf_counter() - start - ran:.1f} s, "
              f"{len(plots)} plots")
    finally:
        context.close()
        _shutdown_kernels(lab)
    assert not problems, "\n".join(problems)


TABS = ["Reconstruction", "Latent health", "Embeddings", "Screening"]
ERRORS_JS = """() => { const out = [];
  function walk(root) { for (const el of root.querySelectorAll('*')) {
      if (el.shadowRoot) walk(el.shadowRoot);
      if (el.matches('span[style*="color:#b00"], span[style*="color: rgb(187, 0, 0)"]')) out.push(el.textContent.trim()); } }
  walk(document); return out; }"""
TITLE_JS = f"(t) => typeof Bokeh !== 'undefined' && ({MODELS_JS})('Title').some(m => m.text.includes(t))"


# Clicked after the others: "Clear masks" (so that a reconstruction runs first and Download has its file);
# the screening estimators (ZUNA on, spline off) after "Screen", which then screens with the spline (and the
# pyprep and LOF toggles) in seconds: ZUNA's screening of the 120 s recording takes ~80 s with the tiny
# checkpoint on 2 cores (tutorial 09 runs it on 30 s).
LAST = {"Clear masks", "zuna", "spline"}
# a plot title each tab shows once what it computes on opening is drawn
OPENED = {"Reconstruction": "will be masked", "Latent health": "latent histogram", "Embeddings": "embedding map",
          "Screening": "screening"}


def _mask(page, channel):
    """Pick ``channel`` in the "masked channels" multi-choice, as a user."""
    page.locator(".choices__input--cloned").first.click()
    page.locator(f'.choices__list--dropdown .choices__item--choice[data-value="{channel}"]').first.click()
    page.keyboard.press("Escape")
    page.wait_for_function(f"() => ({MODELS_JS})('MultiChoice').some(m => m.value.includes('{channel}'))",
                           timeout=20_000)


#: The sampler steps of the dashboard's reconstructions (its default, 50, took ~1 min a run on 2 cores).
RUN_STEPS = 10


def _set_number(page, label, value):
    """Type ``value`` into the number input labelled ``label`` and leave it (a click elsewhere), as a user;
    wait until the widget holds it."""
    group = page.locator(".bk-input-group").filter(has=page.locator("label", has_text=re.compile(f"^\\s*{label}\\s*$")))
    field = group.locator("input").first
    field.fill(str(value), timeout=20_000)
    field.blur()                                     # the input's change event: the value is sent
    try:
        page.wait_for_function(f"""(v) => ({MODELS_JS})('Spinner').some(m => m.title === {label!r} && m.value === v)""",
                               arg=value, timeout=20_000)
    except Exception as exc:  # noqa: BLE001 - said with what the inputs hold
        held = page.evaluate(f"() => ({MODELS_JS})('Spinner').map(m => [m.title, m.value])")
        raise AssertionError(f"{label} not set to {value}: the number inputs hold {held}") from exc
    page.wait_for_timeout(500)                       # the value reaches the kernel


def _dashboard_shot(page, shots, name):
    """The dashboard's output scrolled to the top of the window, as a user sees it."""
    page.locator(".jp-Notebook .jp-Cell").last.locator(".jp-Cell-outputWrapper").evaluate(
        "e => e.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(300)
    return _shot(page, shots, name)


def _use_dashboard(page, shots):
    """Every tab opened and read back, every button and toggle clicked once; then a reconstruction that completes."""
    problems, said = [], []
    page.wait_for_function(TITLE_JS, arg="will be masked", timeout=120_000)
    for tab in TABS:
        t_tab = time.perf_counter()
        page.locator(".bk-tab", has_text=tab).first.click()
        page.wait_for_function(TITLE_JS, arg=OPENED[tab], timeout=180_000)     # what the tab computes on opening
        _wait_idle(page)
        print(f"  {tab} opened in {time.perf_counter() - t_tab:.1f} s")
        if tab == "Reconstruction":    # something to reconstruct, so that Download gets its file
            _mask(page, "T7")
            _set_number(page, "steps", RUN_STEPS)
        found, plots = _read_back(page, f"dashboard/{tab}")
        problems += found
        if not plots:
            problems.append(f"dashboard/{tab}: no plot drawn")
        clicked, skipped = [], set()
        for _ in range(3):           # a button enabled by another's click (Download after a run) is taken next pass
            todo = sorted((b for b in page.evaluate(BUTTONS_JS) if b["label"] not in clicked),
                          key=lambda b: b["label"] in LAST)
            if not todo:
                break
            waiting = any(b["disabled"] and b["label"] not in LAST for b in todo)
            for button in todo:
                if button["label"] in LAST and waiting:     # not before the others have been clicked
                    continue
                if button["disabled"]:
                    skipped.add(button["label"])
                    continue
                label, t_click = button["label"], time.perf_counter()
                target = page.locator("button.bk-btn").filter(has_text=re.compile(f"^\\s*{re.escape(label)}\\s*$"))
                if label.startswith("Download"):
                    with page.expect_download(timeout=60_000) as download:
                        target.first.click()
                    size = os.path.getsize(download.value.path())
                    if size < 10_000:
                        problems.append(f"dashboard/{tab}: {label} gave {size} bytes")
                else:
                    target.first.click()
                page.wait_for_timeout(300)
                _wait_idle(page)
                clicked.append(label)
                print(f"  {tab}/{label}: {time.perf_counter() - t_click:.1f} s")
                said += [f"{tab}/{label}: {m}" for m in page.evaluate(ERRORS_JS) if m]
        never = skipped - set(clicked)
        if never:
            problems.append(f"dashboard/{tab}: buttons never enabled: {sorted(never)}")
        if not clicked:
            problems.append(f"dashboard/{tab}: no button to click")
        print(f"dashboard/{tab}: clicked {clicked}")
        found, plots = _read_back(page, f"dashboard/{tab} after the clicks")
        problems += found
        _dashboard_shot(page, shots, f"dashboard_{tab.lower().replace(' ', '_')}")
    # the app still answers: mask T7 and reconstruct
    page.locator(".bk-tab", has_text="Reconstruction").first.click()
    _wait_idle(page)
    _mask(page, "T7")
    page.get_by_role("button", name="Run reconstruction").click()
    try:
        # with the steps set above: the status line counts to RUN_STEPS
        page.get_by_text(re.compile(f"running… \\d+/{RUN_STEPS}$")).first.wait_for(timeout=120_000)
        page.wait_for_selector("text=done in", timeout=120_000)
        page.wait_for_function(f"""() => ({MODELS_JS})('Title').some(m => m.text.includes('hybrid') || m.text.includes('reconstruction'))""",
                               timeout=60_000)
    except Exception as exc:  # noqa: BLE001 - said with the rest
        problems.append(f"dashboard: the final reconstruction did not complete ({exc})")
    _wait_idle(page)
    table = page.locator("table").first.inner_text()
    if "T7" not in table:
        problems.append(f"dashboard: the final reconstruction's error table has no T7: {table[:300]}")
    _dashboard_shot(page, shots, "dashboard_final")
    print("dashboard said:", *said, sep="\n  ")
    for message in said:
        if re.search(r"Traceback|Error\b|Exception|File \"", message):
            problems.append(f"dashboard: not plain words: {message}")
    found, _ = _read_back(page, "dashboard/final")
    return problems + found
