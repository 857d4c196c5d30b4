"""Turning tokenized text into batches (chapter 12; used by both capstones).

Translation: sentences of similar length are batched together (a length-bucketed sampler)
so that little of each batch is padding, and a batch holds a budget of tokens rather than a
fixed number of sentences, so short-sentence batches are not wastefully small.
Language modelling: random contiguous blocks of a long token stream.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from ..models.attention import make_padding_mask, make_target_mask
from .tokenizer import BOS_ID, EOS_ID, PAD_ID

__all__ = [
    "TranslationDataset",
    "TranslationBatch",
    "collate_translation",
    "BucketBatchSampler",
    "random_batches",
    "padding_fraction",
    "random_blocks",
    "sequential_blocks",
]


class TranslationDataset(Dataset):
    """Sentence pairs encoded once, up front, into lists of token ids.

    Args:
        pairs: ``(source_text, target_text)`` pairs.
        encode_source, encode_target: text -> list of ids (without <s> and </s>; the collate
            function adds them).
        max_len: pairs whose source or target is longer (in tokens) are dropped; the number
            dropped is kept in ``self.dropped``.
    """

    def __init__(
        self,
        pairs: Sequence[tuple[str, str]],
        encode_source: Callable[[str], list[int]],
        encode_target: Callable[[str], list[int]],
        max_len: int | None = None,
    ):
        self.examples: list[tuple[list[int], list[int]]] = []
        self.dropped = 0
        for src_text, tgt_text in pairs:
            src, tgt = encode_source(src_text), encode_target(tgt_text)
            if not src or not tgt or (max_len is not None and max(len(src), len(tgt)) > max_len):
                self.dropped += 1
                continue
            self.examples.append((src, tgt))

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> tuple[list[int], list[int]]:
        return self.examples[index]

    def lengths(self) -> list[int]:
        """The longer side of each pair, in tokens (what bucketing sorts by)."""
        return [max(len(s), len(t)) for s, t in self.examples]


@dataclass
class TranslationBatch:
    """A padded batch.

    ``src``: ``(batch, src_len)`` source ids followed by </s>;
    ``tgt_in``: ``(batch, tgt_len)`` <s> + target (the decoder's input, teacher forcing);
    ``tgt_out``: ``(batch, tgt_len)`` target + </s> (what each position must predict).
    """

    src: Tensor
    tgt_in: Tensor
    tgt_out: Tensor
    pad_id: int = PAD_ID

    @property
    def num_target_tokens(self) -> int:
        return int((self.tgt_out != self.pad_id).sum())

    @property
    def src_mask(self) -> Tensor:
        """``(batch, 1, 1, src_len)``: True at real source tokens (the encoder's mask)."""
        return make_padding_mask(self.src, self.pad_id)

    @property
    def tgt_mask(self) -> Tensor:
        """``(batch, 1, tgt_len, tgt_len)``: causal and not padding (the decoder's mask)."""
        return make_target_mask(self.tgt_in, self.pad_id)

    def to(self, device: torch.device | str) -> TranslationBatch:
        return TranslationBatch(
            self.src.to(device), self.tgt_in.to(device), self.tgt_out.to(device), self.pad_id
        )


def _pad(sequences: list[list[int]], pad_id: int) -> Tensor:
    width = max(len(s) for s in sequences)
    out = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    for i, s in enumerate(sequences):
        out[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return out


def collate_translation(
    examples: list[tuple[list[int], list[int]]], pad_id: int = PAD_ID, bos_id: int = BOS_ID,
    eos_id: int = EOS_ID
) -> TranslationBatch:
    """Pad a list of (source ids, target ids) to the longest of the batch (dynamic padding)."""
    if not examples:
        raise ValueError("cannot collate an empty batch")
    src = _pad([s + [eos_id] for s, _ in examples], pad_id)  # (batch, src_len)
    tgt_in = _pad([[bos_id] + t for _, t in examples], pad_id)  # (batch, tgt_len)
    tgt_out = _pad([t + [eos_id] for _, t in examples], pad_id)  # (batch, tgt_len)
    return TranslationBatch(src, tgt_in, tgt_out, pad_id)


def _batches_by_budget(
    order: list[int], lengths: Sequence[int], batch_size: int | None, max_tokens: int | None
) -> list[list[int]]:
    """Cut ``order`` into consecutive batches of at most ``batch_size`` examples and at most
    ``max_tokens`` padded tokens (batch size x longest example)."""
    batches, current, longest = [], [], 0
    for index in order:
        new_longest = max(longest, lengths[index] + 1)  # +1 for <s> or </s>
        too_many = batch_size is not None and len(current) + 1 > batch_size
        too_long = max_tokens is not None and new_longest * (len(current) + 1) > max_tokens
        if current and (too_many or too_long):
            batches.append(current)
            current, new_longest = [], lengths[index] + 1
        current.append(index)
        longest = new_longest
    if current:
        batches.append(current)
    return batches


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of similar-length examples, in a random order that is fixed by (seed, epoch).

    Each epoch: shuffle the examples, sort them by length within windows of
    ``bucket_size`` examples, cut each window into batches (by ``batch_size`` and/or
    ``max_tokens``), and shuffle the batches. Call :meth:`set_epoch` before each epoch.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int | None = None,
        max_tokens: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        bucket_size: int = 4096,
    ):
        if batch_size is None and max_tokens is None:
            raise ValueError("give batch_size, max_tokens or both")
        if max_tokens is not None and lengths and max(lengths) + 1 > max_tokens:
            raise ValueError(
                f"max_tokens={max_tokens} is smaller than the longest example "
                f"({max(lengths) + 1} tokens); raise it or filter long examples"
            )
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self.shuffle = shuffle
        self.seed = seed
        self.bucket_size = bucket_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self) -> list[list[int]]:
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        order = list(range(len(self.lengths)))
        if self.shuffle:
            rng.shuffle(order)
        batches = []
        for start in range(0, len(order), self.bucket_size):
            window = sorted(order[start : start + self.bucket_size], key=self.lengths.__getitem__)
            batches += _batches_by_budget(window, self.lengths, self.batch_size, self.max_tokens)
        if self.shuffle:
            rng.shuffle(batches)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches())

    def __len__(self) -> int:
        return len(self.batches())


def random_batches(num_examples: int, batch_size: int, seed: int = 0) -> list[list[int]]:
    """Plain shuffled batches of ``batch_size``: the baseline bucketing is compared with."""
    order = list(range(num_examples))
    random.Random(seed).shuffle(order)
    return [order[i : i + batch_size] for i in range(0, num_examples, batch_size)]


def padding_fraction(batches: Sequence[Sequence[int]], lengths: Sequence[int]) -> float:
    """Share of the padded tensor cells that are padding, over all ``batches``."""
    cells = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    real = sum(lengths[i] for b in batches for i in b)
    return 1.0 - real / cells


def random_blocks(
    data: Tensor, block_size: int, batch_size: int, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """``batch_size`` random windows of a 1-D token stream: inputs and next-token targets.

    Returns ``x`` and ``y``, each ``(batch_size, block_size)``, with ``y[:, t] = x[:, t + 1]``
    in the stream.
    """
    if data.dim() != 1:
        raise ValueError(f"data must be a 1-D token stream, got shape {tuple(data.shape)}")
    if len(data) < block_size + 1:
        raise ValueError(f"the stream has {len(data)} tokens; need at least block_size + 1")
    starts = torch.randint(0, len(data) - block_size, (batch_size,), generator=generator)
    x = torch.stack([data[s : s + block_size] for s in starts.tolist()])  # (batch, block)
    y = torch.stack([data[s + 1 : s + 1 + block_size] for s in starts.tolist()])  # (batch, block)
    return x, y


def sequential_blocks(data: Tensor, block_size: int) -> Iterator[tuple[Tensor, Tensor]]:
    """Non-overlapping windows covering the stream once (for a validation loss)."""
    for start in range(0, len(data) - 1, block_size):
        end = min(start + block_size, len(data) - 1)
        yield data[start:end][None], data[start + 1 : end + 1][None]
