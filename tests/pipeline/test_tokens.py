"""Token order, position bins, masks and their inverses."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from zuna_lab.errors import ZunaLabWarning, ZunaTypeError, ZunaValueError
from zuna_lab.pipeline.tokens import (
    channel_token,
    detokenize,
    mask_from_sequence,
    mask_to_sequence,
    position_bins,
    sequence_index,
    token_mask,
    token_spec,
    tokenize,
)

VARIANTS = ["ZUNA", "ZUNA1.1"]


def _labelled(n_channels=3, n_tokens=4):
    """Sample value = 1000*channel + sample index: every token says where it came from."""
    samples = np.arange(n_tokens * 32)
    return (1000.0 * np.arange(n_channels)[:, None] + samples[None, :]).astype(np.float32)


def _positions(n_channels=3):
    return np.column_stack([np.linspace(-0.06, 0.06, n_channels), np.zeros(n_channels), np.full(n_channels, 0.08)])


def test_specs():
    assert token_spec("ZUNA").n_position_bins == 50 and token_spec("ZUNA").order == "channel-major"
    assert token_spec("ZUNA1.1").n_position_bins == 100 and token_spec("ZUNA1.1").order == "time-major"
    assert token_spec("ZUNA").position_extreme == token_spec("ZUNA1.1").position_extreme == 0.12


def test_zuna_order_is_channel_major():
    tokens, tok_idx = tokenize(_labelled(), _positions(), variant="ZUNA")
    assert tokens.shape == (12, 32) and tokens.dtype == np.float32 and tok_idx.dtype == np.int64
    channel = tokens[:, 0] // 1000
    token = (tokens[:, 0] % 1000) // 32
    assert channel.tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]
    assert token.tolist() == [0, 1, 2, 3] * 3
    assert tok_idx[:, 3].tolist() == token.tolist()


def test_zuna11_order_is_time_major():
    tokens, tok_idx = tokenize(_labelled(), _positions(), variant="ZUNA1.1")
    channel = tokens[:, 0] // 1000
    token = (tokens[:, 0] % 1000) // 32
    assert channel.tolist() == [0, 1, 2] * 4
    assert token.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert tok_idx[:, 3].tolist() == token.tolist()
    bins = position_bins(_positions(), variant="ZUNA1.1")
    np.testing.assert_array_equal(tok_idx[:, :3], bins[channel.astype(int)])


@pytest.mark.parametrize("variant", VARIANTS)
def test_token_values_are_consecutive_samples(variant):
    epoch = _labelled()
    tokens, _ = tokenize(epoch, _positions(), variant=variant)
    np.testing.assert_array_equal(np.diff(tokens, axis=1), 1.0)


@pytest.mark.parametrize("variant", VARIANTS)
def test_detokenize_inverts_tokenize(variant):
    rng = np.random.default_rng(1)
    epoch = rng.normal(size=(5, 320)).astype(np.float32)
    tokens, _ = tokenize(epoch, _positions(5), variant=variant)
    np.testing.assert_array_equal(detokenize(tokens, 5, 320, variant=variant), epoch)


@pytest.mark.parametrize("variant", VARIANTS)
def test_batch_matches_single(variant):
    rng = np.random.default_rng(2)
    batch = rng.normal(size=(2, 3, 128)).astype(np.float32)
    tokens, tok_idx = tokenize(batch, _positions(), variant=variant)
    assert tokens.shape == (2, 12, 32) and tok_idx.shape == (2, 12, 4)
    for b in range(2):
        single_tokens, single_idx = tokenize(batch[b], _positions(), variant=variant)
        np.testing.assert_array_equal(tokens[b], single_tokens)
        np.testing.assert_array_equal(tok_idx[b], single_idx)
    np.testing.assert_array_equal(detokenize(tokens, 3, 128, variant=variant), batch)


@pytest.mark.parametrize("variant", VARIANTS)
def test_mask_zeroes_hidden_tokens_only(variant):
    epoch = _labelled() + 1.0
    mask = np.zeros((3, 4), bool)
    mask[1] = True          # a whole channel
    mask[2, 3] = True       # one token
    tokens, tok_idx = tokenize(epoch, _positions(), variant=variant, mask=mask)
    reference, reference_idx = tokenize(epoch, _positions(), variant=variant)
    hidden = mask_to_sequence(mask, variant=variant)
    assert (tokens[hidden] == 0).all() and (tokens[~hidden] == reference[~hidden]).all()
    np.testing.assert_array_equal(tok_idx, reference_idx)  # positions stay
    assert hidden.sum() == 5


def test_position_bins_edges():
    edges = np.array([[-0.12, 0.0, 0.11999], [0.12, -0.1199, 0.0024]])
    np.testing.assert_array_equal(position_bins(edges, variant="ZUNA"), [[0, 25, 49], [49, 0, 25]])
    np.testing.assert_array_equal(position_bins(edges, variant="ZUNA1.1"), [[0, 50, 99], [99, 0, 51]])


def test_position_bins_outside_range_warn_and_clip():
    with pytest.warns(ZunaLabWarning, match="are the positions in metres"):
        bins = position_bins([[-0.5, 0.2, 0.0]], variant="ZUNA")
    np.testing.assert_array_equal(bins, [[0, 49, 25]])
    # the vertex (Cz at z ≈ 0.14 m) saturates the top bin silently, as in the official code
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(position_bins([[0.0, 0.028, 0.14]], variant="ZUNA1.1"), [[50, 61, 99]])


def test_sequence_index_roundtrip():
    for variant in VARIANTS:
        channel, token = np.meshgrid(np.arange(5), np.arange(7), indexing="ij")
        index = sequence_index(channel, token, 5, 7, variant=variant)
        assert sorted(index.ravel().tolist()) == list(range(35))
        back_channel, back_token = channel_token(index, 5, 7, variant=variant)
        np.testing.assert_array_equal(back_channel, channel)
        np.testing.assert_array_equal(back_token, token)
    assert sequence_index(1, 2, 4, 40, variant="ZUNA") == 42
    assert sequence_index(1, 2, 4, 40, variant="ZUNA1.1") == 9


def test_sequence_index_matches_tokenize():
    epoch = _labelled(4, 5)
    for variant in VARIANTS:
        tokens, _ = tokenize(epoch, _positions(4), variant=variant)
        index = sequence_index(2, 3, 4, 5, variant=variant)
        assert tokens[index, 0] == 2000 + 3 * 32


def test_mask_sequence_roundtrip():
    rng = np.random.default_rng(3)
    mask = rng.random((2, 4, 6)) > 0.5
    for variant in VARIANTS:
        flat = mask_to_sequence(mask, variant=variant)
        assert flat.shape == (2, 24)
        np.testing.assert_array_equal(mask_from_sequence(flat, 4, 6, variant=variant), mask)


def test_token_mask_channels_and_spans():
    mask = token_mask(["Fp1", "Cz", "Pz"], 1280, bad_channels=["CZ"], bad_spans=[(1.0, 1.125), (2.01, 2.02, "pz")])
    assert mask.shape == (3, 40)
    assert mask[1].all()
    assert mask[0].nonzero()[0].tolist() == [8]
    assert mask[2].nonzero()[0].tolist() == [8, 16]
    # overlap: a span covering a third of a token hides it only with overlap < 1/3
    assert token_mask(["Cz"], 64, bad_spans=[(0.0, 0.05)], overlap=0.5)[0].tolist() == [False, False]
    assert token_mask(["Cz"], 64, bad_spans=[(0.0, 0.05)], overlap=0.0)[0].tolist() == [True, False]


def test_errors():
    with pytest.raises(ZunaValueError, match="multiple of 32 samples, got 100"):
        tokenize(np.zeros((2, 100)), _positions(2), variant="ZUNA")
    with pytest.raises(ZunaValueError, match="ch_pos has 3 rows but the epoch has 2 channels"):
        tokenize(np.zeros((2, 64)), _positions(3), variant="ZUNA")
    with pytest.raises(ZunaValueError, match=r"mask must have shape \(2, 2\)"):
        tokenize(np.zeros((2, 64)), _positions(2), variant="ZUNA", mask=np.zeros((2, 3), bool))
    with pytest.raises(ZunaTypeError, match="mask must be boolean"):
        tokenize(np.zeros((2, 64)), _positions(2), variant="ZUNA", mask=np.zeros((2, 2)))
    with pytest.raises(ZunaValueError, match="Unknown model variant 'ZUNA2'"):
        tokenize(np.zeros((2, 64)), _positions(2), variant="ZUNA2")
    with pytest.raises(ZunaValueError, match="do not fill 2 channels x 2 tokens"):
        detokenize(np.zeros((3, 32)), 2, 64, variant="ZUNA")
    with pytest.raises(ZunaValueError, match="not in this recording"):
        token_mask(["Cz"], 64, bad_channels=["T7"])
    with pytest.raises(ZunaValueError, match="NaN or Inf"):
        position_bins([[np.nan, 0, 0]], variant="ZUNA")
