import pytest
import torch
import torch.nn.functional as F

from transformer_course.models.gpt import GPT, GPTConfig
from transformer_course.models.transformer import Transformer, TransformerConfig


def small_config(**overrides):
    values = dict(
        src_vocab_size=23, tgt_vocab_size=19, d_model=32, num_heads=4, num_encoder_layers=2,
        num_decoder_layers=2, d_ff=64, dropout=0.0, max_len=40,
    )
    values.update(overrides)
    return TransformerConfig(**values)


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_output_at_t_ignores_later_target_tokens(norm_first):
    model = Transformer(small_config(norm_first=norm_first)).eval()
    src = torch.randint(1, 23, (2, 6))
    tgt = torch.randint(1, 19, (2, 8))
    changed = tgt.clone()
    changed[:, 5:] = torch.randint(1, 19, (2, 3))
    a, b = model(src, tgt), model(src, changed)
    torch.testing.assert_close(a[:, :5], b[:, :5], atol=1e-6, rtol=1e-6)
    assert not torch.allclose(a[:, 5:], b[:, 5:])


def test_gpt_output_at_t_ignores_later_tokens():
    model = GPT(GPTConfig(vocab_size=30, context_length=16, dropout=0.0)).eval()
    x = torch.randint(0, 30, (3, 12))
    y = x.clone()
    y[:, 7:] = (y[:, 7:] + 1) % 30
    torch.testing.assert_close(model(x)[:, :7], model(y)[:, :7], atol=1e-6, rtol=1e-6)


def test_more_padding_does_not_change_real_positions():
    model = Transformer(small_config()).eval()
    src = torch.tensor([[5, 6, 7, 0], [5, 6, 7, 8]])
    tgt = torch.tensor([[1, 9, 4, 0], [1, 9, 4, 3]])
    out = model(src, tgt)
    padded = model(F.pad(src, (0, 5)), F.pad(tgt, (0, 3)))
    torch.testing.assert_close(padded[0, :3], out[0, :3], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(padded[1, :4], out[1, :4], atol=1e-5, rtol=1e-5)


def test_logits_shape_and_attention_maps_of_every_layer_and_head():
    model = Transformer(small_config())
    logits = model(torch.randint(1, 23, (2, 6)), torch.randint(1, 19, (2, 4)))
    assert logits.shape == (2, 4, 19)
    maps = model.attention_weights()
    assert [m.shape for m in maps["encoder"]] == [(2, 4, 6, 6)] * 2
    assert [m.shape for m in maps["decoder"]] == [(2, 4, 4, 4)] * 2
    assert [m.shape for m in maps["cross"]] == [(2, 4, 4, 6)] * 2
    gpt = GPT(GPTConfig(vocab_size=11, num_layers=3, num_heads=4, d_model=16))
    gpt(torch.randint(0, 11, (1, 9)))
    assert [m.shape for m in gpt.attention_weights()] == [(1, 4, 9, 9)] * 3


@pytest.mark.parametrize("norm_first", [False, True])
def test_gradients_reach_every_parameter(norm_first):
    model = Transformer(small_config(norm_first=norm_first, positional="learned"))
    logits = model(torch.randint(1, 23, (2, 6)), torch.randint(1, 19, (2, 5)))
    logits.logsumexp(-1).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing
    gpt = GPT(GPTConfig(vocab_size=11, d_model=16, tie_weights=False))
    gpt(torch.randint(0, 11, (2, 9))).logsumexp(-1).sum().backward()
    missing = [n for n, p in gpt.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing


def test_tied_and_shared_embeddings_are_one_tensor():
    model = Transformer(small_config(src_vocab_size=19, share_embeddings=True, tie_output=True))
    assert model.src_embed is model.tgt_embed
    assert model.generator.weight is model.tgt_embed.weight
    untied = Transformer(small_config(tie_output=False))
    assert untied.generator.weight is not untied.tgt_embed.weight


def overfit(model, step_fn, steps=150):
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = step_fn()
        loss.backward()
        optimizer.step()
    return loss.item()


@pytest.mark.slow
def test_transformer_overfits_a_tiny_batch():
    model = Transformer(small_config())
    src = torch.randint(1, 23, (4, 7))
    tgt = torch.randint(3, 19, (4, 6))
    tgt[:, 0] = 1

    def step():
        logits = model(src, tgt[:, :-1])
        return F.cross_entropy(logits.reshape(-1, 19), tgt[:, 1:].reshape(-1))

    assert overfit(model, step) < 0.05


@pytest.mark.slow
def test_gpt_overfits_a_tiny_batch():
    model = GPT(GPTConfig(vocab_size=13, context_length=16, d_model=32, dropout=0.0))
    x = torch.randint(0, 13, (4, 13))

    def step():
        logits = model(x[:, :-1])
        return F.cross_entropy(logits.reshape(-1, 13), x[:, 1:].reshape(-1))

    assert overfit(model, step) < 0.05


def test_cached_decoding_equals_full_decoding():
    model = Transformer(small_config()).eval()
    src = torch.tensor([[4, 5, 6, 7, 0], [8, 9, 10, 11, 12]])
    tgt = torch.randint(1, 19, (2, 6))
    src_mask = model.source_mask(src)
    memory = model.encode(src, src_mask)
    full = model.decode(tgt, memory, src_mask)
    cache = model.new_cache()
    steps = [model.decode(tgt[:, t : t + 1], memory, src_mask, cache) for t in range(6)]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)
    # a prefix of several tokens at once, then one more
    cache = model.new_cache()
    first = model.decode(tgt[:, :4], memory, src_mask, cache)
    rest = model.decode(tgt[:, 4:], memory, src_mask, cache)
    torch.testing.assert_close(torch.cat([first, rest], 1), full, atol=1e-5, rtol=1e-5)


def test_gpt_cached_decoding_equals_full():
    model = GPT(GPTConfig(vocab_size=20, context_length=12, d_model=16, dropout=0.0)).eval()
    x = torch.randint(0, 20, (2, 10))
    cache = model.new_cache()
    steps = torch.cat([model(x[:, t : t + 1], cache) for t in range(10)], 1)
    torch.testing.assert_close(steps, model(x), atol=1e-5, rtol=1e-5)


def test_gpt_context_overflow_is_an_error():
    model = GPT(GPTConfig(vocab_size=5, context_length=8))
    with pytest.raises(ValueError, match="context length 8"):
        model(torch.zeros(1, 9, dtype=torch.long))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(d_model=30, num_heads=4), "divisible"),
        (dict(share_embeddings=True), "joint vocabulary"),
        (dict(dropout=1.0), "dropout"),
        (dict(positional="xpos"), "positional"),
        (dict(activation="swish"), "activation"),
        (dict(d_model=0), "d_model"),
    ],
)
def test_bad_configurations_are_rejected(overrides, message):
    with pytest.raises(ValueError, match=message):
        small_config(**overrides)


def test_config_round_trips_through_a_dict():
    config = small_config(norm_first=True)
    assert TransformerConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown"):
        TransformerConfig.from_dict({**config.to_dict(), "layers": 3})


def test_batch_mismatch_and_bad_token_shapes_are_errors():
    model = Transformer(small_config())
    with pytest.raises(ValueError, match="batch size"):
        model(torch.ones(2, 5, dtype=torch.long), torch.ones(3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(batch, seq_len\)"):
        model(torch.ones(5, dtype=torch.long), torch.ones(3, 4, dtype=torch.long))
