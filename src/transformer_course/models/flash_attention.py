"""Blockwise attention with an online softmax: the idea behind FlashAttention (chapter 16).

Plain attention (``attention.scaled_dot_product_attention``) builds the whole
``(q_len, k_len)`` matrix of scores, then the whole matrix of weights: memory that grows with
the square of the sequence length. The softmax seems to need a whole row at once (its maximum
and its sum), but it does not: both can be accumulated one block of keys at a time.

For each query we keep three running quantities over the keys seen so far:

* ``m``, the largest score (for numerical stability, as in any softmax);
* ``l``, the sum of ``exp(score - m)``;
* ``acc``, the sum of ``exp(score - m) * value``.

When a new block raises the maximum from ``m`` to ``m'``, the old sums were computed relative
to the wrong maximum; multiplying them by ``exp(m - m')`` fixes that exactly. After the last
block, ``acc / l`` is the attention output, equal to the plain computation up to rounding. The
extra memory is one ``(q_len, block_size)`` tile of scores plus the running quantities:
linear in the length, not quadratic.

This is a readable reference in plain PyTorch, with a Python loop over the key blocks. The
real FlashAttention kernels (Dao et al., 2022) also tile the queries, keep every tile in the
GPU's on-chip memory and fuse all the steps into one kernel; the loop here shows the
mathematics, not the speed. Autograd works through the loop, but it keeps every block's
tensors for the backward pass, so the memory saving holds for inference only (FlashAttention
recomputes the blocks in its backward pass instead).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .attention import _check_qkv, check_mask

__all__ = ["blockwise_attention", "online_softmax"]


def _check_block_size(block_size: int) -> None:
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be a positive integer, got {block_size!r}")


def online_softmax(scores: Tensor, block_size: int) -> Tensor:
    """Softmax over the last axis computed block by block, as :func:`blockwise_attention` does.

    Two passes over ``scores`` (``(..., n)``): the first accumulates the running maximum ``m``
    and the rescaled sum ``l`` block by block, the second normalises. It returns what
    ``torch.softmax(scores, dim=-1)`` returns; its point is the rescaling rule
    ``l <- l * exp(m - m') + sum(exp(block - m'))``.
    """
    _check_block_size(block_size)
    if scores.dim() < 1 or scores.shape[-1] == 0:
        raise ValueError(f"scores must have shape (..., n) with n >= 1, got {tuple(scores.shape)}")
    if not scores.is_floating_point():
        raise ValueError(f"scores must be a floating tensor, got dtype {scores.dtype}")
    n = scores.shape[-1]
    m = torch.full(scores.shape[:-1], float("-inf"), dtype=scores.dtype, device=scores.device)
    l = torch.zeros_like(m)  # noqa: E741  (the running sum, called l in the papers)
    for start in range(0, n, block_size):
        block = scores[..., start : start + block_size]  # (..., block)
        m_new = torch.maximum(m, block.amax(dim=-1))  # (...,)
        l = l * torch.exp(m - m_new) + torch.exp(block - m_new[..., None]).sum(dim=-1)  # noqa: E741
        m = m_new
    return torch.exp(scores - m[..., None]) / l[..., None]  # (..., n)


def blockwise_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    mask: Tensor | None = None,
    causal: bool = False,
    block_size: int = 128,
    scale: float | None = None,
) -> Tensor:
    """softmax(Q K^T / sqrt(d_k)) V without ever holding the ``(q_len, k_len)`` matrix.

    Args:
        query: ``(..., q_len, d_k)``, usually ``(batch, heads, q_len, d_k)``.
        key: ``(..., k_len, d_k)``.
        value: ``(..., k_len, d_v)``.
        mask: boolean, broadcastable to ``(..., q_len, k_len)``; True = may attend. A padding
            mask ``(batch, 1, 1, k_len)`` costs nothing extra; a full ``(q_len, k_len)`` mask
            would itself be quadratic, which is why causality has its own switch.
        causal: query ``i`` attends to keys ``<= i + (k_len - q_len)`` (the queries are the
            last ``q_len`` positions, as in
            :func:`~transformer_course.models.attention.make_causal_mask` with ``key_len``); the
            mask of each block is made from positions on the fly.
            Combined with ``mask`` by a logical and.
        block_size: keys per block; the last block is shorter when it does not divide ``k_len``.
        scale: multiplier of the scores; defaults to ``1 / sqrt(d_k)``.

    Returns:
        ``(..., q_len, d_v)``, equal to :func:`~transformer_course.models.attention.
        scaled_dot_product_attention`'s output up to rounding; a query with no allowed key gets
        an all-zero output, as there.
    """
    _check_qkv(query, key, value)
    _check_block_size(block_size)
    q_len, k_len = query.shape[-2], key.shape[-2]
    if causal and k_len < q_len:
        raise ValueError(
            f"causal attention needs at least as many keys as queries, got q_len={q_len}, "
            f"k_len={k_len}"
        )
    scores_shape = (*query.shape[:-1], k_len)  # (..., q_len, k_len), never allocated
    if mask is not None:
        check_mask(mask, scores_shape)
        # A broadcast view (stride 0 along the broadcast axes): no memory is allocated.
        mask = mask.expand(scores_shape)
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    query = query * scale  # scaling the queries once instead of every block of scores

    # Running statistics per query: maximum m, sum l and the unnormalised output acc.
    m = torch.full(query.shape[:-1], float("-inf"), dtype=query.dtype, device=query.device)
    l = torch.zeros_like(m)  # noqa: E741  (..., q_len)
    acc = torch.zeros(*query.shape[:-1], value.shape[-1], dtype=query.dtype,
                      device=query.device)  # (..., q_len, d_v)
    query_positions = torch.arange(k_len - q_len, k_len, device=query.device)  # (q_len,)

    for start in range(0, k_len, block_size):
        end = min(start + block_size, k_len)
        k_block = key[..., start:end, :]  # (..., block, d_k)
        v_block = value[..., start:end, :]  # (..., block, d_v)
        scores = query @ k_block.transpose(-2, -1)  # (..., q_len, block)
        allowed = None if mask is None else mask[..., start:end]  # (..., q_len, block)
        if causal:
            key_positions = torch.arange(start, end, device=query.device)  # (block,)
            future_ok = query_positions[:, None] >= key_positions[None, :]  # (q_len, block)
            allowed = future_ok if allowed is None else allowed & future_ok
        if allowed is not None:
            scores = scores.masked_fill(~allowed, float("-inf"))

        m_new = torch.maximum(m, scores.amax(dim=-1))  # (..., q_len)
        # A row with nothing allowed so far has m_new = -inf; subtracting 0 instead keeps
        # exp(-inf - 0) = 0 rather than exp(-inf + inf) = NaN.
        m_safe = torch.where(torch.isinf(m_new), torch.zeros_like(m_new), m_new)
        p = torch.exp(scores - m_safe[..., None])  # (..., q_len, block), <= 1
        correction = torch.exp(m - m_safe)  # (..., q_len): rescales the old sums to m_new
        l = l * correction + p.sum(dim=-1)  # noqa: E741  (..., q_len)
        acc = acc * correction[..., None] + p @ v_block  # (..., q_len, d_v)
        m = m_new

    # Rows that never saw an allowed key have l = 0 and acc = 0: output zeros, not 0 / 0.
    return acc / torch.where(l > 0, l, torch.ones_like(l))[..., None]  # (..., q_len, d_v)
