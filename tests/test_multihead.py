import pytest
import torch
from torch import nn

from transformer_course.models.attention import make_causal_mask, make_padding_mask, to_pytorch_mask
from transformer_course.models.interop import copy_multihead_attention
from transformer_course.models.multihead import KVCache, MultiHeadAttention


def paired(d_model=16, heads=4):
    theirs = nn.MultiheadAttention(d_model, heads, batch_first=True).eval()
    ours = MultiHeadAttention(d_model, heads).eval()
    copy_multihead_attention(ours, theirs)
    return ours, theirs


def test_self_attention_matches_pytorch(tol):
    ours, theirs = paired()
    x = torch.randn(3, 6, 16)
    out, weights = ours(x)
    ref, ref_weights = theirs(x, x, x, average_attn_weights=False)
    torch.testing.assert_close(out, ref, **tol)
    torch.testing.assert_close(weights, ref_weights, **tol)
    assert weights.shape == (3, 4, 6, 6)
    assert torch.equal(ours.attention_weights, weights.detach())


def test_cross_attention_with_masks_matches_pytorch(tol):
    ours, theirs = paired()
    query, memory = torch.randn(2, 4, 16), torch.randn(2, 6, 16)
    src = torch.tensor([[3, 4, 5, 6, 0, 0], [3, 4, 5, 6, 7, 8]])
    mask = make_padding_mask(src, 0)  # (2, 1, 1, 6)
    out, weights = ours(query, memory, memory, mask)
    ref, ref_weights = theirs(
        query, memory, memory, key_padding_mask=to_pytorch_mask(mask[:, 0, 0, :]),
        average_attn_weights=False,
    )
    torch.testing.assert_close(out, ref, **tol)
    torch.testing.assert_close(weights, ref_weights, **tol)


def test_causal_self_attention_matches_pytorch(tol):
    ours, theirs = paired()
    x = torch.randn(2, 5, 16)
    out, _ = ours(x, mask=make_causal_mask(5))
    ref, _ = theirs(x, x, x, attn_mask=to_pytorch_mask(make_causal_mask(5)))
    torch.testing.assert_close(out, ref, **tol)


def test_split_and_merge_heads_are_inverse_and_put_heads_on_dim_1():
    mha = MultiHeadAttention(12, 3)
    x = torch.arange(2 * 5 * 12, dtype=torch.float32).view(2, 5, 12)
    heads = mha.split_heads(x)
    assert heads.shape == (2, 3, 5, 4)
    # head h of position p holds features h*d_k .. (h+1)*d_k - 1 of that position
    assert torch.equal(heads[1, 2, 3], x[1, 3, 8:12])
    assert torch.equal(mha.merge_heads(heads), x)


def test_d_model_not_divisible_by_heads():
    with pytest.raises(ValueError, match=r"d_model \(10\).*num_heads \(4\)"):
        MultiHeadAttention(10, 4)


def test_wrong_input_width_names_the_shapes():
    mha = MultiHeadAttention(16, 4)
    with pytest.raises(ValueError, match=r"d_model=16.*\(2, 5, 8\)"):
        mha(torch.randn(2, 5, 8))
    with pytest.raises(ValueError, match="batch size"):
        mha(torch.randn(2, 5, 16), torch.randn(3, 5, 16))


def test_incremental_decoding_with_cache_equals_full_causal_pass(tol):
    mha = MultiHeadAttention(16, 4).eval()
    x = torch.randn(2, 7, 16)
    full, _ = mha(x, mask=make_causal_mask(7))
    cache = KVCache()
    steps = [mha(x[:, t : t + 1], cache=cache)[0] for t in range(7)]
    assert len(cache) == 7
    torch.testing.assert_close(torch.cat(steps, dim=1), full, **tol)


def test_static_cache_computes_cross_attention_keys_once(tol):
    mha = MultiHeadAttention(16, 4).eval()
    memory = torch.randn(2, 5, 16)
    cache = KVCache(static=True)
    first, _ = mha(torch.randn(2, 1, 16), memory, memory, cache=cache)
    keys = cache.key
    query = torch.randn(2, 1, 16)
    second, _ = mha(query, torch.zeros(2, 5, 16), torch.zeros(2, 5, 16), cache=cache)
    assert cache.key is keys  # reused, the zeros were ignored
    torch.testing.assert_close(second, mha(query, memory, memory)[0], **tol)


def test_every_parameter_gets_a_gradient():
    mha = MultiHeadAttention(16, 4)
    out, _ = mha(torch.randn(2, 5, 16))
    out.pow(2).sum().backward()
    for name, p in mha.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
