"""Layer normalization and the residual connection around each sublayer (chapter 6).

Every sublayer (attention or feed-forward) is wrapped as ``x + sublayer(x)`` with a LayerNorm,
placed either after the addition (post-norm, the original paper) or before the sublayer
(pre-norm, GPT-2 and most modern models: it trains stably without learning-rate warmup).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

__all__ = ["LayerNorm", "ResidualConnection"]


class LayerNorm(nn.Module):
    """Normalize each vector over its last dimension, then scale and shift.

    ``y = gamma * (x - mean) / sqrt(var + eps) + beta``, with the mean and the (biased)
    variance taken over the ``d_model`` features of one position, so it does not depend on the
    batch, unlike BatchNorm.
    """

    def __init__(self, d_model: int, eps: float = 1e-5):
        super().__init__()
        self.d_model = d_model
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(d_model))
        self.beta = nn.Parameter(torch.zeros(d_model))

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.d_model:
            raise ValueError(
                f"LayerNorm expects (..., d_model={self.d_model}), got {tuple(x.shape)}"
            )
        mean = x.mean(dim=-1, keepdim=True)  # (..., 1)
        var = x.var(dim=-1, keepdim=True, unbiased=False)  # (..., 1)
        x_hat = (x - mean) * torch.rsqrt(var + self.eps)  # (..., d_model)
        return self.gamma * x_hat + self.beta


class ResidualConnection(nn.Module):
    """``x + dropout(sublayer(.))`` with LayerNorm before (pre-norm) or after (post-norm).

    post-norm: ``norm(x + dropout(sublayer(x)))``
    pre-norm:  ``x + dropout(sublayer(norm(x)))``
    """

    def __init__(
        self, d_model: int, dropout: float = 0.1, norm_first: bool = False, eps: float = 1e-5
    ):
        super().__init__()
        self.norm = LayerNorm(d_model, eps)
        self.dropout = nn.Dropout(dropout)
        self.norm_first = norm_first

    def forward(self, x: Tensor, sublayer: Callable[[Tensor], Tensor]) -> Tensor:
        """``x``: ``(batch, seq_len, d_model)``; ``sublayer`` maps such a tensor to another."""
        if self.norm_first:
            return x + self.dropout(sublayer(self.norm(x)))
        return self.norm(x + self.dropout(sublayer(x)))
