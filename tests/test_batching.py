import pytest
import torch
from conftest import load_or_skip

from transformer_course.utils.batching import (
    BucketBatchSampler,
    TranslationDataset,
    collate_translation,
    padding_fraction,
    random_batches,
    random_blocks,
    sequential_blocks,
)
from transformer_course.utils.dataset import load_multi30k
from transformer_course.utils.synthetic import make_sequence_task


def test_collate_adds_bos_eos_and_pads_dynamically():
    batch = collate_translation([([5, 6, 7], [8, 9]), ([5], [8, 9, 10, 11])], pad_id=0)
    assert batch.src.tolist() == [[5, 6, 7, 3], [5, 3, 0, 0]]
    assert batch.tgt_in.tolist() == [[2, 8, 9, 0, 0], [2, 8, 9, 10, 11]]
    assert batch.tgt_out.tolist() == [[8, 9, 3, 0, 0], [8, 9, 10, 11, 3]]
    assert batch.num_target_tokens == 8
    assert batch.src_mask.shape == (2, 1, 1, 4)
    assert batch.src_mask[1, 0, 0].tolist() == [True, True, False, False]
    assert batch.tgt_mask.shape == (2, 1, 5, 5)
    assert batch.tgt_mask[0, 0, 4].tolist() == [True, True, True, False, False]  # pads hidden
    assert batch.tgt_mask[1, 0, 1].tolist() == [True, True, False, False, False]  # causal
    with pytest.raises(ValueError, match="empty"):
        collate_translation([])


def test_dataset_drops_long_and_empty_pairs():
    words = lambda text: [4 + len(w) for w in text.split()]  # noqa: E731
    data = TranslationDataset([("a b", "c"), ("a " * 9, "b"), ("", "x")], words, words, max_len=5)
    assert len(data) == 1 and data.dropped == 2
    assert data.lengths() == [2]


def test_bucket_sampler_covers_every_example_once_and_is_deterministic():
    lengths = [(i * 7919) % 37 + 1 for i in range(1000)]
    sampler = BucketBatchSampler(lengths, max_tokens=200, seed=3, bucket_size=256)
    batches = sampler.batches()
    assert sorted(i for b in batches for i in b) == list(range(1000))
    assert all(len(b) * (max(lengths[i] for i in b) + 1) <= 200 for b in batches)
    assert BucketBatchSampler(lengths, max_tokens=200, seed=3, bucket_size=256).batches() == batches
    sampler.set_epoch(1)
    assert sampler.batches() != batches  # a new order each epoch


def test_bucket_sampler_with_batch_size_and_bad_budget():
    lengths = list(range(1, 101))
    batches = BucketBatchSampler(lengths, batch_size=16, shuffle=False).batches()
    assert max(len(b) for b in batches) == 16
    assert batches[0] == list(range(16))  # sorted by length without shuffling
    with pytest.raises(ValueError, match="longest example"):
        BucketBatchSampler(lengths, max_tokens=50)
    with pytest.raises(ValueError, match="batch_size, max_tokens"):
        BucketBatchSampler(lengths)


def test_bucketing_wastes_far_less_padding_on_multi30k():
    pairs = load_or_skip(load_multi30k, "train")
    lengths = [max(len(de.split()), len(en.split())) for de, en in pairs]
    bucketed = BucketBatchSampler(lengths, batch_size=128, seed=0).batches()
    shuffled = random_batches(len(lengths), 128, seed=0)
    assert padding_fraction(bucketed, lengths) < 0.08  # measured: 0.053
    assert padding_fraction(shuffled, lengths) > 0.4  # measured: 0.537


def test_random_blocks_are_shifted_windows():
    data = torch.arange(100)
    generator = torch.Generator().manual_seed(0)
    x, y = random_blocks(data, block_size=8, batch_size=5, generator=generator)
    assert x.shape == y.shape == (5, 8)
    assert torch.equal(y, x + 1)
    assert torch.equal(torch.cat([x for x, _ in sequential_blocks(data, 30)], 1)[0], data[:-1])
    with pytest.raises(ValueError, match="1-D"):
        random_blocks(data.view(10, 10), 4, 2)


@pytest.mark.parametrize("task", ["copy", "reverse", "sort"])
def test_synthetic_tasks(task):
    src, tgt = make_sequence_task(task, 50, 6, vocab_size=14, seed=1)
    assert src.shape == tgt.shape == (50, 6) and src.min() >= 4 and src.max() < 14
    expected = {"copy": src, "reverse": src.flip(1), "sort": src.sort(1).values}[task]
    assert torch.equal(tgt, expected)
    again, _ = make_sequence_task(task, 50, 6, vocab_size=14, seed=1)
    assert torch.equal(src, again)


def test_variable_length_reversal_pads_after_the_reversed_part():
    src, tgt = make_sequence_task("reverse", 200, 8, vocab_size=20, seed=0, min_len=3)
    lengths = (src != 0).sum(1)
    assert lengths.min() >= 3 and lengths.max() <= 8 and len(set(lengths.tolist())) > 1
    for s, t, n in zip(src, tgt, lengths.tolist(), strict=True):
        assert torch.equal(t[:n], s[:n].flip(0)) and torch.all(t[n:] == 0)


def test_synthetic_task_errors():
    with pytest.raises(ValueError, match="task"):
        make_sequence_task("rotate", 5, 5, 10, 0)
    with pytest.raises(ValueError, match="special"):
        make_sequence_task("copy", 5, 5, 4, 0)
