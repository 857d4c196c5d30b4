"""Sparse attention patterns as boolean masks (chapter 15).

Full attention compares every query with every key: ``n^2`` pairs for ``n`` positions. Sparse
patterns keep a subset of the pairs, chosen by position alone:

- a *sliding window* (local attention, as in Longformer): each query sees the keys at most
  ``window`` positions away, ``O(n * window)`` pairs;
- the *strided* pattern of the Sparse Transformer (Child et al., 2019): each query sees the
  last ``stride`` positions and every ``stride``-th position before them. With
  ``stride ~ sqrt(n)`` that is ``O(n sqrt(n))`` pairs, and any key is reachable from any later
  query in two steps (two layers, or two heads of one layer);
- the *fixed* pattern of the same paper: each query sees its own block and the last
  ``summary`` positions of every earlier block.

Every mask follows the course's convention (True = may attend) and plugs into
:func:`~transformer_course.models.attention.scaled_dot_product_attention`. A mask alone saves no
work (the masked scores are still computed); :func:`sliding_window_attention` shows how a
local pattern is computed in ``O(n * window)`` memory by gathering only the allowed keys.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "sliding_window_mask",
    "strided_mask",
    "sparse_transformer_mask",
    "fixed_mask",
    "num_allowed_pairs",
    "sliding_window_attention",
]


def _grid(seq_len: int, device) -> tuple[Tensor, Tensor]:
    if seq_len < 1:
        raise ValueError(f"seq_len must be positive, got {seq_len}")
    i = torch.arange(seq_len, device=device)[:, None]  # (seq_len, 1) query positions
    j = torch.arange(seq_len, device=device)[None, :]  # (1, seq_len) key positions
    return i, j


def _check_positive(name: str, value: int) -> None:
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def sliding_window_mask(
    seq_len: int, window: int, causal: bool = True, device: torch.device | str | None = None
) -> Tensor:
    """``(seq_len, seq_len)`` mask: query ``i`` may attend to key ``j`` when
    ``|i - j| <= window`` (and ``j <= i`` if ``causal``).

    A causal row holds ``window + 1`` keys (fewer at the start), a bidirectional one
    ``2 * window + 1``. ``window = 0`` is attention to oneself only.
    """
    if not isinstance(window, int) or window < 0:
        raise ValueError(f"window must be a non-negative integer, got {window!r}")
    i, j = _grid(seq_len, device)
    mask = (i - j).abs() <= window
    return mask & (j <= i) if causal else mask


def strided_mask(
    seq_len: int, stride: int, causal: bool = True, device: torch.device | str | None = None
) -> Tensor:
    """``(seq_len, seq_len)`` mask of the keys a multiple of ``stride`` away:
    ``(i - j) % stride == 0`` (and ``j <= i`` if ``causal``). The "column" half of the
    Sparse Transformer's strided pattern."""
    _check_positive("stride", stride)
    i, j = _grid(seq_len, device)
    mask = (i - j) % stride == 0
    return mask & (j <= i) if causal else mask


def sparse_transformer_mask(
    seq_len: int,
    stride: int | None = None,
    causal: bool = True,
    device: torch.device | str | None = None,
) -> Tensor:
    """The Sparse Transformer's strided pattern, both halves in one mask: the previous
    ``stride`` positions (a window of ``stride - 1`` plus the query itself) and every
    ``stride``-th position. ``stride`` defaults to ``ceil(sqrt(seq_len))``, which makes a
    row about ``2 sqrt(n)`` keys long."""
    stride = math.ceil(math.sqrt(seq_len)) if stride is None else stride
    _check_positive("stride", stride)
    local = sliding_window_mask(seq_len, stride - 1, causal, device)
    return local | strided_mask(seq_len, stride, causal, device)


def fixed_mask(
    seq_len: int,
    block: int,
    summary: int = 1,
    causal: bool = True,
    device: torch.device | str | None = None,
) -> Tensor:
    """The Sparse Transformer's fixed pattern: a query sees every key of its own block of
    ``block`` positions and the last ``summary`` positions of every block (the "summary"
    cells, which carry information between blocks), keys after the query excluded if
    ``causal``."""
    _check_positive("block", block)
    _check_positive("summary", summary)
    if summary > block:
        raise ValueError(f"summary ({summary}) cannot exceed the block size ({block})")
    i, j = _grid(seq_len, device)
    same_block = i // block == j // block
    summary_cell = j % block >= block - summary
    mask = same_block | summary_cell
    return mask & (j <= i) if causal else mask


def num_allowed_pairs(mask: Tensor) -> int:
    """How many (query, key) pairs a ``(..., q_len, k_len)`` boolean mask allows: the number
    of scores a kernel that skips masked pairs computes."""
    if mask.dtype != torch.bool:
        raise ValueError(f"expected a boolean mask, got dtype {mask.dtype}")
    return int(mask.sum())


def sliding_window_attention(
    query: Tensor, key: Tensor, value: Tensor, window: int, causal: bool = True
) -> tuple[Tensor, Tensor]:
    """Attention restricted to :func:`sliding_window_mask`, computed band by band.

    Each query gathers only its ``window + 1`` (causal) or ``2 * window + 1`` neighbouring keys,
    so the scores take ``O(n * window)`` memory instead of ``O(n^2)``. Positions outside the
    sequence are padding and are masked out.

    Args:
        query, key, value: ``(..., seq_len, d)``, the same length (self-attention).
    Returns:
        ``output`` ``(..., seq_len, d_v)`` and the banded weights ``(..., seq_len, band)``,
        where ``band[i, b]`` is the weight of key ``i - window + b``.
    """
    if not isinstance(window, int) or window < 0:
        raise ValueError(f"window must be a non-negative integer, got {window!r}")
    if query.shape[:-1] != key.shape[:-1] or key.shape[:-1] != value.shape[:-1]:
        raise ValueError(
            "query, key and value must share (..., seq_len): got "
            f"{tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}"
        )
    seq_len, d_k = query.shape[-2], query.shape[-1]
    after = 0 if causal else window
    band = window + 1 + after
    # Pad the sequence axis so every query has a full band, then take the band of query i as
    # the slice i .. i + band - 1 of the padded keys: unfold does it without copying.
    k_pad = F.pad(key, (0, 0, window, after))  # (..., window + seq_len + after, d_k)
    v_pad = F.pad(value, (0, 0, window, after))
    k_band = k_pad.unfold(-2, band, 1).transpose(-1, -2)  # (..., seq_len, band, d_k)
    v_band = v_pad.unfold(-2, band, 1).transpose(-1, -2)  # (..., seq_len, band, d_v)
    scores = (query[..., None, :] @ k_band.transpose(-1, -2)).squeeze(-2)  # (..., seq_len, band)
    scores = scores / math.sqrt(d_k)
    key_pos = torch.arange(seq_len, device=query.device)[:, None] - window + torch.arange(
        band, device=query.device
    )  # (seq_len, band): the key position of each band slot
    inside = (key_pos >= 0) & (key_pos < seq_len)  # padding slots are not keys
    scores = scores.masked_fill(~inside, float("-inf"))
    weights = torch.softmax(scores, dim=-1)  # (..., seq_len, band); the query itself is inside
    output = (weights[..., None, :] @ v_band).squeeze(-2)  # (..., seq_len, d_v)
    return output, weights
