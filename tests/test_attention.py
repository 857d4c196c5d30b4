import math

import pytest
import torch
import torch.nn.functional as F

from transformer_course.models.attention import (
    from_pytorch_mask,
    make_causal_mask,
    make_padding_mask,
    scaled_dot_product_attention,
    to_additive_mask,
    to_pytorch_mask,
)


def qkv(batch=2, heads=3, q_len=5, k_len=7, d_k=8, d_v=6):
    return (
        torch.randn(batch, heads, q_len, d_k),
        torch.randn(batch, heads, k_len, d_k),
        torch.randn(batch, heads, k_len, d_v),
    )


def test_matches_pytorch_without_mask(tol):
    q, k, v = qkv()
    out, weights = scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v), **tol)
    assert weights.shape == (2, 3, 5, 7)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 5), **tol)


def test_weights_are_softmax_of_scaled_scores(tol):
    q, k, v = qkv(d_k=16)
    _, weights = scaled_dot_product_attention(q, k, v)
    expected = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(16), dim=-1)
    torch.testing.assert_close(weights, expected, **tol)
    # Without the 1/sqrt(d_k) scaling, or with softmax over the query axis, it differs.
    assert not torch.allclose(weights, torch.softmax(q @ k.transpose(-2, -1), dim=-1), atol=1e-3)
    assert not torch.allclose(
        weights, torch.softmax(q @ k.transpose(-2, -1) / 4, dim=-2), atol=1e-3
    )


@pytest.mark.parametrize("kind", ["padding", "causal", "random"])
def test_matches_pytorch_with_boolean_mask(kind, tol):
    if kind == "causal":
        q, k, v = qkv(q_len=6, k_len=6)
        mask = make_causal_mask(6)
    elif kind == "padding":
        q, k, v = qkv()
        tokens = torch.tensor([[5, 6, 7, 8, 9, 0, 0], [5, 6, 0, 0, 0, 0, 0]])
        mask = make_padding_mask(tokens, pad_id=0)
    else:
        q, k, v = qkv()
        mask = torch.rand(2, 3, 5, 7) > 0.3
        mask[..., 0] = True  # no fully masked rows here
    out, weights = scaled_dot_product_attention(q, k, v, mask)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), **tol)
    assert torch.all(weights.masked_select(~mask.expand_as(weights)) == 0)


def test_fully_masked_row_gives_zeros_like_pytorch_math_kernel(tol):
    q, k, v = qkv(batch=1, heads=1, q_len=2, k_len=3)
    mask = torch.tensor([[True, True, False], [False, False, False]])
    out, weights = scaled_dot_product_attention(q, k, v, mask)
    assert torch.all(weights[..., 1, :] == 0) and torch.all(out[..., 1, :] == 0)
    assert not torch.isnan(out).any()
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), **tol)


def test_gradients_flow_to_query_key_value():
    q, k, v = (t.requires_grad_() for t in qkv())
    out, _ = scaled_dot_product_attention(q, k, v, make_causal_mask(7)[:5])
    out.sum().backward()
    for t in (q, k, v):
        assert t.grad is not None and t.grad.abs().sum() > 0


def test_dropout_zero_is_deterministic_and_dropout_changes_output():
    q, k, v = qkv()
    a, _ = scaled_dot_product_attention(q, k, v, dropout_p=0.0)
    b, _ = scaled_dot_product_attention(q, k, v, dropout_p=0.0)
    assert torch.equal(a, b)
    c, weights = scaled_dot_product_attention(q, k, v, dropout_p=0.5)
    assert not torch.allclose(a, c)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 5))  # weights before dropout


def test_causal_mask_shape_and_content():
    mask = make_causal_mask(4)
    assert mask.dtype == torch.bool and mask.shape == (4, 4)
    assert mask.tolist() == [
        [True, False, False, False],
        [True, True, False, False],
        [True, True, True, False],
        [True, True, True, True],
    ]


def test_padding_mask():
    mask = make_padding_mask(torch.tensor([[4, 5, 0], [4, 0, 0]]), pad_id=0)
    assert mask.shape == (2, 1, 1, 3)
    assert mask[:, 0, 0].tolist() == [[True, True, False], [True, False, False]]


def test_mask_conversions_round_trip():
    mask = make_causal_mask(5)
    assert torch.equal(from_pytorch_mask(to_pytorch_mask(mask)), mask)
    additive = to_additive_mask(mask)
    assert additive[0, 1] == float("-inf") and additive[1, 0] == 0
    assert torch.equal(from_pytorch_mask(additive), mask)
    builtin = torch.nn.Transformer.generate_square_subsequent_mask(5)
    assert torch.equal(from_pytorch_mask(builtin), mask)


def test_mask_of_wrong_dtype_is_rejected():
    q, k, v = qkv()
    with pytest.raises(ValueError, match="boolean"):
        scaled_dot_product_attention(q, k, v, torch.ones(5, 7))


def test_mask_of_wrong_shape_names_both_shapes():
    q, k, v = qkv()
    with pytest.raises(ValueError, match=r"\(7, 5\).*\(2, 3, 5, 7\)"):
        scaled_dot_product_attention(q, k, v, torch.ones(7, 5, dtype=torch.bool))


@pytest.mark.parametrize(
    "shapes, message",
    [
        (((2, 5, 8), (2, 7, 4), (2, 7, 6)), "last dimension"),
        (((2, 5, 8), (2, 7, 8), (2, 6, 6)), "same number of positions"),
        (((2, 5, 8), (3, 7, 8), (3, 7, 6)), "leading"),
        (((8,), (7, 8), (7, 6)), "shape"),
    ],
)
def test_mismatched_shapes_are_rejected(shapes, message):
    q, k, v = (torch.randn(*s) for s in shapes)
    with pytest.raises(ValueError, match=message):
        scaled_dot_product_attention(q, k, v)


def test_integer_inputs_are_rejected():
    q = torch.ones(2, 3, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="floating"):
        scaled_dot_product_attention(q, q, q)


def test_causal_mask_for_queries_at_the_end_of_a_longer_sequence():
    assert torch.equal(make_causal_mask(2, key_len=5), make_causal_mask(5)[3:])
    with pytest.raises(ValueError, match="key_len"):
        make_causal_mask(4, key_len=3)
