"""The position-wise feed-forward network (introduced in chapter 6).

Attention mixes information across positions; the feed-forward network then transforms each
position on its own, with the same weights everywhere: expand to ``d_ff`` (4 x d_model in the
original paper), apply a non-linearity, project back.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["PositionwiseFeedForward", "ACTIVATIONS"]

ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu}


class PositionwiseFeedForward(nn.Module):
    """``linear2(dropout(activation(linear1(x))))`` applied at every position.

    Args:
        d_model: input and output width.
        d_ff: hidden width (usually ``4 * d_model``).
        dropout: dropout after the activation.
        activation: ``"relu"`` (the original paper) or ``"gelu"`` (BERT, GPT).
    """

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.1, activation: str = "relu"):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.linear1 = nn.Linear(d_model, d_ff)
        self.linear2 = nn.Linear(d_ff, d_model)
        self.dropout = nn.Dropout(dropout)
        self.activation = ACTIVATIONS[activation]

    def forward(self, x: Tensor) -> Tensor:
        """``(batch, seq_len, d_model)`` -> ``(batch, seq_len, d_model)``."""
        hidden = self.activation(self.linear1(x))  # (batch, seq_len, d_ff)
        return self.linear2(self.dropout(hidden))  # (batch, seq_len, d_model)
