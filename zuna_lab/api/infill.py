"""The sampling stage of ``reconstruct``, written once: epochs of a preprocessed recording encoded,
sampled by rectified flow and returned to volts, batch by batch.

Used by :func:`zuna_lab.api.core.reconstruct_prepared` (a whole recording, or some epochs) and by
the streamed reconstruction (:mod:`zuna_lab.api.streaming`, a chunk of epochs at a time): the noise
is drawn per (seed, sample, epoch) with the recording's epoch index, so a result does not depend
on the batches or the chunks an epoch ran in.
"""
from __future__ import annotations

import numpy as np
import torch

from ..pipeline.embedding import length_batches, tokenize_epochs
from ..pipeline.tokens import detokenize

__all__ = ["reconstruct_epochs", "noise_seed"]


def noise_seed(seed, sample, epoch):
    """The seed of the noise of one (seed, sample, epoch)."""
    return int(np.random.SeedSequence([seed, sample, epoch]).generate_state(1)[0])


def reconstruct_epochs(pre, layout, model, indices, *, steps, cfg, seed, n_samples, batch_size, first=0,
                       callback=None, progress=None, done=0, total=None):
    """The reconstruction in volts of epochs ``indices`` of ``pre``: ``{epoch: (n_samples, channel, time)}``.

    ``first`` is the recording's index of ``pre``'s epoch 0 (a chunk of a streamed recording), so that
    the noise of an epoch is the same wherever it runs. ``callback(done, total)`` after every sampler
    step (``done``/``total`` in batches x samples, carried across calls); ``progress`` a tqdm bar.
    """
    n_channels = len(layout.ch_names)
    batches = list(length_batches(pre, indices, batch_size))
    total = len(batches) * n_samples if total is None else total
    volts = {}
    for batch in batches:
        tokens, tok_idx, _ = tokenize_epochs(pre, layout, batch, model.variant)
        tok_idx_t = torch.from_numpy(tok_idx)
        latents = model.encode(torch.from_numpy(tokens), tok_idx_t)                               # model
        width = pre.n_samples(batch[0])
        for index in batch:
            volts[index] = np.empty((n_samples, n_channels, width))
        for sample in range(n_samples):
            # Noise per (seed, sample, epoch): results do not depend on batching or on which epochs run.
            noise = torch.stack([torch.randn(tokens.shape[1:], generator=torch.Generator().manual_seed(
                noise_seed(seed, sample, first + i))) for i in batch])
            # progress at every sampler step: the batches done, then this one's steps
            step_callback = None if callback is None else (
                lambda step, n_steps, done=done: callback(done * n_steps + step, total * n_steps))
            out = model.sample(latents, tok_idx_t, noise=noise, steps=int(steps), cfg=cfg,
                               callback=step_callback).cpu().numpy()
            normalised = detokenize(out, n_channels, width, variant=model.variant)
            for row, index in enumerate(batch):
                volts[index][sample] = pre.to_volts(normalised[row], index)
            done += 1
            if progress is not None:
                progress.update(len(batch))
    return volts
