"""The dashboard: the apps in tabs, one state each per call (one per browser session when served)."""

from __future__ import annotations

from pathlib import Path

import panel as pn
import xarray as xr

from ...errors import ZunaTypeError, ZunaValueError
from ..state.recording import Recording, as_recording
from ._common import model_arg
from .embedding import EmbeddingExplorer
from .health import HealthPanel
from .reconstruction import ReconstructionExplorer
from .screening import ScreeningPanel
from ...logs import verbose

__all__ = ["Dashboard", "dashboard", "serve"]


class Dashboard(pn.viewable.Viewer):
    """The apps in tabs; each computes what it shows when its tab is first opened. See :func:`dashboard`."""

    def __init__(self, reconstruction, health, embeddings, screening=None, *, title="ZUNA lab", **params):
        super().__init__(**params)
        self.reconstruction, self.health, self.embeddings = reconstruction, health, embeddings
        self.screening = screening
        self._apps = tuple(app for app in (reconstruction, health, embeddings, screening) if app is not None)
        # dynamic: only the open tab is rendered. Plots rendered inside a hidden tab get a zero-size
        # frame, and when the dashboard sits in another stretching Column (as in the notebook) the
        # plots that later appear in the open tab were laid out collapsed too (Bokeh 3.9 / Panel 1.9).
        tabs = [("Reconstruction", reconstruction), ("Latent health", health), ("Embeddings", embeddings)]
        tabs += [("Screening", screening)] if screening is not None else []
        self.tabs = pn.Tabs(*tabs, dynamic=True, sizing_mode="stretch_width")
        self.tabs.param.watch(self._on_tab, "active")
        self._layout = pn.Column(f"## {title}", self.tabs, sizing_mode="stretch_width")
        pn.state.onload(self.activate)

    async def _on_tab(self, event):
        await self.activate(event.new)

    async def activate(self, index=None):
        """Compute what a tab shows (the active one by default) if not done yet."""
        index = self.tabs.active if index is None else int(index)
        await self._apps[index].activate()

    def __panel__(self):
        return self._layout


def _as_recordings(data, segment_duration=None):
    if isinstance(data, Recording):
        return {data.name: data}
    if isinstance(data, dict):
        if not data:
            raise ZunaValueError("dashboard needs at least one recording.")
        return {str(k): as_recording(v if isinstance(v, Recording) else _as_raw(v), name=k,
                                     segment_duration=segment_duration) for k, v in data.items()}
    if isinstance(data, xr.Dataset):
        raise ZunaTypeError("dashboard needs a recording (mne Raw or a file path), not a result Dataset; "
                            "use HealthPanel/EmbeddingExplorer for embed results.")
    raw = _as_raw(data)
    name = Path(raw.filenames[0]).stem if getattr(raw, "filenames", None) and raw.filenames[0] else "recording"
    return {name: as_recording(raw, name=name, segment_duration=segment_duration)}


def _as_raw(obj):
    if hasattr(obj, "info") and hasattr(obj, "get_data"):
        return obj
    if isinstance(obj, (str, Path)):
        import zuna_lab
        from ...api.streaming import available_memory, in_memory_bytes

        # a recording whose reconstruction would not fit (judged from its header) is read lazily: the apps
        # prepare the epochs they show
        return zuna_lab.read_raw(obj, preload=in_memory_bytes(obj, "reconstruct") <= available_memory())
    raise ZunaTypeError(f"dashboard needs an mne Raw, a file path or a dict of them, got {type(obj).__name__}.")


@verbose
def dashboard(data, model=None, *, model_source=None, embeddings=None, segment_duration=None, title="ZUNA lab",
              verbose=None):
    """Reconstruction explorer, latent health, embedding explorer and screening in one tabbed app.

    Works inline in JupyterLab (after ``pn.extension(inline=True)``), as
    ``dashboard(raw).servable()`` under ``panel serve``, or through
    :func:`serve`.  Each call builds new state objects (one per browser
    session when served).  Every number comes from the library: a
    reconstructed epoch equals that epoch of ``zuna_lab.reconstruct(raw, ...)``
    with the same seed and masks, health is ``zuna_lab.mmd_health(zuna_lab.embed(raw))``, the
    screening tab's report is ``zuna_lab.screen(raw, ...)``.
    Each tab computes what it shows when first opened.

    Parameters
    ----------
    data : mne.io.Raw | str | Path | dict
        A recording, a file path (read with ``zuna_lab.read_raw``), or a dict
        of name -> recording (the first is explored; all appear in the health tab).
    model : ZunaModel | None
        A loaded model; None loads ``model_source`` (default ``$ZUNA_LAB_MODEL``
        or ``"Zyphra/ZUNA"``) once per process (:func:`zuna_lab.api.core.cached_model`).
    model_source : str | None
        See ``model``.
    embeddings : dict of str -> xr.Dataset | xr.Dataset | None
        Precomputed embed results by recording name.
    segment_duration : float | None
        Epoch length (ZUNA1.1: 0.5–30 s; None: 5 s), as in ``zuna_lab.reconstruct``.
    title : str
        Heading.
    verbose : bool | str | int | None
        The log level of this call, as in MNE (None: the current level; see :func:`zuna_lab.set_log_level`).

    Returns
    -------
    Dashboard
        A ``pn.viewable.Viewer``; ``.reconstruction``, ``.health``,
        ``.embeddings`` and ``.screening`` hold the apps (and their ``.state``).

    Examples
    --------
    >>> import panel as pn, zuna_lab as zl
    >>> pn.extension(inline=True)                          # doctest: +SKIP
    >>> zl.dashboard(zl.read_raw("sub01.edf"), model=model)   # doctest: +SKIP
    """
    recs = _as_recordings(data, segment_duration)
    main = next(iter(recs))
    if isinstance(embeddings, xr.Dataset):
        embeddings = {main: embeddings}
    embeddings = dict(embeddings or {})
    m = model_arg(model, model_source)
    rexp = ReconstructionExplorer(recording=recs[main], model=m, autostart=False)
    hp = HealthPanel(embeddings, recordings=recs, model=m, autostart=False)
    ee = EmbeddingExplorer(embeddings.get(main), recording=recs[main], model=m, autostart=False)
    sp = ScreeningPanel(recording=recs[main], model=m, autostart=False)

    def share(embeddings):  # embeddings computed in the health tab feed the explorer at once
        if ee.state.embedding is None and not ee.state.running and main in embeddings:
            ee.state.embedding = embeddings[main]

    pn.bind(share, hp.state.param.embeddings, watch=True)
    return Dashboard(rexp, hp, ee, sp, title=title)


@verbose
def serve(data, model=None, *, port=5006, address="127.0.0.1", show=False, threaded=False, websocket_origin=None,
          verbose=None, **kwargs):
    """Serve :func:`dashboard` on ``address:port`` (127.0.0.1 by default: not reachable from other machines).

    Parameters
    ----------
    data, model
        As for :func:`dashboard`.  The recordings are read and preprocessed once and shared by
        all sessions (each session gets its own state).
    port : int
        TCP port.
    address : str
        Interface to bind; pass ``"0.0.0.0"`` deliberately to expose it.
    show : bool
        Open a browser.
    threaded : bool
        Run the server in a background thread and return it (``.stop()`` ends it).
    websocket_origin : list of str | None
        Allowed origins; default ``address:port`` (plus ``localhost:port`` for 127.0.0.1).
    verbose : bool | str | int | None
        The log level of this call, as in MNE (None: the current level; see :func:`zuna_lab.set_log_level`).
    **kwargs
        Passed to :func:`dashboard` (``model_source``, ``embeddings``, ``segment_duration``, ``title``).

    Returns
    -------
    server
        The Panel server (a ``StoppableThread`` when ``threaded``).

    Examples
    --------
    >>> server = serve(raw, model=model, port=5007, threaded=True)   # doctest: +SKIP
    >>> server.stop()                                                # doctest: +SKIP
    """
    if websocket_origin is None:
        websocket_origin = [f"{address}:{port}"]
        if address == "127.0.0.1":
            websocket_origin.append(f"localhost:{port}")
    recs = _as_recordings(data, kwargs.pop("segment_duration", None))  # read once, shared by sessions

    def app():  # a plain function: Panel calls it once per session (a partial would be served as text)
        return dashboard(recs, model, **kwargs)

    return pn.serve({"zuna_lab": app}, port=port, address=address, show=show, threaded=threaded,
                    websocket_origin=websocket_origin, title=kwargs.get("title", "ZUNA lab"))
