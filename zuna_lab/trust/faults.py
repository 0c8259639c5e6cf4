"""Known faults put into a copy of a recording, to see what a screening finds (tests, benchmarks, tutorial 09).

:func:`inject_faults` adds, to chosen channels of a copy of an ``mne.io.Raw``, the faults EEG
technicians look for: a dead electrode, high-frequency noise, a pair bridged by gel,
intermittent pops, a slow drift, line noise, an electrode at the wrong position, and a short
burst. The recording given is never changed; each fault draws from its own stream of ``seed``.
"""
from __future__ import annotations

import mne
import numpy as np

from ..errors import ZunaTypeError, ZunaValueError, preview

__all__ = ["inject_faults", "FAULTS"]

#: The faults :func:`inject_faults` knows, and what each does to a channel.
FAULTS = {
    "dead": "the electrode records nothing: a constant offset plus 0.25 µV of amplifier noise",
    "noise": "high-frequency noise (40-120 Hz) twice the channel's RMS added",
    "bridge": "two channels bridged by gel: both record their mean (plus 0.5 µV of their own noise)",
    "pops": "electrode pops: 150-300 µV steps decaying in 0.3 s, one every 2 s on average",
    "drift": "a slow drift (0.1-0.6 Hz) of 300 µV RMS",
    "line": "power-line noise at the recording's line frequency (50 Hz if unset), 40 µV RMS",
    "position": "the electrode's position moved 8-12 cm away on the head (mislabelled or misplaced)",
    "burst": "a 1 s burst of broadband noise, 5 times the channel's RMS, in the middle of the recording",
}


def _check(raw, faults):
    if not isinstance(raw, mne.io.BaseRaw):
        raise ZunaTypeError(f"inject_faults needs an mne.io.Raw, got {type(raw).__name__}.")
    if not isinstance(faults, dict):
        raise ZunaTypeError("faults must be a dict such as {'dead': ['T7'], 'bridge': [('C3', 'CP1')]}.")
    unknown = sorted(set(faults) - set(FAULTS))
    if unknown:
        raise ZunaValueError(f"Unknown fault {preview(unknown)}; choose from {', '.join(FAULTS)}.")
    for kind, channels in faults.items():
        for entry in channels:
            names = entry if kind == "bridge" else (entry,)
            if kind == "bridge" and (not isinstance(entry, (tuple, list)) or len(entry) != 2):
                raise ZunaValueError(f"bridge faults are pairs of channels, e.g. [('C3', 'CP1')], got {entry!r}.")
            missing = [name for name in names if name not in raw.ch_names]
            if missing:
                raise ZunaValueError(f"{kind} names {preview(missing)}, not a channel of the recording.")


def _band_noise(rng, n, sfreq, low, high):
    noise = rng.standard_normal(n)
    high = min(high, 0.45 * sfreq)
    return mne.filter.filter_data(noise, sfreq, low, high, verbose="error")


def _pops(rng, n, sfreq):
    out, t = np.zeros(n), np.arange(n) / sfreq
    onsets = np.cumsum(rng.exponential(2.0, size=int(n / sfreq) + 2))
    for onset in onsets[onsets < n / sfreq - 0.1]:
        after = t >= onset
        out[after] += rng.choice([-1, 1]) * rng.uniform(150e-6, 300e-6) * np.exp(-(t[after] - onset) / 0.3)
    return out


def _drift(rng, n, sfreq):
    t = np.arange(n) / sfreq
    freqs = rng.uniform(0.1, 0.6, size=4)
    wave = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)) for f in freqs)
    return 300e-6 * wave / wave.std()


def _moved(raw, name, rng):
    """A position 8-12 cm from the electrode's, on its head sphere, at least 2.5 cm from every other electrode."""
    pos = {ch: np.asarray(loc, float) for ch, loc in raw.get_montage().get_positions()["ch_pos"].items()}
    centre = np.mean(list(pos.values()), axis=0) * np.array([1.0, 1.0, 0.0])
    radius = np.linalg.norm(pos[name] - centre)
    others = np.array([p for ch, p in pos.items() if ch != name])
    for _ in range(2000):
        direction = rng.standard_normal(3)
        direction[2] = abs(direction[2])
        candidate = centre + radius * direction / np.linalg.norm(direction)
        if 0.08 <= np.linalg.norm(candidate - pos[name]) <= 0.12 and \
                np.linalg.norm(others - candidate, axis=1).min() >= 0.025:
            return candidate
    raise ZunaValueError(f"Found no free place 8-12 cm from {name}; choose another channel for the position fault.")


def inject_faults(raw, faults, *, seed=0):
    """A copy of ``raw`` with known faults on chosen channels.

    Parameters
    ----------
    raw : mne.io.Raw
        EEG in volts with positions (e.g. :func:`zuna_lab.synthetic.make_synthetic_raw`); never changed.
    faults : dict of str -> list
        Fault name (see :data:`FAULTS`) -> the channels that get it; ``"bridge"`` takes pairs.
    seed : int
        Seeds every random part (times, amplitudes, the new position).

    Returns
    -------
    faulty : mne.io.Raw
        The copy, with the faults (a moved electrode: its new position in the montage).
    truth : dict
        ``channels`` (fault -> the channels given), ``bursts`` (channel -> (start, stop) s from the
        first sample), ``moved`` (channel -> the new position, m).

    Examples
    --------
    >>> raw = make_synthetic_raw(duration=30.0, verbose=False)          # doctest: +SKIP
    >>> faulty, truth = inject_faults(raw, {"dead": ["T7"], "bridge": [("C3", "Cz")]}, seed=1)   # doctest: +SKIP
    """
    _check(raw, faults)
    out = raw.copy().load_data(verbose="error")
    data, sfreq, n = out._data, out.info["sfreq"], out.n_times
    truth = dict(channels={kind: list(chs) for kind, chs in faults.items()}, bursts={}, moved={})
    streams = dict(zip(FAULTS, np.random.SeedSequence(seed).spawn(len(FAULTS))))
    for kind, channels in faults.items():
        rng = np.random.default_rng(streams[kind])
        for entry in channels:
            if kind == "bridge":
                a, b = (out.ch_names.index(name) for name in entry)
                mean = (data[a] + data[b]) / 2
                data[a], data[b] = (mean + 0.5e-6 * rng.standard_normal(n) for _ in range(2))
                continue
            row = out.ch_names.index(entry)
            rms = data[row].std()
            if kind == "dead":
                data[row] = rng.uniform(-50e-6, 50e-6) + 0.25e-6 * rng.standard_normal(n)
            elif kind == "noise":
                noise = _band_noise(rng, n, sfreq, 40.0, 120.0)
                data[row] += 2 * rms * noise / noise.std()
            elif kind == "pops":
                data[row] += _pops(rng, n, sfreq)
            elif kind == "drift":
                data[row] += _drift(rng, n, sfreq)
            elif kind == "line":
                line = out.info["line_freq"] or 50.0
                data[row] += 40e-6 * np.sqrt(2) * np.sin(2 * np.pi * line * np.arange(n) / sfreq + rng.uniform(0, 6))
            elif kind == "burst":
                start = n // 2 + int(rng.integers(-n // 8, n // 8))
                width = int(round(sfreq))
                data[row, start:start + width] += 5 * rms * rng.standard_normal(width)
                truth["bursts"][entry] = (start / sfreq, (start + width) / sfreq)
            elif kind == "position":
                truth["moved"][entry] = _moved(out, entry, rng)
    if truth["moved"]:
        positions = out.get_montage().get_positions()
        ch_pos = dict(positions["ch_pos"], **truth["moved"])
        out.set_montage(mne.channels.make_dig_montage(ch_pos=ch_pos, nasion=positions["nasion"], lpa=positions["lpa"],
                                                      rpa=positions["rpa"], coord_frame="head"), verbose="error")
    return out, truth
