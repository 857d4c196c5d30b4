import itertools

import pytest
import torch
import torch.nn.functional as F

from transformer_course.models.generation import (
    beam_search,
    generate,
    greedy_decode,
    length_penalty,
    sampling_distribution,
)
from transformer_course.models.gpt import GPT, GPTConfig
from transformer_course.models.transformer import Transformer, TransformerConfig


def random_model(vocab=9, seed=0, max_len=24):
    torch.manual_seed(seed)
    config = TransformerConfig(vocab, vocab, d_model=32, num_heads=4, num_encoder_layers=2,
                               num_decoder_layers=2, d_ff=64, dropout=0.0, max_len=max_len)
    model = Transformer(config).eval()
    with torch.no_grad():  # sharper random distributions make the decoders disagree more
        model.generator.weight.mul_(3)
    return model


def sources():
    return torch.tensor([[4, 5, 6, 7, 3], [8, 4, 3, 0, 0], [5, 5, 5, 6, 3]])


def test_cached_and_uncached_greedy_give_identical_tokens():
    model = random_model()
    fast = greedy_decode(model, sources(), max_len=12, use_cache=True)
    slow = greedy_decode(model, sources(), max_len=12, use_cache=False)
    assert fast == slow and all(isinstance(t, int) for row in fast for t in row)


def test_cached_and_uncached_beam_search_give_identical_tokens():
    model = random_model()
    fast = beam_search(model, sources(), beam_size=4, max_len=12, use_cache=True)
    slow = beam_search(model, sources(), beam_size=4, max_len=12, use_cache=False)
    assert fast == slow


def test_beam_of_one_is_greedy():
    model = random_model(seed=1)
    assert beam_search(model, sources(), beam_size=1, max_len=10, alpha=0.0) == greedy_decode(
        model, sources(), max_len=10
    )


def sequence_log_prob(model, src, tokens, bos=2, eos=3):
    full = torch.tensor([[bos] + tokens + [eos]])
    logits = model(src[None], full[:, :-1])
    return F.log_softmax(logits, -1).gather(-1, full[:, 1:, None]).sum().item()


def test_wide_beam_is_exhaustive_and_finds_the_most_probable_sequence():
    """With a beam wider than every prefix, beam search must return the best of all outputs
    of at most 3 tokens (+ </s>), found here by brute force."""
    model = random_model(vocab=6, seed=3)
    src = torch.tensor([4, 5, 4, 3])
    tokens = [0, 1, 2, 4, 5]  # everything but </s>
    candidates = [list(c) for n in range(4) for c in itertools.product(tokens, repeat=n)]
    with torch.no_grad():
        best = max(candidates, key=lambda c: sequence_log_prob(model, src, c))
        found = beam_search(model, src[None], beam_size=200, max_len=4, alpha=0.0)[0]
    assert found == best


def test_length_penalty():
    assert length_penalty(1, 0.0) == 1.0
    assert length_penalty(1, 1.0) == 1.0 and length_penalty(7, 1.0) == 2.0


def test_decoding_rejects_bad_arguments():
    model = random_model()
    with pytest.raises(ValueError, match="max_len"):
        greedy_decode(model, sources(), max_len=100)
    with pytest.raises(ValueError, match=r"\(batch, src_len\)"):
        greedy_decode(model, torch.tensor([4, 5]))
    with pytest.raises(ValueError, match="beam_size"):
        beam_search(model, sources(), beam_size=0)


def test_temperature_top_k_and_top_p():
    logits = torch.log(torch.tensor([0.5, 0.2, 0.15, 0.1, 0.05]))
    probs = torch.tensor([0.5, 0.2, 0.15, 0.1, 0.05])
    torch.testing.assert_close(sampling_distribution(logits), probs)
    sharp = sampling_distribution(logits, temperature=0.5)
    flat = sampling_distribution(logits, temperature=2.0)
    assert sharp[0] > 0.5 > flat[0] and flat[-1] > 0.05
    top2 = sampling_distribution(logits, top_k=2)
    torch.testing.assert_close(top2, torch.tensor([5 / 7, 2 / 7, 0, 0, 0]))
    nucleus = sampling_distribution(logits, top_p=0.8)  # 0.5 + 0.2 < 0.8 -> also 0.15
    torch.testing.assert_close(nucleus, torch.tensor([0.5, 0.2, 0.15, 0, 0]) / 0.85)
    assert sampling_distribution(logits, top_p=0.3).tolist() == [1.0, 0, 0, 0, 0]
    for bad in (dict(temperature=0), dict(top_k=0), dict(top_p=1.5)):
        with pytest.raises(ValueError):
            sampling_distribution(logits, **bad)


def test_gpt_sampling_with_and_without_cache_is_identical():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=20, context_length=16, d_model=32, dropout=0.0)).eval()
    prompt = torch.randint(0, 20, (2, 5))
    outputs = []
    for use_cache in (True, False):
        g = torch.Generator().manual_seed(7)
        outputs.append(generate(model, prompt, 30, temperature=0.8, top_k=10, generator=g,
                                use_cache=use_cache))
    assert outputs[0].shape == (2, 35)  # past the 16-token context: the window slides
    assert torch.equal(outputs[0], outputs[1])
    greedy = generate(model, prompt, 10, temperature=0)
    assert torch.equal(greedy, generate(model, prompt, 10, temperature=0, use_cache=False))


def test_generation_stops_at_the_stop_token():
    model = GPT(GPTConfig(vocab_size=5, context_length=32, d_model=16, dropout=0.0)).eval()
    with torch.no_grad():
        model.lm_head.weight.zero_()
        model.lm_head.weight[4, 0] = 100.0  # always predicts token 4 from any input
    out = generate(model, torch.zeros(3, 2, dtype=torch.long) + 1, 20, temperature=0, stop_id=4)
    assert out.shape == (3, 3)


def test_the_decoder_cache_counts_positions_and_reorders_every_layer():
    model = random_model()
    src = sources()
    memory = model.encode(src)
    cache = model.new_cache()
    assert cache.length == 0 and len(cache.layers) == model.config.num_decoder_layers
    tgt = torch.full((src.shape[0], 3), 2)  # (batch, 3) prefix
    model.decode(tgt, memory, model.source_mask(src), cache)
    assert cache.length == 3
    model.decode(tgt[:, :1], memory, model.source_mask(src), cache)
    assert cache.length == 4  # the next token is position 4
    keys_before = [layer[0].key.clone() for layer in cache]
    cross_before = [layer[1].key for layer in cache]
    order = torch.arange(src.shape[0]).flip(0)
    cache.reorder(order)
    for (self_cache, cross_cache), keys, cross in zip(cache, keys_before, cross_before,
                                                      strict=True):
        assert torch.equal(self_cache.key, keys[order])  # every layer follows the new order
        assert cross_cache.key is cross  # the encoder's keys are shared by all beams


def test_a_cache_for_a_decoder_without_layers_is_refused():
    config = TransformerConfig(9, 9, d_model=16, num_heads=2, num_encoder_layers=1,
                               num_decoder_layers=0, d_ff=32)
    with pytest.raises(ValueError, match="nothing to cache"):
        Transformer(config).new_cache()
