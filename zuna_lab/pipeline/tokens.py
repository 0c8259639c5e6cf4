"""Tokenisation: how an epoch of EEG becomes the sequence the ZUNA encoder reads.

Every channel is cut into tokens of 32 consecutive samples (0.125 s at 256 Hz). A token
carries its 32 values and an index ``tok_idx = (x_bin, y_bin, z_bin, t_coarse)``: the
electrode position, discretised per axis into equal bins over ±0.12 m, and the token's
position in time within the epoch. The model's 4-D RoPE reads only ``tok_idx``, so the
order of tokens in the sequence does not change what the model computes — but the
official code uses a fixed order per variant, and we follow it so that our sequences are
byte-for-byte the official encoder input:

``"ZUNA"`` (zuna 0.1.1, ``use_coarse_time: "B"``)
    channel-major: all tokens of channel 0 in time order, then channel 1, …
    ``sequence_index = channel * n_tokens + token``.
``"ZUNA1.1"`` (zuna 1.1.6, ``use_coarse_time: "A"``)
    time-major: token 0 of every channel, then token 1 of every channel, …
    ``sequence_index = token * n_channels + channel``.

A hidden (masked) token keeps its ``tok_idx`` and has its 32 values set to 0: this is how
the official code drops channels and time spans from the encoder input.
"""
from __future__ import annotations

import math

from dataclasses import dataclass

import numpy as np

from ..config import SAMPLES_PER_TOKEN, VARIANT_CONSTANTS, check_variant
from ..errors import ZunaTypeError, ZunaValueError, preview, warn
from ..io.montage import position_bins

__all__ = [
    "SAMPLES_PER_TOKEN",
    "TokenSpec",
    "token_spec",
    "position_bins",
    "tokenize",
    "detokenize",
    "sequence_index",
    "channel_token",
    "mask_to_sequence",
    "mask_from_sequence",
    "token_mask",
    "epoch_token_mask",
    "epoch_sample_masks",
    "n_tokens_for",
]



@dataclass(frozen=True)
class TokenSpec:
    """How one model variant lays out its token sequence.

    Attributes
    ----------
    variant : str
        ``"ZUNA"`` or ``"ZUNA1.1"``.
    n_position_bins : int
        Bins per axis for the electrode position (50 for ZUNA, 100 for ZUNA1.1).
    position_extreme : float
        Positions are binned over ``[-position_extreme, +position_extreme]`` metres per axis.
    order : str
        ``"channel-major"`` (ZUNA) or ``"time-major"`` (ZUNA1.1).
    samples_per_token : int
        32.
    """

    variant: str
    n_position_bins: int
    position_extreme: float
    order: str
    samples_per_token: int = SAMPLES_PER_TOKEN


_ORDER = {"ZUNA": "channel-major", "ZUNA1.1": "time-major"}


def token_spec(variant):
    """Return the :class:`TokenSpec` of a model variant.

    Parameters
    ----------
    variant : str
        ``"ZUNA"`` or ``"ZUNA1.1"``.

    Returns
    -------
    spec : TokenSpec

    Examples
    --------
    >>> token_spec("ZUNA1.1").n_position_bins
    100
    """
    check_variant(variant)
    constants = VARIANT_CONSTANTS[variant]
    return TokenSpec(
        variant=variant,
        n_position_bins=int(constants["n_position_bins"]),
        position_extreme=float(constants["position_extreme"]),
        order=_ORDER[variant],
        samples_per_token=int(constants["samples_per_token"]),
    )


def n_tokens_for(n_samples):
    """Number of whole tokens in ``n_samples`` samples (a trailing partial token is not a token).

    Examples
    --------
    >>> n_tokens_for(1280)
    40
    """
    return int(n_samples) // SAMPLES_PER_TOKEN


def sequence_index(channel, token, n_channels, n_tokens, *, variant):
    """Position in the token sequence of (channel, token) pairs.

    Parameters
    ----------
    channel, token : int or array of int
        Channel index and token index (time) within the epoch; broadcast together.
    n_channels, n_tokens : int
        Shape of the epoch in channels and tokens.
    variant : str
        ``"ZUNA"`` (channel-major) or ``"ZUNA1.1"`` (time-major).

    Returns
    -------
    index : int or ndarray of int64

    Examples
    --------
    >>> int(sequence_index(1, 2, 4, 40, variant="ZUNA")), int(sequence_index(1, 2, 4, 40, variant="ZUNA1.1"))
    (42, 9)
    """
    spec = token_spec(variant)
    channel = np.asarray(channel, dtype=np.int64)
    token = np.asarray(token, dtype=np.int64)
    if np.any((channel < 0) | (channel >= n_channels)) or np.any((token < 0) | (token >= n_tokens)):
        raise ZunaValueError(f"channel must be in [0, {n_channels}) and token in [0, {n_tokens}).")
    if spec.order == "channel-major":
        index = channel * n_tokens + token
    else:
        index = token * n_channels + channel
    return index if index.ndim else int(index)


def channel_token(index, n_channels, n_tokens, *, variant):
    """Inverse of :func:`sequence_index`: the (channel, token) of sequence positions.

    Examples
    --------
    >>> channel_token(9, 4, 40, variant="ZUNA1.1")
    (1, 2)
    """
    spec = token_spec(variant)
    index = np.asarray(index, dtype=np.int64)
    if np.any((index < 0) | (index >= n_channels * n_tokens)):
        raise ZunaValueError(f"Sequence index must be in [0, {n_channels * n_tokens}).")
    if spec.order == "channel-major":
        channel, token = np.divmod(index, n_tokens)
    else:
        token, channel = np.divmod(index, n_channels)
    if index.ndim == 0:
        return int(channel), int(token)
    return channel, token


def mask_to_sequence(mask, *, variant):
    """Flatten a (channel, token) mask — or any per-token array — into sequence order.

    Parameters
    ----------
    mask : array-like, shape (n_channels, n_tokens) or (n_epochs, n_channels, n_tokens)
    variant : str

    Returns
    -------
    flat : ndarray, shape (S,) or (n_epochs, S)

    Examples
    --------
    >>> mask_to_sequence([[True, False], [False, False]], variant="ZUNA1.1").tolist()
    [True, False, False, False]
    """
    spec = token_spec(variant)
    arr = np.asarray(mask)
    if arr.ndim not in (2, 3):
        raise ZunaValueError(f"mask must have shape (n_channels, n_tokens) or (n_epochs, n_channels, n_tokens), got {arr.shape}.")
    if spec.order == "time-major":
        arr = np.swapaxes(arr, -1, -2)
    return arr.reshape(arr.shape[:-2] + (-1,))


def mask_from_sequence(flat, n_channels, n_tokens, *, variant):
    """Inverse of :func:`mask_to_sequence`: (S,) or (n_epochs, S) back to (…, n_channels, n_tokens).

    Examples
    --------
    >>> mask_from_sequence([True, False, False, False], 2, 2, variant="ZUNA1.1").tolist()
    [[True, False], [False, False]]
    """
    spec = token_spec(variant)
    arr = np.asarray(flat)
    if arr.shape[-1] != n_channels * n_tokens:
        raise ZunaValueError(f"Expected {n_channels * n_tokens} tokens in sequence order, got {arr.shape[-1]}.")
    lead = arr.shape[:-1]
    if spec.order == "channel-major":
        return arr.reshape(lead + (n_channels, n_tokens))
    return np.swapaxes(arr.reshape(lead + (n_tokens, n_channels)), -1, -2)


def tokenize(epoch, ch_pos, *, variant, mask=None):
    """Turn an epoch (or a batch of equal-shape epochs) into the official encoder input.

    Parameters
    ----------
    epoch : array-like, shape (n_channels, n_samples) or (n_epochs, n_channels, n_samples)
        Preprocessed signal (already ÷ data_norm and clipped, see
        :func:`zuna_lab.pipeline.preprocessing.preprocess`). ``n_samples`` must be a multiple of 32.
    ch_pos : array-like, shape (n_channels, 3)
        Electrode positions in metres, MNE head frame.
    variant : str
        ``"ZUNA"`` or ``"ZUNA1.1"``: sets the token order and the position bins.
    mask : array-like of bool, shape (n_channels, n_tokens) or (n_epochs, n_channels, n_tokens), optional
        True where a token is hidden from the encoder; its 32 values become 0.

    Returns
    -------
    tokens : ndarray of float32, shape (S, 32) or (n_epochs, S, 32)
        ``S = n_channels * n_tokens``.
    tok_idx : ndarray of int64, shape (S, 4) or (n_epochs, S, 4)
        ``(x_bin, y_bin, z_bin, t_coarse)`` of every token.

    Examples
    --------
    >>> import numpy as np
    >>> tokens, tok_idx = tokenize(np.zeros((2, 64)), [[0, 0, 0.1], [0, 0.05, 0.1]], variant="ZUNA")
    >>> tokens.shape, tok_idx[:, 3].tolist()
    ((4, 32), [0, 1, 0, 1])
    """
    spec = token_spec(variant)
    if isinstance(epoch, (list, tuple)) and epoch and not np.isscalar(epoch[0]) and len({np.shape(e) for e in epoch}) > 1:
        raise ZunaValueError("A batch of epochs must all have the same shape; tokenize variable-length epochs one by one.")
    data = np.asarray(epoch, dtype=np.float32)
    if data.ndim not in (2, 3):
        raise ZunaValueError(f"epoch must have shape (n_channels, n_samples) or (n_epochs, n_channels, n_samples), got {data.shape}.")
    batched = data.ndim == 3
    if not batched:
        data = data[None]
    n_epochs, n_channels, n_samples = data.shape
    if n_samples == 0 or n_samples % spec.samples_per_token:
        raise ZunaValueError(
            f"An epoch must have a positive multiple of {spec.samples_per_token} samples, got {n_samples}; "
            "trim it to whole tokens first."
        )
    n_tokens = n_samples // spec.samples_per_token
    bins = position_bins(ch_pos, variant=variant)
    if bins.shape[0] != n_channels:
        raise ZunaValueError(f"ch_pos has {bins.shape[0]} rows but the epoch has {n_channels} channels.")

    # (epoch, channel, token, sample) -> sequence order of the variant
    grid = data.reshape(n_epochs, n_channels, n_tokens, spec.samples_per_token)
    if mask is not None:
        hidden = np.asarray(mask)
        if hidden.dtype != bool:
            raise ZunaTypeError(f"mask must be boolean, got dtype {hidden.dtype}.")
        if hidden.shape not in ((n_channels, n_tokens), (n_epochs, n_channels, n_tokens)):
            raise ZunaValueError(f"mask must have shape ({n_channels}, {n_tokens}), got {hidden.shape}.")
        grid = np.where(np.broadcast_to(hidden, (n_epochs, n_channels, n_tokens))[..., None], np.float32(0), grid)
    if spec.order == "time-major":
        grid = grid.transpose(0, 2, 1, 3)
    tokens = np.ascontiguousarray(grid.reshape(n_epochs, n_channels * n_tokens, spec.samples_per_token), dtype=np.float32)

    channel_of, token_of = np.meshgrid(np.arange(n_channels), np.arange(n_tokens), indexing="ij")
    channel_seq = mask_to_sequence(channel_of, variant=variant)
    token_seq = mask_to_sequence(token_of, variant=variant)
    tok_idx = np.concatenate([bins[channel_seq], token_seq[:, None]], axis=1).astype(np.int64)
    tok_idx = np.broadcast_to(tok_idx, (n_epochs,) + tok_idx.shape).copy()
    if not batched:
        return tokens[0], tok_idx[0]
    return tokens, tok_idx


def detokenize(tokens, n_channels, n_samples, *, variant):
    """Inverse of :func:`tokenize` for the values: sequence of tokens back to (channels, samples).

    Parameters
    ----------
    tokens : array-like, shape (S, 32) or (n_epochs, S, 32)
        Token values in the variant's sequence order (e.g. a decoder output).
    n_channels, n_samples : int
        Shape of the epoch; ``S`` must equal ``n_channels * n_samples / 32``.
    variant : str

    Returns
    -------
    epoch : ndarray of float32, shape (n_channels, n_samples) or (n_epochs, n_channels, n_samples)

    Examples
    --------
    >>> import numpy as np
    >>> x = np.arange(128, dtype=np.float32).reshape(2, 64)
    >>> tokens, _ = tokenize(x, np.zeros((2, 3)), variant="ZUNA1.1")
    >>> bool((detokenize(tokens, 2, 64, variant="ZUNA1.1") == x).all())
    True
    """
    spec = token_spec(variant)
    values = np.asarray(tokens, dtype=np.float32)
    batched = values.ndim == 3
    if values.ndim not in (2, 3) or values.shape[-1] != spec.samples_per_token:
        raise ZunaValueError(f"tokens must have shape (S, {spec.samples_per_token}) or (n_epochs, S, {spec.samples_per_token}), got {values.shape}.")
    if n_samples % spec.samples_per_token:
        raise ZunaValueError(f"n_samples must be a multiple of {spec.samples_per_token}, got {n_samples}.")
    n_tokens = n_samples // spec.samples_per_token
    if values.shape[-2] != n_channels * n_tokens:
        raise ZunaValueError(
            f"{values.shape[-2]} tokens do not fill {n_channels} channels x {n_tokens} tokens ({n_samples} samples)."
        )
    if not batched:
        values = values[None]
    n_epochs = values.shape[0]
    if spec.order == "channel-major":
        grid = values.reshape(n_epochs, n_channels, n_tokens, spec.samples_per_token)
    else:
        grid = values.reshape(n_epochs, n_tokens, n_channels, spec.samples_per_token).transpose(0, 2, 1, 3)
    epoch = np.ascontiguousarray(grid.reshape(n_epochs, n_channels, n_samples))
    return epoch if batched else epoch[0]


def token_mask(ch_names, n_samples, *, bad_channels=None, bad_spans=None, sfreq=256.0, overlap=0.0):
    """Build a (channel, token) mask from bad channel names and bad time spans of one epoch.

    Parameters
    ----------
    ch_names : list of str
        Channel names of the epoch.
    n_samples : int
        Samples in the epoch (only whole tokens count).
    bad_channels : list of str, optional
        Channels hidden for the whole epoch (matched case-insensitively).
    bad_spans : list of tuple, optional
        ``(start, stop)`` in seconds from the epoch start hides that span on every channel;
        ``(start, stop, channel)`` on one channel only.
    sfreq : float
        Sampling frequency of the epoch (256 Hz after preprocessing).
    overlap : float
        A token is hidden when more than this fraction of its samples lie in a bad span:
        0.0 (default, as the official ``bad_token_overlap``) hides any token a span touches.

    Returns
    -------
    mask : ndarray of bool, shape (n_channels, n_tokens)

    Examples
    --------
    >>> m = token_mask(["Cz", "Pz"], 1280, bad_channels=["cz"], bad_spans=[(1.0, 1.2, "Pz")])
    >>> m.shape, int(m[0].sum()), m[1].nonzero()[0].tolist()
    ((2, 40), 40, [8, 9])
    """
    names = [str(name) for name in ch_names]
    exact = {name: i for i, name in enumerate(names)}
    lower = {}
    for i, name in enumerate(names):
        lower.setdefault(name.lower(), []).append(i)
    n_tokens = n_tokens_for(n_samples)
    mask = np.zeros((len(names), n_tokens), dtype=bool)
    if not 0.0 <= overlap < 1.0:
        raise ZunaValueError(f"overlap must be in [0, 1), got {overlap}.")

    def row_of(name):
        # The exact name wins; a case-insensitive match only when it is unambiguous ("Fp1" vs "fp1").
        if str(name) in exact:
            return exact[str(name)]
        rows = lower.get(str(name).lower(), [])
        if len(rows) > 1:
            raise ZunaValueError(
                f"Channel {name!r} matches several channels by case ({', '.join(names[i] for i in rows)}); use the exact name."
            )
        if not rows:
            raise ZunaValueError(f"Channel {name!r} is not in this recording; its channels are {', '.join(names)}.")
        return rows[0]

    for name in bad_channels or ():
        mask[row_of(name)] = True
    token_start = np.arange(n_tokens) * SAMPLES_PER_TOKEN
    for span in bad_spans or ():
        if len(span) not in (2, 3):
            raise ZunaValueError(f"A bad span is (start, stop) or (start, stop, channel) in seconds, got {span!r}.")
        # every sample the span touches (a millionth of a sample of rounding in the times forgiven):
        # a span that ends inside the last sample still hides that sample's token
        start = max(0, math.floor(float(span[0]) * sfreq + 1e-6))
        stop = math.ceil(min(float(span[1]), n_samples / sfreq + 1.0) * sfreq - 1e-6)
        if stop <= start:
            continue
        covered = np.minimum(stop, token_start + SAMPLES_PER_TOKEN) - np.maximum(start, token_start)
        hit = covered > overlap * SAMPLES_PER_TOKEN
        if len(span) == 3 and span[2] is not None:
            mask[row_of(span[2])] |= hit
        else:
            mask |= hit[None, :]
    return mask


@dataclass
class EpochMasks:
    """The channels the model sees and, per epoch, which of their tokens are hidden.

    Attributes
    ----------
    ch_names : list of str
        The recording's channels, then the added ones.
    ch_pos : ndarray, shape (n_channels, 3)
    added : ndarray of bool, shape (n_channels,)
    masks : list of ndarray
        Per epoch, (n_channels, n_tokens) bool: True = hidden from the encoder (and infilled).
    """

    ch_names: list
    ch_pos: np.ndarray
    added: np.ndarray
    masks: list

    def inputs(self, pre, index):
        """The model-domain epoch ``index`` of ``pre``, with zero rows for the added channels."""
        data = np.asarray(pre.data[index])
        n_added = int(self.added.sum())
        return np.vstack([data, np.zeros((n_added, data.shape[1]), np.float32)]) if n_added else data

    def sample_mask(self, pre, index):
        """(channel, n_samples) bool: the hidden cells of epoch ``index`` sample by sample."""
        return np.repeat(self.masks[index], VARIANT_CONSTANTS[pre.variant]["samples_per_token"],
                         axis=1)[:, : pre.n_samples(index)]


def epoch_token_mask(pre, epoch_index, *, bad_channels=None, bad_spans=None, overlap=0.0):
    """(channel, token) mask of one epoch of a preprocessed recording from bad channels and bad spans.

    Parameters
    ----------
    pre : zuna_lab.pipeline.preprocessing.Preprocessed
    epoch_index : int
    bad_channels : list of str, optional
        Hidden for the whole epoch (case-insensitive names).
    bad_spans : list of tuple, optional
        ``(start, stop)`` or ``(start, stop, channel)`` in seconds from the first sample of
        the recording (e.g. from :func:`zuna_lab.pipeline.masks.bad_annotation_spans`).
    overlap : float
        A token is hidden when more than this fraction of it is covered (0.0: any overlap).

    Returns
    -------
    mask : ndarray of bool, shape (n_channels, n_tokens)

    Examples
    --------
    >>> epoch_token_mask(pre, 0, bad_channels=pre.bads, bad_spans=bad_annotation_spans(raw))  # doctest: +SKIP
    """
    index = pre.resolve_epoch(epoch_index)
    start = float(pre.epoch_start[index])
    shifted = [(s[0] - start, s[1] - start, *s[2:]) for s in (bad_spans or ())]
    return token_mask(pre.ch_names, pre.n_samples(index), bad_channels=bad_channels, bad_spans=shifted,
                      sfreq=pre.sfreq, overlap=overlap)


def epoch_sample_masks(pre, *, bad_channels=None, spans=None):
    """(epoch, channel, time) bool: the samples of the tokens that these channels and spans hide
    (:func:`epoch_token_mask` per epoch, each token widened to its samples)."""
    widths = [pre.n_samples(i) for i in range(pre.n_epochs)]
    out = np.zeros((pre.n_epochs, pre.n_channels, max(widths)), bool)
    for i, width in enumerate(widths):
        tokens = epoch_token_mask(pre, i, bad_channels=bad_channels, bad_spans=spans or ())
        out[i, :, :width] = np.repeat(tokens, SAMPLES_PER_TOKEN, axis=1)[:, :width]
    return out


def epoch_masks(pre, request):
    """Token masks of every epoch of ``pre`` from a :class:`zuna_lab.pipeline.masks.MaskRequest`.

    Parameters
    ----------
    pre : zuna_lab.pipeline.preprocessing.Preprocessed
    request : zuna_lab.pipeline.masks.MaskRequest

    Returns
    -------
    masks : EpochMasks

    Examples
    --------
    >>> layout = epoch_masks(pre, masks.request(raw, bads=("T7",)))  # doctest: +SKIP
    >>> layout.masks[0].shape  # doctest: +SKIP
    (19, 40)
    """
    per_epoch = [epoch_token_mask(pre, i, bad_channels=request.bads, bad_spans=request.spans)
                 for i in range(pre.n_epochs)]
    if request.mask is not None:
        user = np.asarray(request.mask)
        if user.dtype != bool:
            raise ZunaTypeError(f"mask must be a boolean array (epoch, channel, token), got dtype {user.dtype}.")
        expected = (len(per_epoch), pre.n_channels, max(m.shape[1] for m in per_epoch))
        if user.shape != expected:
            raise ZunaValueError(f"mask must have shape (n_epochs, n_channels, n_tokens) = {expected} for this "
                                 f"recording, got {user.shape}.")
        per_epoch = [m | user[i, :, : m.shape[1]] for i, m in enumerate(per_epoch)]
    blind = [f"{float(pre.epoch_start[i]):g} s" for i, m in enumerate(per_epoch) if m.all()]
    if blind:
        warn(f"The epoch(s) starting at {preview(blind)} are hidden on every channel, so ZUNA has nothing of them "
             "to work from: their results come from the model alone, not from your data; hide fewer cells there or "
             "leave those epochs out.")
    n_added = len(request.added_names)
    if n_added:
        per_epoch = [np.vstack([m, np.ones((n_added, m.shape[1]), bool)]) for m in per_epoch]
    return EpochMasks(ch_names=list(pre.ch_names) + list(request.added_names),
                      ch_pos=np.vstack([pre.ch_pos, np.asarray(request.added_positions).reshape(-1, 3)]),
                      added=np.r_[np.zeros(pre.n_channels, bool), np.ones(n_added, bool)], masks=per_epoch)
