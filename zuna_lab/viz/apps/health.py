"""The latent health panel: MMD to N(0, I), latent moments and drift of one or several recordings."""

from __future__ import annotations

import panel as pn
import param
import xarray as xr

from .. import plots
from ..state import HealthState
from ._common import TaskApp, model_arg, plot_pane, waiting_md

__all__ = ["HealthPanel"]


class HealthPanel(TaskApp):
    """Latent-space health (MMD to N(0, I), moments, drift) of one or several recordings.

    On first view it embeds the recordings that have no embedding yet and computes their health
    (``zuna_lab.mmd_health(zuna_lab.embed(raw))``); *Compute health* recomputes with other options.
    The plots are functions of the state's results and selected recording (``pn.bind``).

    Parameters
    ----------
    embeddings : dict of str -> xr.Dataset | xr.Dataset | None
        Embed results (a single Dataset is named "recording").
    recordings : dict of str -> mne.io.Raw | Recording | None
        Recordings to embed when their embedding is missing.
    model, model_source
        As for :class:`~zuna_lab.viz.apps.ReconstructionExplorer`.
    autostart : bool
        Compute on first view.

    Examples
    --------
    >>> HealthPanel(embeddings={"s1": emb1, "s2": emb2})   # doctest: +SKIP
    """

    state = param.ClassSelector(class_=HealthState)

    # one under the other: beside the 300 px sidebar they fit a notebook column (~860 px)
    MOMENTS_SIZE = (540, 300)
    HISTOGRAM_SIZE = (540, 300)

    def __init__(self, embeddings=None, *, recordings=None, model=None, model_source=None, state=None,
                 autostart=True, **params):
        if state is None:
            if isinstance(embeddings, xr.Dataset):
                embeddings = {"recording": embeddings}
            state = HealthState(embeddings=dict(embeddings or {}), recordings=dict(recordings or {}),
                                model=model_arg(model, model_source))
        super().__init__(state=state, **params)
        st = self.state
        shown = pn.bind(lambda results, selected: selected in results, st.param.results, st.param.selected)
        detail = (st.param.results, st.param.selected)
        self.moments = self._fixed(self._moments_view, self.MOMENTS_SIZE, shown, *detail, name="moments")
        self.histogram = self._fixed(self._histogram_view, self.HISTOGRAM_SIZE, shown, *detail, name="histogram")
        self.drift = plot_pane(pn.bind(self.view(self._drift_view), st.param.comparison),
                               visible=st.param.comparison.rx.is_not(None), name="drift")
        self._layout = self.sidebar(
            "Latent health",
            pn.widgets.Select.from_param(st.param.reference, label="compare with"),
            pn.widgets.Select.from_param(st.param.selected, label="recording"),
            pn.widgets.IntInput.from_param(st.param.n_permutations, label="permutations"),
            pn.widgets.IntInput.from_param(st.param.max_points, label="max tokens (MMD)"),
            pn.widgets.IntInput.from_param(st.param.seed, label="seed"),
            pn.widgets.Select.from_param(st.param.kernel, label="kernel"),
            self.button("Compute health", self.compute), self.progress_bar(), self.status_pane(),
            # plain Rows/Columns of fixed-size plots: a FlexBox lays plots out collapsed when a
            # dynamic tab renders it (Panel 1.9)
            main=[pn.pane.Markdown(pn.bind(self._verdict_md, *detail, self.live.param.running, self.live.param.status,
                                           self.live.param.error), sizing_mode="stretch_width"),
                  pn.pane.DataFrame(pn.bind(lambda results: st.summary(), st.param.results), index=False,
                                    float_format="{:.3g}".format, sizing_mode="stretch_width"),
                  self.moments, self.histogram, self.drift],
        )
        if autostart:
            pn.state.onload(self.activate)

    def needs_compute(self):
        st = self.state
        return not st.complete and not st.running and bool(st.names)

    def _fixed(self, view, size, visible, *params, name):
        """A pane of fixed ``size`` showing ``view(*params)`` (re-drawn when they change) while ``visible``."""
        w, h = size
        return plot_pane(pn.bind(self.view(view), *params), width=w, height=h, visible=visible, name=name)

    # ---------------------------------------------------------------- views: functions of the state
    def _verdict_md(self, results, selected, running, status, error):
        if selected not in results:
            idle = ("Latent health (visible-token latents vs N(0, I); IMQ-kernel MMD, permutation test) "
                    "is computed when this tab opens; *Compute health* recomputes it.")
            return waiting_md(idle, f"Computing latent health of {', '.join(self.state.names)}: {status}", error,
                              running)
        h = results[selected]
        return (f"**{selected}: {h.attrs['verdict']}** — {h.attrs['summary']}  \n"
                f"<small>{h.attrs['verdict_rule']}</small>")

    def _moments_view(self, results, selected):
        if selected not in results:
            return None
        w, h = self.MOMENTS_SIZE
        return plots.latent_moments(results[selected], width=w, height=h)

    def _histogram_view(self, results, selected):
        if selected not in results:
            return None
        w, h = self.HISTOGRAM_SIZE
        return plots.latent_histogram(self.state.embeddings[selected], width=w, height=h)

    def _drift_view(self, comparison):
        if comparison is None:
            return None
        return plots.drift_matrix(comparison)
