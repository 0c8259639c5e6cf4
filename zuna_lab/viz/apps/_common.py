"""What the three apps share: sizes, status text, a progress bar and a worker thread bound to a state."""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading

import holoviews as hv
import panel as pn
import param

from ..state._task import Task

SIDEBAR_WIDTH = 300
SCALP_SIZE = 360


def model_arg(model, model_source):
    """What the states take as ``model``: a loaded model, else the source to load (None: the default)."""
    return model if model is not None else model_source


def status_md(status, error=""):
    if error:
        return f"**status:** {status}  \n<span style='color:#b00'>{error}</span>"
    return f"**status:** {status}"


def waiting_md(idle, status, error, running):
    """What a view shows before its data exists: the error, the step in progress, or ``idle``."""
    if error:
        return f"<span style='color:#b00'>{error}</span>"
    return f"⏳ {status}" if running else idle


def progress_value(progress, running):
    """Progress bar value: the fraction while known, indeterminate (None) while running without one."""
    if running and progress <= 0:
        return None
    return int(round(100 * progress))


def epoch_title(epoch, start, duration):
    return f"epoch {epoch} ({start:.1f}–{start + duration:.1f} s)"


def plot_pane(obj, **kwargs):
    """A HoloViews pane whose plots keep their own axes (the apps' plots share no ranges)."""
    return pn.pane.HoloViews(obj, linked_axes=False, **kwargs)


def dynamic(view, *params, stream=None):
    """``hv.DynamicMap`` drawing ``view(*values of params)``: one plot, updated in place when they change.

    ``stream`` (a Tap, BoundsX, … without a source) is declared on the DynamicMap, which makes the
    plot its source: the HoloViews way for a DynamicMap of overlays, whose layers are redrawn in
    place.  Its values go to the stream's subscribers (the state), not to ``view``.
    """
    draw = pn.bind(lambda *values, **stream_values: view(*values), *params)
    return hv.DynamicMap(draw, streams=[] if stream is None else [stream])


class Live(param.Parameterized):
    """What a page shows of a state's progress — its ``running``, ``progress``, ``status``, ``error``
    (and ``ready``, ``n_epochs`` where it has them) — copied on the page's event loop.

    The state's computation runs in a worker thread and sets these there. Views bound to the state
    itself would then change their Bokeh models from that thread, racing the event loop's own
    changes of the same document: Panel re-sends an HTML pane's stylesheets with every text change,
    and a stylesheet change from the thread could undo the inlining of :mod:`zuna_lab.viz._offline`
    between its patch and the message (tests/viz/test_jupyterlab.py saw the status line fetch
    ``cdn.holoviz.org`` during a reconstruction). So the views that follow a computation are bound
    to this copy; a change made in another thread than the loop's is applied there with
    ``loop.call_soon_threadsafe``, in order, before the computation's result (which comes back through
    the same loop); one made on the loop (or with no loop: a script, a test) is copied at once.
    """

    running = param.Boolean(default=False)
    progress = param.Number(default=0.0)
    status = param.String(default="ready")
    error = param.String(default="")
    ready = param.Boolean(default=True)
    n_epochs = param.Integer(default=0)

    def __init__(self, state, **params):
        self._names = [n for n in ("running", "progress", "status", "error", "ready", "n_epochs") if n in state.param]
        super().__init__(**{n: getattr(state, n) for n in self._names}, **params)
        self._loop, self._loop_thread = None, None
        self.attach()
        state.param.watch(self._copy, self._names)

    def attach(self):
        """Remember the running event loop (called on it: an app's coroutines call this before they compute)."""
        try:
            self._loop, self._loop_thread = asyncio.get_running_loop(), threading.get_ident()
        except RuntimeError:              # no loop running here (a script): copied at once
            pass

    def _copy(self, *events):
        values = {e.name: e.new for e in events}
        loop = self._loop
        if (loop is not None and threading.get_ident() != self._loop_thread and loop.is_running()
                and not loop.is_closed()):
            loop.call_soon_threadsafe(self.param.update, values)
        else:
            self.param.update(values)


class TaskApp(pn.viewable.Viewer):
    """A Panel app over a :class:`~zuna_lab.viz.state._task.Task` state.

    Its widgets and views are bound to the state's parameters; the state's computation runs in a
    worker thread (``asyncio.to_thread``) with a progress bar so the page stays responsive, and
    its result is applied back on the session's event loop. What the page shows of the
    computation's progress (the status line, the progress bar, the buttons' ``disabled``) is bound
    to :attr:`live`, the state's progress as copied on the event loop (:class:`Live`).
    """

    state = param.ClassSelector(class_=Task)

    def __init__(self, **params):
        super().__init__(**params)
        self.live = Live(self.state)

    def progress_bar(self, **kwargs):
        lv = self.live
        return pn.indicators.Progress(value=pn.bind(progress_value, lv.param.progress, lv.param.running), max=100,
                                      active=lv.param.running, sizing_mode="stretch_width", bar_color="primary",
                                      **kwargs)

    def status_pane(self):
        """The status line: one Markdown pane for the app's life whose text follows :attr:`live`."""
        lv = self.live
        return pn.pane.Markdown(pn.bind(status_md, lv.param.status, lv.param.error), sizing_mode="stretch_width",
                                name="status")

    def guard(self, action, *, reset=None):
        """``action`` (sync or async) as a control's callback: an error it raises is said in one sentence
        in the app (the state's ``error``), never raised into the page or the notebook's output;
        ``reset()`` then puts the control back."""
        st = self.state

        def failed(exc):
            st.report_error(exc)
            if reset is not None:
                try:
                    reset()
                except Exception as again:  # noqa: BLE001 - a reset that fails is said too
                    st.report_error(again)

        if inspect.iscoroutinefunction(action):
            @functools.wraps(action)
            async def guarded(*args, **kwargs):
                try:
                    return await action(*args, **kwargs)
                except Exception as exc:  # noqa: BLE001 - shown to the user
                    failed(exc)
        else:
            @functools.wraps(action)
            def guarded(*args, **kwargs):
                try:
                    return action(*args, **kwargs)
                except Exception as exc:  # noqa: BLE001 - shown to the user
                    failed(exc)
        return guarded

    def view(self, draw):
        """``draw`` as a view: when it fails the plot is left out and the state's ``error`` says why."""
        return self.guard(draw)

    def button(self, label, on_click, **kwargs):
        """A primary button, disabled while the state computes, running ``on_click`` (may be async) guarded."""
        kwargs.setdefault("disabled", self.live.param.running)
        button = pn.widgets.Button(label=label, color="primary", sizing_mode="stretch_width", **kwargs)
        button.on_click(self.guard(on_click))
        return button

    def sidebar(self, title, *controls, main):
        """The app's layout: a fixed-width column of controls beside the views."""
        return pn.Row(pn.Column(f"### {title}", *controls, width=SIDEBAR_WIDTH),
                      pn.Column(*main, sizing_mode="stretch_width"), sizing_mode="stretch_width")

    async def compute(self, event=None):
        """The state's computation in a worker thread, then its result applied here (on the event loop)."""
        st = self.state
        if st.running:
            return None
        self.live.attach()
        try:
            return st.apply(await asyncio.to_thread(st.work, raise_errors=False))
        except Exception as exc:  # noqa: BLE001 - applying a result failed: said in the app
            st.fail(exc)
            return None

    def needs_compute(self):
        """Whether opening the app should compute what it shows."""
        return False

    async def activate(self):
        """Compute what the app shows, unless done already (called when it is first viewed)."""
        self.live.attach()
        try:
            if self.needs_compute():
                await self.compute()
        except Exception as exc:  # noqa: BLE001 - shown to the user
            self.state.fail(exc)

    def __panel__(self):
        return self._layout
