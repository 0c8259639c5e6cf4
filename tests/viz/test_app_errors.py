"""A failing control never breaks the dashboard: one plain sentence in the app, the widget put back,
every other control still answering; UMAP disabled (with a tooltip saying what to install) without
umap-learn, working with it.

The dashboard is built as a notebook builds it (``zl.dashboard(raw, model=...)``, a tiny random
checkpoint) and driven through its widgets: a widget's ``value`` set here is what a click sends.
"""
import asyncio
import sys

import pytest

import zuna_lab as zl
from builders import make_raw
from oracle_support import require_module

pn = require_module("panel")


@pytest.fixture(scope="module")
def model(random_checkpoint):
    return zl.load_model(random_checkpoint("ZUNA", seed=6), device="cpu")


@pytest.fixture(scope="module")
def raw():
    return make_raw(duration=10.0)


def _widgets(app, kind):
    return list(app.__panel__().select(kind))


def _method_widget(explorer):
    (widget,) = [w for w in _widgets(explorer, pn.widgets.RadioButtonGroup) if list(w.options) == ["pca", "umap"]]
    return widget


def _assert_plain(sentence, *words):
    """One sentence, no exception class name, no traceback."""
    assert sentence and sentence.strip().endswith(".") and "\n" not in sentence.strip(), sentence
    assert "Error:" not in sentence and "Traceback" not in sentence and "Exception" not in sentence, sentence
    for word in words:
        assert word in sentence, (word, sentence)


def _other_controls_answer(d):
    """Compute health, and mask a channel and reconstruct: both complete."""
    health = d.health.state
    health.seed = 1
    asyncio.run(d.health.compute())
    assert health.complete and health.status.startswith("done") and health.error == ""
    rec = d.reconstruction.state
    rec.masked_channels = ["T7"]
    asyncio.run(d.reconstruction.compute())
    assert rec.result is not None and rec.status.startswith("done") and rec.error == ""


def test_umap_without_umap_learn_keeps_the_app_answering(model, raw, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "umap", None)        # umap-learn absent: `import umap` fails
    d = zl.dashboard(raw, model=model)
    ex, st = d.embeddings, d.embeddings.state
    asyncio.run(d.activate(2))                           # the embeddings tab opens: embedded, mapped (PCA)
    assert st.coords.attrs["method"] == "pca" and not st.umap_available
    method = _method_widget(ex)
    (tooltip,) = _widgets(ex, pn.widgets.TooltipIcon)
    assert method.disabled and "pip install umap-learn" in str(tooltip.value)
    # a click that gets through anyway (a page drawn before, a stale widget): said, and put back
    method.value = "umap"
    assert method.value == "pca" and st.method == "pca" and st.coords.attrs["method"] == "pca"
    _assert_plain(st.error, "pip install umap-learn")
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    # every other control keeps working, and the map with its other options
    st.color_by = "region"
    st.max_points = 200
    assert st.coords.sizes["point"] == 200 and st.error == ""
    _other_controls_answer(d)


def test_umap_with_umap_learn(model, raw):
    require_module("umap")                               # umap-learn: in the notebook, all and dev extras
    d = zl.dashboard(raw, model=model)
    ex, st = d.embeddings, d.embeddings.state
    asyncio.run(d.activate(2))
    method = _method_widget(ex)
    assert st.umap_available and not method.disabled and not _widgets(ex, pn.widgets.TooltipIcon)
    st.max_points = 150                                  # a small map: UMAP's fit stays short
    method.value = "umap"
    assert st.method == "umap" and st.coords.attrs["method"] == "umap" and st.coords.sizes["point"] == 150
    assert st.error == ""
    _other_controls_answer(d)


def test_failing_controls_say_one_sentence_and_reset(model, raw):
    d = zl.dashboard(raw, model=model)
    rec = d.reconstruction
    st = rec.state
    # Run with nothing masked: refused in one sentence, no class name; the button is usable again
    (run,) = [w for w in _widgets(rec, pn.widgets.Button) if w.name == "Run reconstruction"]
    asyncio.run(rec.compute())
    assert st.status == "failed" and not st.running
    _assert_plain(st.error, "Nothing is masked")
    assert "ZunaValueError" not in rec.status_pane().object
    # a control whose action raises something unexpected: one sentence, the control reset, nothing raised
    calls = []

    def broken(event=None):
        calls.append(event)
        raise RuntimeError("the disk is full\nand a second line")

    guarded = rec.guard(broken, reset=lambda: calls.append("reset"))
    assert guarded("click") is None and calls == ["click", "reset"]
    _assert_plain(st.error, "the disk is full")
    assert "second line" not in st.error
    # a screening group count the library refuses puts the widget back at 0
    (groups,) = [w for w in _widgets(d.screening, pn.widgets.IntInput) if w.name.startswith("held-out groups")]
    groups.param.update(end=1000)
    groups.value = 300
    assert groups.value == 0 and d.screening.state.groups is None
    assert "256" in d.screening.state.error and "Error:" not in d.screening.state.error
    # and the other controls answer: a mask, then Run
    st.masked_channels = ["C3"]
    assert not run.disabled
    asyncio.run(rec.compute())
    assert st.result is not None and st.error == ""
