"""Blockwise attention with an online softmax equals plain attention (chapter 16)."""

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from transformer_course.models.attention import (
    make_causal_mask,
    make_padding_mask,
    scaled_dot_product_attention,
)
from transformer_course.models.flash_attention import blockwise_attention, online_softmax


def _qkv(batch=2, heads=3, q_len=37, k_len=37, d_k=16, d_v=8, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, heads, q_len, d_k, generator=g, dtype=dtype)
    k = torch.randn(batch, heads, k_len, d_k, generator=g, dtype=dtype)
    v = torch.randn(batch, heads, k_len, d_v, generator=g, dtype=dtype)
    return q, k, v


@pytest.mark.parametrize("block_size", [1, 5, 8, 37, 64])  # divides 37 or not, or exceeds it
def test_online_softmax_equals_softmax(block_size):
    scores = 10 * torch.randn(4, 6, 37, dtype=torch.float64)
    assert_close(online_softmax(scores, block_size), torch.softmax(scores, dim=-1))


@pytest.mark.parametrize("block_size", [1, 4, 7, 16, 37, 100])
def test_no_mask_matches_naive_and_pytorch(block_size):
    q, k, v = _qkv(q_len=29, k_len=37)
    expected, _ = scaled_dot_product_attention(q, k, v)
    out = blockwise_attention(q, k, v, block_size=block_size)
    assert out.shape == (2, 3, 29, 8)
    assert_close(out, expected)
    assert_close(out, F.scaled_dot_product_attention(q, k, v))


@pytest.mark.parametrize("block_size", [3, 8, 16, 37])
def test_causal_matches_naive_and_pytorch(block_size):
    q, k, v = _qkv()
    expected, _ = scaled_dot_product_attention(q, k, v, mask=make_causal_mask(37))
    out = blockwise_attention(q, k, v, causal=True, block_size=block_size)
    assert_close(out, expected)
    assert_close(out, F.scaled_dot_product_attention(q, k, v, is_causal=True))


@pytest.mark.parametrize("block_size", [4, 6, 11])
def test_causal_with_fewer_queries_than_keys(block_size):
    """The queries are the last positions, as when decoding with a cache."""
    q, k, v = _qkv(q_len=5, k_len=23)
    mask = make_causal_mask(5, key_len=23)  # (5, 23)
    expected, _ = scaled_dot_product_attention(q, k, v, mask=mask)
    assert_close(blockwise_attention(q, k, v, causal=True, block_size=block_size), expected)


@pytest.mark.parametrize("block_size", [4, 7, 10])
def test_padding_mask_and_padding_with_causal(block_size):
    q, k, v = _qkv(batch=3, q_len=20, k_len=20)
    tokens = torch.ones(3, 20, dtype=torch.long)
    tokens[1, 13:] = 0  # second sequence: 13 real tokens
    tokens[2, 6:] = 0  # third: 6 real tokens
    pad = make_padding_mask(tokens, pad_id=0)  # (3, 1, 1, 20)
    expected, _ = scaled_dot_product_attention(q, k, v, mask=pad)
    assert_close(blockwise_attention(q, k, v, mask=pad, block_size=block_size), expected)
    assert_close(blockwise_attention(q, k, v, mask=pad, block_size=block_size),
                 F.scaled_dot_product_attention(q, k, v, attn_mask=pad))
    both, _ = scaled_dot_product_attention(q, k, v, mask=pad & make_causal_mask(20))
    assert_close(blockwise_attention(q, k, v, mask=pad, causal=True, block_size=block_size),
                 both)


def test_fully_masked_rows_give_zeros_like_the_package():
    q, k, v = _qkv(batch=1, heads=2, q_len=6, k_len=9)
    mask = torch.ones(1, 1, 6, 9, dtype=torch.bool)
    mask[..., 2, :] = False  # query 2 may attend to nothing
    mask[..., 4, :5] = False  # query 4 only to the keys of the last block (block_size 4)
    out = blockwise_attention(q, k, v, mask=mask, block_size=4)
    expected, _ = scaled_dot_product_attention(q, k, v, mask=mask)
    assert torch.isfinite(out).all()
    assert_close(out[..., 2, :], torch.zeros_like(out[..., 2, :]))
    assert_close(out, expected)


def test_large_scores_do_not_overflow():
    q, k, v = _qkv(dtype=torch.float32)
    q = q * 60  # scores in the thousands: exp would overflow without the running maximum
    out = blockwise_attention(q, k, v, block_size=8)
    assert torch.isfinite(out).all()
    assert_close(out, scaled_dot_product_attention(q, k, v)[0], rtol=1e-4, atol=1e-4)


def test_float32_and_explicit_scale_and_gradients():
    q, k, v = _qkv(dtype=torch.float32)
    out = blockwise_attention(q, k, v, block_size=10, scale=0.3)
    assert out.dtype == torch.float32
    assert_close(out, scaled_dot_product_attention(q, k, v, scale=0.3)[0])
    g = torch.Generator().manual_seed(1)
    small = [torch.randn(1, 1, n, 3, generator=g, dtype=torch.float64, requires_grad=True)
             for n in (4, 7, 7)]  # q, k, v: 7 keys in blocks of 3, 3 and 1
    torch.autograd.gradcheck(lambda a, b, c: blockwise_attention(a, b, c, block_size=3), small)


def test_bad_inputs_raise_clear_errors():
    q, k, v = _qkv()
    with pytest.raises(ValueError, match="block_size"):
        blockwise_attention(q, k, v, block_size=0)
    with pytest.raises(ValueError, match="block_size"):
        online_softmax(torch.randn(3, 4), block_size=2.5)
    with pytest.raises(ValueError, match="boolean"):
        blockwise_attention(q, k, v, mask=torch.ones(37, 37))
    with pytest.raises(ValueError, match="broadcast"):
        blockwise_attention(q, k, v, mask=torch.ones(5, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="d_k"):
        blockwise_attention(q, k[..., :4], v)
    with pytest.raises(ValueError, match="causal"):
        blockwise_attention(*_qkv(q_len=9, k_len=4), causal=True)
