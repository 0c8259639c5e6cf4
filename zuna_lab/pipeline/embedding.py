"""The embed stage, written once: a prepared recording's epochs tokenised in groups of equal length,
and the encoder's latents put back on the (epoch, channel, token, latent) grid.

:func:`zuna_lab.embed` runs it on one recording (batch by batch, the next batches tokenised ahead on
a thread); the study tasks (:mod:`zuna_lab.study.tasks`) cut it where dask moves the data —
tokenised on CPU workers, encoded together on the GPU worker, put on the grid where it is written.
"""
from __future__ import annotations

import numpy as np

from .tokens import detokenize, tokenize

__all__ = ["length_groups", "length_batches", "tokenize_epochs", "hidden_grid", "empty_grid", "place_latents"]


def length_groups(pre, indices=None) -> list[list[int]]:
    """Epoch indices (all, or ``indices``) grouped by length, in order (ZUNA1.1's last segment may be
    shorter)."""
    groups = {}
    for index in range(pre.n_epochs) if indices is None else indices:
        groups.setdefault(pre.n_samples(index), []).append(index)
    return list(groups.values())


def length_batches(pre, indices, batch_size: int):
    """Batches of at most ``batch_size`` epochs of one length each (:func:`length_groups`)."""
    for group in length_groups(pre, indices):
        for start in range(0, len(group), batch_size):
            yield group[start:start + batch_size]


def tokenize_epochs(pre, layout, indices, variant):
    """Tokens [n, S, 32], tok_idx [n, S, 4] and the masks (n, channel, token) of epochs ``indices``
    (all of one length) of the preprocessed recording ``pre`` under ``layout``
    (:func:`zuna_lab.pipeline.tokens.epoch_masks`)."""
    epochs = np.stack([layout.inputs(pre, i) for i in indices])
    masks = np.stack([layout.masks[i] for i in indices])
    tokens, tok_idx = tokenize(epochs, layout.ch_pos, variant=variant, mask=masks)
    return tokens, tok_idx, masks


def hidden_grid(pre, layout, max_tokens: int) -> np.ndarray:
    """Boolean (epoch, channel, token): the tokens hidden from the encoder (False past an epoch's end)."""
    hidden = np.zeros((pre.n_epochs, len(layout.ch_names), max_tokens), bool)
    for index in range(pre.n_epochs):
        hidden[index, :, :layout.masks[index].shape[1]] = layout.masks[index]
    return hidden


def padding_grid(pre, layout, max_tokens: int) -> np.ndarray:
    """Boolean (epoch, channel, token): the tokens past an epoch's end — from the epochs' lengths (the input),
    never from the model's output (a NaN latent must not pass for padding)."""
    padding = np.ones((pre.n_epochs, len(layout.ch_names), max_tokens), bool)
    for index in range(pre.n_epochs):
        padding[index, :, :layout.masks[index].shape[1]] = False
    return padding


def empty_grid(n_epochs: int, n_channels: int, max_tokens: int, latent_dim: int) -> np.ndarray:
    """The (epoch, channel, token, latent) float32 grid, NaN where no token is (past an epoch's end)."""
    return np.full((n_epochs, n_channels, max_tokens, latent_dim), np.nan, np.float32)


def place_latents(grid: np.ndarray, indices, latents: np.ndarray, n_tokens: int, variant: str):
    """Put the latents [n, S, latent] of epochs ``indices`` (``n_tokens`` tokens per channel, in the
    variant's token order) on ``grid``, in place."""
    n_channels, latent_dim = grid.shape[1], grid.shape[-1]
    values = detokenize(latents, n_channels, n_tokens * latent_dim, variant=variant)
    grid[indices, :, :n_tokens] = values.reshape(len(indices), n_channels, n_tokens, latent_dim)
