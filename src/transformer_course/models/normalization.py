"""Layer normalization and the residual connection around each sublayer (chapter 6).

Every sublayer (attention or feed-forward) is wrapped as ``x + sublayer(x)`` with a LayerNorm,
placed either after the addition (post-norm, the original paper) or before the sublayer
(pre-norm, GPT-2 and most modern models: it trains stably without learning-rate warmup).

:func:`rename_state_keys` lets the layers load checkpoints written while they still wrapped
their sublayers in :class:`ResidualConnection` modules (see ``EncoderLayer.OLD_NAMES``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

__all__ = ["LayerNorm", "ResidualConnection", "rename_state_keys", "upgrade_state_dict"]


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

    Chapter 6's object: the idea of the wiring, on its own. ``EncoderLayer`` and
    ``DecoderLayer`` write the same two lines inline, as ``nn.TransformerEncoderLayer`` does,
    with the layer's own ``norm1``, ``norm2`` (, ``norm3``) and ``dropout``.
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


def rename_state_keys(state_dict: dict, prefix: str, renames: dict[str, str]) -> None:
    """Rename, in place, every key ``prefix + old + rest`` of ``state_dict`` to
    ``prefix + new + rest``, for each ``old -> new`` of ``renames``.

    The layers call it from ``_load_from_state_dict`` with their ``OLD_NAMES``, so a state
    dict that still says ``attn_residual.norm.gamma`` loads into ``norm1.gamma``.
    """
    for key in [k for k in state_dict if k.startswith(prefix)]:
        rest = key[len(prefix):]
        for old, new in renames.items():
            if rest.startswith(old):
                state_dict[prefix + new + rest[len(old):]] = state_dict.pop(key)
                break


def upgrade_state_dict(model: nn.Module, state_dict: dict) -> dict:
    """A copy of ``state_dict`` with the old names of every layer of ``model`` renamed: the
    keys ``model.state_dict()`` has, for checks made before ``load_state_dict`` (which
    renames by itself)."""
    state_dict = dict(state_dict)
    for name, module in model.named_modules():
        renames = getattr(module, "OLD_NAMES", None)
        if renames:
            rename_state_keys(state_dict, f"{name}." if name else "", renames)
    return state_dict
