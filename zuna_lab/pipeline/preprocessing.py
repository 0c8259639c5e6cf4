"""The official ZUNA preprocessing of each model variant, and its inverse back to volts.

Both variants start the same way (MNE does the signal work): resample to 256 Hz, then a
0.5 Hz zero-phase FIR high-pass with MNE's default design (``raw.filter(0.5, None)``). Then:

``"ZUNA"`` — as ``zuna==0.1.1`` (``EEGProcessor.process`` with the defaults of
``zuna.preprocessing()``; notch off):
    average reference (MNE, channels in ``info["bads"]`` excluded from the mean) →
    global z-score over all good channels and samples → 5 s epochs
    (``mne.make_fixed_length_epochs``: the last partial epoch is dropped, and so is any epoch
    overlapping a ``BAD_`` annotation) with per-epoch, per-channel mean removal → a second global
    z-score over all epochs → ÷ 10 → clip to ±1 (the last two in the model's data loader).

``"ZUNA1.1"`` — as ``zuna==1.1.6``'s ``reconstruct_fif`` (its v4 .fif loader):
    segments of ``segment_duration`` (default 5 s, 0.5–30 s, snapped down to whole tokens;
    the last, shorter segment is kept if it holds at least one token) → per segment: average
    reference over all channels (bads included) → per-channel z-score with ``std + 1e-6``
    (in volts: with EEG stds of 1e-5 V this shrinks the signal by several per cent, exactly as
    the official loader does) → ÷ 10 → clip to ±1.

Each epoch keeps what is needed to return to volts: ``volts = data * 10 * scale + offset +
reference``, where ``reference`` is the average reference that was removed — so
:meth:`Preprocessed.to_volts` returns the resampled, high-passed recording in its own reference
(the official ZUNA1.1 inverse; for ZUNA the official ``pt_to_raw`` restores neither the epoch
baseline nor the reference, zuna_lab restores both).
"""
from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import mne
import numpy as np

from ..config import TOKEN_SECONDS, VARIANT_CONSTANTS, check_variant
from ..errors import RecordingError, ZunaTypeError, ZunaValueError, preview
from ..io.montage import has_position, channel_positions
from ..io.quality import check_signal

__all__ = ["Preprocessed", "preprocess", "resolve_epoch", "preprocess_trials", "check_recording", "HIGHPASS_HZ", "highpass",
           "assemble_epochs", "resolve_segment_duration", "zuna11_segments"]

#: High-pass cut-off of both official pipelines, in Hz.
HIGHPASS_HZ = 0.5
#: The official pipeline each variant's preprocessing follows (provenance).
REFERENCE_PIPELINES = {"ZUNA": "zuna==0.1.1 EEGProcessor.process",
                       "ZUNA1.1": "zuna==1.1.6 EEGDataset_v4 (reconstruct_fif)"}
#: Added to the per-channel std (in volts) by the official ZUNA1.1 loader.
_ZUNA11_STD_EPSILON = 1e-6


def resolve_epoch(epoch_index, n_epochs):
    """``epoch_index`` checked (an int in [-n_epochs, n_epochs)) and made non-negative."""
    if not isinstance(epoch_index, (int, np.integer)) or isinstance(epoch_index, bool):
        raise ZunaTypeError(f"epoch_index must be an int, got {type(epoch_index).__name__}.")
    if not -n_epochs <= epoch_index < n_epochs:
        raise ZunaValueError(f"epoch_index must be in [0, {n_epochs}), got {epoch_index}.")
    return int(epoch_index) % n_epochs


@dataclass(frozen=True, eq=False)
class Preprocessed:
    """A recording after the official preprocessing of one variant, ready to tokenise.

    Attributes
    ----------
    variant : str
        ``"ZUNA"`` or ``"ZUNA1.1"``.
    data : tuple of ndarray
        Per epoch, float32 (n_channels, n_samples): the model input — normalised, ÷ ``data_norm``,
        clipped to ±``data_clip``. ZUNA epochs are all 1280 samples; the last ZUNA1.1 segment may
        be shorter (always whole tokens).
    volts : tuple of ndarray
        Per epoch, float64 (n_channels, n_samples): the resampled, high-passed signal in volts in
        the recording's own reference — what :meth:`to_volts` returns to.
    epoch_start : ndarray
        Start of every epoch in seconds from the first sample of the recording.
    ch_names : tuple of str
    ch_pos : ndarray, shape (n_channels, 3)
        Metres, MNE head frame.
    bads : tuple of str
        ``info["bads"]`` of the input (kept in the data; ZUNA excludes them from the reference
        and the statistics, ZUNA1.1 includes them — as the official code does).
    sfreq : float
        256.0.
    source_sfreq : float
        Sampling frequency of the input.
    n_times : int
        Samples of the whole resampled recording (epochs may not cover its end).
    scale, offset : ndarray, shape (n_epochs, n_channels)
        ``volts = data * data_norm * scale + offset + reference`` (before clipping).
    reference : tuple of ndarray
        Per epoch (n_samples,): the average reference subtracted at each sample, in volts (ZUNA:
        from the channels not in ``bads`` only, which keep their own reference as in MNE).
    data_norm, data_clip : float
        10 and 1.
    params : dict
        Provenance: the official statistics (``global_mean``/``global_std``/``final_mean``/
        ``final_std`` for ZUNA; the per-segment ``seg_mean``/``seg_std`` live in
        ``offset``/``scale``), filter settings, segment length and the reference pipeline.
    """

    variant: str
    data: tuple
    volts: tuple
    epoch_start: np.ndarray
    ch_names: tuple
    ch_pos: np.ndarray
    bads: tuple
    sfreq: float
    source_sfreq: float
    n_times: int
    scale: np.ndarray
    offset: np.ndarray
    reference: tuple
    data_norm: float
    data_clip: float
    params: dict = field(default_factory=dict)

    @property
    def n_epochs(self):
        """Number of epochs (segments)."""
        return len(self.data)

    @property
    def n_channels(self):
        """Number of channels."""
        return len(self.ch_names)

    def n_samples(self, epoch_index):
        """Samples in one epoch."""
        return self.data[self.resolve_epoch(epoch_index)].shape[1]

    def resolve_epoch(self, epoch_index):
        """``epoch_index`` checked (an int in [-n_epochs, n_epochs)) and made non-negative."""
        return resolve_epoch(epoch_index, self.n_epochs)

    def to_volts(self, epoch_array, epoch_index, *, reference="original"):
        """Return a model-domain epoch (normalised, ÷ data_norm) to volts.

        Parameters
        ----------
        epoch_array : array-like, shape (n_channels, n_samples) or (..., n_channels, n_samples)
            E.g. ``data[epoch_index]`` or a decoder output for that epoch, detokenised.
            ``n_samples`` may be shorter than the epoch (a prefix).
        epoch_index : int
            Which epoch's normalisation to invert.
        reference : {"original", "average"}
            ``"original"`` (default) adds the removed average reference back, returning the
            high-passed recording in its own reference; ``"average"`` stays average-referenced.

        Returns
        -------
        volts : ndarray of float64, same shape as ``epoch_array``

        Examples
        --------
        >>> pre = preprocess(raw, "ZUNA")  # doctest: +SKIP
        >>> back = pre.to_volts(pre.data[0], 0)  # equals pre.volts[0] where not clipped  # doctest: +SKIP
        """
        index = self.resolve_epoch(epoch_index)
        if reference not in ("original", "average"):
            raise ZunaValueError(f"reference must be 'original' or 'average', got {reference!r}.")
        values = np.asarray(epoch_array, dtype=np.float64)
        n_channels, n_samples = self.data[index].shape
        if values.ndim < 2 or values.shape[-2] < n_channels or values.shape[-1] > n_samples:
            raise ZunaValueError(
                f"Epoch {index} has {n_channels} channels x {n_samples} samples; got an array of shape {values.shape}."
            )
        width, n_rows = values.shape[-1], values.shape[-2]
        scale, offset = self.scale[index], self.offset[index]
        if n_rows > n_channels:
            # added channels (upsampling) have no statistics of their own: the median channel's scale
            scale = np.r_[scale, np.full(n_rows - n_channels, np.median(scale))]
            offset = np.r_[offset, np.zeros(n_rows - n_channels)]
        volts = values * self.data_norm * scale[:, None] + offset[:, None]
        if reference == "original":
            removed = self.reference[index][:width]
            if self.variant == "ZUNA" and self.bads:
                # ZUNA's average reference (MNE's) leaves the channels in info["bads"] as they were
                good = [i for i, name in enumerate(self.ch_names) if name not in self.bads]
                volts[..., good + list(range(n_channels, n_rows)), :] += removed
            else:
                volts = volts + removed
        return volts

    def original(self, epoch_index, n_rows=None):
        """The epoch in volts (``volts``), with NaN rows appended up to ``n_rows`` (added channels)."""
        real = np.asarray(self.volts[self.resolve_epoch(epoch_index)], np.float64)
        extra = 0 if n_rows is None else n_rows - real.shape[0]
        return np.vstack([real, np.full((extra, real.shape[1]), np.nan)]) if extra > 0 else real

    def clipped(self, epoch_index):
        """Boolean (n_channels, n_samples): samples whose model input hit the ±data_clip limit."""
        index = self.resolve_epoch(epoch_index)
        return np.abs(self.data[index]) >= np.float32(self.data_clip)


def resolve_segment_duration(variant, segment_duration):
    constants = VARIANT_CONSTANTS[variant]
    if segment_duration is None:
        return float(constants["segment_duration"])
    if isinstance(segment_duration, bool) or not isinstance(segment_duration, (int, float, np.number)):
        raise ZunaTypeError(f"segment_duration must be a number of seconds, got {type(segment_duration).__name__}.")
    value = float(segment_duration)
    low, high = float(constants["min_segment_duration"]), float(constants["max_segment_duration"])
    if not low <= value <= high:
        if variant == "ZUNA":
            raise ZunaValueError(
                f"ZUNA was trained on 5 s epochs only (got segment_duration={value:g}); use variant 'ZUNA1.1' for 0.5–30 s."
            )
        raise ZunaValueError(f"segment_duration must be between {low:g} and {high:g} s for {variant}, got {value:g}.")
    return value


def preprocess(raw, variant="ZUNA", *, segment_duration=None, windows=None, samples_checked=False, verbose=None):
    """Run the official preprocessing of ``variant`` on a recording.

    Parameters
    ----------
    raw : mne.io.Raw
        A loaded recording with EEG channels that all have positions — the output of
        :func:`zuna_lab.read_raw`. It is not modified.
    variant : {"ZUNA", "ZUNA1.1"}
        Which model's pipeline to follow.
    segment_duration : float | None
        Epoch length in seconds: ZUNA takes 5 s only; ZUNA1.1 0.5–30 s (default 5 s), snapped
        down to whole 0.125 s tokens.
    windows : zuna_lab.pipeline.events.Trials | None
        Event-locked trials (:func:`zuna_lab.pipeline.events.event_trials`) instead of fixed
        segments: the continuous recording is resampled and high-passed once, then each window is
        cut from it and normalised as the variant normalises an epoch (``segment_duration`` is
        then unused).
    samples_checked : bool
        True when the samples were checked already (:func:`zuna_lab.read_raw` does it: finite,
        plausible volts, not flat): that pass over the data is not repeated (a second or more on
        a long recording). The other checks of :func:`check_recording` always run.
    verbose : bool | str | int | None
        MNE verbosity.

    Returns
    -------
    pre : Preprocessed

    Examples
    --------
    >>> raw = zl.read_raw("../shared/data/sample1_raw.fif")  # doctest: +SKIP
    >>> pre = preprocess(raw, "ZUNA1.1", segment_duration=10.0)  # doctest: +SKIP
    >>> pre.n_epochs, pre.data[0].shape  # doctest: +SKIP
    (2, (12, 2560))
    """
    check_variant(variant)
    duration = resolve_segment_duration(variant, segment_duration)
    check_recording(raw, variant, samples=not samples_checked)
    if variant == "ZUNA" and set(raw.info["bads"]) >= set(raw.ch_names):
        # Checked before any work: MNE's average reference would fail first, with its own words.
        raise ZunaValueError(
            "Every channel is in info['bads']; ZUNA needs at least one good channel for its average "
            "reference and statistics, so remove some from info['bads'] (or bad_channels)."
        )
    constants = VARIANT_CONSTANTS[variant]
    target_sfreq = float(constants["sfreq"])
    mne_verbose = verbose if verbose is not None else "error"

    source_sfreq = float(raw.info["sfreq"])
    # 0.1.1 resamples when the rate differs at all; 1.1.6's loader when it differs after rounding.
    needs_resample = source_sfreq != target_sfreq if variant == "ZUNA" else int(round(source_sfreq)) != int(target_sfreq)
    if variant == "ZUNA1.1" and not needs_resample:
        # What raw.copy().filter(...) computes (check_recording made every channel EEG), without
        # deep-copying the Raw: ZUNA1.1 needs only the array from here on.
        work = raw
        filtered = raw.get_data()
        if np.shares_memory(filtered, raw._data):
            filtered = filtered.copy()
        filtered = highpass(filtered, source_sfreq, mne_verbose)
    else:
        work = raw.copy()
        if needs_resample:
            work.resample(target_sfreq, verbose=mne_verbose)
        work.filter(l_freq=HIGHPASS_HZ, h_freq=None, method="fir", verbose=mne_verbose)
        filtered = None

    common = dict(
        ch_names=tuple(work.ch_names),
        ch_pos=channel_positions(work),
        bads=tuple(work.info["bads"]),
        sfreq=float(work.info["sfreq"]),
        source_sfreq=source_sfreq,
        n_times=int(work.n_times),
        data_norm=float(constants["data_norm"]),
        data_clip=float(constants["data_clip"]),
    )
    provenance = dict(
        variant=variant,
        resampled=bool(needs_resample),
        highpass_hz=HIGHPASS_HZ,
        highpass="mne zero-phase FIR (firwin, hamming, filter_length='auto')",
        data_norm=common["data_norm"],
        data_clip=common["data_clip"],
    )
    if windows is not None:
        continuous = work.get_data() if filtered is None else filtered
        trials = np.stack([continuous[:, start:start + windows.n_samples] for start in windows.start])
        good = [i for i, name in enumerate(work.ch_names) if name not in work.info["bads"]]
        parts = _trial_parts(trials, variant, good, windows.start / windows.sfreq)
        provenance.update(reference=REFERENCE_PIPELINES[variant] + ", on event-locked trials",
                          segment_duration=windows.n_samples / windows.sfreq, trial_tmin=windows.tmin)
    elif variant == "ZUNA":
        parts = _zuna_epochs(work, duration, mne_verbose)
        provenance.update(reference=REFERENCE_PIPELINES[variant], segment_duration=duration)
    else:
        parts = zuna11_segments(work.get_data() if filtered is None else filtered, float(work.info["sfreq"]), duration)
        provenance.update(reference=REFERENCE_PIPELINES[variant], segment_duration=duration)
    return assemble_epochs(variant, parts, common, provenance)


def assemble_epochs(variant, parts, common, provenance) -> Preprocessed:
    """The Preprocessed of normalised epochs: ÷ data_norm, clipped, float32, read-only."""
    provenance.update(parts.pop("stats"))
    clip = common["data_clip"]
    model_input = tuple(
        np.clip(normalised / common["data_norm"], -clip, clip).astype(np.float32) for normalised in parts.pop("normalised")
    )
    for array in (*model_input, *parts["volts"], *parts["reference"]):
        array.setflags(write=False)
    return Preprocessed(variant=variant, data=model_input, params=provenance, **parts, **common)


def preprocess_trials(raw, n_trials, tmin, variant, *, event_time, verbose=None):
    """Preprocess trials cut elsewhere (``mne.Epochs``), each one segment of the model.

    Parameters
    ----------
    raw : mne.io.Raw
        The trials one after the other (``n_trials`` of equal length), as :func:`zuna_lab.read_raw`
        read them: EEG channels with positions, samples checked.
    n_trials : int
    tmin : float
        Time of each trial's first sample relative to its event, in seconds.
    variant : {"ZUNA", "ZUNA1.1"}
    event_time : ndarray
        Each trial's event time in seconds (the epochs' ``epoch_start`` is its first token's time).
    verbose : bool | str | int | None
        MNE verbosity.

    Returns
    -------
    pre : Preprocessed
        One epoch per trial: resampled to 256 Hz trial by trial, cut to whole 0.125 s tokens with the
        event on a token boundary, normalised as ``variant`` normalises an epoch. Not high-passed: a
        trial is too short for the 0.5 Hz filter (6.6 s long); filter the continuous recording before
        epoching, or embed the Raw with ``events=``.
    first_token : float
        The first token's time relative to the event, in seconds.
    """
    check_variant(variant)
    constants = VARIANT_CONSTANTS[variant]
    target, spt = float(constants["sfreq"]), int(constants["samples_per_token"])
    source = float(raw.info["sfreq"])
    data = raw.get_data()
    trials = data.reshape(len(data), n_trials, -1).transpose(1, 0, 2)
    if source != target:
        trials = mne.filter.resample(trials, up=target, down=source, axis=-1, verbose=verbose or "error")
    # whole tokens inside the trial, the event (t = 0) on a token boundary
    first = math.ceil(tmin / TOKEN_SECONDS - 1e-9)
    offset = int(round((first * TOKEN_SECONDS - tmin) * target))
    n_tokens = (trials.shape[-1] - offset) // spt
    seconds = n_tokens * TOKEN_SECONDS
    low, high = float(constants["min_segment_duration"]), float(constants["max_segment_duration"])
    if not low <= seconds <= high:
        span = f"{low:g} to {high:g} s" if low < high else f"{low:g} s"
        raise ZunaValueError(f"{variant} takes trials of {span}, and these hold {seconds:g} s of whole 0.125 s tokens "
                             f"(tmin={tmin:g} s, {trials.shape[-1] / target:g} s long); epoch with a window of that "
                             "length" + (", or use the ZUNA1.1 model for 0.5–30 s trials." if variant == "ZUNA" else "."))
    trials = np.ascontiguousarray(trials[:, :, offset:offset + n_tokens * spt])
    good = [i for i, name in enumerate(raw.ch_names) if name not in raw.info["bads"]]
    parts = _trial_parts(trials, variant, good, np.asarray(event_time) + first * TOKEN_SECONDS)
    common = dict(ch_names=tuple(raw.ch_names), ch_pos=channel_positions(raw), bads=tuple(raw.info["bads"]),
                  sfreq=target, source_sfreq=source, n_times=int(trials.shape[-1]),
                  data_norm=float(constants["data_norm"]), data_clip=float(constants["data_clip"]))
    provenance = dict(variant=variant, resampled=source != target, highpass_hz=float("nan"),
                      highpass="none: trials cut before zuna_lab (mne.Epochs)",
                      data_norm=common["data_norm"], data_clip=common["data_clip"],
                      reference=REFERENCE_PIPELINES[variant] + ", on trials (mne.Epochs)",
                      segment_duration=seconds, trial_tmin=first * TOKEN_SECONDS)
    return assemble_epochs(variant, parts, common, provenance), first * TOKEN_SECONDS


def highpass(data, sfreq, verbose, *, channels_per_job=4):
    """``mne.filter.filter_data(data, sfreq, 0.5, None, method="fir")`` in place, in groups of channels.

    MNE filters channel by channel; handing it a few channels at a time keeps each group's
    buffers in cache (2-3x faster on long recordings) and lets threads filter groups at once
    (SciPy's FFTs release the GIL). The values are identical to one call on the whole array.
    """
    def run(rows):
        data[rows] = mne.filter.filter_data(data[rows], sfreq, HIGHPASS_HZ, None, method="fir", copy=False,
                                            verbose=verbose)

    groups = [slice(start, start + channels_per_job) for start in range(0, len(data), channels_per_job)]
    workers = min(len(groups), os.cpu_count() or 1, 8)
    if workers <= 1 or data.size < 1 << 20:        # (a streamed span of 64 channels, 4 M values: on threads)
        for rows in groups:
            run(rows)
        return data
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(run, groups))
    return data


def _zuna_epochs(raw, duration, verbose):
    """ZUNA (0.1.1): reference → global z → 5 s epochs, baseline → global z."""
    before_reference = raw.get_data()
    raw.set_eeg_reference("average", projection=False, verbose=verbose)
    referenced = raw.get_data()
    good = mne.pick_types(raw.info, eeg=True, exclude="bads")    # not empty: preprocess checked
    # MNE subtracts the mean of the good channels from the good channels only (the bad ones keep
    # their own reference); averaging over the good ones guards against rounding.
    reference = (before_reference - referenced)[good].mean(axis=0)

    global_mean = float(referenced[good].mean())
    global_std = float(referenced[good].std())
    if global_std == 0:
        raise ZunaValueError("The recording is constant after the average reference; check the data.")
    raw.apply_function(lambda x: (x - global_mean) / global_std, picks="all", channel_wise=False, verbose=verbose)
    # The official code resets info["bads"] to its (disabled) bad-channel detector's empty set here,
    # so epoching and baseline treat every channel alike.
    raw.info["bads"] = []

    epochs = mne.make_fixed_length_epochs(raw, duration=duration, preload=True, verbose=verbose)
    if len(epochs) == 0:
        raise ZunaValueError(
            "No 5 s epoch is left (too short, or every epoch overlaps a BAD_ annotation); use a longer recording."
        )
    before_baseline = epochs.get_data(copy=True)
    epochs.apply_baseline((None, None), verbose=verbose)
    centred = epochs.get_data(copy=True)
    baseline = (before_baseline - centred).mean(axis=2)  # (epoch, channel), z-units

    final_mean = float(centred.mean())
    final_std = float(centred.std())
    normalised = (centred - final_mean) / final_std if final_std > 0 else centred.copy()
    if not final_std > 0:
        final_std = 1.0

    starts = epochs.events[:, 0] - raw.first_samp
    n_samples = centred.shape[2]
    volts = tuple(before_reference[:, s:s + n_samples].copy() for s in starts)
    references = tuple(reference[s:s + n_samples].copy() for s in starts)
    n_epochs, n_channels = baseline.shape
    scale = np.full((n_epochs, n_channels), final_std * global_std)
    offset = (final_mean + baseline) * global_std + global_mean
    return dict(
        normalised=list(normalised),
        volts=volts,
        reference=references,
        epoch_start=starts / raw.info["sfreq"],
        scale=scale,
        offset=offset,
        stats=dict(global_mean=global_mean, global_std=global_std, final_mean=final_mean, final_std=final_std),
    )


def zuna11_segments(filtered, sfreq, duration, *, per_job=32):
    """ZUNA1.1 (1.1.6 v4 loader): per segment, average reference and per-channel z-score.

    The whole segments as one (segment, channel, sample) view of ``filtered`` (which the caller
    hands over; ``volts`` are views of it), worked on in groups of ``per_job`` segments on threads
    (NumPy releases the GIL; each group fits in cache). Every reduction runs over the same axis
    and in the same order as one segment at a time would, so the values are the same bits.
    """
    samples_per_token = 32
    n_channels, n_total = filtered.shape
    segment = max(samples_per_token, int(round(duration * sfreq)) // samples_per_token * samples_per_token)
    n_whole = n_total // segment
    tail = (n_total - n_whole * segment) // samples_per_token * samples_per_token
    blocks = [filtered[:, :n_whole * segment].reshape(n_channels, n_whole, segment).transpose(1, 0, 2)]
    if tail:
        blocks.append(filtered[None, :, n_whole * segment:n_whole * segment + tail])
    jobs = [block[start:start + per_job] for block in blocks for start in range(0, len(block), per_job)]

    workers = min(len(jobs), os.cpu_count() or 1, 8)
    if workers > 1 and n_total >= 100_000:
        with ThreadPoolExecutor(workers) as pool:
            done = list(pool.map(_zuna11_normalise, jobs))
    else:
        done = [_zuna11_normalise(block) for block in jobs]
    volts = tuple(epoch for block in jobs for epoch in block)
    return dict(
        normalised=[epoch for part in done for epoch in part[0]],
        volts=volts,
        reference=tuple(epoch for part in done for epoch in part[1]),
        epoch_start=np.arange(len(volts), dtype=float) * segment / sfreq,
        scale=np.concatenate([part[3] for part in done]) if done else np.zeros((0, n_channels)),
        offset=np.concatenate([part[2] for part in done]) if done else np.zeros((0, n_channels)),
        stats=dict(segment_samples=segment, std_epsilon=_ZUNA11_STD_EPSILON),
    )


def _zuna11_normalise(block):
    """ZUNA1.1 on segments (segment, channel, sample): average reference over all channels, then a
    per-channel z-score with ``std + 1e-6``. Returns (normalised, reference, mean, std)."""
    reference = block.mean(axis=1)
    normalised = block - reference[:, None, :]
    mean = normalised.mean(axis=2)
    std = normalised.std(axis=2) + _ZUNA11_STD_EPSILON
    normalised -= mean[:, :, None]
    normalised /= std[:, :, None]
    return normalised, reference, mean, std


def _trial_parts(trials, variant, good, starts):
    """Event-locked trials (trial, channel, sample) in volts, normalised as ``variant`` normalises epochs.

    ZUNA1.1: each trial a segment (:func:`_zuna11_normalise`). ZUNA (0.1.1): the average reference
    over the good channels, each trial's per-channel baseline removed, then one z-score over all
    trials — its first z-score over the whole recording is an affine map that the second cancels,
    so the trials alone give the same numbers.
    """
    if variant == "ZUNA1.1":
        normalised, reference, offset, scale = _zuna11_normalise(trials)
        stats = dict(segment_samples=trials.shape[-1], std_epsilon=_ZUNA11_STD_EPSILON)
    else:
        reference = trials[:, good].mean(axis=1)
        centred = trials - reference[:, None, :]
        baseline = centred.mean(axis=2)
        centred -= baseline[:, :, None]
        final_mean, final_std = float(centred.mean()), float(centred.std())
        if not final_std > 0:
            raise ZunaValueError("The trials are constant after the average reference; check the data.")
        normalised = (centred - final_mean) / final_std
        scale, offset = np.full(baseline.shape, final_std), baseline + final_mean
        stats = dict(final_mean=final_mean, final_std=final_std)
    return dict(normalised=list(normalised), volts=tuple(trials), reference=tuple(reference),
                epoch_start=np.asarray(starts, dtype=float), scale=scale, offset=offset, stats=stats)


def check_recording(raw, variant="ZUNA", *, samples=True):
    """Check that a Raw can go through the preprocessing of ``variant``; raise one clear error if not.

    Parameters
    ----------
    raw : mne.io.Raw
        Usually the output of :func:`read_raw`.
    variant : str
        ``"ZUNA"`` needs at least one full 5 s epoch; ``"ZUNA1.1"`` at least one token (0.125 s).
    samples : bool
        Also check the samples (:func:`zuna_lab.io.quality.check_signal`: finite, plausible volts,
        not flat) — one pass over the data; False where they were checked already.

    Raises
    ------
    zuna_lab.errors.RecordingError

    Examples
    --------
    >>> check_recording(read_raw("../shared/data/sample1_raw.fif"), "ZUNA")  # doctest: +SKIP
    """
    if not isinstance(raw, mne.io.BaseRaw):
        raise ZunaTypeError(f"Expected an mne.io.Raw (e.g. from zuna_lab.read_raw), got {type(raw).__name__}.")
    check_variant(variant)
    if not raw.preload and samples:
        raise RecordingError("The Raw is not loaded; call raw.load_data() or read it with zuna_lab.read_raw.")
    eeg = set(mne.pick_types(raw.info, eeg=True, exclude=()))
    non_eeg = [raw.ch_names[i] for i in range(len(raw.ch_names)) if i not in eeg]
    if non_eeg:
        raise RecordingError(f"Channels {preview(non_eeg)} are not EEG; read the recording with zuna_lab.read_raw first.")
    missing = [ch["ch_name"] for ch in raw.info["chs"] if not has_position(ch["loc"])]
    if missing:
        raise RecordingError(
            f"Channels {preview(missing)} have no 3-D position; read the recording with zuna_lab.read_raw "
            "(it finds or drops positions) or call raw.set_montage(...)."
        )
    if len(raw.ch_names) < 2:
        raise RecordingError(
            "ZUNA needs at least 2 EEG channels (the average reference of a single channel is zero); add channels."
        )
    if samples:
        check_signal(raw)
    constants = VARIANT_CONSTANTS[variant]
    target_sfreq = float(constants["sfreq"])
    n_resampled = int(round(raw.n_times * target_sfreq / raw.info["sfreq"]))
    minimum = float(constants["min_segment_duration"]) if variant == "ZUNA" else TOKEN_SECONDS
    if n_resampled < int(round(minimum * target_sfreq)):
        raise RecordingError(
            f"The recording lasts {raw.n_times / raw.info['sfreq']:.3f} s but {variant} needs at least "
            f"{minimum:g} s (one {'5 s epoch' if variant == 'ZUNA' else 'token'}); use a longer recording"
            + (" or variant 'ZUNA1.1'." if variant == "ZUNA" else ".")
        )
