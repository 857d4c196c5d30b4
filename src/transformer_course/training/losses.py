"""Label-smoothed cross-entropy (chapter 10)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["LabelSmoothingLoss"]


class LabelSmoothingLoss(nn.Module):
    """Cross-entropy against a smoothed target, averaged over non-padding positions.

    The target distribution puts ``1 - smoothing`` on the correct token and spreads
    ``smoothing`` uniformly over the whole vocabulary (as ``F.cross_entropy(...,
    label_smoothing=...)`` does), which keeps the model from becoming over-confident:

        loss = (1 - eps) * (-log p[target]) + eps * mean_v(-log p[v])
    """

    def __init__(self, smoothing: float = 0.1, ignore_index: int = 0):
        super().__init__()
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
        self.smoothing = smoothing
        self.ignore_index = ignore_index

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """``logits``: ``(..., vocab)``; ``target``: ``(...)`` ids. Returns a scalar."""
        if logits.shape[:-1] != target.shape:
            raise ValueError(
                f"logits {tuple(logits.shape)} must be target's shape {tuple(target.shape)} "
                "plus a vocabulary dimension"
            )
        log_probs = F.log_softmax(logits.float(), dim=-1)  # (..., vocab)
        keep = target != self.ignore_index  # (...)
        safe_target = target.masked_fill(~keep, 0)
        nll = -log_probs.gather(-1, safe_target.unsqueeze(-1)).squeeze(-1)  # (...)
        uniform = -log_probs.mean(dim=-1)  # (...)
        loss = (1.0 - self.smoothing) * nll + self.smoothing * uniform
        count = keep.sum()
        if count == 0:
            raise ValueError("every target position is padding: nothing to learn from")
        return (loss * keep).sum() / count
