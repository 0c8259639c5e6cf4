"""Nothing fetched from the internet to render: Panel's stylesheets inlined wherever its JavaScript is.

``pn.extension(inline=True)`` inlines the Bokeh and Panel JavaScript, and Panel inlines the
stylesheets of what it displays itself; but HoloViews plots shown as a cell's result, and parts
of a layout updated later, keep Panel's stylesheets as links to its CDN (``cdn.holoviz.org``),
which a machine without internet access fails to load.  While ``pn.config.inline`` is on, the
hook registered here swaps every such link for the same file from the installed Panel,
whatever renders the model (Panel's own ``patch_inline_stylesheets``).
"""

from __future__ import annotations


def inline_stylesheets(viewable, root, changed=None, old_models=None):
    """Panel preprocessing hook: CDN stylesheet links of ``root``'s models replaced by the files' text."""
    import panel as pn
    from bokeh.models import UIElement
    from panel.io.notebook import patch_inline_stylesheets

    if not pn.config.inline:
        return
    for model in root.select({"type": UIElement}):
        patch_inline_stylesheets(model)


def register():
    """Add :func:`inline_stylesheets` to Panel's preprocessing hooks (once)."""
    from panel.viewable import Viewable

    if inline_stylesheets not in Viewable._preprocessing_hooks:
        Viewable._preprocessing_hooks.append(inline_stylesheets)
