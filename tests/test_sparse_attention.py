import math

import pytest
import torch
import torch.nn.functional as F

from transformer_course.models.attention import make_causal_mask, scaled_dot_product_attention
from transformer_course.models.sparse_attention import (
    fixed_mask,
    num_allowed_pairs,
    sliding_window_attention,
    sliding_window_mask,
    sparse_transformer_mask,
    strided_mask,
)


def by_loops(n, rule):
    return torch.tensor([[rule(i, j) for j in range(n)] for i in range(n)])


@pytest.mark.parametrize("causal", [True, False])
def test_masks_match_their_definitions(causal):
    n = 13
    ok = (lambda i, j: j <= i) if causal else (lambda i, j: True)
    assert torch.equal(sliding_window_mask(n, 3, causal),
                       by_loops(n, lambda i, j: abs(i - j) <= 3 and ok(i, j)))
    assert torch.equal(strided_mask(n, 4, causal),
                       by_loops(n, lambda i, j: (i - j) % 4 == 0 and ok(i, j)))
    assert torch.equal(sparse_transformer_mask(n, 4, causal),
                       by_loops(n, lambda i, j: (abs(i - j) < 4 or (i - j) % 4 == 0) and ok(i, j)))
    assert torch.equal(fixed_mask(n, 4, 1, causal),
                       by_loops(n, lambda i, j: (i // 4 == j // 4 or j % 4 == 3) and ok(i, j)))


def test_special_cases():
    n = 9
    assert torch.equal(sliding_window_mask(n, n), make_causal_mask(n))  # window covers all
    assert torch.equal(sliding_window_mask(n, 0), torch.eye(n, dtype=torch.bool))
    assert torch.equal(strided_mask(n, 1), make_causal_mask(n))
    assert sparse_transformer_mask(16).sum(-1).max() <= 2 * 4  # default stride ceil(sqrt(16))
    for mask in (sliding_window_mask(n, 2), strided_mask(n, 3), sparse_transformer_mask(n),
                 fixed_mask(n, 3)):
        assert mask.dtype == torch.bool and mask.diagonal().all()  # every query sees itself
        assert not mask.triu(1).any()  # causal


def test_counts():
    n, w = 100, 5
    # causal window: w + 1 keys per row, minus the missing ones at the start
    assert num_allowed_pairs(sliding_window_mask(n, w)) == n * (w + 1) - w * (w + 1) // 2
    assert num_allowed_pairs(make_causal_mask(n)) == n * (n + 1) // 2
    with pytest.raises(ValueError):
        num_allowed_pairs(torch.ones(3, 3))


def test_strided_pattern_reaches_every_earlier_key_in_two_steps():
    n = 64
    mask = sparse_transformer_mask(n).float()
    two_steps = (mask @ mask) > 0  # a path query -> intermediate -> key
    assert torch.equal(two_steps, make_causal_mask(n))
    assert not torch.equal(mask > 0, make_causal_mask(n))


def test_bad_arguments():
    with pytest.raises(ValueError):
        sliding_window_mask(5, -1)
    with pytest.raises(ValueError):
        strided_mask(5, 0)
    with pytest.raises(ValueError):
        fixed_mask(5, 2, summary=3)
    with pytest.raises(ValueError):
        sliding_window_mask(0, 1)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("window", [0, 1, 3, 20])
def test_banded_attention_equals_masked_attention(causal, window):
    q, k, v = torch.randn(2, 3, 11, 8), torch.randn(2, 3, 11, 8), torch.randn(2, 3, 11, 5)
    mask = sliding_window_mask(11, window, causal)
    expected, weights = scaled_dot_product_attention(q, k, v, mask)
    out, band = sliding_window_attention(q, k, v, window, causal)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask),
                               atol=1e-5, rtol=1e-5)
    assert band.shape == (2, 3, 11, window + 1 + (0 if causal else window))
    # band slot b of query i is key i - window + b
    for i in range(11):
        for b in range(band.shape[-1]):
            j = i - window + b
            if 0 <= j < 11:
                torch.testing.assert_close(band[..., i, b], weights[..., i, j])
            else:
                assert (band[..., i, b] == 0).all()


def test_banded_attention_rejects_mismatched_inputs():
    with pytest.raises(ValueError):
        sliding_window_attention(torch.randn(1, 5, 4), torch.randn(1, 6, 4), torch.randn(1, 6, 4),
                                 1)
    assert math.isfinite(
        sliding_window_attention(torch.randn(1, 5, 4), torch.randn(1, 5, 4), torch.randn(1, 5, 4),
                                 2)[0].sum().item())
