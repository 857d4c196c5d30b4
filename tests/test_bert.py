"""BERT-style masking and the encoder-only masked language model (chapter 16)."""

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from transformer_course.models.bert import (
    IGNORE_INDEX,
    BertConfig,
    MaskedLanguageModel,
    mask_tokens,
    mlm_loss,
    pad_sequences,
)

VOCAB = 1000
MASK = VOCAB - 1
SPECIAL = (0, 1, 2, 3)  # <pad>, <unk>, <s>, </s>


def _batch(batch=400, seq_len=50, seed=0):
    """<s> words </s> <pad>...: random lengths, ordinary ids in 4..MASK-1."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(4, MASK, (batch, seq_len), generator=g)
    lengths = torch.randint(5, seq_len + 1, (batch,), generator=g)
    positions = torch.arange(seq_len)
    tokens[:, 0] = 2
    tokens[positions >= lengths[:, None]] = 0
    tokens[torch.arange(batch), lengths - 1] = 3
    return tokens


def test_masking_statistics_15_percent_then_80_10_10():
    tokens = _batch()
    g = torch.Generator().manual_seed(1)
    inputs, labels = mask_tokens(tokens, MASK, VOCAB, SPECIAL, generator=g)
    ordinary = (tokens >= 4).sum().item()  # eligible positions, about 10,000
    selected = labels != IGNORE_INDEX
    n = selected.sum().item()
    assert abs(n / ordinary - 0.15) < 0.01
    became_mask = (inputs == MASK) & selected
    unchanged = (inputs == tokens) & selected
    replaced = (inputs != tokens) & (inputs != MASK) & selected
    assert became_mask.sum() + unchanged.sum() + replaced.sum() == n
    assert abs(became_mask.sum().item() / n - 0.8) < 0.02
    assert abs(replaced.sum().item() / n - 0.1) < 0.015
    assert abs(unchanged.sum().item() / n - 0.1) < 0.015
    # Labels hold the original ids exactly at the selected positions; nothing else changed.
    assert torch.equal(labels[selected], tokens[selected])
    assert torch.equal(inputs[~selected], tokens[~selected])


def test_special_tokens_and_padding_are_never_selected():
    tokens = _batch(seed=3)
    inputs, labels = mask_tokens(tokens, MASK, VOCAB, SPECIAL, mask_prob=1.0,
                                 generator=torch.Generator().manual_seed(0))
    special = tokens < 4
    assert (labels[special] == IGNORE_INDEX).all()
    assert torch.equal(inputs[special], tokens[special])
    assert (labels[~special] != IGNORE_INDEX).all()  # with mask_prob=1 every other token is
    # Random replacements are never special and never [MASK] itself.
    replaced = (inputs != tokens) & (inputs != MASK)
    assert replaced.any()
    assert (inputs[replaced] >= 4).all() and (inputs[replaced] != MASK).all()


def test_mask_token_in_the_input_is_not_selected_and_probabilities_are_respected():
    tokens = torch.tensor([[2, 10, MASK, 11, 3, 0]])
    _, labels = mask_tokens(tokens, MASK, VOCAB, SPECIAL, mask_prob=1.0)
    assert labels.tolist() == [[IGNORE_INDEX, 10, IGNORE_INDEX, 11, IGNORE_INDEX, IGNORE_INDEX]]
    inputs, labels = mask_tokens(_batch(), MASK, VOCAB, SPECIAL, mask_prob=0.0)
    assert (labels == IGNORE_INDEX).all()
    inputs, labels = mask_tokens(_batch(), MASK, VOCAB, SPECIAL, mask_prob=1.0,
                                 mask_token_prob=1.0, random_token_prob=0.0)
    assert ((inputs == MASK) == (labels != IGNORE_INDEX)).all()


def test_masking_is_reproducible_with_a_generator():
    tokens = _batch(batch=20)
    a = mask_tokens(tokens, MASK, VOCAB, SPECIAL, generator=torch.Generator().manual_seed(5))
    b = mask_tokens(tokens, MASK, VOCAB, SPECIAL, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_masking_bad_input():
    tokens = _batch(batch=4)
    with pytest.raises(ValueError, match="batch, seq_len"):
        mask_tokens(tokens[0], MASK, VOCAB, SPECIAL)
    with pytest.raises(ValueError, match="integer"):
        mask_tokens(tokens.float(), MASK, VOCAB, SPECIAL)
    with pytest.raises(ValueError, match="mask_id"):
        mask_tokens(tokens, VOCAB, VOCAB, SPECIAL)
    with pytest.raises(ValueError, match="token ids"):
        mask_tokens(tokens, 400, 500, SPECIAL)
    with pytest.raises(ValueError, match="mask_prob"):
        mask_tokens(tokens, MASK, VOCAB, SPECIAL, mask_prob=1.5)
    with pytest.raises(ValueError, match="at most 1"):
        mask_tokens(tokens, MASK, VOCAB, SPECIAL, mask_token_prob=0.8, random_token_prob=0.3)


def test_mlm_loss_covers_selected_positions_only():
    logits = torch.randn(2, 5, 7)
    labels = torch.full((2, 5), IGNORE_INDEX)
    labels[0, 1], labels[1, 3] = 4, 6
    expected = (F.cross_entropy(logits[0, 1], torch.tensor(4))
                + F.cross_entropy(logits[1, 3], torch.tensor(6))) / 2
    assert_close(mlm_loss(logits, labels), expected)
    selected = labels != IGNORE_INDEX
    assert_close(mlm_loss(logits[selected], labels), expected)  # logits of the selected only
    with pytest.raises(ValueError, match="selected positions"):
        mlm_loss(logits[0], labels)
    with pytest.raises(ValueError, match="no position"):
        mlm_loss(logits, torch.full((2, 5), IGNORE_INDEX))
    with pytest.raises(ValueError, match="shape"):
        mlm_loss(logits, labels[:, :3])


def _model(dropout=0.0):
    torch.manual_seed(0)
    return MaskedLanguageModel(BertConfig(vocab_size=50, max_len=16, d_model=32, num_heads=4,
                                          num_layers=2, dropout=dropout))


def test_model_shapes_and_tied_output_weights():
    model = _model().eval()
    tokens = torch.randint(4, 50, (3, 10))
    logits = model(tokens)
    assert logits.shape == (3, 10, 50)
    # The output layer has no matrix of its own: logits = head(h) @ E^T + b.
    names = [n for n, _ in model.named_parameters()]
    assert not any("decoder" in n or "lm_head" in n for n in names)
    h = model.head_norm(model.head_activation(model.head_dense(model.encode(tokens))))
    assert_close(logits, h @ model.token_embed.weight.T + model.output_bias)
    positions = torch.zeros(3, 10, dtype=torch.bool)
    positions[0, 2] = positions[2, 5] = positions[2, 7] = True
    assert_close(model(tokens, positions), logits[positions])  # (3, 50): the selected rows
    with pytest.raises(ValueError, match="positions"):
        model(tokens, positions.long())
    loss = logits.sum()
    loss.backward()
    assert model.token_embed.weight.grad is not None


def test_positions_start_on_the_scale_of_the_tokens():
    model = MaskedLanguageModel(BertConfig(vocab_size=500, max_len=64, d_model=64))
    tokens = model.token_embed(torch.arange(4, 500)[None])[0]  # (496, 64), scaled by sqrt(d)
    positions = model.pos_embed.embedding.weight  # (64, 64)
    assert 0.7 < positions.std().item() / tokens.std().item() < 1.4


def test_padding_does_not_change_the_real_positions():
    model = _model().eval()
    tokens = torch.tensor([[2, 10, 11, 12, 3]])
    padded = torch.tensor([[2, 10, 11, 12, 3, 0, 0, 0]])
    assert_close(model(padded)[:, :5], model(tokens))


def test_every_position_sees_the_future_unlike_a_causal_model():
    model = _model().eval()
    a = torch.tensor([[2, 10, 11, 12, 3]])
    b = torch.tensor([[2, 10, 11, 13, 3]])  # only position 3 differs
    changed = (model(a) - model(b)).abs().amax(dim=-1)[0]  # (5,)
    assert (changed[:3] > 1e-6).all()  # positions before the change see it: bidirectional


def test_a_few_steps_learn_a_deterministic_pattern():
    """On sentences whose token i is always 4 + i, MLM must become nearly perfect."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = _model()
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
        base = torch.arange(4, 16)[None].repeat(32, 1)
        tokens = torch.cat([torch.full((32, 1), 2), base, torch.full((32, 1), 3)], dim=1)
        g = torch.Generator().manual_seed(0)
        for _ in range(60):
            inputs, labels = mask_tokens(tokens, 49, 50, (0, 1, 2, 3), generator=g)
            loss = mlm_loss(model(inputs, labels != IGNORE_INDEX), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        inputs = tokens.clone()
        inputs[:, 5] = 49  # [MASK] at position 5, whose token is 8
        with torch.no_grad():
            assert (model(inputs)[:, 5].argmax(-1) == 8).float().mean() > 0.95
    finally:
        torch.set_num_threads(threads)


def test_config_and_input_errors():
    with pytest.raises(ValueError, match="divisible"):
        BertConfig(vocab_size=50, d_model=30, num_heads=4)
    with pytest.raises(ValueError, match="pad_id"):
        BertConfig(vocab_size=50, pad_id=50)
    model = _model()
    with pytest.raises(ValueError, match="max_len"):
        model(torch.randint(4, 50, (1, 17)))
    with pytest.raises(ValueError, match="batch, seq_len"):
        model(torch.randint(4, 50, (17,)))


def test_pad_sequences():
    out = pad_sequences([[5, 6, 7], [8]], pad_id=0)
    assert out.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert pad_sequences([[5, 6, 7], [8]], pad_id=0, max_len=2).tolist() == [[5, 6], [8, 0]]
    with pytest.raises(ValueError):
        pad_sequences([], pad_id=0)
