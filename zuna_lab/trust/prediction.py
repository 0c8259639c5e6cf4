"""Each channel predicted from the others: the two estimators :func:`zuna_lab.screen` compares, and their scores.

The spline (:func:`spline_predictions`) is MNE's spherical-spline interpolation (Perrin et al.
1989, the matrix of :meth:`mne.io.Raw.interpolate_bads` with ``origin="auto"``), evaluated for
every held-out set of channels in every epoch; ZUNA (:func:`zuna_predictions`) infills the
held-out channels through :func:`zuna_lab.api.core.reconstruct_prepared`, the code of
:func:`zuna_lab.reconstruct`. :func:`residual_scores` compares a prediction with the recording
(RMS error, correlation, amplitude ratio; per epoch and per short window), :func:`robust_z` puts
scores on a common scale (median and MAD), :func:`bridge_scores` finds channels that are copies of
another. All arrays are ``(epoch, channel, time)`` in volts, NaN past a short last segment.
"""
from __future__ import annotations

import warnings

import mne
import numpy as np
from numpy.polynomial.legendre import legval

from ..config import SAMPLES_PER_TOKEN
from ..errors import ZunaLabWarning, ZunaValueError

__all__ = ["spline_matrix", "sphere_origin", "held_out_sets", "spline_predictions", "zuna_predictions",
           "residual_scores", "robust_z", "bridge_scores", "SPLINE_STIFFNESS", "SPLINE_TERMS", "SPLINE_ALPHA",
           "SLOW_BAND", "HIGH_FROM", "LINE_HALF_WIDTH"]

#: MNE's spherical spline: stiffness m = 4, 50 Legendre terms, regularisation 1e-5 (interpolate_bads).
SPLINE_STIFFNESS, SPLINE_TERMS, SPLINE_ALPHA = 4, 50, 1e-5


# ----------------------------------------------------------------------------------- the spline
def _g(cosines):
    n = np.arange(1, SPLINE_TERMS + 1)
    factors = (2 * n + 1) / (n ** SPLINE_STIFFNESS * (n + 1) ** SPLINE_STIFFNESS * 4 * np.pi)
    return legval(cosines, np.r_[0.0, factors])


def _unit(positions, origin):
    centred = np.asarray(positions, float) - np.asarray(origin, float)
    return centred / np.linalg.norm(centred, axis=1, keepdims=True)


def spline_matrix(positions, sources, targets, *, origin=(0.0, 0.0, 0.0), g=None):
    """The spherical-spline matrix that maps the channels ``sources`` to the channels ``targets``.

    The same numbers as MNE's ``interpolate_bads`` (``_make_interpolation_matrix``): positions
    centred on ``origin`` and put on the unit sphere, Perrin's g with m = 4 and 50 Legendre terms,
    1e-5 on the diagonal, and the constant term of the spline.

    Parameters
    ----------
    positions : ndarray, shape (n_channels, 3)
        Every channel's position (m, head frame).
    sources, targets : array of int
        Row indices of the channels to predict from and of those to predict.
    origin : array, shape (3,)
        Centre of the head sphere (:func:`sphere_origin`).
    g : ndarray, shape (n_channels, n_channels) | None
        Perrin's g between every pair of channels, when already computed (it depends only on
        the positions and the origin).

    Returns
    -------
    matrix : ndarray, shape (len(targets), len(sources))

    Examples
    --------
    >>> pos = np.array([[0.07, 0, 0.04], [-0.07, 0, 0.04], [0, 0.07, 0.04], [0, -0.07, 0.04], [0, 0, 0.09]])
    >>> m = spline_matrix(pos, [0, 1, 2, 3], [4])
    >>> m.shape, bool(np.isclose(m.sum(), 1.0))          # a constant field is predicted exactly
    ((1, 4), True)
    """
    sources, targets = np.asarray(sources, int), np.asarray(targets, int)
    if g is None:
        unit = _unit(positions, origin)
        g = _g(unit @ unit.T)
    g_from = g[np.ix_(sources, sources)] + SPLINE_ALPHA * np.eye(len(sources))
    n = len(sources)
    system = np.block([[g_from, np.ones((n, 1))], [np.ones((1, n)), np.zeros((1, 1))]])
    rhs = np.hstack([g[np.ix_(targets, sources)], np.ones((len(targets), 1))])
    # the system is symmetric: rhs @ inv(system) = solve(system, rhs.T).T (MNE multiplies by its pinv)
    return np.linalg.solve(system, rhs.T).T[:, :-1]


def sphere_origin(info):
    """The head sphere's centre (m) that MNE's ``interpolate_bads(origin="auto")`` fits to ``info``'s digitisation."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(mne.bem.fit_sphere_to_headshape(info, units="m", verbose="error")[1], float)


def held_out_sets(positions, groups=None):
    """Which channels are held out together: each alone (``groups=None``), or ``groups`` spread-out sets.

    With a number of groups, channels are taken in farthest-point order (each next channel the
    farthest from those already taken) and each joins the group, among those not yet full, whose
    nearest member is farthest from it: neighbours land in different groups, so every channel
    keeps its neighbours as predictors.

    Examples
    --------
    >>> pos = np.eye(3)[[0, 0, 1, 1, 2, 2]] + np.arange(6)[:, None] * 1e-3     # three pairs of neighbours
    >>> held_out_sets(pos, 2)
    [(0, 3, 4), (1, 2, 5)]
    """
    n = len(positions)
    if groups is None or groups >= n:
        return [(i,) for i in range(n)]
    positions = np.asarray(positions, float)
    order, distance = [0], np.linalg.norm(positions - positions[0], axis=1)
    while len(order) < n:
        nxt = int(np.argmax(np.where(np.isin(np.arange(n), order), -1.0, distance)))
        order.append(nxt)
        distance = np.minimum(distance, np.linalg.norm(positions - positions[nxt], axis=1))
    capacity, members = -(-n // groups), [[] for _ in range(groups)]
    for channel in order:
        def room(k):
            if len(members[k]) >= capacity:
                return -np.inf
            return min((np.linalg.norm(positions[channel] - positions[m]) for m in members[k]), default=np.inf)
        members[max(range(groups), key=room)].append(channel)
    return [tuple(sorted(m)) for m in members]


def spline_predictions(truth, positions, origin, *, hidden_sets, excluded, bad_cells):
    """Every channel of every epoch predicted by the spline from the channels not held out with it.

    Parameters
    ----------
    truth : ndarray, shape (epoch, channel, time)
        The recording in volts (NaN past a short last segment).
    positions, origin
        As in :func:`spline_matrix`.
    hidden_sets : list of tuple of int
        Channels held out together (:func:`held_out_sets`).
    excluded : ndarray of bool, shape (channel,)
        Channels never used as predictors (known or suggested bad).
    bad_cells : ndarray of bool, shape (epoch, channel)
        Channels not used as predictors in that epoch.

    Returns
    -------
    prediction : ndarray, shape (epoch, channel, time)
    """
    unit = _unit(positions, origin)
    g = _g(unit @ unit.T)
    prediction = np.full(truth.shape, np.nan)
    cache = {}
    for epoch in range(truth.shape[0]):
        usable = ~np.asarray(excluded, bool) & ~bad_cells[epoch]
        for group in hidden_sets:
            sources = np.flatnonzero(usable & ~np.isin(np.arange(len(usable)), group))
            if len(sources) < 3:
                continue
            key = (sources.tobytes(), group)
            if key not in cache:
                cache[key] = spline_matrix(positions, sources, group, g=g)
            prediction[epoch, list(group)] = cache[key] @ truth[epoch, sources]
    return prediction


# ----------------------------------------------------------------------------------- ZUNA
def _filled(raw, hidden, excluded, origin):
    """A copy of ``raw`` whose ``hidden`` rows hold the spline's estimate from the other usable channels."""
    from ..io.montage import channel_positions

    positions = channel_positions(raw)
    sources = np.flatnonzero(~np.isin(np.arange(len(raw.ch_names)), hidden) & ~excluded)
    out = raw.copy()
    out._data[hidden] = spline_matrix(positions, sources, hidden, origin=origin) @ raw._data[sources]
    return out


def zuna_predictions(raw, truth, epoch_start, model, *, hidden_sets, excluded, bad_cells, origin, steps, seed,
                     segment_duration=None, batch_size=None, verbose=None, on_set=None):
    """Every channel predicted by ZUNA with its held-out set hidden, and nothing of their recording given.

    For each held-out set, the set (and the ``excluded`` channels) are replaced by the spline's
    estimate before the preprocessing, so that no statistic of their recording (ZUNA1.1 scales a
    channel's output by its own standard deviation) reaches ZUNA; they are hidden from the encoder
    (``bad_channels``), cells of ``bad_cells`` are hidden too (``mask``), and ZUNA's
    ``reconstruction`` of the set is the prediction (:func:`zuna_lab.api.core.reconstruct_prepared`).

    Parameters
    ----------
    raw : mne.io.Raw
        The recording as :func:`zuna_lab.read_raw` returns it.
    truth : ndarray, shape (epoch, channel, time)
        Its preprocessed volts (the grid the predictions are placed on).
    epoch_start : ndarray
        The epochs' starts (s), checked against each preprocessing.
    model : ZunaModel
    hidden_sets, excluded, bad_cells
        As in :func:`spline_predictions`.
    origin : array, shape (3,)
    steps, seed, segment_duration, batch_size, verbose
        As in :func:`zuna_lab.reconstruct`; each set draws its noise from ``(seed, set index)``.
    on_set : callable | None
        Called with the number of sets done after each one (progress).

    Returns
    -------
    prediction : ndarray, shape (epoch, channel, time)
    """
    from ..api.core import prepare, reconstruct_prepared

    names = list(raw.ch_names)
    prediction = np.full(truth.shape, np.nan)
    for index, group in enumerate(hidden_sets):
        hidden = sorted(set(group) | set(np.flatnonzero(excluded).tolist()))
        if len(names) - len(hidden) < 3:        # as the spline: too few channels left to predict from, no prediction
            if on_set is not None:
                on_set(index + 1)
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ZunaLabWarning)          # said once, when the recording was read
            prepared = prepare(_filled(raw, hidden, np.asarray(excluded, bool), origin), model.variant,
                               bad_channels=[names[i] for i in hidden], segment_duration=segment_duration,
                               verbose=verbose)
        pre = prepared.pre
        if pre.n_epochs != truth.shape[0] or not np.allclose(pre.epoch_start, epoch_start):
            raise ZunaValueError("ZUNA's epochs differ from the screening's; this is a bug in zuna_lab.")
        n_tokens = truth.shape[2] // SAMPLES_PER_TOKEN
        mask = np.repeat(np.asarray(bad_cells, bool)[:, :, None], n_tokens, axis=2)
        group_seed = int(np.random.SeedSequence([int(seed), index]).generate_state(1)[0] % (2 ** 31))
        rec = reconstruct_prepared(prepared, model, steps=steps, seed=group_seed, mask=mask, batch_size=batch_size,
                                   progress=False, verbose=verbose)
        rows = list(group)
        prediction[:, rows] = rec["reconstruction"].values[:, rows, : truth.shape[2]]
        if on_set is not None:
            on_set(index + 1)
    return prediction


# ----------------------------------------------------------------------------------- scores
#: Frequency bands (Hz) of the band scores: "slow" drifts and pops, "high" noise (line bands aside), "line".
SLOW_BAND, HIGH_FROM, LINE_HALF_WIDTH = (0.0, 2.5), 30.0, 2.0


def _nan_rms(x, axis):
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.sqrt(np.nanmean(x ** 2, axis=axis))


def _correlation(a, b):
    """Pearson r along the last axis; 0 where ``a`` does not vary (a dead channel), NaN without a prediction."""
    with np.errstate(invalid="ignore", divide="ignore"):
        ac, bc = a - a.mean(axis=-1, keepdims=True), b - b.mean(axis=-1, keepdims=True)
        r = (ac * bc).sum(-1) / np.sqrt((ac ** 2).sum(-1) * (bc ** 2).sum(-1))
    return np.where(np.isfinite(r), r, np.where(np.isfinite(b).all(-1), 0.0, np.nan))


def _band_masks(n_times, sfreq, line_freqs):
    freqs = np.fft.rfftfreq(n_times, 1.0 / sfreq)
    harmonics = [k * f for f in line_freqs for k in range(1, 10) if k * f < sfreq / 2]
    line = np.zeros(len(freqs), bool)
    for f in harmonics:
        line |= np.abs(freqs - f) <= LINE_HALF_WIDTH
    slow = (freqs >= SLOW_BAND[0]) & (freqs < SLOW_BAND[1])
    return dict(slow=slow, high=(freqs >= HIGH_FROM) & ~line, line=line)


def _band_rms(x, masks):
    power = np.abs(np.fft.rfft(x, axis=-1)) ** 2
    return {band: np.sqrt(2 * power[..., m].sum(-1)) / x.shape[-1] if m.any() else np.full(x.shape[:-1], np.nan)
            for band, m in masks.items()}


def residual_scores(truth, prediction, *, widths, sfreq, line_freqs=(50.0, 60.0), window=128):
    """The prediction against the recording, per (epoch, channel), and the error per window of ``window`` samples.

    Parameters
    ----------
    truth, prediction : ndarray, shape (epoch, channel, time)
        Volts; an epoch's samples past ``widths[epoch]`` are ignored.
    widths : list of int
        Samples in each epoch.
    sfreq : float
    line_freqs : tuple of float
        Power-line frequencies (their harmonics too) of the ``line`` band, left out of ``high``.
    window : int
        Samples per window of ``window_error``.

    Returns
    -------
    scores : dict of ndarray
        (epoch, channel): ``error`` (RMS of recording - prediction, V), ``relative_error`` (log of
        the error over the prediction's RMS), ``correlation`` (Pearson r; 0 for a channel without
        variation), ``amplitude`` (log of RMS recording / RMS prediction), ``slow`` and ``high``
        (log of the error's RMS below 2.5 Hz / from 30 Hz, power-line bands aside, over the
        prediction's RMS), ``line`` (log of the recording's RMS in the power-line bands, V: the
        hum's phase differs from channel to channel, so its prediction says little);
        (epoch, channel, window): ``window_error`` (RMS error per window, V). NaN where there is
        no prediction.

    Examples
    --------
    >>> t = np.sin(np.arange(256) * 2 * np.pi * 10 / 256)[None, None]
    >>> s = residual_scores(t, 0.5 * t, widths=[256], sfreq=256.0)
    >>> round(float(s["error"][0, 0]), 3), float(s["correlation"][0, 0]), round(float(np.exp(s["amplitude"][0, 0])), 3)
    (0.354, 1.0, 2.0)
    """
    n_epochs, n_channels, n_times = truth.shape
    names = ("error", "relative_error", "correlation", "amplitude", "slow", "high", "line")
    out = {name: np.full((n_epochs, n_channels), np.nan) for name in names}
    out["window_error"] = np.full((n_epochs, n_channels, n_times // window), np.nan)
    for epoch, width in enumerate(widths):
        x, p = truth[epoch, :, :width], prediction[epoch, :, :width]
        residual = x - p
        masks = _band_masks(width, sfreq, line_freqs)
        bands, own = _band_rms(np.nan_to_num(residual), masks), _band_rms(x, masks)
        error, predicted = _nan_rms(residual, 1), _nan_rms(p, 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out["error"][epoch], out["relative_error"][epoch] = error, np.log(error / predicted)
            out["amplitude"][epoch] = np.log(_nan_rms(x, 1) / predicted)
            out["slow"][epoch], out["high"][epoch] = np.log(bands["slow"] / predicted), np.log(bands["high"] / predicted)
            out["line"][epoch] = np.log(own["line"])
        out["correlation"][epoch] = _correlation(x, p)
        n_windows = width // window
        blocks = residual[:, : n_windows * window].reshape(n_channels, n_windows, window)
        out["window_error"][epoch, :, :n_windows] = _nan_rms(blocks, 2)
    unpredicted = ~np.isfinite(prediction[:, :, 0])
    for name in names:
        out[name][unpredicted] = np.nan
    return out


def robust_z(values, *, where=None):
    """(values - median) / (1.4826 · MAD), the median and MAD over the finite values (``where`` selects them).

    Examples
    --------
    >>> robust_z(np.array([1.0, 2.0, 3.0, 4.0, 100.0])).round(2).tolist()
    [-1.35, -0.67, 0.0, 0.67, 65.43]
    """
    values = np.asarray(values, float)
    chosen = np.isfinite(values) if where is None else np.isfinite(values) & where
    if not chosen.any():
        return np.full(values.shape, np.nan)
    median = np.median(values[chosen])
    mad = 1.4826 * np.median(np.abs(values[chosen] - median))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (values - median) / max(mad, 1e-12)


def bridge_scores(truth):
    """Per (epoch, channel): the variance of its difference with its most similar channel, over its own variance.

    Bridged electrodes (gel between them) record the same signal: near 0. Returns
    ``(ratio, partner)``, both (epoch, channel); NaN and -1 for a channel without variation.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(1, 3, 500)); x[0, 2] = x[0, 1] + 0.01 * rng.normal(size=500)
    >>> ratio, partner = bridge_scores(x)
    >>> partner[0].tolist(), bool(ratio[0, 2] < 1e-3)
    ([1, 2, 1], True)
    """
    n_epochs, n_channels = truth.shape[:2]
    ratio, partner = np.full((n_epochs, n_channels), np.nan), np.full((n_epochs, n_channels), -1)
    for epoch in range(n_epochs):
        x = truth[epoch][:, np.isfinite(truth[epoch]).all(axis=0)]
        x = x - x.mean(axis=1, keepdims=True)
        power = (x ** 2).mean(axis=1)
        alive = power > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            distance = power[:, None] + power[None, :] - 2 * (x @ x.T) / x.shape[1]
            relative = distance / power[:, None]
        relative[~alive] = np.nan
        relative[:, ~alive] = np.inf
        np.fill_diagonal(relative, np.inf)
        best = np.argmin(np.where(np.isnan(relative), np.inf, relative), axis=1)
        ratio[epoch] = np.where(alive, np.maximum(relative[np.arange(n_channels), best], 0.0), np.nan)
        partner[epoch] = np.where(alive, best, -1)
    return ratio, partner
