import math

import pytest
import torch
import torch.nn.functional as F

from transformer_course.models.attention import make_causal_mask, scaled_dot_product_attention
from transformer_course.models.embeddings import sinusoidal_encoding
from transformer_course.models.generation import beam_search, greedy_decode
from transformer_course.models.gpt import GPT, GPTConfig
from transformer_course.models.multihead import KVCache, MultiHeadAttention, PreallocatedKVCache
from transformer_course.models.relative_positions import (
    POSITION_SCHEMES,
    ALiBiBias,
    NoPositionalEncoding,
    RotaryEmbedding,
    T5RelativePositionBias,
    alibi_bias,
    alibi_slopes,
    apply_rotary,
    attention_positions,
    relative_offsets,
    relative_position_bucket,
    rotary_angles,
    token_positions,
)
from transformer_course.models.transformer import Transformer, TransformerConfig

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


# --- the ALiBi module and the helpers that build a scheme by name ----------------------------


def test_alibi_module_matches_the_function_also_for_cached_decoding():
    module = ALiBiBias(4)
    torch.testing.assert_close(module(6), alibi_bias(4, 6))
    torch.testing.assert_close(module(2, 7), alibi_bias(4, 2, 7))
    # The rows of a decoding step are the last rows of the full bias.
    torch.testing.assert_close(module(2, 7), module(7)[:, -2:])
    assert module.state_dict() == {}  # fixed: nothing for a checkpoint
    assert module.double()(3).dtype == torch.float64  # follows the model's dtype


def test_t5_bias_of_a_decoding_step_is_the_last_rows_of_the_full_one():
    module = T5RelativePositionBias(num_heads=2, num_buckets=8, max_distance=16,
                                    bidirectional=False)
    torch.nn.init.normal_(module.table.weight)
    torch.testing.assert_close(module(3, 10), module(10)[:, -3:])
    with pytest.raises(ValueError):
        module(5, 4)  # more queries than keys


def test_helpers_build_what_each_scheme_needs():
    for scheme in POSITION_SCHEMES:
        bias, rotary = attention_positions(scheme, num_heads=4, head_dim=8, bidirectional=True)
        assert (bias is not None) == (scheme in ("t5", "alibi")), scheme
        assert (rotary is not None) == (scheme == "rope"), scheme
        added = token_positions(scheme, 16, max_len=8)
        assert isinstance(added, NoPositionalEncoding) == (scheme not in ("learned", "sinusoidal"))
    t5, _ = attention_positions("t5", 4, 8, bidirectional=False, t5_buckets=16, t5_max_distance=20)
    assert (t5.num_buckets, t5.max_distance, t5.bidirectional) == (16, 20, False)
    with pytest.raises(ValueError, match="positional"):
        attention_positions("xpos", 4, 8, True)
    # GPT's sinusoidal table grows instead of raising; the rows it had do not change.
    grown = token_positions("sinusoidal", 16, max_len=8, extendable=True)
    x = torch.zeros(1, 20, 16)
    torch.testing.assert_close(grown(x)[0], sinusoidal_encoding(20, 16))
    torch.testing.assert_close(grown(x[:, :3], start=17)[0], sinusoidal_encoding(20, 16)[17:])
    with pytest.raises(ValueError, match="max_len"):
        token_positions("sinusoidal", 16, max_len=8)(x)


# --- the plug-ins in MultiHeadAttention -------------------------------------------------------


def test_attention_with_rotary_and_bias_matches_manual_computation():
    rotary = RotaryEmbedding(4)
    attention = MultiHeadAttention(16, 4, rotary=rotary).eval()
    x = torch.randn(2, 6, 16)
    bias, mask = alibi_bias(4, 6), make_causal_mask(6)
    out, weights = attention(x, mask=mask, bias=bias)
    q = attention.W_Q(x).view(2, 6, 4, 4).transpose(1, 2)  # (batch, heads, seq, d_k)
    k = attention.W_K(x).view(2, 6, 4, 4).transpose(1, 2)
    v = attention.W_V(x).view(2, 6, 4, 4).transpose(1, 2)
    q, k = complex_rope(q), complex_rope(k)  # an independent rotation
    heads = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.masked_fill(~mask, -math.inf))
    expected = attention.W_O(heads.transpose(1, 2).reshape(2, 6, 16))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)
    assert weights.shape == (2, 4, 6, 6)


def test_rotary_attention_scores_depend_on_the_offset_only():
    """One token repeated at every position: without positions all scores are equal; with RoPE
    the score of query i and key j is a function of j - i. The weights give the score
    differences within a row: log w[i, j] - log w[i, i] = s(i, j) - s(i, i)."""
    torch.manual_seed(1)
    n = 24
    x = torch.randn(1, 1, 32).double().expand(1, n, 32)  # the same vector at every position
    rotary = MultiHeadAttention(32, 2, rotary=RotaryEmbedding(16)).double().eval()
    rotary(x)
    log_w = rotary.attention_weights.log()[0]  # (heads, n, n)
    relative = log_w - log_w.diagonal(dim1=-2, dim2=-1)[..., None]  # s(i, j) - s(i, i)
    for offset in (-9, -3, -1, 1, 4, 10):
        diagonal = relative.diagonal(offset, dim1=-2, dim2=-1)  # (heads, n - |offset|)
        torch.testing.assert_close(diagonal, diagonal[:, :1].expand_as(diagonal),
                                   atol=1e-6, rtol=1e-6)
    assert relative.abs().max() > 0.1  # the positions do change the scores
    plain = MultiHeadAttention(32, 2).double().eval()
    plain(x)
    torch.testing.assert_close(plain.attention_weights, torch.full((1, 2, n, n), 1.0 / n,
                                                                     dtype=torch.float64))


@pytest.mark.parametrize("preallocate", [False, True])
def test_rotary_attention_with_a_cache_equals_the_full_pass(preallocate):
    attention = MultiHeadAttention(16, 2, rotary=RotaryEmbedding(8)).eval()
    x = torch.randn(3, 9, 16)
    full, _ = attention(x, mask=make_causal_mask(9))
    cache = PreallocatedKVCache(9) if preallocate else KVCache()
    first, _ = attention(x[:, :4], mask=make_causal_mask(4), cache=cache)  # a prompt
    steps = [attention(x[:, t:t + 1], cache=cache)[0] for t in range(4, 9)]  # then one by one
    torch.testing.assert_close(torch.cat([first, *steps], 1), full, atol=1e-5, rtol=1e-5)
    assert len(cache) == 9


def test_rotary_is_for_self_attention_only():
    attention = MultiHeadAttention(16, 2, rotary=RotaryEmbedding(8))
    x, memory = torch.randn(1, 3, 16), torch.randn(1, 5, 16)
    with pytest.raises(ValueError, match="self-attention"):
        attention(x, memory, memory)
    with pytest.raises(ValueError, match="d_k"):
        MultiHeadAttention(16, 4, rotary=RotaryEmbedding(8))  # d_k is 4


def test_bias_reaches_the_scores(tol):
    attention = MultiHeadAttention(16, 4).eval()
    x = torch.randn(2, 5, 16)
    plain, plain_weights = attention(x)
    zero, _ = attention(x, bias=torch.zeros(4, 5, 5))
    torch.testing.assert_close(zero, plain, **tol)
    bias = torch.zeros(4, 5, 5)
    bias[:, :, 2] = -1e4  # every query of every head: avoid key 2
    _, weights = attention(x, bias=bias)
    assert weights[..., 2].max() < 1e-6
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 4, 5), **tol)
    # The other keys keep their relative weights: only key 2's share was redistributed.
    kept = plain_weights[..., [0, 1, 3, 4]]
    torch.testing.assert_close(weights[..., [0, 1, 3, 4]], kept / kept.sum(-1, keepdim=True),
                               **tol)
    one_head = torch.zeros(4, 1, 5)
    one_head[1, :, 0] = 1e4  # head 1 only: everything on key 0
    _, weights = attention(x, bias=one_head)
    assert (weights[:, 1, :, 0] > 1 - 1e-6).all() and weights[:, 0, :, 0].max() < 0.99


# --- GPT with every scheme ----------------------------------------------------------------------


def small_gpt(scheme, **overrides):
    values = dict(vocab_size=11, context_length=12, d_model=16, num_heads=2, num_layers=2,
                  dropout=0.0, positional=scheme, t5_buckets=8, t5_max_distance=16)
    values.update(overrides)
    model = GPT(GPTConfig(**values)).eval()
    if scheme == "t5":
        torch.nn.init.normal_(model.position_bias.table.weight)  # zero at initialisation
    return model


@pytest.mark.parametrize("scheme", POSITION_SCHEMES)
def test_gpt_cached_decoding_equals_the_full_pass(scheme):
    model = small_gpt(scheme)
    x = torch.randint(0, 11, (2, 10))
    full = model(x)  # (2, 10, 11)
    cache = model.new_cache()
    prompt = model(x[:, :3], cache)  # several new positions at once, then one at a time
    steps = [model(x[:, t:t + 1], cache) for t in range(3, 10)]
    torch.testing.assert_close(torch.cat([prompt, *steps], 1), full, atol=1e-5, rtol=1e-5)
    cache = model.decoder.new_cache(10)  # preallocated buffers (chapter 17)
    steps = [model(x[:, t:t + 1], cache) for t in range(10)]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("scheme", POSITION_SCHEMES)
def test_gpt_is_causal(scheme):
    model = small_gpt(scheme)
    tokens = torch.randint(0, 11, (2, 10))
    changed = tokens.clone()
    changed[:, 6:] = (changed[:, 6:] + 1) % 11
    a, b = model(tokens), model(changed)
    assert a.shape == (2, 10, 11)
    torch.testing.assert_close(a[:, :6], b[:, :6])  # earlier logits ignore later tokens
    assert not torch.allclose(a[:, 6:], b[:, 6:])


def test_schemes_see_order_except_none():
    tokens = torch.tensor([[1, 2, 3, 4, 5, 6]])
    swapped = torch.tensor([[1, 2, 3, 5, 4, 6]])  # distances 1 and 2: T5 buckets of their own
    for scheme in POSITION_SCHEMES:
        torch.manual_seed(0)
        # One layer: the last query sees every token, so without positions only the set counts.
        # (With two layers a causal model without positions is no longer blind to order:
        # the first layer's outputs differ by how many tokens each position could see.)
        model = small_gpt(scheme, num_layers=1)
        last_a, last_b = model(tokens)[0, -1], model(swapped)[0, -1]
        assert torch.allclose(last_a, last_b, atol=1e-5) == (scheme == "none"), scheme
    two_layers = small_gpt("none")
    assert not torch.allclose(two_layers(tokens)[0, -1], two_layers(swapped)[0, -1], atol=1e-5)


@pytest.mark.parametrize("scheme", POSITION_SCHEMES)
def test_gpt_trains_and_only_learned_positions_limit_the_length(scheme):
    model = small_gpt(scheme).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    tokens = torch.randint(0, 11, (4, 13))
    logits = model(tokens[:, :-1])  # (4, 12, 11): the full context
    loss = F.cross_entropy(logits.transpose(1, 2), tokens[:, 1:])
    loss.backward()
    assert torch.isfinite(loss)
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    if scheme == "t5":  # the bias table is trained with the model
        assert model.position_bias.table.weight.grad.abs().sum() > 0
    optimizer.step()
    model.eval()
    longer = torch.randint(0, 11, (2, 3 * 12))
    if scheme == "learned":
        with pytest.raises(ValueError, match="context length 12"):
            model(longer)
        cache = model.new_cache()
        model(longer[:, :12], cache)
        with pytest.raises(ValueError, match="context length 12"):
            model(longer[:, 12:13], cache)  # the 13th position, one step at a time
    else:
        assert model(longer).shape == (2, 36, 11)
        # and a cache runs past it too, with the same logits as the full pass
        cache = model.new_cache()
        steps = [model(longer[:, :30], cache)] + [model(longer[:, t:t + 1], cache)
                                                 for t in range(30, 36)]
        torch.testing.assert_close(torch.cat(steps, 1), model(longer), atol=1e-5, rtol=1e-5)


def test_gpt_state_dict_keys_by_scheme():
    keys = {scheme: set(small_gpt(scheme).state_dict()) for scheme in POSITION_SCHEMES}
    learned = keys["learned"]
    assert "pos_embed.embedding.weight" in learned
    assert not any("position_bias" in k or "rotary" in k for k in learned)
    core = learned - {"pos_embed.embedding.weight"}
    for scheme in ("none", "sinusoidal", "rope", "alibi"):
        assert keys[scheme] == core, scheme  # nothing learned, nothing saved
    assert keys["t5"] == core | {"position_bias.table.weight"}
    with pytest.raises(ValueError, match="positional"):
        GPTConfig(vocab_size=5, positional="xpos")
    with pytest.raises(ValueError, match="even"):
        GPTConfig(vocab_size=5, d_model=6, num_heads=2, positional="rope")
    config = GPTConfig(vocab_size=5, positional="t5", t5_buckets=16)
    assert GPTConfig.from_dict(config.to_dict()) == config


def test_tinytalks_checkpoint_loads_into_the_default_gpt():
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "checkpoints" / "tinytalks" / "qa.pt"
    if not path.exists():
        pytest.skip("no committed TinyTalks checkpoint")
    data = torch.load(path, map_location="cpu", weights_only=False)
    model = GPT(GPTConfig.from_dict(data["config"]))
    assert model.config.positional == "learned"
    model.load_state_dict(data["model"])  # strict: the same keys as before


# --- the encoder-decoder Transformer with relative positions ---------------------------------


def copying_transformer(scheme, steps=60):
    """A small model trained briefly to copy its source: its greedy outputs are not one token
    repeated, as a random model's are, so decoding with and without a cache can differ."""
    torch.manual_seed(0)
    config = TransformerConfig(
        src_vocab_size=12, tgt_vocab_size=12, d_model=16, num_heads=2, num_encoder_layers=2,
        num_decoder_layers=2, d_ff=32, dropout=0.0, max_len=24, positional=scheme,
        t5_buckets=8, t5_max_distance=16,
    )
    model = Transformer(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    data = torch.Generator().manual_seed(0)
    for _ in range(steps):
        src = torch.randint(4, 12, (32, 6), generator=data)  # 0-3 are the special tokens
        tgt = torch.cat([torch.full((32, 1), 2), src, torch.full((32, 1), 3)], 1)  # <s> .. </s>
        logits = model(src, tgt[:, :-1])  # (32, 7, 12)
        loss = F.cross_entropy(logits.transpose(1, 2), tgt[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


@pytest.mark.parametrize("scheme", ["rope", "t5", "alibi"])
def test_transformer_with_relative_positions_decodes_the_same_with_and_without_cache(scheme):
    model = copying_transformer(scheme)
    encoder_bias, decoder_bias = model.src_position_bias, model.tgt_position_bias
    if scheme == "t5":
        assert encoder_bias.bidirectional and not decoder_bias.bidirectional
    if scheme == "rope":
        assert model.encoder.layers[0].self_attn.rotary is not None
        assert model.decoder.layers[0].self_attn.rotary is not None
    for layer in model.decoder.layers:
        assert layer.cross_attn.rotary is None  # cross-attention gets no positions
    assert not any(k.startswith(("src_pos.", "tgt_pos.")) for k in model.state_dict())

    src = torch.tensor([[4, 5, 6, 7, 8, 9, 0], [9, 8, 7, 6, 5, 0, 0]])  # 0: padding
    tgt = torch.randint(4, 12, (2, 9))
    full = model(src, tgt)  # (2, 9, 12)
    src_mask = model.source_mask(src)
    memory = model.encode(src, src_mask)
    cache = model.new_cache()
    steps = [model.decode(tgt[:, :3], memory, src_mask, cache)]
    steps += [model.decode(tgt[:, t:t + 1], memory, src_mask, cache) for t in range(3, 9)]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)

    fast = greedy_decode(model, src, max_len=12, use_cache=True)
    slow = greedy_decode(model, src, max_len=12, use_cache=False)
    assert fast == slow and any(len(set(row)) > 1 for row in fast)
    assert beam_search(model, src, beam_size=3, max_len=12, use_cache=True) == beam_search(
        model, src, beam_size=3, max_len=12, use_cache=False)
    # The encoder's relative positions see order: reversing the real tokens changes memory.
    reversed_src = torch.tensor([[9, 8, 7, 6, 5, 4, 0]])
    assert not torch.allclose(model.encode(src[:1]).sum(1), model.encode(reversed_src).sum(1),
                              atol=1e-4)
    # No table limits the length: a source longer than max_len is encoded.
    assert model.encode(torch.randint(4, 12, (1, 40))).shape == (1, 40, 16)


def test_transformer_config_accepts_every_scheme():
    for scheme in POSITION_SCHEMES:
        config = TransformerConfig(src_vocab_size=10, tgt_vocab_size=10, positional=scheme,
                                   d_model=16, num_heads=2, d_ff=32)
        assert TransformerConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="positional"):
        TransformerConfig(src_vocab_size=10, tgt_vocab_size=10, positional="xpos")
