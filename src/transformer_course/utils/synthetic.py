"""Synthetic sequence tasks: copy and reverse (the attention proof of the GPT capstone, ch. 8).

Reversing a sequence is impossible without attention working: output position i must read
input position L-1-i, which no fixed per-position computation can do. A correct model learns
it in seconds and its attention map shows the anti-diagonal.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .tokenizer import PAD_ID, SPECIAL_TOKENS

__all__ = ["NUM_SPECIAL_TOKENS", "make_sequence_task"]

# The ids of <pad>, <unk>, <s>, </s> come first, as in the tokenizers; symbols start after.
NUM_SPECIAL_TOKENS = len(SPECIAL_TOKENS)
TASKS = ("copy", "reverse", "sort")


def make_sequence_task(
    task: str,
    num_examples: int,
    seq_len: int,
    vocab_size: int,
    seed: int,
    min_len: int | None = None,
    pad_id: int = PAD_ID,
) -> tuple[Tensor, Tensor]:
    """Random symbol sequences and their targets.

    Args:
        task: ``"copy"``, ``"reverse"`` or ``"sort"``.
        num_examples: how many sequences.
        seq_len: the (maximum) length.
        vocab_size: total vocabulary including the 4 special ids; symbols are
            ``4 .. vocab_size - 1``.
        seed: the generator seed; the same seed gives the same data.
        min_len: if given, lengths are drawn uniformly from ``min_len..seq_len`` and shorter
            sequences are right-padded with ``pad_id``.

    Returns:
        ``source`` and ``target``, both ``(num_examples, seq_len)`` int64.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if vocab_size <= NUM_SPECIAL_TOKENS:
        raise ValueError(
            f"vocab_size must exceed the {NUM_SPECIAL_TOKENS} special ids, got {vocab_size}"
        )
    if num_examples < 1 or seq_len < 1:
        raise ValueError(f"need num_examples, seq_len >= 1, got {num_examples}, {seq_len}")
    min_len = seq_len if min_len is None else min_len
    if not 1 <= min_len <= seq_len:
        raise ValueError(f"min_len must be in 1..seq_len={seq_len}, got {min_len}")
    generator = torch.Generator().manual_seed(seed)
    shape = (num_examples, seq_len)
    source = torch.randint(NUM_SPECIAL_TOKENS, vocab_size, shape, generator=generator)
    lengths = torch.randint(min_len, seq_len + 1, (num_examples,), generator=generator)
    target = torch.full_like(source, pad_id)
    for i, length in enumerate(lengths.tolist()):
        source[i, length:] = pad_id
        symbols = source[i, :length]
        if task == "copy":
            target[i, :length] = symbols
        elif task == "reverse":
            target[i, :length] = symbols.flip(0)
        else:
            target[i, :length] = symbols.sort().values
    return source, target
