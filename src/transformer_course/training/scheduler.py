"""Learning-rate schedules: multipliers of the optimizer's base rate (chapter 10)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["inverse_sqrt_schedule", "warmup_constant_schedule", "warmup_cosine",
           "warmup_cosine_schedule", "make_scheduler"]


# --- learning-rate schedules (multipliers of the optimizer's base learning rate) -----------------


def inverse_sqrt_schedule(d_model: int, warmup_steps: int) -> Callable[[int], float]:
    """The schedule of "Attention Is All You Need":
    ``d_model^-0.5 * min(step^-0.5, step * warmup^-1.5)``: linear warm-up, then 1/sqrt(step).

    Use with a base learning rate of 1.0 (or a multiplier, "factor", to scale it).
    """
    if warmup_steps < 1:
        raise ValueError(f"warmup_steps must be >= 1, got {warmup_steps}")

    def multiplier(step: int) -> float:
        step = max(step, 1)  # LambdaLR calls it with step 0 first
        return d_model**-0.5 * min(step**-0.5, step * warmup_steps**-1.5)

    return multiplier


def warmup_constant_schedule(warmup_steps: int) -> Callable[[int], float]:
    """Linear warm-up to 1, then constant: update ``step`` (0-based) gets
    ``min(1, (step + 1) / warmup_steps)``. For runs too short for a decay to matter."""
    if warmup_steps < 1:
        raise ValueError(f"warmup_steps must be >= 1, got {warmup_steps}")

    def multiplier(step: int) -> float:
        return min(1.0, (step + 1) / warmup_steps)

    return multiplier


def warmup_cosine(step: int, warmup_steps: int, progress: float, min_ratio: float = 0.0) -> float:
    """The multiplier of update ``step`` (0-based): ``(step + 1) / warmup_steps`` during the
    warm-up, so the first update already moves and update ``warmup_steps - 1`` uses the full
    rate; after it, a cosine from 1 down to ``min_ratio`` as ``progress`` goes from 0 to 1.

    ``progress`` is the caller's measure of how far the decay is: the steps since the warm-up
    over the steps after it (:func:`warmup_cosine_schedule`), or the share of a time budget
    already used (the TinyTalks recipe, whose end is a number of minutes).
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def warmup_cosine_schedule(
    warmup_steps: int, total_steps: int, min_ratio: float = 0.0
) -> Callable[[int], float]:
    """Linear warm-up to 1, then a cosine decay to ``min_ratio`` at ``total_steps``."""
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(
            f"need 0 <= warmup_steps < total_steps, got {warmup_steps} and {total_steps}"
        )

    def multiplier(step: int) -> float:
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return warmup_cosine(step, warmup_steps, progress, min_ratio)

    return multiplier


def make_scheduler(
    optimizer: torch.optim.Optimizer, multiplier: Callable[[int], float]
) -> LambdaLR:
    """Wrap a multiplier function as a scheduler stepped once per optimizer step, after it.

    ``LambdaLR`` sets the rate to ``base_lr * multiplier(0)`` when it is created and to
    ``base_lr * multiplier(k)`` after its k-th ``step()``: update ``k`` (0-based) uses
    ``multiplier(k)``, as :func:`warmup_cosine` counts.
    """
    return LambdaLR(optimizer, multiplier)
