"""What the page shows of a computation changes on the page's event loop, and never links Panel's CDN.

tests/viz/test_jupyterlab.py saw the dashboard's status line fetch Panel's stylesheets from
``cdn.holoviz.org`` while a reconstruction ran: Panel re-sends an HTML pane's stylesheets (as links)
with every text change, the worker thread's change raced the inlining of ``zuna_lab.viz._offline``,
and the message went out with the links. Here, without a browser: the apps' progress copy
(``Live``) is changed on the loop only, the status line keeps one model, and a stylesheets change
is serialized with the inlined sheets whatever the document's hold.
"""
import asyncio
import threading

import pytest

from oracle_support import require_module

pn = require_module("panel")


def _task():
    from zuna_lab.viz.state._task import Task

    return Task()


def test_a_worker_threads_progress_reaches_the_page_on_the_loop():
    from zuna_lab.viz.apps._common import Live

    state, seen = _task(), []

    async def main():
        live = Live(state)
        live.param.watch(lambda e: seen.append((e.name, e.new, threading.get_ident())), ["status", "progress"])

        def work():                              # as Task.work in asyncio.to_thread
            state.status = "running… 1/2"
            state.progress = 0.5
            state.status = "running… 2/2"
            return threading.get_ident()

        worker = await asyncio.to_thread(work)
        return live, worker, threading.get_ident()

    live, worker, loop_thread = asyncio.run(main())
    assert worker != loop_thread
    # every change, in order, each made on the loop's thread (none from the worker), before the result came back
    assert seen == [("status", "running… 1/2", loop_thread), ("progress", 0.5, loop_thread),
                    ("status", "running… 2/2", loop_thread)]
    assert live.status == "running… 2/2"
    # no loop (a script, a test calling compute()): copied at once
    state.status = "done in 1.0 s"
    assert live.status == "done in 1.0 s"


def test_the_status_line_keeps_its_model():
    from bokeh.document import Document

    from zuna_lab.viz.apps._common import Live, TaskApp

    class App(TaskApp):
        def __init__(self, **params):
            super().__init__(**params)
            self._layout = self.status_pane()

    app = App(state=_task())
    assert isinstance(app.live, Live)
    pane = app.__panel__()
    model = pane.get_root(Document())
    app.state.param.update(status="failed", error="Nothing is masked.")
    assert pane._models[model.ref["id"]][0] is model             # the same model, its text changed
    assert "failed" in model.text and "Nothing is masked." in model.text


@pytest.mark.parametrize("held", [True, False])
def test_a_stylesheets_change_is_sent_inlined(held):
    """The event of an HTML pane's stylesheets change (its links, as Panel sets them) is serialized inlined,
    whether the document holds events (the notebook's own updates) or not (a worker thread's)."""
    from bokeh.core.serialization import Serializer
    from bokeh.document import Document
    from bokeh.document.events import ModelChangedEvent
    from bokeh.models import ImportedStyleSheet
    from panel.io import model as panel_model

    from zuna_lab.viz import _offline

    _offline.register()
    doc = Document()
    root = pn.pane.Markdown("status").get_root(doc)
    doc.add_root(root)
    if held:
        doc.hold("combine")
    cdn = [ImportedStyleSheet(url="https://cdn.holoviz.org/panel/1.9.4/dist/css/markdown.css")]
    root.stylesheets = cdn                                     # what Panel's _update sets with a new text
    event = ModelChangedEvent(doc, root, "stylesheets", cdn)
    with pn.config.set(inline=True):
        panel_model.monkeypatch_events([event])
    text = str(Serializer(references=doc.models.synced_references).encode([event]))
    assert "cdn.holoviz.org" not in text and "InlineStyleSheet" in text
    assert not any(isinstance(s, ImportedStyleSheet) and "cdn" in s.url for s in root.stylesheets)
