import math

import pytest
import torch

from transformer_course.models.embeddings import (
    LearnedPositionalEmbedding,
    SinusoidalPositionalEncoding,
    TokenEmbedding,
    sinusoidal_encoding,
)


def test_sinusoidal_table_follows_the_formula():
    table = sinusoidal_encoding(50, 16)
    pos, i = 7, 3
    angle = pos / 10000 ** (2 * i / 16)
    assert table[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
    assert table[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)
    assert torch.equal(table[0, 0::2], torch.zeros(8))
    assert torch.equal(table[0, 1::2], torch.ones(8))


def test_every_position_gets_a_distinct_code():
    table = sinusoidal_encoding(200, 32)
    distances = torch.cdist(table, table) + torch.eye(200)
    assert distances.min() > 0.1


def test_sinusoidal_encoding_adds_table_with_offset():
    pe = SinusoidalPositionalEncoding(16, max_len=20)
    x = torch.zeros(2, 3, 16)
    torch.testing.assert_close(pe(x, start=4), sinusoidal_encoding(20, 16)[4:7].expand(2, 3, 16))


def test_positions_past_max_len_are_an_error():
    with pytest.raises(ValueError, match="max_len=10"):
        SinusoidalPositionalEncoding(8, max_len=10)(torch.zeros(1, 11, 8))
    with pytest.raises(ValueError, match="max_len=10"):
        LearnedPositionalEmbedding(8, max_len=10)(torch.zeros(1, 3, 8), start=8)


def test_odd_d_model_is_rejected():
    with pytest.raises(ValueError, match="even"):
        sinusoidal_encoding(10, 7)


def test_token_embedding_is_scaled_by_sqrt_d_model():
    emb = TokenEmbedding(11, 16, padding_idx=0)
    tokens = torch.tensor([[0, 3, 10]])
    torch.testing.assert_close(emb(tokens), emb.embedding(tokens) * 4.0)
    assert torch.equal(emb(tokens)[0, 0], torch.zeros(16))  # padding vector is zero


def test_token_embedding_rejects_bad_ids():
    emb = TokenEmbedding(11, 16)
    with pytest.raises(ValueError, match=r"\[0, 11\)"):
        emb(torch.tensor([[1, 11]]))
    with pytest.raises(ValueError, match="integer"):
        emb(torch.tensor([[1.0]]))


def test_learned_positions_are_trained():
    pe = LearnedPositionalEmbedding(8, max_len=10)
    pe(torch.zeros(2, 4, 8)).sum().backward()
    grad = pe.embedding.weight.grad
    assert grad[:4].abs().sum() > 0 and grad[4:].abs().sum() == 0
