"""Trust on your own recording: how well ZUNA fills a missing channel against MNE's spherical spline, and how sure it is.

:func:`evaluate_dropout` hides channels of the user's recording (one at a time, a random fraction of the montage per
repeat, or only within time segments), reconstructs them with ZUNA (the :func:`zuna_lab.reconstruct` path) and with
MNE's spherical-spline interpolation (:meth:`mne.io.Raw.interpolate_bads`, MNE's own code), and scores both estimators
against the hidden truth on the same cells. The scores (:func:`dropout_scores`) and the calibration helpers
(:func:`spread_coverage`, :func:`expected_coverage`, :func:`calibration_scale`, :func:`reliability`,
:func:`calibrated_interval`) are pure functions on arrays; :func:`summary` and :func:`winner` read a result.
"""
from __future__ import annotations

import time

import numpy as np
import xarray as xr
from scipy import stats
from tqdm.auto import tqdm

from ..config import SAMPLES_PER_TOKEN
from ..errors import ZunaTypeError, ZunaValueError, preview
from ..logs import logger, verbose
from ..validation import check_arguments, check_int, check_names, check_number, check_sampler, check_segments, resolve_names
from .dropout_data import check_span, read_dropout, sample_masks, spline_estimate, zuna_fill

__all__ = ["evaluate_dropout", "dropout_scores", "spread_coverage", "expected_coverage", "calibration_scale",
           "reliability", "calibrated_interval", "summary", "winner", "ESTIMATORS", "LEVELS"]

#: The estimators of the hidden signal :func:`evaluate_dropout` compares (as :func:`zuna_lab.screen` names them).
ESTIMATORS = ("zuna", "spline")
#: Nominal levels of the reliability diagram (central intervals of the sample spread).
LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
#: Visible channels :func:`evaluate_dropout` keeps at the least (the spline needs a few to fit).
MIN_VISIBLE = 3
_SCORE_VARS = ("nmse", "correlation", "rmse", "coverage_1sd", "coverage_2sd")


# ----------------------------------------------------------------------------------- pure scores
def dropout_scores(truth, estimate, *, dim=("epoch", "time")):
    """NMSE, correlation and RMSE (V) of an estimate against the truth, pooled over ``dim`` where both are not NaN.

    NMSE as the official ZUNA evaluation computes it (zuna 1.1.6 ``eeg_eval.compute_nmse``):
    ``mean((truth - estimate)²) / mean(truth²)`` — 0 is perfect, 1 as bad as predicting zeros.
    Returns a Dataset with ``nmse``, ``correlation`` (Pearson r), ``rmse`` and ``n_cells`` over the
    remaining dims (NaN where no cell is scored). The inputs are DataArrays with the same dims.

    Examples
    --------
    >>> t = xr.DataArray(np.array([[1.0, -1.0, 2.0]]), dims=("channel", "time"))
    >>> s = dropout_scores(t, 0.5 * t, dim="time")
    >>> float(s.nmse[0]), float(s.correlation[0])
    (0.25, 1.0)
    """
    if not isinstance(truth, xr.DataArray) or not isinstance(estimate, xr.DataArray):
        raise ZunaTypeError("dropout_scores needs the truth and the estimate as xarray DataArrays.")
    valid = truth.notnull() & estimate.notnull()
    t, e = truth.where(valid), estimate.where(valid)
    n = valid.sum(dim)
    some = n > 0
    err2 = ((e - t) ** 2).sum(dim)
    power = (t ** 2).sum(dim)
    tc, ec = t - t.mean(dim), e - e.mean(dim)
    with np.errstate(divide="ignore", invalid="ignore"):
        nmse = (err2 / power).where(some & (power > 0))
        rmse = np.sqrt(err2 / n.where(some))
        corr = ((tc * ec).sum(dim) / np.sqrt((tc ** 2).sum(dim) * (ec ** 2).sum(dim))).where(n > 1)
    return xr.Dataset({
        "nmse": nmse.assign_attrs(units="1", long_name="NMSE: mean squared error / mean squared truth"),
        "correlation": corr.assign_attrs(units="1", long_name="Pearson r with the truth"),
        "rmse": rmse.assign_attrs(units="V", long_name="root mean squared error"),
        "n_cells": n.assign_attrs(long_name="samples scored")})


def expected_coverage(k, n_samples):
    """How often the truth lies within ±k std of the mean of ``n_samples`` draws, for a calibrated Gaussian model.

    The truth and the n draws are then n + 1 independent values of one normal law, so
    ``(truth - mean) / (std · sqrt(1 + 1/n))`` is Student's t with n - 1 degrees of freedom, and
    the level is ``P(|T| ≤ k / sqrt(1 + 1/n))``: below the Gaussian 68.3 % / 95.4 % for few draws.

    Examples
    --------
    >>> round(expected_coverage(1, 3), 3), round(expected_coverage(2, 3), 3), round(expected_coverage(2, 1000), 3)
    (0.522, 0.775, 0.954)
    """
    n = check_int(n_samples, "n_samples", minimum=2)
    return float(2.0 * stats.t.cdf(float(k) / np.sqrt(1.0 + 1.0 / n), n - 1) - 1.0)


def _z(truth, center, spread, n):
    """(truth - center) / (spread · sqrt(1 + 1/n)): Student-t with n - 1 dof when calibrated."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return (truth - center) / (spread * np.sqrt(1.0 + 1.0 / n))


def _draws(samples, dim):
    if not isinstance(samples, xr.DataArray) or dim not in samples.dims or samples.sizes[dim] < 2:
        raise ZunaValueError(f"samples must be a DataArray with at least 2 draws along {dim!r} (n_samples >= 2).")
    return samples.mean(dim), samples.std(dim, ddof=1), samples.sizes[dim]


def _abs_z(truth, samples, dim):
    center, spread, n = _draws(samples, dim)
    z = np.abs(np.asarray(_z(truth, center, spread, n).values, dtype=float)).ravel()
    return z[np.isfinite(z)], n


def spread_coverage(truth, samples, *, k=(1.0, 2.0), dim="sample", over=None):
    """Share of the scored cells (truth not NaN) within ±k std (ddof=1) of the mean of the draws along ``dim``.

    Returns a DataArray along ``k`` (pooled over ``over``, default every dim), with attrs
    ``expected``: the levels of a calibrated model with this many draws (:func:`expected_coverage`).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> truth = xr.DataArray(rng.normal(size=20000), dims="cell")
    >>> draws = xr.DataArray(rng.normal(size=(5, 20000)), dims=("sample", "cell"))
    >>> cov = spread_coverage(truth, draws)
    >>> bool(abs(cov.sel(k=1.0) - cov.attrs["expected"][0]) < 0.02)
    True
    """
    center, spread, n = _draws(samples, dim)
    ks = [float(v) for v in np.atleast_1d(k)]
    valid = truth.notnull() & center.notnull() & spread.notnull()
    over = list(valid.dims) if over is None else over
    inside = [((abs(truth - center) <= kk * spread) & valid).sum(over) / valid.sum(over) for kk in ks]
    return xr.concat(inside, dim=xr.DataArray(ks, dims="k", name="k")).assign_attrs(
        units="1", expected=[expected_coverage(kk, n) for kk in ks], n_samples=int(n))


def calibration_scale(truth, samples, *, dim="sample"):
    """The factor by which the draws' spread must grow (> 1) or shrink (< 1) to be calibrated.

    The median of ``|truth - mean| / (std · sqrt(1 + 1/n))`` over the scored cells over its value
    for a calibrated Gaussian model (the 75th percentile of Student's t, n - 1 dof); the median
    is not swayed by a few wild cells. NaN when nothing is scored.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> truth = xr.DataArray(2.0 * rng.normal(size=20000), dims="cell")       # errors twice the spread
    >>> draws = xr.DataArray(rng.normal(size=(50, 20000)), dims=("sample", "cell"))
    >>> round(calibration_scale(truth, draws), 1)
    2.0
    """
    return _scale_from_z(*_abs_z(truth, samples, dim))


def _scale_from_z(abs_z, n):
    return float(np.median(abs_z) / stats.t.ppf(0.75, n - 1)) if abs_z.size and n >= 2 else float("nan")


def _reliability_from_z(abs_z, n, levels, scale=1.0):
    if abs_z.size == 0 or n < 2 or not np.isfinite(scale):
        return np.full(len(levels), np.nan)
    half = scale * stats.t.ppf((1.0 + np.asarray(levels)) / 2.0, n - 1)
    return (abs_z[None, :] <= half[:, None]).mean(axis=1)


def reliability(truth, samples, *, levels=LEVELS, scale=1.0, dim="sample"):
    """Observed coverage of the draws' central intervals at nominal ``levels`` (a reliability diagram).

    The interval at level p is ``mean ± t_{n-1}((1+p)/2) · sqrt(1 + 1/n) · scale · std``: it holds
    the truth with probability p when the draws are calibrated Gaussian (``scale=1``), so a
    calibrated model lies on the diagonal. Returns a DataArray along ``level``.

    Examples
    --------
    >>> rng = np.random.default_rng(2)
    >>> truth = xr.DataArray(rng.normal(size=20000), dims="cell")
    >>> draws = xr.DataArray(rng.normal(size=(3, 20000)), dims=("sample", "cell"))
    >>> obs = reliability(truth, draws)
    >>> bool(np.abs(obs - obs.level).max() < 0.02)
    True
    """
    abs_z, n = _abs_z(truth, samples, dim)
    levels = np.asarray(levels, dtype=float)
    return xr.DataArray(_reliability_from_z(abs_z, n, levels, float(scale)), dims="level",
                        coords={"level": levels}, attrs={"units": "1", "long_name": "observed coverage"})


def calibrated_interval(rec, scale, *, level=0.95):
    """A central interval of a ``reconstruct`` result with ``n_samples >= 2``, its spread calibrated.

    ``mean ± scale · t_{n-1}((1+level)/2) · sqrt(1 + 1/n) · reconstruction_std``, as a Dataset of
    ``center``, ``lower``, ``upper`` (epoch, channel, time) in volts. ``scale`` is a number or the
    result of :func:`evaluate_dropout` on your recording (its ZUNA ``calibration_scale``).
    Limits: one factor for every channel and time, fitted on channels whose recording was known,
    with roughly Gaussian errors assumed; a channel far from the others, an artefact or another
    recording may need another factor, and with random weights the factor means nothing.

    Examples
    --------
    >>> scores = zl.evaluate_dropout(raw, model, fraction=0.2, n_samples=4)      # doctest: +SKIP
    >>> rec = zl.reconstruct(raw, model=model, bad_channels=["T7"], n_samples=4)  # doctest: +SKIP
    >>> band = calibrated_interval(rec, scores, level=0.9)                       # doctest: +SKIP
    """
    if isinstance(scale, xr.Dataset):
        if "calibration_scale" not in scale:
            raise ZunaValueError("scale must be a number or the result of evaluate_dropout (with calibration_scale).")
        scale = float(scale["calibration_scale"].sel(estimator="zuna"))
    scale = check_number(scale, "scale", low=0, low_inclusive=False)
    level = check_number(level, "level", low=0, high=1)
    if not isinstance(rec, xr.Dataset) or "reconstruction_std" not in rec or "sample" not in rec.dims:
        raise ZunaValueError("rec must be a reconstruct result with n_samples >= 2 (it has a reconstruction_std).")
    n = rec.sizes["sample"]
    center = rec["reconstruction"].mean("sample")
    half = scale * float(stats.t.ppf((1.0 + level) / 2.0, n - 1)) * np.sqrt(1.0 + 1.0 / n) * rec["reconstruction_std"]
    attrs = dict(units="V")
    return xr.Dataset({"center": center.assign_attrs(attrs, long_name="mean of the draws"),
                       "lower": (center - half).assign_attrs(attrs, long_name=f"{level:g} interval, lower"),
                       "upper": (center + half).assign_attrs(attrs, long_name=f"{level:g} interval, upper")},
                      attrs=dict(level=level, calibration_scale=scale, n_samples=int(n)))


# ----------------------------------------------------------------------------------- the harness
@verbose
def evaluate_dropout(data, model=None, *, bad_channels=None, fraction=None, n_repeats=None, bad_segments=None,
                     estimators=ESTIMATORS, hidden_input="recorded", n_samples=1, steps=50, cfg=1.0, seed=0,
                     segment_duration=None, epochs=None, batch_size=None, sfreq=None, ch_names=None, progress=None,
                     verbose=None):
    """Hide channels of your recording, fill them with ZUNA and with MNE's spherical spline, and score both.

    **What is compared.** The truth is your recording as ZUNA's preprocessing sees it before
    normalising: resampled to 256 Hz, 0.5 Hz zero-phase FIR high-pass, in the recording's own
    reference, in volts (``rec.original`` of :func:`zuna_lab.reconstruct`), cut into the model's
    epochs — ZUNA's tail after the last full 5 s epoch is not scored. ZUNA's estimate is
    ``zl.reconstruct(raw, bad_channels=hidden)`` (or ``bad_segments``) — its ``reconstruction`` on
    those cells, back in volts, the mean of the draws when ``n_samples > 1``. The spline's is
    ``interpolate_bads`` (MNE's spherical splines, ``origin="auto"``, as the official ZUNA
    evaluation calls it) on that same truth with the hidden channels marked bad, at the positions
    ZUNA gets. Both are scored on the same cells (``n_cells``): the hidden (channel, sample) cells,
    minus tokens under ``BAD_`` annotations. Channels in ``info["bads"]`` are hidden from both
    estimators and never scored.

    **A leak to know of.** With ``hidden_input="recorded"`` (default: what ``zl.reconstruct``
    does on your recording) the official preprocessing still computes statistics from the hidden
    channel's recorded samples: its per-epoch mean (ZUNA), or its per-segment mean and std and
    its 1/n share of the average reference (ZUNA1.1). ZUNA's output is put back at that offset
    (and ZUNA1.1's at that amplitude) — information the spline does not get. With
    ``hidden_input="spline"`` the hidden samples are replaced by the spline's estimate before
    ``zl.reconstruct``, so nothing of the truth reaches ZUNA.

    Parameters
    ----------
    data : path | mne.io.Raw | ndarray
        Anything :func:`zuna_lab.read_raw` takes (a NumPy array needs ``sfreq`` and ``ch_names``).
        Every condition reconstructs the whole recording, unless ``epochs`` names some; a recording
        too long to reconstruct in memory is refused before any work, with that advice.
    model : ZunaModel | str | None
        As in :func:`zuna_lab.reconstruct`; not loaded when ``estimators`` leaves ZUNA out.
    bad_channels : list of str | None
        The channels to hide (and score), in turn or drawn from; None: every good channel.
    fraction : float | list of float | None
        None: each channel of ``bad_channels`` hidden alone, in turn. Else, for each fraction, a
        random ``round(fraction · n)`` of the recording's n good channels (drawn from
        ``bad_channels``) hidden together, ``n_repeats`` times.
    n_repeats : int | None
        Repeats per fraction (default 5), or per channel in the one-at-a-time mode (default 1,
        ZUNA's noise seed changes per repeat; the spline gives the same result).
    bad_segments : float | list of tuple | None
        None: whole channels are hidden. Spans ``(start, stop)`` in seconds: the chosen channels
        are hidden only there. A number of seconds: one span of that length in the middle of each
        epoch. The spline always fills whole channels (it has no time context); both are scored
        on the hidden spans only.
    estimators : tuple of {"zuna", "spline"}
        Which fills to score (the ``estimator`` dim of the result).
    hidden_input : {"recorded", "spline"}
        What ZUNA's preprocessing reads on the hidden cells (see *A leak to know of*).
    n_samples : int
        ZUNA draws per condition; with 2 or more, the coverage of the truth by their spread.
    steps, cfg, seed, segment_duration, batch_size, sfreq, ch_names
        As in :func:`zuna_lab.reconstruct` (``seed`` also draws the random subsets).
    epochs : list of int | None
        Evaluate only these epochs (indices of the recording's epochs, as ``rec.epoch``): the file is
        read lazily and only these epochs are preprocessed (as in the whole recording: ZUNA's global
        statistics from one streamed pass per set of hidden channels), reconstructed and scored, in
        memory that does not grow with the recording — the scores equal those of the whole
        recording's reconstruction restricted to these epochs. With ``hidden_input="recorded"`` only.
    progress : bool | None
        A bar over conditions; None shows it for more than 10.
    verbose : bool | str | int | None
        The log level of this call, as in MNE (None: the current level; see :func:`zuna_lab.set_log_level`).

    Returns
    -------
    scores : xarray.Dataset
        ``nmse``, ``correlation``, ``rmse`` (V), ``coverage_1sd``, ``coverage_2sd`` along
        (estimator, [fraction,] repeat, channel) — NaN for channels not hidden in a condition, and
        the coverages NaN for the spline and for ``n_samples=1``; ``n_cells`` and ``hidden``
        ([fraction,] repeat, channel), the same cells for every estimator; ``seed`` of ZUNA's draws
        per condition; ``reliability`` and ``reliability_calibrated`` (estimator, level): observed
        coverage of central intervals at each nominal ``level``; ``calibration_scale`` (estimator):
        see :func:`calibration_scale`, fitted on all held-out cells (so ``reliability_calibrated``
        is in-sample, optimistic). Electrode positions as coordinates; see :func:`summary`. Pick an
        estimator with ``scores.sel(estimator="zuna")``.

    Examples
    --------
    >>> scores = zl.evaluate_dropout(raw, model, fraction=[0.1, 0.3, 0.5], n_repeats=5, n_samples=4)  # doctest: +SKIP
    >>> zl.evaluation.summary(scores)                                                                  # doctest: +SKIP
    >>> scores.nmse.mean(["repeat", "channel"]).to_pandas()                                           # doctest: +SKIP
    >>> night = zl.evaluate_dropout("night.edf", model, epochs=list(range(720, 760)))     # 24 h file  # doctest: +SKIP
    """
    from ..pipeline.masks import bad_annotation_spans

    estimators, fractions, spans_given = _check_options(estimators, hidden_input, fraction, bad_segments)
    check_sampler(steps=steps, cfg=cfg, seed=seed, n_samples=n_samples)
    n_repeats = check_int(n_repeats, "n_repeats", minimum=1, allow_none=True) or (1 if fractions is None else 5)
    check_arguments(data=data, bad_channels=bad_channels, segment_duration=segment_duration, batch_size=batch_size,
                    sfreq=sfreq, ch_names=ch_names, progress=progress, verbose=verbose)
    check_names(bad_channels, "bad_channels", allow_empty=False)     # None: every good channel
    check_span(epochs, hidden_input, data, sfreq, n_samples)
    seed = int(np.random.SeedSequence().entropy % (2**31)) if seed is None else int(seed)
    started = time.perf_counter()
    raw, pre, chosen, model = read_dropout(data, model, estimators, epochs, segment_duration, sfreq, ch_names, verbose)
    names, bads = list(pre.ch_names), set(raw.info["bads"])
    good = [name for name in names if name not in bads]
    pool = good if bad_channels is None else resolve_names(bad_channels, names, "bad_channels")
    if bads & set(pool):
        raise ZunaValueError(f"bad_channels names {preview(sorted(bads & set(pool)))}, in info['bads']: a recording "
                             "marked bad cannot score a reconstruction; leave them out.")
    truth, widths = _epochs_array(pre, chosen)
    annotated = sample_masks(pre, chosen, spans=bad_annotation_spans(raw))
    spans = _resolve_spans(spans_given, pre, chosen)
    conditions, shape, dims = _conditions(pool, good, fractions, n_repeats, seed)

    n_estimators, n_ch = len(estimators), len(names)
    out = {v: np.full((n_estimators, *shape, n_ch), np.nan) for v in _SCORE_VARS}
    n_cells, hidden_map = np.zeros((*shape, n_ch), np.int64), np.zeros((*shape, n_ch), bool)
    seeds = np.zeros(shape if fractions is not None else (*shape, n_ch), np.int64)
    abs_z = []
    prepared = {}           # with epochs: the lazily read recording prepared for the hidden channels of a condition
    bar = tqdm(total=len(conditions), desc="evaluate_dropout", unit="condition",
               disable=not (progress if progress is not None else len(conditions) > 10))
    for index, hidden in conditions:
        rows = [names.index(name) for name in hidden]
        cond_spans = None if spans is None else [(a, b, name) for name in hidden for a, b in spans]
        cells = sample_masks(pre, chosen, bad_channels=None if spans is not None else hidden, spans=cond_spans)
        cells &= ~annotated
        cells &= np.isfinite(truth)
        target = xr.DataArray(np.where(cells, truth, np.nan), dims=("epoch", "channel", "time"))
        hidden_map[index][rows] = True
        key = index if fractions is not None else (*index, rows[0])
        cond_seed = int(np.random.SeedSequence([seed, *key]).generate_state(1)[0] % (2**31))
        seeds[key] = cond_seed
        for m, estimator in enumerate(estimators):
            if estimator == "spline":
                estimate = _spline(truth, widths, names, pre.ch_pos, sorted(set(hidden) | bads), verbose)
                spread = None
            else:
                rec = zuna_fill(raw, model, hidden, spans, cond_spans, chosen, epochs is not None, hidden_input,
                            dict(n_samples=n_samples, steps=steps, cfg=cfg, seed=cond_seed,
                                 segment_duration=segment_duration, batch_size=batch_size, progress=False,
                                 verbose=verbose), prepared)
                estimate, spread = _check_same_cells(rec, pre.epoch_start[chosen], pre.ch_names, truth, cells, hidden,
                                                     hidden_input)
            scores = dropout_scores(target, xr.DataArray(estimate, dims=target.dims))
            for var in ("nmse", "correlation", "rmse"):
                out[var][(m, *index)][rows] = scores[var].values[rows]
            n_cells[index][rows] = scores["n_cells"].values[rows]
            if spread is not None and n_samples > 1:
                for k, var in ((1.0, "coverage_1sd"), (2.0, "coverage_2sd")):
                    inside = (np.abs(truth - estimate) <= k * spread) & cells
                    out[var][(m, *index)][rows] = inside.sum((0, 2))[rows] / np.maximum(cells.sum((0, 2))[rows], 1)
                z = _z(truth[cells], estimate[cells], spread[cells], n_samples)
                abs_z.append(np.abs(z[np.isfinite(z)]).astype(np.float32))
        bar.update(1)
    bar.close()
    abs_z = np.concatenate(abs_z) if abs_z else np.zeros(0, np.float32)
    scores = _dataset(out, n_cells, hidden_map, seeds, abs_z, estimators=estimators, dims=dims, fractions=fractions,
                      n_repeats=n_repeats, names=names, pre=pre, model=model, spans=spans, data=data,
                      params=dict(n_samples=int(n_samples), steps=int(steps), cfg=float(cfg), seed=seed,
                                  hidden_input=hidden_input,
                                  epochs="all" if epochs is None else ", ".join(str(i) for i in chosen)))
    logger.info("evaluate_dropout: %d conditions, %s scored on %d channels in %.1f s.", len(conditions), " and ".join(
        estimators), int(hidden_map.reshape(-1, n_ch).any(0).sum()), time.perf_counter() - started)
    return scores


def _check_options(estimators, hidden_input, fraction, segments):
    """estimators (tuple), fractions (list | None), bad_segments (seconds | spans | None), checked."""
    if not isinstance(estimators, (tuple, list)) or not all(m in ESTIMATORS for m in estimators) or not estimators \
            or len(set(estimators)) != len(tuple(estimators)):
        raise ZunaValueError(f"estimators must be a tuple naming 'zuna' and/or 'spline' once each, got {estimators!r}.")
    if hidden_input not in ("recorded", "spline"):
        raise ZunaValueError(f"hidden_input must be 'recorded' or 'spline', got {hidden_input!r}.")
    fractions = None if fraction is None else [fraction] if np.ndim(fraction) == 0 else list(fraction)
    for value in fractions or ():
        check_number(value, "fraction", low=0, high=1, hint="(of the channels hidden together)")
    if fractions is not None and (not fractions or not all(0 < v < 1 for v in fractions)
                                  or len(set(fractions)) != len(fractions)):
        raise ZunaValueError(f"fraction must hold distinct numbers strictly between 0 and 1, got {fraction!r}.")
    if segments is not None and np.ndim(segments) == 0 and not isinstance(segments, (tuple, list)):
        segments = check_number(segments, "bad_segments", low=0.125, unit="of seconds", hint="(one token at least)")
    elif segments is not None:
        check_segments(segments, "bad_segments")
        if any(len(span) != 2 for span in segments):
            raise ZunaValueError("bad_segments are (start, stop) spans in seconds here; bad_channels and fraction say "
                                 "which channels.")
        segments = [(float(a), float(b)) for a, b in segments]
    return tuple(estimators), fractions and [float(v) for v in fractions], segments


def _resolve_spans(segments, pre, chosen):
    """Spans in seconds: as given, or one of ``segments`` seconds in the middle of each chosen epoch."""
    if segments is None or isinstance(segments, list):
        return segments
    spans = []
    for i in chosen:
        length = pre.n_samples(i) / pre.sfreq
        if segments > length:
            raise ZunaValueError(f"bad_segments={segments:g} s is longer than epoch {i} ({length:g} s); use a shorter span.")
        middle = float(pre.epoch_start[i]) + length / 2
        spans.append((middle - segments / 2, middle + segments / 2))
    return spans


def _conditions(pool, good, fractions, n_repeats, seed):
    """[(index, hidden channels)], the shape of the condition dims and their names."""
    if fractions is None:
        # each channel alone: the channel is the condition, so the condition dims are (repeat,) + channel
        if len(good) - 1 < MIN_VISIBLE:     # (MNE's spline fits a sphere to the visible channels' positions)
            raise ZunaValueError(f"Hiding one of {len(good)} good channels leaves fewer than {MIN_VISIBLE} visible; "
                                 "evaluate_dropout needs at least 4 good EEG channels with positions.")
        return [((r,), (name,)) for r in range(n_repeats) for name in pool], (n_repeats,), ("repeat",)
    conditions = []
    for f_index, value in enumerate(fractions):
        count = int(round(value * len(good)))
        if count < 1 or count > len(pool) or len(good) - count < MIN_VISIBLE:
            raise ZunaValueError(
                f"fraction={value:g} hides {count} of the {len(good)} good channels ({len(pool)} may be hidden); "
                f"hide at least 1 and keep at least {MIN_VISIBLE} visible.")
        for r in range(n_repeats):
            rng = np.random.default_rng([seed, f_index, r])
            chosen = set(rng.choice(len(pool), size=count, replace=False).tolist())
            conditions.append(((f_index, r), tuple(name for i, name in enumerate(pool) if i in chosen)))
    return conditions, (len(fractions), n_repeats), ("fraction", "repeat")


def _epochs_array(pre, chosen):
    """The truth (epoch, channel, time) of epochs ``chosen``, NaN past a short last segment, and their widths."""
    widths = [pre.n_samples(i) for i in chosen]
    truth = np.full((len(chosen), pre.n_channels, max(widths)), np.nan)
    for k, i in enumerate(chosen):
        truth[k, :, :widths[k]] = pre.original(i)
    return truth, widths


def _spline(truth, widths, names, positions, bads, verbose):
    """The spline's estimate of every channel, epoch by epoch (it is instantaneous: one fit for all)."""
    flat = np.concatenate([truth[i, :, :w] for i, w in enumerate(widths)], axis=1)
    filled = spline_estimate(flat, names, positions, bads, 256.0, verbose)
    out, start = np.full(truth.shape, np.nan), 0
    for i, width in enumerate(widths):
        out[i, :, :width] = filled[:, start:start + width]
        start += width
    return out


def _check_same_cells(rec, epoch_start, ch_names, truth, cells, hidden, hidden_input):
    """ZUNA's estimate and spread as arrays, after checking it hid the scored cells of the same truth."""
    if not np.allclose(rec["epoch_start"].values, epoch_start):
        raise ZunaValueError("ZUNA's epochs differ from the evaluation's; this is a bug in zuna_lab.")
    original = rec["original"].values
    keep = ~np.isin(ch_names, list(hidden)) if hidden_input == "spline" else slice(None)
    if not np.allclose(original[:, keep], truth[:, keep], rtol=1e-9, atol=1e-15, equal_nan=True):
        raise ZunaValueError("ZUNA's original differs from the evaluation's truth; this is a bug in zuna_lab.")
    masked = np.repeat(rec["mask"].values, SAMPLES_PER_TOKEN, axis=2)[:, :, : truth.shape[2]]
    if (cells & ~masked).any():
        raise ZunaValueError("A scored cell was not hidden from ZUNA; this is a bug in zuna_lab.")
    recon = rec["reconstruction"]
    if "sample" in recon.dims:
        return recon.mean("sample").values, rec["reconstruction_std"].values
    return recon.values, None


def _dataset(out, n_cells, hidden, seeds, abs_z, *, estimators, dims, fractions, n_repeats, names, pre, model, spans,
             data, params):
    from ..pipeline.results import POSITION_COORDS

    n, zuna = params["n_samples"], [m == "zuna" for m in estimators]
    scale = _scale_from_z(abs_z, n)
    reliable = np.array([_reliability_from_z(abs_z if z else abs_z[:0], n, LEVELS) for z in zuna])
    calibrated = np.array([_reliability_from_z(abs_z if z else abs_z[:0], n, LEVELS, scale) for z in zuna])
    coords = {"estimator": list(estimators), "repeat": np.arange(n_repeats), "channel": names,
              "level": ("level", np.asarray(LEVELS), {"long_name": "nominal coverage"})}
    if fractions is not None:
        coords["fraction"] = ("fraction", np.asarray(fractions), {"long_name": "fraction of channels hidden"})
    for axis, name in enumerate(POSITION_COORDS):
        coords[name] = ("channel", pre.ch_pos[:, axis], {"units": "m", "frame": "MNE head"})
    cond = (*dims, "channel")
    data_vars = {var: (("estimator", *cond), out[var], {"units": "V" if var == "rmse" else "1"}) for var in _SCORE_VARS}
    data_vars.update(
        n_cells=(cond, n_cells, {"long_name": "samples scored (the same for every estimator)"}),
        hidden=(cond, hidden, {"long_name": "channel hidden in this condition"}),
        seed=(dims if fractions is not None else cond, seeds, {"long_name": "ZUNA's noise seed"}),
        reliability=(("estimator", "level"), reliable, {"long_name": "observed coverage of the level's interval"}),
        reliability_calibrated=(("estimator", "level"), calibrated, {"long_name": "after calibration_scale (in-sample)"}),
        calibration_scale=(("estimator",), np.where(zuna, scale, np.nan), {"long_name": "calibrates ZUNA's spread"}))
    attrs = dict(result="dropout evaluation", mode="fraction" if fractions is not None else "one channel at a time",
                 segments="whole channels" if spans is None else "; ".join(f"{a:g}-{b:g} s" for a, b in spans),
                 truth="256 Hz, 0.5 Hz high-pass, recording's own reference, volts (rec.original)",
                 spline="mne interpolate_bads (spherical spline, origin='auto')",
                 zuna="zl.reconstruct reconstruction" + (" (mean of the draws)" if n > 1 else ""),
                 model_variant=pre.variant, model_source=str(getattr(model, "source", "") or ""),
                 source_file=str(data) if isinstance(data, str) or hasattr(data, "__fspath__") else "",
                 expected_coverage_1sd=expected_coverage(1, n) if n > 1 else np.nan,
                 expected_coverage_2sd=expected_coverage(2, n) if n > 1 else np.nan, **params)
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)


# ----------------------------------------------------------------------------------- reading a result
def summary(scores):
    """One row per estimator (and fraction) of :func:`evaluate_dropout`'s scores, averaged over hidden channels and repeats.

    Columns: ``nmse`` and ``nmse_sd`` (over conditions), ``correlation``, ``rmse_uV`` (µV, for
    reading), ``coverage_1sd`` / ``coverage_2sd`` beside ``expected_1sd`` / ``expected_2sd`` (a
    calibrated model's levels), ``n`` (scores) and ``wins`` (share with the lowest NMSE).

    Examples
    --------
    >>> summary(scores).round(3)  # doctest: +SKIP
    """
    import pandas as pd

    if not isinstance(scores, xr.Dataset) or "nmse" not in scores or "estimator" not in scores.dims:
        raise ZunaTypeError("summary needs the Dataset returned by zuna_lab.evaluate_dropout.")
    by = ["fraction"] if "fraction" in scores.dims else []
    over = [d for d in scores["nmse"].dims if d not in ("estimator", *by)]
    best = scores["nmse"].idxmin("estimator") if scores.sizes["estimator"] > 1 else None
    rows = []
    for estimator in scores["estimator"].values:
        for value in (scores["fraction"].values if by else [None]):
            part = scores.sel(estimator=estimator, **({"fraction": value} if by else {}))
            scored = part["nmse"].notnull()
            row = {"estimator": str(estimator), **({"fraction": float(value)} if by else {}),
                   "nmse": float(part["nmse"].mean(over)), "nmse_sd": float(part["nmse"].std(over)),
                   "correlation": float(part["correlation"].mean(over)), "rmse_uV": float(part["rmse"].mean(over)) * 1e6}
            for k in ("1sd", "2sd"):
                row[f"coverage_{k}"] = float(part[f"coverage_{k}"].mean(over))
                row[f"expected_{k}"] = float(scores.attrs.get(f"expected_coverage_{k}", np.nan))
            row["n"] = int(scored.sum())
            if best is not None:
                won = (best.sel(fraction=value) if by else best) == estimator
                row["wins"] = float((won & scored).sum() / max(row["n"], 1))
            rows.append(row)
    return pd.DataFrame(rows).set_index(["estimator", *by])


def winner(scores, *, metric="nmse"):
    """Per channel, the estimator with the better mean score (lower NMSE / RMSE, higher correlation).

    Returns
    -------
    best : xarray.DataArray of str
        Along ``channel``, with the positions; ``""`` where an estimator did not score the channel.

    Examples
    --------
    >>> winner(scores).to_series().value_counts()  # doctest: +SKIP
    """
    if metric not in ("nmse", "rmse", "correlation"):
        raise ZunaValueError(f"metric must be 'nmse', 'rmse' or 'correlation', got {metric!r}.")
    mean = scores[metric].mean([d for d in scores[metric].dims if d not in ("estimator", "channel")])
    scored = mean.notnull().all("estimator")
    pick = (mean.fillna(-np.inf).idxmax("estimator") if metric == "correlation" else mean.fillna(np.inf).idxmin("estimator"))
    return pick.where(scored, "").astype(str).rename("winner").assign_attrs(metric=metric)
