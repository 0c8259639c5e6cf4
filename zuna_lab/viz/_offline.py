"""Nothing fetched from the internet to render: Panel's stylesheets inlined wherever its JavaScript is.

``pn.extension(inline=True)`` inlines the Bokeh and Panel JavaScript, and Panel inlines the
stylesheets of what it displays itself; but HoloViews plots shown as a cell's result, and parts
of a layout updated later, keep Panel's stylesheets as links to its CDN (``cdn.holoviz.org``),
which a machine without internet access fails to load.  While ``pn.config.inline`` is on, the
hook registered here swaps every such link for the same file from the installed Panel,
whatever renders the model (Panel's own ``patch_inline_stylesheets``).

Models made after the first render (a tab opened, a view redrawn by ``pn.bind``, a table
replaced) reach the notebook as patches sent over the kernel's comm, past those hooks: Panel's
notebook ``push`` builds each patch with ``panel.io.notebook.diff``, which :func:`register`
wraps so the document's stylesheets are inlined first (tests/viz/test_jupyterlab.py caught the
dashboard fetching ``cdn.holoviz.org`` on every tab).
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


def _inlined_diff(diff):
    """Panel's notebook ``diff`` with the CDN stylesheets of the document's models inlined before the patch is made."""

    @functools.wraps(diff)
    def inlined(doc, *args, **kwargs):
        import panel as pn
        from bokeh.models import UIElement
        from panel.io.notebook import patch_inline_stylesheets

        if pn.config.inline:
            models = set(doc.models)       # while the document is frozen, the new models are only in the events
            for event in list(getattr(doc.callbacks, "_held_events", ())):
                if getattr(event, "model", None) is not None:
                    models |= event.model.references()
            for model in models:
                if isinstance(model, UIElement):
                    patch_inline_stylesheets(model)
        return diff(doc, *args, **kwargs)

    inlined.zuna_lab_inline = True
    return inlined


def register():
    """Add :func:`inline_stylesheets` to Panel's preprocessing hooks and wrap its notebook ``diff`` (once)."""
    from panel.io import notebook
    from panel.viewable import Viewable

    if inline_stylesheets not in Viewable._preprocessing_hooks:
        Viewable._preprocessing_hooks.append(inline_stylesheets)
    if not getattr(notebook.diff, "zuna_lab_inline", False):
        notebook.diff = _inlined_diff(notebook.diff)
