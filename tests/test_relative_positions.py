import math

import pytest
import torch
import torch.nn.functional as F

from transformer_course.models.attention import make_causal_mask, scaled_dot_product_attention
from transformer_course.models.relative_positions import (
    POSITION_SCHEMES,
    PositionalLM,
    RelativeSelfAttention,
    RotaryEmbedding,
    T5RelativePositionBias,
    alibi_bias,
    alibi_slopes,
    apply_rotary,
    relative_offsets,
    relative_position_bucket,
    rotary_angles,
)

# --- the bias argument of scaled_dot_product_attention -------------------------------------


def test_attention_bias_is_added_to_the_scaled_scores(tol):
    q, k, v = torch.randn(2, 3, 5, 8), torch.randn(2, 3, 7, 8), torch.randn(2, 3, 7, 4)
    bias = torch.randn(3, 5, 7)  # per head, broadcast over the batch
    out, weights = scaled_dot_product_attention(q, k, v, bias=bias)
    expected = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(8) + bias, dim=-1)
    torch.testing.assert_close(weights, expected, **tol)
    # PyTorch's kernel adds a float attn_mask to the scores in the same place.
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=bias), **tol)


def test_attention_bias_with_mask_matches_pytorch(tol):
    q, k, v = torch.randn(2, 3, 6, 8), torch.randn(2, 3, 6, 8), torch.randn(2, 3, 6, 8)
    bias, mask = torch.randn(3, 6, 6), make_causal_mask(6)
    out, weights = scaled_dot_product_attention(q, k, v, mask, bias=bias)
    additive = bias.masked_fill(~mask, float("-inf"))
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=additive),
                               **tol)
    assert (weights[..., ~mask] == 0).all()


def test_attention_without_bias_is_unchanged():
    q, k, v = torch.randn(2, 2, 4, 8), torch.randn(2, 2, 4, 8), torch.randn(2, 2, 4, 8)
    a = scaled_dot_product_attention(q, k, v)
    b = scaled_dot_product_attention(q, k, v, bias=torch.zeros(4, 4))
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    "bias", [torch.zeros(3, 5, 5), torch.zeros(5, 5, dtype=torch.float64), torch.ones(5, 5).bool()]
)
def test_attention_rejects_bad_bias(bias):
    q = torch.randn(1, 2, 5, 4)
    with pytest.raises(ValueError, match="bias"):
        scaled_dot_product_attention(q, q, q, bias=bias)


# --- T5 buckets and bias ----------------------------------------------------------------------


def naive_bucket(offset, bidirectional, num_buckets, max_distance):
    """One offset at a time, written from the description in the T5 paper and code."""
    bucket = 0
    if bidirectional:
        num_buckets //= 2
        if offset > 0:
            bucket += num_buckets
        distance = abs(offset)
    else:
        distance = max(-offset, 0)
    exact = num_buckets // 2
    if distance < exact:
        return bucket + distance
    far = exact + int(math.log(distance / exact) / math.log(max_distance / exact)
                      * (num_buckets - exact))
    return bucket + min(far, num_buckets - 1)


@pytest.mark.parametrize("bidirectional", [True, False])
def test_buckets_match_naive_version(bidirectional):
    offsets = torch.arange(-300, 301)
    buckets = relative_position_bucket(offsets, bidirectional, 32, 128)
    expected = [naive_bucket(o, bidirectional, 32, 128) for o in offsets.tolist()]
    assert buckets.tolist() == expected


def test_bucket_properties():
    back = relative_position_bucket(-torch.arange(0, 500), bidirectional=False, num_buckets=16,
                                    max_distance=64)
    assert back[:8].tolist() == list(range(8))  # exact for small distances
    assert (back.diff() >= 0).all()  # monotone in the distance
    assert (back[64:] == 15).all()  # every distance from max_distance on: the last bucket
    assert back.unique().tolist() == list(range(16))  # and every bucket is used
    assert relative_position_bucket(torch.tensor([5]), False, 16, 64).item() == 0  # future key
    both = relative_position_bucket(torch.tensor([-3, 3]), True, 32, 128)
    assert both.tolist() == [3, 19]  # before and after the query use different halves
    with pytest.raises(ValueError):
        relative_position_bucket(torch.tensor([1.0]))


def test_t5_bias_looks_up_the_table_by_bucket():
    module = T5RelativePositionBias(num_heads=3, num_buckets=8, max_distance=16,
                                    bidirectional=True)
    torch.nn.init.normal_(module.table.weight)
    bias = module(5, 9)  # decoding: the 5 queries are the last of 9 positions
    assert bias.shape == (3, 5, 9)
    offsets = relative_offsets(5, 9)
    for h in range(3):
        for i in range(5):
            for j in range(9):
                bucket = naive_bucket(offsets[i, j].item(), True, 8, 16)
                assert bias[h, i, j] == module.table.weight[bucket, h]
    # Depends on the offset only: constant along diagonals of the square case.
    square = module(6)
    assert torch.equal(square[:, 1:, 1:], square[:, :-1, :-1])


def test_t5_bias_gets_gradients():
    module = T5RelativePositionBias(num_heads=2, num_buckets=8, max_distance=16)
    q = torch.randn(1, 2, 6, 4)
    out, _ = scaled_dot_product_attention(q, q, torch.randn(1, 2, 6, 4), bias=module(6))
    out.sum().backward()
    assert module.table.weight.grad.abs().sum() > 0


# --- ALiBi -------------------------------------------------------------------------------------


def test_alibi_slopes_power_of_two():
    torch.testing.assert_close(alibi_slopes(8), torch.tensor([2.0 ** -(i + 1) for i in range(8)]))
    torch.testing.assert_close(alibi_slopes(4), torch.tensor([2.0 ** -(2 * (i + 1))
                                                              for i in range(4)]))


def test_alibi_slopes_other_counts():
    # 6 heads: the 4 slopes of 4 heads, then the odd-numbered slopes of 8 heads (1/2, 1/8).
    expected = [1 / 4, 1 / 16, 1 / 64, 1 / 256, 1 / 2, 1 / 8]
    torch.testing.assert_close(alibi_slopes(6), torch.tensor(expected))
    assert len(alibi_slopes(12)) == 12 and len(set(alibi_slopes(12).tolist())) == 12
    with pytest.raises(ValueError):
        alibi_slopes(0)


def test_alibi_bias_values():
    bias = alibi_bias(4, 3, 5)  # queries at positions 2, 3, 4
    assert bias.shape == (4, 3, 5)
    slopes = alibi_slopes(4)
    for h in range(4):
        for i, qpos in enumerate(range(2, 5)):
            for j in range(5):
                assert bias[h, i, j].item() == pytest.approx(-slopes[h].item() * abs(qpos - j))


# --- RoPE --------------------------------------------------------------------------------------


def complex_rope(x, start=0, base=10000.0):
    """RoPE as a multiplication of complex numbers x_{2i} + i x_{2i+1} by e^{i p theta_i}."""
    d = x.shape[-1]
    theta = base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    p = torch.arange(start, start + x.shape[-2], dtype=torch.float64)
    rotation = torch.polar(torch.ones(len(p), d // 2, dtype=torch.float64), p[:, None] * theta)
    z = torch.view_as_complex(x.double().reshape(*x.shape[:-1], d // 2, 2).contiguous())
    return torch.view_as_real(z * rotation).flatten(-2).to(x.dtype)


def test_rope_matches_complex_multiplication():
    x = torch.randn(2, 3, 10, 16)
    rope = RotaryEmbedding(16)
    torch.testing.assert_close(rope(x), complex_rope(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rope(x, start=7), complex_rope(x, start=7), atol=1e-5, rtol=1e-5)


def test_rope_preserves_norms_and_position_zero():
    x = torch.randn(4, 12, 8)
    y = RotaryEmbedding(8)(x)
    torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1))
    torch.testing.assert_close(y[:, 0], x[:, 0])  # angle 0 at position 0


def test_rope_scores_depend_only_on_the_offset():
    q, k = torch.randn(16), torch.randn(16)
    rope = RotaryEmbedding(16)
    seq = 40

    def score(m, n):
        qs = rope(q.expand(seq, 16))[m]
        ks = rope(k.expand(seq, 16))[n]
        return qs @ ks

    for offset in (0, 3, -5, 17):
        values = torch.stack([score(m, m + offset) for m in range(max(0, -offset), 20)])
        torch.testing.assert_close(values, values[0].expand_as(values), atol=1e-4, rtol=1e-4)
    assert not torch.isclose(score(10, 13), score(10, 14), atol=1e-3)


def test_rope_rejects_bad_shapes():
    with pytest.raises(ValueError):
        RotaryEmbedding(7)
    with pytest.raises(ValueError, match="angles"):
        apply_rotary(torch.randn(5, 8), rotary_angles(8, 6))


# --- the attention module and the model -----------------------------------------------------


def test_relative_self_attention_matches_manual_computation(tol):
    attention = RelativeSelfAttention(16, 4, rotary=True).eval()
    x = torch.randn(2, 6, 16)
    bias, mask = alibi_bias(4, 6), make_causal_mask(6)
    out = attention(x, mask, bias)
    q, k, v = attention.W_QKV(x).view(2, 6, 3, 4, 4).permute(2, 0, 3, 1, 4)
    q, k = complex_rope(q), complex_rope(k)
    heads = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.masked_fill(~mask, -math.inf))
    expected = attention.W_O(heads.transpose(1, 2).reshape(2, 6, 16))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("scheme", POSITION_SCHEMES)
def test_positional_lm_is_causal(scheme):
    model = PositionalLM(11, scheme, d_model=16, num_heads=2, num_layers=2, max_len=12).eval()
    tokens = torch.randint(0, 11, (2, 10))
    changed = tokens.clone()
    changed[:, 6:] = (changed[:, 6:] + 1) % 11
    a, b = model(tokens), model(changed)
    assert a.shape == (2, 10, 11)
    torch.testing.assert_close(a[:, :6], b[:, :6])  # earlier logits ignore later tokens
    assert not torch.allclose(a[:, 6:], b[:, 6:])


def test_schemes_see_order_except_none():
    tokens = torch.tensor([[1, 2, 3, 4, 5, 6]])
    swapped = torch.tensor([[2, 1, 3, 4, 5, 6]])
    for scheme in POSITION_SCHEMES:
        torch.manual_seed(0)
        # One layer: the last query sees every token, so without positions only the set counts.
        # (With two layers a causal model without positions is no longer blind to order:
        # the first layer's outputs differ by how many tokens each position could see.)
        model = PositionalLM(8, scheme, d_model=16, num_heads=2, num_layers=1, max_len=8).eval()
        if scheme == "t5":
            torch.nn.init.normal_(model.t5_bias.table.weight)  # zero at initialisation
        last_a, last_b = model(tokens)[0, -1], model(swapped)[0, -1]
        # Without positions, the last position sees the same set of tokens: same output.
        assert torch.allclose(last_a, last_b, atol=1e-5) == (scheme == "none"), scheme
    two_layers = PositionalLM(8, "none", d_model=16, num_heads=2, num_layers=2).eval()
    assert not torch.allclose(two_layers(tokens)[0, -1], two_layers(swapped)[0, -1], atol=1e-5)


def test_learned_positions_cannot_run_beyond_their_table():
    model = PositionalLM(8, "learned", d_model=16, num_heads=2, max_len=8)
    with pytest.raises(ValueError, match="max_len"):
        model(torch.zeros(1, 9, dtype=torch.long))
    for scheme in ("sinusoidal", "rope", "alibi", "t5", "none"):
        out = PositionalLM(8, scheme, d_model=16, num_heads=2, max_len=8)(
            torch.zeros(1, 20, dtype=torch.long))
        assert out.shape == (1, 20, 8)
    with pytest.raises(ValueError, match="scheme"):
        PositionalLM(8, "absolute")
