"""Screening: bad channels and bad stretches found by what the other channels cannot predict (issue O).

:func:`screen` holds out each channel (or a group of spread-out channels) in turn, predicts it
from the others — with ZUNA (:func:`zuna_lab.api.core.reconstruct_prepared`, the code of
:func:`zuna_lab.reconstruct`) and with MNE's spherical splines, the test PREP's RANSAC makes —
and compares the prediction with the recording, epoch by epoch: the amplitude, the error in a
slow and a high-frequency band, and the power-line amplitude. Each score becomes a robust
z-score (median and MAD over every channel and epoch); a channel whose scores pass the threshold
in at least half of its epochs is suggested bad, and short windows whose prediction error
stands out on an otherwise good channel become ``BAD_screen`` annotations. Channels that are a
copy of another (bridged by gel) and flat channels are suggested too. The report is built in
:mod:`zuna_lab.trust.screen_report`; pyprep's and MNE's detectors in :mod:`zuna_lab.trust.detectors`.
"""
from __future__ import annotations

import warnings

import numpy as np
from tqdm.auto import tqdm

from ..config import MODEL_SFREQ, SAMPLES_PER_TOKEN, TOKEN_SECONDS
from ..errors import ZunaLabWarning, ZunaTypeError, ZunaValueError
from ..validation import check_arguments, check_int, check_number, resolve_names, resolve_segments
from . import prediction
from .detectors import DETECTORS, run_detectors
from .screen_report import ScreenReport, build_report
from ..logs import logger, verbose

__all__ = ["screen", "ScreenReport", "ESTIMATORS", "CRITERIA"]

#: The estimators :func:`screen` can run; the first one given decides what is suggested.
ESTIMATORS = ("zuna", "spline")
#: What each criterion compares (recording against prediction) and the side that is bad.
CRITERIA = {
    "amplitude": "RMS of the recording / RMS of the prediction (too small: flat or dead; too large: noisy)",
    "slow": "RMS of the error below 2.5 Hz / RMS of the prediction (drifts, electrode pops)",
    "high": "RMS of the error from 30 Hz up, power-line bands aside, / RMS of the prediction (noise)",
    "line": "the recording's RMS at the power-line frequency and its harmonics (line noise)",
}


# ----------------------------------------------------------------------------------- checks
def _check_options(estimators, compare, groups, threshold, bad_fraction, segment_threshold, segment_window,
                   bridge_threshold, max_passes):
    if isinstance(estimators, str) or not isinstance(estimators, (tuple, list)) or not estimators \
            or not all(e in ESTIMATORS for e in estimators) or len(set(estimators)) != len(estimators):
        raise ZunaValueError(f"estimators must be a tuple naming 'zuna' and/or 'spline' once each (the first decides), "
                             f"got {estimators!r}.")
    if isinstance(compare, str) or not isinstance(compare, (tuple, list)) or not all(c in DETECTORS for c in compare):
        raise ZunaValueError(f"compare must be a tuple of {', '.join(map(repr, DETECTORS))} (or () for none), "
                             f"got {compare!r}.")
    check_int(groups, "groups", minimum=2, allow_none=True, hint="(channels held out together, in that many sets)")
    check_number(threshold, "threshold", low=0, low_inclusive=False, hint="(a robust z-score)")
    if check_number(bad_fraction, "bad_fraction", low=0, high=1, hint="(of a channel's epochs)") == 0:
        raise ZunaValueError("bad_fraction must be above 0 (the share of a channel's epochs that must be bad; "
                             "0 would suggest every channel), got 0.")
    check_number(segment_threshold, "segment_threshold", low=0, low_inclusive=False, hint="(a robust z-score)")
    window = check_number(segment_window, "segment_window", low=TOKEN_SECONDS, unit="of seconds",
                          hint="(whole 0.125 s tokens)")
    if abs(window / TOKEN_SECONDS - round(window / TOKEN_SECONDS)) > 1e-9:
        raise ZunaValueError(f"segment_window must be a whole number of 0.125 s tokens (e.g. 0.5), got {window:g}.")
    check_number(bridge_threshold, "bridge_threshold", low=0, high=1, hint="(of a channel's variance)")
    check_int(max_passes, "max_passes", minimum=1)
    return tuple(estimators), tuple(compare)


def _read(data, bad_channels, bad_segments, sfreq, ch_names, verbose):
    """The recording as read_raw gives it, the channels known bad, the flat ones, and the known bad spans."""
    from ..io.quality import check_signal
    from ..io.read import read_raw
    from ..pipeline.masks import bad_annotation_spans

    raw = read_raw(data, sfreq=sfreq, ch_names=ch_names, verbose=verbose)     # its warnings: once, here
    flat = [name for name in check_signal(raw) if name in raw.ch_names]
    known = [name for name in raw.info["bads"] if name not in flat]
    known += [name for name in resolve_names(bad_channels, raw.ch_names, "bad_channels") if name not in known]
    if len(set(known) | set(flat)) > len(raw.ch_names) - 3:
        raise ZunaValueError(f"Only {len(raw.ch_names) - len(set(known) | set(flat))} channels are not known bad or "
                             "flat; screening predicts each channel from the others and needs at least 3.")
    spans = resolve_segments(bad_segments, raw.ch_names, raw.n_times / raw.info["sfreq"]) + bad_annotation_spans(raw)
    return raw, known, flat, spans


# ----------------------------------------------------------------------------------- one estimator
def _z_scores(features, scored):
    """Robust z of each criterion over the scored cells, turned so that large means bad."""
    z = {}
    with np.errstate(invalid="ignore"):
        z["amplitude"] = np.abs(prediction.robust_z(features["amplitude"], where=scored))
        for band in ("slow", "high", "line"):
            z[band] = prediction.robust_z(features[band], where=scored)
        # shown, not used to decide: on their own they tell channels at the edge of the cap from faulty ones
        z["correlation"] = -prediction.robust_z(np.arctanh(np.clip(features["correlation"], -0.999, 0.999)),
                                                where=scored)
        z["error"] = prediction.robust_z(features["relative_error"], where=scored)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)          # all-NaN: a cell not scored
        badness = np.nanmax(np.stack([np.where(scored, z[c], np.nan) for c in CRITERIA]), axis=0)
    return z, np.where(scored, badness, np.nan)


def _predict(name, ctx, excluded, bad_cells, on_set):
    if name == "spline":
        return prediction.spline_predictions(ctx["truth"], ctx["positions"], ctx["origin"],
                                             hidden_sets=ctx["sets"], excluded=excluded, bad_cells=bad_cells)
    return prediction.zuna_predictions(ctx["raw"], ctx["truth"], ctx["epoch_start"], ctx["model"],
                                       hidden_sets=ctx["sets"], excluded=excluded, bad_cells=bad_cells,
                                       origin=ctx["origin"], on_set=on_set, **ctx["zuna_options"])


def _run_estimator(name, ctx, options, bar):
    """Passes of predict → score → decide, each predicting from the channels and cells not found bad before."""
    known, known_cells = ctx["known"], ctx["known_cells"]
    excluded, bad_cells = known | ctx["flat"], known_cells.copy()       # a flat channel predicts nothing
    scored = ~known_cells & ~known[None, :]
    for n_passes in range(1, options["max_passes"] + 1):
        if name == "zuna":
            bar.total = (bar.total or 0) + len(ctx["sets"])
            bar.refresh()
        features = prediction.residual_scores(ctx["truth"], _predict(name, ctx, excluded, bad_cells, lambda _: bar.update(1)),
                                              widths=ctx["widths"], sfreq=MODEL_SFREQ, line_freqs=ctx["line_freqs"],
                                              window=ctx["window"])
        z, badness = _z_scores(features, scored & np.isfinite(features["amplitude"]))
        cells = badness > options["threshold"]
        counted = np.maximum(np.isfinite(badness).sum(axis=0), 1)
        channels = (cells.sum(axis=0) / counted >= options["bad_fraction"]) & np.isfinite(badness).any(axis=0)
        new_excluded = known | ctx["flat"] | channels
        new_cells = known_cells | (cells & ~channels[None, :])
        if (new_excluded == excluded).all() and (new_cells == bad_cells).all():
            break
        excluded, bad_cells = new_excluded, new_cells
    window_z = _window_z(features["window_error"], scored & ~(channels | ctx["flat"])[None, :])
    return dict(features=features, z=z, badness=badness, cells=cells, channels=channels, passes=n_passes,
                window_z=window_z)


def _window_z(window_error, usable):
    """Each window's log error against its channel's median window, over the MAD of all usable windows."""
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        logs = np.where(usable[:, :, None], np.log(window_error), np.nan)
        deviation = logs - np.nanmedian(logs, axis=(0, 2))[None, :, None]
    z = prediction.robust_z(deviation)
    return np.where(np.isfinite(np.log(window_error)), z, np.nan)


# ----------------------------------------------------------------------------------- the recording's grid
def _context(raw, known, flat, spans, model, variant, groups, segment_window, segment_duration, verbose):
    from ..api.core import prepare
    from ..pipeline.tokens import epoch_sample_masks

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ZunaLabWarning)          # read_raw said it once
        pre = prepare(raw, variant, segment_duration=segment_duration, verbose=verbose).pre
    widths = [pre.n_samples(i) for i in range(pre.n_epochs)]
    truth = np.full((pre.n_epochs, pre.n_channels, max(widths)), np.nan)
    for i, width in enumerate(widths):
        truth[i, :, :width] = pre.volts[i]
    names = list(pre.ch_names)
    line = raw.info.get("line_freq")
    return dict(raw=raw, pre=pre, truth=truth, widths=widths, names=names, positions=np.asarray(pre.ch_pos),
                origin=prediction.sphere_origin(raw.info), epoch_start=np.asarray(pre.epoch_start),
                sets=prediction.held_out_sets(pre.ch_pos, groups), model=model,
                known=np.isin(names, known), flat=np.isin(names, flat),
                known_cells=epoch_sample_masks(pre, spans=spans).any(axis=2) if spans else
                np.zeros((pre.n_epochs, pre.n_channels), bool),
                line_freqs=(float(line),) if line else (50.0, 60.0),
                window=int(round(segment_window * MODEL_SFREQ)) // SAMPLES_PER_TOKEN * SAMPLES_PER_TOKEN)


def _bridged(truth, names, usable, bridge_threshold):
    """{channel: (partner, median ratio)} for channels whose difference with another is below the threshold."""
    ratio, partner = prediction.bridge_scores(truth)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        median = np.nanmedian(ratio, axis=0)
    found = {}
    for i in np.flatnonzero(usable & (median < bridge_threshold)):
        values, counts = np.unique(partner[:, i][partner[:, i] >= 0], return_counts=True)
        if len(values) and usable[values[np.argmax(counts)]]:
            found[names[i]] = (names[int(values[np.argmax(counts)])], float(median[i]))
    return found, ratio, partner


# ----------------------------------------------------------------------------------- public
@verbose
def screen(data, model=None, *, estimators=ESTIMATORS, compare=DETECTORS, groups=None, threshold=4.0,
           bad_fraction=0.5, segment_threshold=6.0, segment_window=0.5, bridge_threshold=0.02, max_passes=3,
           bad_channels=None, bad_segments=None, steps=50, seed=0, segment_duration=None, batch_size=None,
           sfreq=None, ch_names=None, progress=None, verbose=None):
    """Find bad channels and bad stretches of a recording by what the other channels cannot predict.

    Each channel (or, with ``groups``, each of that many spread-out sets of channels) is hidden in
    turn and predicted from the others, in every epoch (ZUNA's 5 s epochs):

    - ``"spline"``: MNE's spherical splines (``interpolate_bads``' matrix), the prediction PREP's
      RANSAC makes (from all the other channels rather than random quarters of them);
    - ``"zuna"``: ZUNA's reconstruction of the hidden channels (:func:`zuna_lab.reconstruct`'s
      code); the hidden channels' own recording never reaches ZUNA (it is replaced by the
      spline's estimate before the preprocessing, whose statistics would otherwise leak it).

    The prediction is compared with the recording as ZUNA's preprocessing sees it (256 Hz,
    0.5 Hz high-pass, own reference, volts) by four criteria (:data:`CRITERIA`): the amplitude
    ratio, the error below 2.5 Hz and above 30 Hz (relative to the prediction), and the
    power-line amplitude. Each becomes a robust z-score over every scored channel and epoch
    (median and 1.4826 · MAD), turned so that large is bad; a cell's *badness* is the largest.
    The correlation with the prediction and the relative error are scored too (``scores``) but
    do not decide: on this test alone a channel at the edge of the cap looks like a faulty one. A channel is suggested bad when its badness passes
    ``threshold`` in at least ``bad_fraction`` of its epochs; then everything is predicted again
    without the channels and cells found bad (up to ``max_passes``), so that one noisy channel
    does not spoil its neighbours' predictions. A flat channel, and a channel whose difference
    with another holds less than ``bridge_threshold`` of its variance (bridged by gel), are
    suggested too. On the channels left, windows of ``segment_window`` seconds whose error stands
    out against the channel's own typical window by more than ``segment_threshold`` (robust z)
    become ``BAD_screen`` annotations on that channel. The first of ``estimators`` decides what is
    suggested; the others are shown beside it in ``report.table``.

    Parameters
    ----------
    data : path | mne.io.Raw | ndarray
        Anything :func:`zuna_lab.read_raw` takes (a NumPy array needs ``sfreq`` and ``ch_names``);
        never modified.
    model : ZunaModel | str | None
        As in :func:`zuna_lab.reconstruct`; not loaded when ``estimators`` leaves ZUNA out.
    estimators : tuple of {"zuna", "spline"}
        The predictors to run; the first decides what is suggested.
    compare : tuple of {"pyprep", "lof"}
        Other detectors run on the same recording, their verdicts as columns of ``report.table``:
        pyprep's ``NoisyChannels.find_all_bads(ransac=True)`` (``"not installed"`` without pyprep:
        ``pip install zuna_lab[screen]``) and MNE's ``find_bad_channels_lof``. ``()`` runs none.
    groups : int | None
        None holds out each channel alone (one ZUNA reconstruction of the recording per channel);
        a number holds out that many sets of channels spread over the head (that many reconstructions).
    threshold : float
        Robust z-score above which a cell (epoch, channel) is bad (default 4).
    bad_fraction : float
        Share of a channel's epochs that must be bad for the channel to be suggested (default 0.5).
    segment_threshold : float
        Robust z-score of a window's error above which it is suggested as a bad segment (default 6).
    segment_window : float
        Window length in seconds (whole 0.125 s tokens; default 0.5).
    bridge_threshold : float
        Variance of the difference with the most similar channel, over the channel's own, below
        which two channels are taken as bridged (default 0.02, a correlation of about 0.99).
    max_passes : int
        Predictions at most per estimator (again without what was found bad; default 3).
    bad_channels, bad_segments : optional
        Channels and spans already known bad (as in :func:`zuna_lab.reconstruct`), on top of
        ``info["bads"]`` and ``BAD_`` annotations: never used to predict, not scored, not suggested.
    steps, seed, segment_duration, batch_size
        As in :func:`zuna_lab.reconstruct` (``seed`` also seeds pyprep's RANSAC).
    sfreq, ch_names : optional
        For NumPy input.
    progress : bool | None
        A bar over ZUNA's reconstructions; None shows it for more than 10.
    verbose : bool | str | int | None
        MNE verbosity for this call.

    Returns
    -------
    report : ScreenReport
        ``report.bad_channels`` (suggested, a list ready for ``info["bads"]``) with
        ``report.reasons``; ``report.bad_segments`` (``mne.Annotations`` named ``BAD_screen``, one
        channel each) and ``report.segments`` (``(start, stop, channel)``, for ``bad_segments=``);
        ``report.table`` (one row per channel); ``report.scores`` (estimator × epoch × channel);
        ``report.apply(raw)`` (a copy with both added).

    Examples
    --------
    >>> report = zl.screen("subject01.edf", model=model)                  # doctest: +SKIP
    >>> report.bad_channels, report.reasons                               # doctest: +SKIP
    >>> raw.set_annotations(raw.annotations + report.bad_segments)        # doctest: +SKIP
    >>> fixed = zl.reconstruct(report.apply(raw), model=model, seed=0)    # doctest: +SKIP
    """
    check_arguments(data=data, bad_channels=bad_channels, bad_segments=bad_segments, segment_duration=segment_duration,
                    batch_size=batch_size, sfreq=sfreq, ch_names=ch_names, progress=progress, verbose=verbose,
                    steps=steps, cfg=1.0, seed=seed, n_samples=1)
    if seed is None:
        raise ZunaTypeError("seed must be a non-negative integer for screen (its results are reproducible), got None.")
    estimators, compare = _check_options(estimators, compare, groups, threshold, bad_fraction, segment_threshold,
                                         segment_window, bridge_threshold, max_passes)
    from ..api.streaming import check_fits_in_memory

    check_fits_in_memory(data, "reconstruct", sfreq=sfreq, doing="Screening",
                         fix="screen a part of it (zl.read_raw(path, preload=False).crop(tmin, tmax))")
    raw, known, flat, spans = _read(data, bad_channels, bad_segments, sfreq, ch_names, verbose)
    if "zuna" in estimators:
        from ..api.core import get_model

        model = get_model(model)
    # ZUNA's epochs when a model is there; else ZUNA1.1's grid, which also keeps a short last segment
    variant = getattr(model, "variant", "ZUNA1.1")
    ctx = _context(raw, known, flat, spans, model, variant, groups, segment_window, segment_duration, verbose)
    ctx["zuna_options"] = dict(steps=steps, seed=seed, segment_duration=segment_duration, batch_size=batch_size,
                               verbose=verbose)
    show = progress if progress is not None else "zuna" in estimators and len(ctx["sets"]) > 10
    options = dict(threshold=threshold, bad_fraction=bad_fraction, max_passes=max_passes)
    with tqdm(total=0, desc="screen (ZUNA)", unit="reconstruction", disable=not show) as bar:
        results = {name: _run_estimator(name, ctx, options, bar) for name in estimators}
    usable = ~(ctx["known"] | ctx["flat"])
    bridged = _bridged(ctx["truth"], ctx["names"], usable, bridge_threshold)
    others = run_detectors(raw, compare, seed=seed) if compare else {}
    report = build_report(ctx, results, bridged, others, known=known, flat=flat, data=data, model=model,
                          options=dict(options, segment_threshold=segment_threshold, segment_window=segment_window,
                                       bridge_threshold=bridge_threshold, groups=groups, steps=steps, seed=seed,
                                       estimators=estimators, compare=compare))
    logger.info("screen: %s", report.summary_lines()[0])
    return report

