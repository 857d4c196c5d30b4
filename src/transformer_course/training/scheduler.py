"""Learning-rate schedules: multipliers of the optimizer's base rate (chapter 10)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["inverse_sqrt_schedule", "warmup_cosine_schedule", "make_scheduler"]


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


def warmup_cosine_schedule(
    warmup_steps: int, total_steps: int, min_ratio: float = 0.0
) -> Callable[[int], float]:
    """Linear warm-up to 1, then a cosine decay to ``min_ratio`` at ``total_steps``."""
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(
            f"need 0 <= warmup_steps < total_steps, got {warmup_steps} and {total_steps}"
        )

    def multiplier(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return multiplier


def make_scheduler(
    optimizer: torch.optim.Optimizer, multiplier: Callable[[int], float]
) -> LambdaLR:
    """Wrap a multiplier function as a scheduler stepped once per optimizer step."""
    return LambdaLR(optimizer, multiplier)
