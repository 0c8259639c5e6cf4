"""pipeline.embedding: the embed stage written once (used by zl.embed and the study tasks)."""
import numpy as np
import pytest

import zuna_lab
from zuna_lab.pipeline import masks
from zuna_lab.pipeline.embedding import (empty_grid, hidden_grid, length_batches, length_groups, padding_grid,
                                         place_latents, tokenize_epochs)
from zuna_lab.pipeline.preprocessing import preprocess
from zuna_lab.pipeline.tokens import epoch_masks
from zuna_lab.synthetic import make_synthetic_raw


@pytest.mark.parametrize("variant", ["ZUNA", "ZUNA1.1"])
def test_tokens_placed_back_on_the_grid_are_the_epochs(variant):
    """Tokens are 32 samples wide like latents: placing a batch's tokens where latents go must give
    back each epoch's samples per (channel, token) — the token order of the variant undone — and
    the grid stays NaN past a shorter last segment's end."""
    raw = zuna_lab.read_raw(make_synthetic_raw(duration=17.3, seed=3))
    raw.info["bads"] = [raw.ch_names[1]]
    pre = preprocess(raw, variant)
    layout = epoch_masks(pre, masks.request(raw, bads=(raw.ch_names[1],), use_annotations=True, mask=None))
    groups = length_groups(pre)
    if variant == "ZUNA1.1":
        assert [len(g) for g in groups] == [3, 1]              # three 5 s segments and a 2.25 s one
    assert sorted(i for g in groups for i in g) == list(range(pre.n_epochs))
    assert [len(b) for b in length_batches(pre, None, 2)] == [2, 1] + ([1] if variant == "ZUNA1.1" else [])
    max_tokens = pre.n_samples(0) // 32
    grid = empty_grid(pre.n_epochs, pre.n_channels, max_tokens, 32)
    for indices in groups:
        tokens, tok_idx, batch_masks = tokenize_epochs(pre, layout, indices, variant)
        assert tokens.shape[:2] == tok_idx.shape[:2] == (len(indices), pre.n_channels * batch_masks.shape[-1])
        place_latents(grid, indices, tokens, batch_masks.shape[-1], variant)
    hidden = hidden_grid(pre, layout, max_tokens)
    for index in range(pre.n_epochs):
        data = layout.inputs(pre, index)
        n_tokens = data.shape[1] // 32
        expected = data.reshape(pre.n_channels, n_tokens, 32)
        visible = ~hidden[index, :, :n_tokens]
        np.testing.assert_array_equal(grid[index, :, :n_tokens][visible], expected[visible])
        assert hidden[index, 1, :n_tokens].all() and not hidden[index, 0, :n_tokens].any()
        assert np.isnan(grid[index, :, n_tokens:]).all() and not hidden[index, :, n_tokens:].any()
    padding = padding_grid(pre, layout, max_tokens)      # from the epochs' lengths, not from NaN in the grid
    np.testing.assert_array_equal(padding, np.isnan(grid).all(axis=-1))
    assert padding.any() == (variant == "ZUNA1.1")
