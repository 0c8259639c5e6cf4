"""State of the latent health panel: recordings, their embeddings, health options and results."""

from __future__ import annotations

import time

import param
import xarray as xr

from ._task import Task
from .recording import as_recording

__all__ = ["HealthState"]


class HealthState(Task):
    """Latent-space health of one or several recordings (``zuna_lab.mmd_health(zuna_lab.embed(raw))``).

    Parameters
    ----------
    embeddings : dict of str -> xr.Dataset
        Embed results by recording name (computed ones are added here).
    recordings : dict of str -> Recording | mne.io.Raw
        Recordings to embed on :meth:`compute` when no embedding is given.
    model : ZunaModel | str | None
        As for :class:`~zuna_lab.viz.state.ReconstructionState`.

    Examples
    --------
    >>> hs = HealthState(embeddings={"s1": emb1, "s2": emb2}); hs.compute()   # doctest: +SKIP
    >>> hs.summary()                                                          # doctest: +SKIP
    """

    embeddings = param.Dict(default={})
    recordings = param.Dict(default={})
    reference = param.Selector(default="N(0, I)", objects=["N(0, I)"], doc="Compare with N(0, I) or a recording.")
    n_permutations = param.Integer(default=200, bounds=(0, 5000))
    max_points = param.Integer(default=1000, bounds=(50, 20000))
    seed = param.Integer(default=0, bounds=(0, None))
    kernel = param.Selector(default="imq", objects=["imq", "gaussian"])
    selected = param.Selector(default=None, objects=[], allow_None=True, doc="Recording shown in detail.")

    results = param.Dict(default={})
    comparison = param.ClassSelector(class_=xr.Dataset, default=None, allow_None=True)

    busy_message = "Health is already being computed; wait for it to finish."

    def __init__(self, **params):
        recs = params.pop("recordings", None) or {}
        super().__init__(recordings={str(k): as_recording(v, name=k) for k, v in recs.items()}, **params)
        self._names_changed()

    @param.depends("embeddings", "recordings", watch=True)
    def _names_changed(self):
        names = list(dict.fromkeys([*self.recordings, *self.embeddings]))
        self.param.reference.objects = ["N(0, I)", *names]
        self.param.selected.objects = names
        if self.selected not in names:
            self.selected = names[0] if names else None

    @property
    def names(self):
        return list(self.param.selected.objects)

    @property
    def complete(self):
        """Every recording has a health result."""
        return bool(self.names) and all(n in self.results for n in self.names)

    def _work(self):
        """Embed what is missing and compute health: ``(embeddings, results, comparison, status)``."""
        from ...trust.health import compare_recordings, mmd_health

        self.status = "computing…"
        t0 = time.perf_counter()
        embs = dict(self.embeddings)
        missing = [n for n in self.names if n not in embs]
        n_steps = len(missing) + len(self.names) + (len(self.names) > 1)
        done = 0
        for name in missing:
            model = self._model()
            self.status = f"embedding {name}…"
            embs[name] = as_recording(self.recordings[name], name=name).embedding(model)
            done += 1
            self.progress = done / n_steps
        ref = None if self.reference == "N(0, I)" else embs[self.reference]
        res = {}
        for name in self.names:
            self.status = f"health of {name}…"
            res[name] = mmd_health(embs[name], reference=None if name == self.reference else ref,
                                   n_permutations=self.n_permutations, max_points=self.max_points,
                                   seed=self.seed, kernel=self.kernel)
            done += 1
            self.progress = done / n_steps
        cmp = None
        if len(embs) > 1:
            self.status = "comparing recordings…"
            cmp = compare_recordings({n: embs[n] for n in self.names}, n_permutations=min(self.n_permutations, 100),
                                     max_points=min(self.max_points, 500), seed=self.seed, kernel=self.kernel)
        status = (f"done: {self.n_permutations} permutations, {self.max_points} tokens, seed {self.seed}, "
                  f"{time.perf_counter() - t0:.1f} s")
        return embs, res, cmp, status

    def _apply(self, out):
        embs, res, cmp, status = out
        self.param.update(embeddings=embs, results=res, comparison=cmp, running=False, progress=1.0, status=status)
        return res

    def compute(self, *, raise_errors=True):
        """Embed what is missing, then compute health per recording (and drift when several).

        Returns
        -------
        dict of str -> xr.Dataset | None
            :func:`~zuna_lab.trust.health.mmd_health` per recording (also in ``self.results``).
        """
        return super().compute(raise_errors=raise_errors)

    def summary(self):
        """One row per recording: verdict, MMD², p-value, flagged dims."""
        import pandas as pd

        rows = []
        for name, h in self.results.items():
            rows.append({"recording": name, "verdict": h.attrs["verdict"], "mmd2": float(h.mmd2),
                         "p_value": float(h.p_value),
                         "collapsed_dims": ", ".join(map(str, h.attrs["collapsed_dims"])),
                         "shifted_dims": ", ".join(map(str, h.attrs["shifted_dims"]))})
        return pd.DataFrame(rows, columns=["recording", "verdict", "mmd2", "p_value", "collapsed_dims",
                                           "shifted_dims"])
