"""State of the screening panel: the options of ``zuna_lab.screen`` and its report, for one recording."""

from __future__ import annotations

import time
import warnings

import param

from ...errors import ZunaLabWarning, ZunaValueError
from ._task import Task
from .recording import Recording, as_recording

__all__ = ["ScreeningState"]


class ScreeningState(Task):
    """Bad channels and segments of one recording: ``zuna_lab.screen(raw, model=..., **options)``.

    The report is the library's, computed with the options held here; nothing is computed
    anywhere else. ``estimators`` are run in the library's order (ZUNA first when both are on, so
    that it decides). ZUNA reconstructs the recording once per held-out set (``groups``, or
    every channel), which takes a while on a CPU: the panel starts with the spline alone.

    Parameters
    ----------
    raw : mne.io.Raw | None
        The recording (or ``recording=``, shared with the other panels).
    model : ZunaModel | str | None
        As for :class:`~zuna_lab.viz.state.ReconstructionState` (loaded only when ZUNA is on).

    Examples
    --------
    >>> st = ScreeningState(raw=raw); st.compute()          # doctest: +SKIP
    >>> st.report.bad_channels                              # doctest: +SKIP
    """

    recording = param.ClassSelector(class_=Recording, default=None, allow_None=True, constant=True)
    estimators = param.ListSelector(default=["spline"], objects=["zuna", "spline"],
                                    doc="Predictors to run; ZUNA decides when both are on.")
    compare = param.ListSelector(default=[], objects=["pyprep", "lof"], doc="Other detectors run beside.")
    groups = param.Integer(default=None, bounds=(2, 256), allow_None=True,
                           doc="Held-out sets of channels (None: each channel alone).")
    threshold = param.Number(default=4.0, bounds=(0.5, 50.0), doc="Robust z above which an epoch is bad.")
    segment_threshold = param.Number(default=6.0, bounds=(0.5, 50.0), doc="Robust z of a bad window.")
    steps = param.Integer(default=50, bounds=(1, 1000), doc="ZUNA's sampler steps.")
    seed = param.Integer(default=0, bounds=(0, None))
    kind = param.Selector(default="badness", objects=["badness", "window"], doc="What the map shows.")
    shown = param.Selector(default=None, objects=[], allow_None=True, doc="The estimator whose scores are drawn.")
    report = param.Parameter(default=None, doc="The last ScreenReport (zuna_lab.screen).")
    notes = param.List(default=[], item_type=str, doc="What zuna_lab.screen warned of in the last run (e.g. "
                                                      "pyprep's RANSAC skipped), one sentence each.")

    busy_message = "The recording is already being screened; wait for it to finish."

    def __init__(self, *, raw=None, recording=None, **params):
        super().__init__(recording=as_recording(raw, recording), **params)

    @property
    def ordered_estimators(self):
        """The chosen estimators in the library's order (the first decides)."""
        return tuple(e for e in ("zuna", "spline") if e in self.estimators)

    def options(self):
        """The keyword arguments given to ``zuna_lab.screen``."""
        return dict(estimators=self.ordered_estimators, compare=tuple(self.compare), groups=self.groups,
                    threshold=float(self.threshold), segment_threshold=float(self.segment_threshold),
                    steps=int(self.steps), seed=int(self.seed), progress=False, verbose="error")

    def _work(self):
        """``zuna_lab.screen`` of the recording with the current options: ``(report, status)``."""
        from ...trust.screen import screen

        if self.recording is None:
            raise ZunaValueError("There is no recording to screen: ScreeningState(raw=...).")
        if not self.estimators:
            raise ZunaValueError("Choose at least one estimator (spline or zuna) to screen with.")
        model = self._model() if "zuna" in self.estimators else None
        self.status = f"screening {self.recording.name} with {' and '.join(self.ordered_estimators)}…"
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:     # said in the panel, not printed
            warnings.simplefilter("always", ZunaLabWarning)
            report = screen(self.recording.raw, model=model, segment_duration=self.recording.segment_duration,
                            **self.options())
        notes = list(dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, ZunaLabWarning)))
        return report, f"done in {time.perf_counter() - start:.1f} s", notes

    def _apply(self, out):
        report, status, notes = out
        names = [str(e) for e in report.scores["estimator"].values]
        self.param.shown.objects = names
        shown = self.shown if self.shown in names else names[0]
        self.param.update(report=report, notes=notes, shown=shown, running=False, progress=1.0, status=status)
        return report

    def compute(self, *, raise_errors=True):
        """Screen the recording; returns the :class:`~zuna_lab.trust.screen_report.ScreenReport` (also in ``report``)."""
        return super().compute(raise_errors=raise_errors)

    def summary_md(self):
        """The report's suggestions as Markdown (what the panel shows above the map)."""
        report = self.report
        if report is None:
            return ""
        lines = [f"**{report.summary_lines()[0]}**"]
        lines += [f"- **{name}**: {report.reasons[name]}" for name in report.bad_channels]
        lines += [f"- {line.strip()}" for line in report.summary_lines()[1 + len(report.bad_channels):]]
        lines += [f"- {note}" for note in self.notes]
        return "\n".join(lines)
