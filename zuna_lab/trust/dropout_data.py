"""What :func:`~zuna_lab.trust.evaluation.evaluate_dropout` reads: the recording (whole, or some epochs of it read
lazily, in bounded memory), the cells it scores, and the fills it scores — ZUNA's and MNE's spherical spline."""
from __future__ import annotations

import warnings

import mne
import numpy as np

from ..config import SAMPLES_PER_TOKEN
from ..errors import ZunaLabWarning, ZunaValueError
from ..pipeline.tokens import epoch_token_mask

__all__ = ["check_span", "read_dropout", "zuna_fill", "sample_masks", "spline_estimate", "spline_filled"]


def check_span(epochs, hidden_input, data, sfreq, n_samples):
    """Without ``epochs``, a recording too long to reconstruct in memory is refused before any work."""
    from ..api.streaming import check_fits_in_memory

    if epochs is None:
        check_fits_in_memory(data, "reconstruct", sfreq=sfreq, n_samples=n_samples,
                             fix="pass epochs=[...] (the indices of the epochs to score) to evaluate_dropout to "
                                 "evaluate those epochs in bounded memory")
    elif hidden_input != "recorded":
        raise ZunaValueError("hidden_input='spline' fills the hidden channels of the whole recording before ZUNA's "
                             "statistics, which a span of epochs cannot reproduce; use hidden_input='recorded' with "
                             "epochs=, or leave epochs out.")


def read_dropout(data, model, estimators, epochs, segment_duration, sfreq, ch_names, verbose):
    """The recording (read lazily with ``epochs``), its preprocessing (whole, or an EpochSpans that prepares
    epochs when asked), the epochs scored and the model."""
    from ..api.core import get_model, prepare
    from ..api.streaming import check_epochs
    from ..io.read import read_raw

    raw = read_raw(data, sfreq=sfreq, ch_names=ch_names, preload=epochs is None, verbose=verbose)   # warns once, here
    if "zuna" in estimators:
        model = get_model(model)
    variant = getattr(model, "variant", "ZUNA")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ZunaLabWarning)            # read_raw said it once, just above
        pre = prepare(raw, variant, segment_duration=segment_duration, preload=epochs is None, verbose=verbose).pre
    return raw, pre, check_epochs(epochs, pre.n_epochs), model


def zuna_fill(raw, model, hidden, spans, cond_spans, chosen, lazy, hidden_input, options, prepared):
    """ZUNA's reconstruction under one condition: of the whole recording (``zl.reconstruct``), or of epochs
    ``chosen`` of the recording read lazily (prepared once per set of hidden channels, the last one kept)."""
    from ..api.core import prepare, reconstruct, reconstruct_prepared

    bad_channels = None if spans is not None else list(hidden)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ZunaLabWarning)     # said once by read_raw
        if not lazy:
            source = raw if hidden_input == "recorded" else spline_filled(
                raw, hidden, set(raw.info["bads"]), cond_spans, options["verbose"])
            return reconstruct(source, model=model, bad_channels=bad_channels, bad_segments=cond_spans, **options)
        key = tuple(bad_channels or ())
        if key not in prepared:
            prepared.clear()
            prepared[key] = prepare(raw, model.variant, bad_channels=list(key), preload=False,
                                    segment_duration=options["segment_duration"], verbose=options["verbose"])
        run = {name: value for name, value in options.items() if name != "segment_duration"}
        return reconstruct_prepared(prepared[key], model, epochs=chosen, bad_segments=cond_spans, **run)


def sample_masks(pre, chosen, *, bad_channels=None, spans=None):
    """(epoch, channel, time) bool of epochs ``chosen``: the samples of the tokens these channels and spans hide
    (:func:`~zuna_lab.pipeline.tokens.epoch_sample_masks` of those epochs)."""
    widths = [pre.n_samples(i) for i in chosen]
    out = np.zeros((len(chosen), pre.n_channels, max(widths)), bool)
    for k, i in enumerate(chosen):
        tokens = epoch_token_mask(pre, i, bad_channels=bad_channels, bad_spans=spans or ())
        out[k, :, :widths[k]] = np.repeat(tokens, SAMPLES_PER_TOKEN, axis=1)[:, :widths[k]]
    return out


def spline_estimate(data, names, positions, bads, sfreq, verbose):
    """MNE's spherical-spline fill of ``bads`` (``interpolate_bads``) on (channel, time) data."""
    info = mne.create_info(list(names), float(sfreq), "eeg")
    montage = mne.channels.make_dig_montage(ch_pos=dict(zip(names, np.asarray(positions, float))), coord_frame="head")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        info.set_montage(montage, verbose="error")
        inst = mne.io.RawArray(np.where(np.isin(names, list(bads))[:, None], 0.0, data), info, verbose="error")
        inst.info["bads"] = list(bads)
        inst.interpolate_bads(reset_bads=True, origin="auto", verbose=verbose if verbose is not None else "error")
    return inst.get_data()


def spline_filled(raw, hidden, bads, spans, verbose):
    """A copy of the read recording with the hidden cells replaced by the spline's estimate (no truth left)."""
    from ..io.montage import channel_positions

    filled = spline_estimate(raw.get_data(), raw.ch_names, channel_positions(raw), sorted(set(hidden) | bads),
                              raw.info["sfreq"], verbose)
    out = raw.copy()
    rows = [raw.ch_names.index(name) for name in hidden]
    if spans is None:
        out._data[rows] = filled[rows]
        return out
    sfreq = raw.info["sfreq"]
    for start, stop, name in spans:
        row = raw.ch_names.index(name)
        a, b = max(0, int(np.floor(start * sfreq))), min(raw.n_times, int(np.ceil(stop * sfreq)) + 1)
        out._data[row, a:b] = filled[row, a:b]
    return out
