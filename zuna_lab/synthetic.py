"""Synthetic EEG recordings with known structure, for tutorials, tests and demos.

Nothing here is real data: every recording is generated from a seed, and its
``info["description"]`` says so.
"""

from __future__ import annotations

import mne
import numpy as np
from mne.utils import logger, verbose

from .errors import ZunaTypeError, ZunaValueError

__all__ = ["DEFAULT_CH_NAMES", "make_synthetic_raw"]

#: The default cap: the 19 channels of the classic 10-20 system.
DEFAULT_CH_NAMES = (
    "Fp1", "Fp2", "F7", "F3", "Fz", "F4", "F8",
    "T7", "C3", "Cz", "C4", "T8",
    "P7", "P3", "Pz", "P4", "P8",
    "O1", "O2",
)  # fmt: skip

# MNE >= 1.13 renamed the template montages; the positions are the same.
_RENAMED_MONTAGES = {"standard_1020": "colin27_1020", "standard_1005": "colin27_1005"}

# Head-frame points (metres) of the standard 10-20 template that the sources sit under.
# Fixed constants rather than looked up by name, so any montage in the head frame works.
_BLINK_ORIGIN = np.array([-0.0013, 0.1191, 0.0329])  # Fpz: the eyes are just below it
_ALPHA_ORIGINS = np.array(  # O1, O2 and Pz: alpha is strongest under them
    [[-0.0316, -0.0806, 0.0548], [0.0277, -0.0805, 0.0547], [-0.0017, -0.0452, 0.1267]]
)

# Generator parameters. Amplitudes are in volts, lengths in metres, times in seconds.
_BACKGROUND_RMS_RANGE = (10e-6, 20e-6)  # per-channel RMS of the 1/f background
_BACKGROUND_CORR_LENGTH = 0.10  # volume conduction: neighbours (~6 cm) correlate at ~0.5
_BACKGROUND_LOCAL_FRACTION = 0.2  # share of background variance that is channel-specific
_BACKGROUND_FLAT_BELOW = 1.0  # Hz; the 1/f slope stops here so slow drifts stay bounded
_SENSOR_NOISE_RMS = 0.5e-6  # white amplifier noise
_ALPHA_FREQ = 10.0  # Hz
_ALPHA_FREQ_JITTER = 0.3  # Hz, slow wander of the instantaneous frequency
_ALPHA_RMS_EYES_CLOSED = 20e-6  # at the strongest (posterior) channel
_ALPHA_EYES_OPEN_GAIN = 0.15  # alpha blocking when the eyes open
_ALPHA_SPREAD = 0.04  # Gaussian fall-off around each origin: P3/P4 ~0.4, Cz ~0
_BLOCK_DURATION = 10.0  # alternating eyes_closed / eyes_open blocks, eyes closed first
_BLOCK_RAMP = 0.5  # cosine ramp of the alpha gain across block edges
_BLINK_MEAN_INTERVAL = 6.0  # in eyes-open time: ~5 blinks per eyes-open minute
_BLINK_MIN_INTERVAL = 1.5
_BLINK_AMPLITUDE_RANGE = (100e-6, 200e-6)  # peak at Fp1/Fp2
_BLINK_DURATION = 0.4  # the annotated span; the waveform is ~0 after it
_BLINK_SPREAD = 0.05  # Gaussian fall-off from the eyes: F3/Fz ~0.4, F7 ~0.3, Cz ~0.05 of Fp1
_LINE_RMS_RANGE = (2e-6, 5e-6)  # per channel, fundamental
_LINE_THIRD_HARMONIC_GAIN = 0.3


@verbose
def make_synthetic_raw(
    *,
    duration=60.0,
    sfreq=256.0,
    montage="standard_1020",
    ch_names=None,
    seed=0,
    line_freq=50.0,
    verbose=None,
):
    """Make a realistic synthetic EEG recording with known, annotated structure.

    The recording is the sum of

    - a spatially correlated 1/f (pink) background, 10-20 µV RMS per channel,
      correlated across channels as ``exp(-distance / 10 cm)``;
    - posterior alpha at ~10 Hz, strongest at O1, O2 and Pz (about 20 µV RMS
      there with eyes closed), with waxing and waning bursts. The recording
      alternates 10 s ``eyes_closed`` and ``eyes_open`` blocks (eyes closed
      first); alpha drops to 0.15 of its eyes-closed amplitude when the eyes
      are open;
    - blinks during ``eyes_open`` blocks (about 5 per eyes-open minute),
      100-200 µV at Fp1/Fp2 and falling off with distance from the eyes, each
      annotated as ``blink``;
    - line noise at ``line_freq`` (2-5 µV RMS per channel) and its third
      harmonic, and 0.5 µV RMS white sensor noise.

    Each component draws from its own random stream derived from ``seed``, so
    the result is identical for the same arguments.

    Parameters
    ----------
    duration : float
        Length of the recording in seconds.
    sfreq : float
        Sampling frequency in Hz.
    montage : str | mne.channels.DigMontage
        Electrode positions: the name of a built-in MNE montage or a montage.
        They are set with :meth:`mne.io.Raw.set_montage` (head frame).
    ch_names : list of str | None
        Channel names, all present in ``montage``. ``None`` uses the 19
        channels of the 10-20 system (:data:`DEFAULT_CH_NAMES`).
    seed : int
        Seed of the random generator.
    line_freq : float | None
        Power-line frequency in Hz (50 or 60); ``None`` leaves line noise out.
    %(verbose)s

    Returns
    -------
    raw : mne.io.RawArray
        The recording in volts, EEG channels only, with the montage set,
        annotations ``eyes_closed``, ``eyes_open`` and ``blink``,
        ``info["line_freq"]`` set, and ``info["description"]`` saying it is
        synthetic and which parameters made it.

    Examples
    --------
    >>> from zuna_lab.synthetic import make_synthetic_raw
    >>> raw = make_synthetic_raw(duration=30.0, seed=1, verbose=False)
    >>> raw.get_data().shape
    (19, 7680)
    >>> sorted(set(raw.annotations.description))
    ['blink', 'eyes_closed', 'eyes_open']
    >>> spectrum = raw.compute_psd(picks=["O1", "O2"], fmax=40)  # doctest: +SKIP
    """
    duration, sfreq, line_freq = _check_arguments(duration, sfreq, line_freq, seed)
    ch_names = list(DEFAULT_CH_NAMES if ch_names is None else ch_names)
    montage_obj, montage_label = _resolve_montage(montage)

    info = mne.create_info(ch_names, sfreq, ch_types="eeg")
    try:
        info.set_montage(montage_obj)
    except ValueError as err:
        raise ZunaValueError(
            f"Some channels have no position in montage {montage_label!r} ({err}); "
            "pass ch_names that the montage contains."
        ) from None
    ch_pos = np.array([ch["loc"][:3] for ch in info["chs"]])

    n_times = int(round(duration * sfreq))
    times = np.arange(n_times) / sfreq
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(5)]
    rng_background, rng_alpha, rng_blink, rng_line, rng_sensor = rngs

    blocks = _eyes_blocks(duration)
    data = _pink_background(ch_pos, n_times, sfreq, rng_background)
    data += _posterior_alpha(ch_pos, times, sfreq, blocks, rng_alpha)
    blink_data, blink_onsets = _blinks(ch_pos, times, sfreq, blocks, rng_blink)
    data += blink_data
    if line_freq is not None:
        data += _line_noise(len(ch_names), times, sfreq, line_freq, rng_line)
    data += _SENSOR_NOISE_RMS * rng_sensor.standard_normal(data.shape)

    raw = mne.io.RawArray(data, info, verbose=False)
    onsets = [start for start, _, _ in blocks] + list(blink_onsets)
    durations = [stop - start for start, stop, _ in blocks] + [_BLINK_DURATION] * len(blink_onsets)
    labels = [label for _, _, label in blocks] + ["blink"] * len(blink_onsets)
    order = np.argsort(onsets, kind="stable")
    raw.set_annotations(
        mne.Annotations(
            np.asarray(onsets)[order], np.asarray(durations)[order], np.asarray(labels)[order]
        )
    )
    with raw.info._unlock():
        raw.info["line_freq"] = line_freq
        raw.info["description"] = (
            "SYNTHETIC EEG, not a real recording: zuna_lab.synthetic.make_synthetic_raw("
            f"duration={duration!r}, sfreq={sfreq!r}, montage={montage_label!r}, "
            f"n_channels={len(ch_names)}, seed={seed!r}, line_freq={line_freq!r}). "
            "Spatially correlated 1/f background, ~10 Hz posterior alpha in alternating "
            f"{_BLOCK_DURATION:g} s eyes_closed/eyes_open blocks, annotated frontal blinks, "
            "line noise, white sensor noise; volts."
        )
    logger.info(
        f"Synthetic recording: {len(ch_names)} channels, {duration:g} s at {sfreq:g} Hz, "
        f"{len(blocks)} eyes blocks, {len(blink_onsets)} blinks (seed={seed})."
    )
    return raw


def _check_arguments(duration, sfreq, line_freq, seed):
    """Validate scalar arguments and return them as floats."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ZunaTypeError(f"seed must be a non-negative integer, got {seed!r}.")
    duration, sfreq = float(duration), float(sfreq)
    if not np.isfinite(sfreq) or sfreq <= 0:
        raise ZunaValueError(f"sfreq must be a positive number of Hz, got {sfreq!r}.")
    if not np.isfinite(duration) or round(duration * sfreq) < 2:
        raise ZunaValueError(f"duration must give at least 2 samples, got {duration!r} s.")
    if line_freq is not None:
        line_freq = float(line_freq)
        if not 0 < line_freq < sfreq / 2:
            raise ZunaValueError(
                f"line_freq must lie between 0 and the Nyquist frequency ({sfreq / 2:g} Hz), "
                f"got {line_freq!r}; use None for no line noise."
            )
    return duration, sfreq, line_freq


def _resolve_montage(montage):
    """Return (DigMontage, label) for a built-in montage name or a DigMontage."""
    if isinstance(montage, mne.channels.DigMontage):
        return montage, "custom DigMontage"
    if not isinstance(montage, str):
        raise ZunaTypeError(
            f"montage must be a built-in montage name or a DigMontage, got {type(montage).__name__}."
        )
    builtin = mne.channels.get_builtin_montages()
    name = _RENAMED_MONTAGES.get(montage, montage)
    if name not in builtin:  # older MNE: only the old name exists
        name = montage
    if name not in builtin:
        raise ZunaValueError(
            f"Unknown montage {montage!r}; use one of mne.channels.get_builtin_montages()."
        )
    return mne.channels.make_standard_montage(name), montage


def _eyes_blocks(duration):
    """Alternating (start, stop, label) blocks covering the recording, eyes closed first."""
    blocks = []
    start, index = 0.0, 0
    while start < duration:
        stop = min(start + _BLOCK_DURATION, duration)
        blocks.append((start, stop, "eyes_closed" if index % 2 == 0 else "eyes_open"))
        start, index = stop, index + 1
    return blocks


def _smooth_gaussian_process(rng, n_times, sfreq, corr_time):
    """Unit-variance Gaussian noise smoothed over ``corr_time`` seconds (slow modulations)."""
    freqs = np.fft.rfftfreq(n_times, 1 / sfreq)
    spectrum = np.fft.rfft(rng.standard_normal(n_times))
    spectrum *= np.exp(-0.5 * (freqs * corr_time * 2 * np.pi) ** 2)
    signal = np.fft.irfft(spectrum, n_times)
    return (signal - signal.mean()) / (signal.std() + np.finfo(float).tiny)


def _pink_background(ch_pos, n_times, sfreq, rng):
    """1/f noise per channel, mixed so that nearby channels correlate."""
    n_channels = len(ch_pos)
    freqs = np.fft.rfftfreq(n_times, 1 / sfreq)
    amplitude = 1 / np.sqrt(np.maximum(freqs, _BACKGROUND_FLAT_BELOW))
    amplitude[0] = 0.0  # no DC offset
    spectrum = rng.standard_normal((n_channels, freqs.size)) + 1j * rng.standard_normal(
        (n_channels, freqs.size)
    )
    sources = np.fft.irfft(spectrum * amplitude, n_times, axis=1)
    sources /= sources.std(axis=1, keepdims=True)

    distances = np.linalg.norm(ch_pos[:, None] - ch_pos[None], axis=-1)
    # The exponential kernel is positive definite in 3-D; the local share keeps it well conditioned.
    correlation = (1 - _BACKGROUND_LOCAL_FRACTION) * np.exp(
        -distances / _BACKGROUND_CORR_LENGTH
    ) + _BACKGROUND_LOCAL_FRACTION * np.eye(n_channels)
    mixed = np.linalg.cholesky(correlation) @ sources
    rms = rng.uniform(*_BACKGROUND_RMS_RANGE, size=n_channels)
    return rms[:, None] * mixed / mixed.std(axis=1, keepdims=True)


def _posterior_alpha(ch_pos, times, sfreq, blocks, rng):
    """~10 Hz rhythm under O1/O2/Pz, bursting, blocked when the eyes open."""
    n_times = times.size
    wander = _smooth_gaussian_process(rng, n_times, sfreq, corr_time=2.0)
    inst_freq = _ALPHA_FREQ + _ALPHA_FREQ_JITTER * wander
    phase = 2 * np.pi * np.cumsum(inst_freq) / sfreq + rng.uniform(0, 2 * np.pi)
    # Log-normal envelope: bursts of ~0.5-1 s that wax and wane.
    envelope = np.exp(0.4 * _smooth_gaussian_process(rng, n_times, sfreq, corr_time=0.3))
    envelope /= np.sqrt(np.mean(envelope**2))
    gain = _block_gain(times, blocks)
    signal = np.sqrt(2) * _ALPHA_RMS_EYES_CLOSED * envelope * gain * np.sin(phase)

    distances = np.linalg.norm(ch_pos[:, None] - _ALPHA_ORIGINS[None], axis=-1).min(axis=1)
    topography = np.exp(-0.5 * (distances / _ALPHA_SPREAD) ** 2)
    return topography[:, None] * signal[None]


def _block_gain(times, blocks):
    """Alpha gain per sample: 1 with eyes closed, _ALPHA_EYES_OPEN_GAIN open, cosine ramps."""
    closed = np.zeros(times.size)
    for start, stop, label in blocks:
        if label == "eyes_closed":
            closed[(times >= start) & (times < stop)] = 1.0
    ramp_len = max(int(round(_BLOCK_RAMP / (times[1] - times[0]))), 1)
    window = np.hanning(ramp_len + 2)[1:-1]
    window /= window.sum()
    smoothed = np.convolve(np.pad(closed, ramp_len, mode="edge"), window, mode="same")
    closed = smoothed[ramp_len:-ramp_len]
    return _ALPHA_EYES_OPEN_GAIN + (1 - _ALPHA_EYES_OPEN_GAIN) * closed


def _blinks(ch_pos, times, sfreq, blocks, rng):
    """Blink deflections during eyes_open blocks; returns (data, onsets in s)."""
    onsets = []
    for start, stop, label in blocks:
        if label != "eyes_open":
            continue
        # Renewal process with a refractory gap, kept clear of the block edges.
        t = start + 0.5 + rng.exponential(_BLINK_MEAN_INTERVAL / 2)
        while t + _BLINK_DURATION < stop - 0.5:
            onsets.append(t)
            t += _BLINK_MIN_INTERVAL + rng.exponential(_BLINK_MEAN_INTERVAL - _BLINK_MIN_INTERVAL)
    onsets = np.round(np.array(onsets) * sfreq) / sfreq  # on the sample grid

    # Gamma-shaped pulse: fast rise (~0.1 s to peak), slower return, ~0 by _BLINK_DURATION.
    pulse_t = np.arange(int(round(_BLINK_DURATION * sfreq))) / sfreq
    shape, scale = 3.0, 0.05
    pulse = (pulse_t / scale) ** shape * np.exp(-pulse_t / scale)
    pulse *= np.hanning(2 * pulse.size)[pulse.size :]  # reach exactly 0 at the end
    pulse /= pulse.max()
    trace = np.zeros(times.size)
    for onset in onsets:
        first = int(round(onset * sfreq))
        segment = slice(first, min(first + pulse.size, times.size))
        trace[segment] += rng.uniform(*_BLINK_AMPLITUDE_RANGE) * pulse[: segment.stop - first]

    distances = np.linalg.norm(ch_pos - _BLINK_ORIGIN, axis=1)
    # Normalised so that a channel at Fp1/Fp2 distance (~3 cm) carries the drawn amplitude.
    topography = np.exp(-0.5 * (distances**2 - 0.03**2) / _BLINK_SPREAD**2)
    return topography[:, None] * trace[None], onsets


def _line_noise(n_channels, times, sfreq, line_freq, rng):
    """Mains hum: a fundamental and a weaker third harmonic, amplitude and phase per channel."""
    rms = rng.uniform(*_LINE_RMS_RANGE, size=n_channels)
    phase = rng.uniform(0, 2 * np.pi, size=n_channels)
    hum = np.sin(2 * np.pi * line_freq * times[None] + phase[:, None])
    if 3 * line_freq < sfreq / 2:
        hum += _LINE_THIRD_HARMONIC_GAIN * np.sin(
            2 * np.pi * 3 * line_freq * times[None] + 3 * phase[:, None]
        )
    return np.sqrt(2) * rms[:, None] * hum
