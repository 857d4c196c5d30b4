"""Train short, test long: a synthetic task for comparing position schemes (chapter 15).

The task is to continue a repeating pattern. Each sequence is a pattern of ``p`` distinct
tokens (``p`` drawn per sequence between ``min_period`` and ``max_period``) repeated to the
sequence length; the model predicts every next token. Once the first period has been seen,
the next token is determined: it is the token that followed the previous occurrence of the
current token, ``p`` positions back. The rule involves offsets only, never absolute positions,
so a model that learned it *as a rule* should be as accurate at position 100 as at position
10. Models are trained on sequences of ``train_len`` tokens and tested on longer ones
(:func:`evaluate_lengths`); ``benchmarks/length_extrapolation.py`` runs every scheme.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..models.gpt import GPT, GPTConfig
from ..models.relative_positions import POSITION_SCHEMES
from ..training.optimizer import optimizer_step
from ..training.scheduler import make_scheduler, warmup_constant_schedule

__all__ = [
    "periodic_sequences",
    "ExtrapolationConfig",
    "build_model",
    "train_scheme",
    "masked_accuracy",
    "evaluate_lengths",
    "accuracy_by_position",
]


def periodic_sequences(
    num_sequences: int,
    seq_len: int,
    vocab_size: int,
    min_period: int,
    max_period: int,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Sequences that repeat a random pattern of distinct tokens.

    Returns:
        ``tokens`` ``(num_sequences, seq_len)`` int64 and ``determined``
        ``(num_sequences, seq_len - 1)`` bool: True where the next token, ``tokens[:, t + 1]``,
        follows from ``tokens[:, :t + 1]`` (from ``t = p - 1`` on, once a full period is seen).
    """
    if not 2 <= min_period <= max_period <= vocab_size:
        raise ValueError(
            f"need 2 <= min_period <= max_period <= vocab_size, got {min_period}, {max_period}, "
            f"{vocab_size}"
        )
    if seq_len <= max_period or num_sequences < 1:
        raise ValueError(
            f"seq_len ({seq_len}) must exceed max_period ({max_period}) and num_sequences "
            f"({num_sequences}) be positive"
        )
    periods = torch.randint(min_period, max_period + 1, (num_sequences,), generator=generator)
    # A random permutation per sequence; its first p entries are the pattern (distinct tokens).
    patterns = torch.rand(num_sequences, vocab_size, generator=generator).argsort(dim=-1)
    position = torch.arange(seq_len)  # (seq_len,)
    index = position[None, :] % periods[:, None]  # (num_sequences, seq_len): t mod p
    tokens = patterns.gather(1, index)  # (num_sequences, seq_len)
    determined = position[None, :-1] >= periods[:, None] - 1  # (num_sequences, seq_len - 1)
    return tokens, determined


@dataclass
class ExtrapolationConfig:
    """The task, model and training knobs of the experiment (defaults: the benchmark's)."""

    vocab_size: int = 16
    min_period: int = 2
    max_period: int = 8
    train_len: int = 32
    d_model: int = 64
    num_heads: int = 4
    num_layers: int = 2
    steps: int = 600
    batch_size: int = 64
    lr: float = 3e-3
    warmup: int = 50
    seed: int = 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def build_model(scheme: str, config: ExtrapolationConfig) -> GPT:
    """The course's :class:`~transformer_course.models.gpt.GPT` with ``positional=scheme``.

    A pre-norm decoder with GELU feed-forward layers and no dropout. The context length is the
    training length: a learned table has exactly ``train_len`` rows, as if trained at that
    context length, and T5's 16 causal buckets reach their last one at that distance. The
    output layer has its own weights (no tying), so that the token table only serves inputs.
    """
    return GPT(GPTConfig(
        vocab_size=config.vocab_size, context_length=config.train_len, d_model=config.d_model,
        num_heads=config.num_heads, num_layers=config.num_layers, dropout=0.0,
        activation="gelu", norm_first=True, tie_weights=False, positional=scheme,
        t5_buckets=16, t5_max_distance=config.train_len,
    ))


def masked_accuracy(logits: Tensor, targets: Tensor, determined: Tensor) -> tuple[int, int]:
    """Correct predictions and count over the ``determined`` positions."""
    correct = (logits.argmax(-1) == targets) & determined
    return int(correct.sum()), int(determined.sum())


def train_scheme(
    scheme: str, config: ExtrapolationConfig, log_every: int = 0
) -> tuple[GPT, dict]:
    """Train a model with ``scheme`` on inputs of ``config.train_len`` positions.

    The loss is the cross-entropy of the determined next tokens only: the first period is
    random, and asking the model to guess it would only add noise. Returns the model (in eval
    mode) and a history with the loss every ``log_every`` steps and the training seconds.
    """
    if scheme not in POSITION_SCHEMES:
        raise ValueError(f"scheme must be one of {POSITION_SCHEMES}, got {scheme!r}")
    torch.manual_seed(config.seed)
    model = build_model(scheme, config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.01)
    schedule = make_scheduler(optimizer, warmup_constant_schedule(config.warmup))
    data = torch.Generator().manual_seed(config.seed + 1)
    history: dict = {"step": [], "loss": []}
    start = time.perf_counter()
    model.train()
    for step in range(1, config.steps + 1):
        tokens, determined = periodic_sequences(
            config.batch_size, config.train_len + 1, config.vocab_size, config.min_period,
            config.max_period, data,
        )  # train_len + 1 tokens: train_len input positions, each with a next token
        logits = model(tokens[:, :-1])  # (batch, train_len, vocab)
        losses = F.cross_entropy(logits.transpose(1, 2), tokens[:, 1:], reduction="none")
        loss = losses[determined].mean()  # only the predictable positions
        optimizer_step(model, loss, optimizer, schedule, clip_norm=1.0)
        if log_every and (step % log_every == 0 or step == config.steps):
            history["step"].append(step)
            history["loss"].append(loss.item())
    history["seconds"] = time.perf_counter() - start
    return model.eval(), history


@torch.no_grad()
def evaluate_lengths(
    model: GPT,
    lengths: list[int],
    config: ExtrapolationConfig,
    num_sequences: int = 256,
    seed: int = 1234,
) -> dict[int, float | None]:
    """Accuracy on the determined next tokens of fresh sequences of each length.

    A length the model cannot process (learned positions beyond their table) maps to None.
    """
    results: dict[int, float | None] = {}
    for length in lengths:
        generator = torch.Generator().manual_seed(seed + length)
        tokens, determined = periodic_sequences(
            num_sequences, length + 1, config.vocab_size, config.min_period, config.max_period,
            generator,
        )  # length + 1 tokens: `length` inputs, each with a target
        try:
            logits = model(tokens[:, :-1])  # (num_sequences, length, vocab)
        except ValueError:
            results[length] = None
            continue
        correct, total = masked_accuracy(logits, tokens[:, 1:], determined)
        results[length] = correct / total
    return results


@torch.no_grad()
def accuracy_by_position(
    model: GPT,
    length: int,
    config: ExtrapolationConfig,
    num_sequences: int = 256,
    seed: int = 4321,
) -> Tensor | None:
    """Accuracy at each input position ``0 .. length - 1`` (NaN where nothing is determined),
    or None when the model cannot process ``length`` positions."""
    generator = torch.Generator().manual_seed(seed)
    tokens, determined = periodic_sequences(
        num_sequences, length + 1, config.vocab_size, config.min_period, config.max_period,
        generator,
    )
    try:
        logits = model(tokens[:, :-1])  # (num_sequences, length, vocab)
    except ValueError:
        return None
    correct = ((logits.argmax(-1) == tokens[:, 1:]) & determined).sum(0).float()  # (length,)
    counts = determined.sum(0).float()  # (length,)
    return correct / counts  # 0/0 = NaN at positions never determined
