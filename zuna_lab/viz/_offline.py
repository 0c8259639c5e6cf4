"""Nothing fetched from the internet to render: Panel's stylesheets inlined wherever its JavaScript is.

``pn.extension(inline=True)`` inlines the Bokeh and Panel JavaScript, and Panel inlines the
stylesheets of what it displays itself; but HoloViews plots shown as a cell's result, and parts
of a layout updated later, keep Panel's stylesheets as links to its CDN (``cdn.holoviz.org``),
which a machine without internet access fails to load.  While ``pn.config.inline`` is on, the
hook registered here swaps every such link for the same file from the installed Panel,
whatever renders the model (Panel's own ``patch_inline_stylesheets``).

Models made after the first render (a tab opened, a view redrawn by ``pn.bind``, a table
replaced) reach the notebook as patches sent over the kernel's comm, past those hooks: Panel's
notebook ``push`` builds each patch with ``panel.io.model.diff``, whose events step
(``monkeypatch_events``, given exactly the events it serializes) :func:`register` wraps so that
every model they reach has its stylesheets inlined first (tests/viz/test_jupyterlab.py caught the
dashboard fetching ``cdn.holoviz.org`` on every tab; a first version that patched the document's
models before ``diff`` still let a model through now and then, when a worker thread's update
raced the patch). An HTML pane whose text changes gets its stylesheets set again, as links
(Panel's ``_update`` sends every property): the event of that change is given the inlined list it
serializes. The apps' status lines and progress bars change on the event loop only
(:class:`zuna_lab.viz.apps._common.Live`), so that no worker thread's change races this patch.
"""

from __future__ import annotations

import functools


def inline_stylesheets(viewable, root, changed=None, old_models=None):
    """Panel preprocessing hook: CDN stylesheet links of ``root``'s models replaced by the files' text."""
    import panel as pn
    from bokeh.models import UIElement
    from panel.io.notebook import patch_inline_stylesheets

    if not pn.config.inline:
        return
    for model in root.select({"type": UIElement}):
        patch_inline_stylesheets(model)


def _inlined_events(monkeypatch_events):
    """Panel's ``monkeypatch_events`` (run by its notebook ``diff`` on exactly the events it is about to
    serialize) with the CDN stylesheets of every model those events reach inlined first."""

    @functools.wraps(monkeypatch_events)
    def inlined(events, *args, **kwargs):
        import panel as pn
        from bokeh.models import UIElement
        from panel.io.notebook import patch_inline_stylesheets

        if pn.config.inline:
            for event in list(events):
                model = getattr(event, "model", None)
                for ref in (model.references() if model is not None else ()):
                    if isinstance(ref, UIElement):
                        patch_inline_stylesheets(ref)
                # a change of the stylesheets themselves (Panel re-sends them with every text change of an
                # HTML pane) carries its value: the patched one, not the links it was made with
                if getattr(event, "attr", None) == "stylesheets" and isinstance(model, UIElement):
                    event.new = list(model.stylesheets)
        return monkeypatch_events(events, *args, **kwargs)

    inlined.zuna_lab_inline = True
    return inlined


def register():
    """Add :func:`inline_stylesheets` to Panel's preprocessing hooks and wrap the events step of its
    notebook ``diff`` (once)."""
    from panel.io import model
    from panel.viewable import Viewable

    if inline_stylesheets not in Viewable._preprocessing_hooks:
        Viewable._preprocessing_hooks.append(inline_stylesheets)
    if not getattr(model.monkeypatch_events, "zuna_lab_inline", False):
        model.monkeypatch_events = _inlined_events(model.monkeypatch_events)
