import math

import pytest
import torch

from transformer_course.recipes.length_extrapolation import (
    ExtrapolationConfig,
    accuracy_by_position,
    evaluate_lengths,
    periodic_sequences,
    train_scheme,
)


def test_periodic_sequences_repeat_a_pattern_of_distinct_tokens():
    generator = torch.Generator().manual_seed(0)
    tokens, determined = periodic_sequences(200, 30, 12, 2, 7, generator)
    assert tokens.shape == (200, 30) and determined.shape == (200, 29)
    for row, det in zip(tokens, determined, strict=True):
        p = int((~det).sum()) + 1  # the first p - 1 next tokens are undetermined
        assert 2 <= p <= 7
        assert len(set(row[:p].tolist())) == p  # distinct tokens in the pattern
        assert torch.equal(row[p:], row[:-p])  # period p
        assert det[p - 1:].all()
    assert tokens.min() >= 0 and tokens.max() < 12
    again, _ = periodic_sequences(200, 30, 12, 2, 7, torch.Generator().manual_seed(0))
    assert torch.equal(tokens, again)
    with pytest.raises(ValueError):
        periodic_sequences(4, 6, 12, 2, 7)  # too short for the longest period
    with pytest.raises(ValueError):
        periodic_sequences(4, 30, 5, 2, 7)  # not enough distinct tokens


def test_training_learns_and_evaluation_handles_lengths():
    config = ExtrapolationConfig(d_model=16, num_heads=2, num_layers=2, steps=40, batch_size=16,
                                 train_len=16, max_period=4)
    model, history = train_scheme("t5", config, log_every=20)
    assert history["step"] == [20, 40] and history["loss"][-1] < history["loss"][0]
    results = evaluate_lengths(model, [16, 32], config, num_sequences=32)
    assert set(results) == {16, 32} and all(0 <= v <= 1 for v in results.values())
    by_position = accuracy_by_position(model, 32, config, num_sequences=32)
    assert by_position.shape == (32,) and math.isnan(by_position[0])  # never determined

    learned, _ = train_scheme("learned", ExtrapolationConfig(
        d_model=16, num_heads=2, steps=2, train_len=16, max_period=4), log_every=0)
    results = evaluate_lengths(learned, [16, 17], config, num_sequences=8)
    assert results[16] is not None and results[17] is None  # no vector for position 16
    assert accuracy_by_position(learned, 17, config, num_sequences=8) is None
    with pytest.raises(ValueError):
        train_scheme("xpos", config)
