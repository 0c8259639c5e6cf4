"""What :func:`zuna_lab.screen` found: the scores Dataset, the suggestions with their reasons, the table, the report."""
from __future__ import annotations

import html
from dataclasses import dataclass, field

import mne
import numpy as np
import xarray as xr

from ..config import MODEL_SFREQ
from ..errors import ZunaTypeError, ZunaValueError, preview

__all__ = ["ScreenReport", "build_report", "SEGMENT_DESCRIPTION", "EDGE_SECONDS"]

#: The description of the suggested bad segments (a ``BAD_`` annotation: MNE and zuna_lab skip or mask it).
SEGMENT_DESCRIPTION = "BAD_screen"
#: Seconds at each end of the recording where no segment is suggested (the high-pass's edge transients).
EDGE_SECONDS = 1.0
_Z_VARS = ("amplitude", "slow", "high", "line", "correlation", "error")
#: The criteria that decide (zuna_lab.trust.screen.CRITERIA), in the order reasons prefer them on a tie.
CRITERIA_ORDER = ("amplitude", "slow", "high", "line")


@dataclass(frozen=True, eq=False)
class ScreenReport:
    """What :func:`zuna_lab.screen` found.

    Attributes
    ----------
    bad_channels : list of str
        Suggested bad channels (not already marked), in the recording's order: ready for
        ``raw.info["bads"]`` or ``bad_channels=``.
    reasons : dict of str -> str
        Why each was suggested, in one sentence.
    segments : list of tuple
        Suggested bad spans ``(start, stop, channel)`` in seconds from the first sample (for
        ``bad_segments=``); ``bad_segments`` holds the same as annotations.
    table : pandas.DataFrame
        One row per channel: ``status`` (suggested / marked / ok), ``reason``, per estimator its
        verdict, median badness and share of bad epochs, ``bridged_with``, ``segments_s`` (seconds
        suggested bad), and the other detectors' verdicts (``pyprep``, ``lof``, ``lof_score``).
    scores : xarray.Dataset
        estimator × epoch × channel: ``error`` (V), ``correlation``, the ratios and their robust
        z-scores, ``badness``, ``bad``; ``window_error`` / ``window_z`` per window; ``bridge_ratio``.
    marked : list of str
        Channels already known bad (``info["bads"]``, ``bad_channels=``): not suggested, not scored.
    decided_by : str
        The estimator whose verdict is suggested.
    """

    bad_channels: list
    reasons: dict
    segments: list
    table: object
    scores: xr.Dataset
    marked: list = field(default_factory=list)
    decided_by: str = "spline"
    meas_date: object = None
    first_time: float = 0.0

    @property
    def bad_segments(self):
        """The suggested spans as ``mne.Annotations`` named ``BAD_screen``, one channel each, on the screened
        recording's clock: ``raw.set_annotations(raw.annotations + report.bad_segments)``."""
        return _annotations(self.segments, self.meas_date, self.first_time)

    def apply(self, raw, *, verbose=None):
        """A copy of ``raw`` with the suggested channels added to ``info["bads"]`` and the segments as annotations.

        Nothing else changes: samples, channels (EEG or not), positions, the recording's own
        annotations and ``meas_date`` are kept. ``raw`` is the recording that was screened (all
        its channels, e.g. read with ``mne.io.read_raw``); it is not modified.

        Examples
        --------
        >>> fixed = report.apply(mne.io.read_raw_fif("sub01_raw.fif", preload=True))   # doctest: +SKIP
        """
        if not isinstance(raw, mne.io.BaseRaw):
            raise ZunaTypeError(f"apply needs the mne Raw that was screened, got {type(raw).__name__}.")
        missing = [name for name in [*self.bad_channels, *(s[2] for s in self.segments)] if name not in raw.ch_names]
        if missing:
            raise ZunaValueError(f"The recording has no channel {preview(sorted(set(missing)))} of the report; "
                                 "apply it to the recording that was screened.")
        out = raw.copy()
        out.info["bads"] = list(raw.info["bads"]) + [n for n in self.bad_channels if n not in raw.info["bads"]]
        if self.segments:
            out.set_annotations(_combined(raw, self.segments), verbose=verbose if verbose is not None else "error")
        return out

    def __repr__(self):
        return "\n".join(self.summary_lines())

    def summary_lines(self):
        """The report in lines: the verdict, one line per suggestion, the other detectors' verdicts."""
        scores = self.scores
        head = (f"ScreenReport ({self.decided_by} decides; {scores.sizes['channel']} channels, "
                f"{scores.sizes['epoch']} epochs): ")
        if not self.bad_channels and not self.segments:
            head += "nothing suggested"
        else:
            head += f"{len(self.bad_channels)} bad channel(s), {len(self.segments)} bad segment(s) suggested"
        lines = [head, *[f"  {name}: {self.reasons[name]}" for name in self.bad_channels]]
        if self.segments:
            seconds = sum(b - a for a, b, _ in self.segments)
            lines.append(f"  {SEGMENT_DESCRIPTION}: {seconds:.1f} s on {preview(sorted({s[2] for s in self.segments}))}")
        if self.marked:
            lines.append(f"  already marked bad (not scored): {preview(self.marked)}")
        for column in ("pyprep", "lof"):
            if column in self.table:
                values = self.table[column].astype(str)
                flagged = [c for c, v in zip(self.table["channel"], values) if v and v != "not installed"
                           and not v.startswith("failed")]
                state = values.iloc[0] if values.iloc[0] in ("not installed",) or values.iloc[0].startswith("failed") \
                    else preview(flagged) if flagged else "none"
                lines.append(f"  {column}: {state}")
        if "zuna" in scores.attrs.get("estimators", ()) and scores.attrs.get("model_random"):
            lines.append("  ZUNA ran with RANDOM weights: its scores are meaningless.")
        return lines

    def _repr_html_(self):
        lines = self.summary_lines()
        items = "".join(f"<li>{html.escape(line.strip())}</li>" for line in lines[1:])
        return (f"<p><b>{html.escape(lines[0])}</b></p>" + (f"<ul>{items}</ul>" if items else "")
                + self.table.to_html(index=False, na_rep="", float_format=lambda v: f"{v:.2f}"))


# ----------------------------------------------------------------------------------- annotations
def _annotations(segments, meas_date, first_time):
    onsets = [a + (first_time if meas_date is not None else 0.0) for a, _, _ in segments]
    return mne.Annotations(onsets, [b - a for a, b, _ in segments], [SEGMENT_DESCRIPTION] * len(segments),
                           orig_time=meas_date, ch_names=[(c,) for _, _, c in segments])


def _combined(raw, segments):
    """The recording's annotations plus the segments, on MNE's clock (without meas_date, relative to the first sample)."""
    own = raw.annotations
    shift = raw.first_time if own.orig_time is None else 0.0
    old = mne.Annotations(own.onset - shift, own.duration, own.description, orig_time=own.orig_time,
                          ch_names=own.ch_names)
    return old + _annotations(segments, own.orig_time, raw.first_time)


# ----------------------------------------------------------------------------------- suggestions
def _median(values):
    values = values[np.isfinite(values)]
    return float(np.median(values)) if values.size else float("nan")


def _reason(result, index, estimator):
    """One sentence: the criterion with the largest median z, how far from the typical channel, how often bad."""
    medians = {c: _median(result["z"][c][:, index]) for c in CRITERIA_ORDER}
    criterion = max(medians, key=lambda c: -np.inf if np.isnan(medians[c]) else medians[c])
    values = result["features"][criterion]
    if criterion == "amplitude":
        ratio = float(np.exp(_median(values[:, index])))
        text = (f"flat or dead: {ratio:.0%} of the amplitude the other channels predict" if ratio < 1 else
                f"noisy: {ratio:.1f} times the amplitude the other channels predict")
    else:
        typical = float(np.exp(_median(values[:, index]) - _median(values.ravel())))
        text = {"slow": f"slow drift or pops: {typical:.1f} times the typical prediction error below 2.5 Hz",
                "high": f"high-frequency noise: {typical:.1f} times the typical prediction error above 30 Hz",
                "line": f"line noise: {typical:.1f} times the typical power-line amplitude"}[criterion]
    bad, counted = int(result["cells"][:, index].sum()), int(np.isfinite(result["badness"][:, index]).sum())
    return f"{text} ({estimator}: z = {medians[criterion]:.1f}, bad in {bad} of {counted} epochs)"


def _suggestions(ctx, results, bridged, flat, decided_by):
    names, result = ctx["names"], results[decided_by]
    reasons = {}
    for i, name in enumerate(names):
        if name in flat:
            reasons[name] = "flat (no signal; read_raw marks it bad)"
        elif name in bridged[0]:
            partner, ratio = bridged[0][name]
            reasons[name] = f"bridged with {partner}: their difference holds {ratio:.1%} of its variance"
        elif result["channels"][i]:
            reasons[name] = _reason(result, i, decided_by)
    return [n for n in names if n in reasons], reasons


def _segments(ctx, result, suggested, threshold):
    """Consecutive windows above ``threshold`` on channels not suggested, merged: [(start, stop, channel)].

    Windows within :data:`EDGE_SECONDS` of either end of the recording are left out: the 0.5 Hz
    high-pass leaves transients there that differ from channel to channel (measured on clean
    synthetic recordings: robust z up to 9 in the first and last second, below 5 elsewhere)."""
    window_s = ctx["window"] / MODEL_SFREQ
    duration = ctx["raw"].n_times / ctx["raw"].info["sfreq"]
    spans = []
    for i, name in enumerate(ctx["names"]):
        if name in suggested or ctx["known"][i]:
            continue
        bad_epochs, bad_windows = np.nonzero(result["window_z"][:, i, :] > threshold)
        starts = sorted(float(ctx["epoch_start"][e]) + w * window_s for e, w in zip(bad_epochs, bad_windows))
        starts = [a for a in starts if a >= EDGE_SECONDS - 1e-9 and a + window_s <= duration - EDGE_SECONDS + 1e-9]
        for start in starts:
            if spans and spans[-1][2] == name and abs(spans[-1][1] - start) < 1e-9:
                spans[-1] = (spans[-1][0], round(float(start) + window_s, 6), name)
            else:
                spans.append((round(float(start), 6), round(float(start) + window_s, 6), name))
    return sorted(spans)


# ----------------------------------------------------------------------------------- the Dataset and the table
def _dataset(ctx, results, bridge_ratio, attrs):
    from ..pipeline.results import POSITION_COORDS

    estimators = list(results)
    n_windows = next(iter(results.values()))["window_z"].shape[2]
    cell = ("estimator", "epoch", "channel")

    def stack(get):
        return np.stack([get(results[e]) for e in estimators])

    data_vars = {
        "error": (cell, stack(lambda r: r["features"]["error"]), {"units": "V", "long_name": "RMS prediction error"}),
        "correlation": (cell, stack(lambda r: r["features"]["correlation"]), {"long_name": "r with the prediction"}),
        "badness": (cell, stack(lambda r: r["badness"]), {"long_name": "largest robust z of the criteria"}),
        "bad": (cell, stack(lambda r: r["cells"]), {"long_name": "badness above the threshold"}),
        "window_error": ((*cell, "window"), stack(lambda r: r["features"]["window_error"]), {"units": "V"}),
        "window_z": ((*cell, "window"), stack(lambda r: r["window_z"]), {"long_name": "robust z of the window error"}),
        "bridge_ratio": (("epoch", "channel"), bridge_ratio, {"long_name": "var(difference) / var, most similar channel"}),
    }
    described = {"amplitude_ratio": ("amplitude", "1", "RMS recording / RMS prediction"),
                 "relative_error": ("relative_error", "1", "RMS error / RMS prediction"),
                 "slow_error": ("slow", "1", "RMS error below 2.5 Hz / RMS prediction"),
                 "high_error": ("high", "1", "RMS error from 30 Hz, line bands aside / RMS prediction"),
                 "line_rms": ("line", "V", "RMS of the recording in the power-line bands")}
    for var, (feature, units, text) in described.items():
        data_vars[var] = (cell, np.exp(stack(lambda r: r["features"][feature])), {"units": units, "long_name": text})
    for name in _Z_VARS:
        data_vars[f"{name}_z"] = (cell, stack(lambda r: r["z"][name]), {"long_name": "robust z (large: bad)"})
    coords = {"estimator": estimators, "channel": ctx["names"], "epoch": np.arange(len(ctx["epoch_start"])),
              "epoch_start": ("epoch", ctx["epoch_start"], {"units": "s"}),
              "window_time": ("window", np.arange(n_windows) * ctx["window"] / MODEL_SFREQ, {"units": "s"}),
              "marked": ("channel", ctx["known"])}
    for axis, name in enumerate(POSITION_COORDS):
        coords[name] = ("channel", ctx["positions"][:, axis], {"units": "m", "frame": "MNE head"})
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)


def _table(ctx, results, suggested, reasons, bridged, segments, others):
    import pandas as pd

    rows = {"channel": ctx["names"],
            "status": ["suggested" if n in reasons else "marked" if ctx["known"][i] else "ok"
                       for i, n in enumerate(ctx["names"])],
            "reason": [reasons.get(n, "") for n in ctx["names"]]}
    for name, result in results.items():
        counted = np.maximum(np.isfinite(result["badness"]).sum(axis=0), 1)
        rows[name] = np.where(result["channels"], "bad", "")
        with np.errstate(invalid="ignore"):
            rows[f"{name}_badness"] = [_median(result["badness"][:, i]) for i in range(len(ctx["names"]))]
        rows[f"{name}_bad_epochs"] = result["cells"].sum(axis=0) / counted
    rows["bridged_with"] = [bridged.get(n, ("", 0))[0] for n in ctx["names"]]
    rows["segments_s"] = [sum(b - a for a, b, c in segments if c == n) for n in ctx["names"]]
    for column, values in others.items():
        rows[column] = [values.get(n, "") for n in ctx["names"]]
    return pd.DataFrame(rows)


def build_report(ctx, results, bridged, others, *, known, flat, data, model, options):
    """The :class:`ScreenReport` of :func:`zuna_lab.screen` (called by it)."""
    decided_by = options["estimators"][0]
    found, bridge_ratio, _ = bridged
    suggested, reasons = _suggestions(ctx, results, bridged, flat, decided_by)
    segments = _segments(ctx, results[decided_by], set(suggested), options["segment_threshold"])
    source = str(data) if isinstance(data, str) or hasattr(data, "__fspath__") else ""
    attrs = dict(result="screening", decided_by=decided_by, estimators=list(options["estimators"]),
                 compare=list(options["compare"]), threshold=float(options["threshold"]),
                 bad_fraction=float(options["bad_fraction"]), segment_threshold=float(options["segment_threshold"]),
                 segment_window=float(options["segment_window"]), bridge_threshold=float(options["bridge_threshold"]),
                 held_out="each channel alone" if options["groups"] is None else f"{options['groups']} groups",
                 passes=[int(r["passes"]) for r in results.values()], steps=int(options["steps"]),
                 seed=int(options["seed"]), line_freqs=list(ctx["line_freqs"]), source_file=source,
                 truth="256 Hz, 0.5 Hz high-pass, recording's own reference, volts (zl.reconstruct's original)",
                 model_source=str(getattr(model, "source", "") or "") if "zuna" in results else "",
                 model_variant=ctx["pre"].variant, model_random=int("zuna" in results and _is_random(model)))
    scores = _dataset(ctx, results, bridge_ratio, attrs)
    table = _table(ctx, results, suggested, reasons, found, segments, others)
    return ScreenReport(bad_channels=suggested, reasons=reasons, segments=segments, table=table, scores=scores,
                        marked=list(known), decided_by=decided_by, meas_date=ctx["raw"].info["meas_date"],
                        first_time=float(ctx["raw"].first_time))


def _is_random(model):
    """Whether ``model`` is one of zuna_lab's random checkpoints (its config says so)."""
    import json
    from pathlib import Path

    source = getattr(model, "source", None)
    try:
        config = json.loads((Path(str(source)) / "config.json").read_text())
    except (OSError, ValueError, TypeError):
        return False
    return bool(config.get("zuna_lab", {}).get("random"))
