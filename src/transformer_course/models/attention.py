"""Scaled dot-product attention and attention masks (introduced in chapter 2).

Mask convention, used everywhere in the course: a boolean tensor in which ``True`` means
"this query may attend to this key". ``torch.nn.functional.scaled_dot_product_attention`` uses
the same convention; ``nn.MultiheadAttention`` and ``nn.Transformer`` use the opposite one
(``True`` = blocked), so convert with :func:`to_pytorch_mask` and :func:`from_pytorch_mask`.

A fully masked row (a query that may attend to nothing, e.g. a padding query under a padding
mask on the queries) gets all-zero weights here, and therefore an all-zero output. PyTorch's
math kernel does the same since 2.5, while older releases returned NaN; zeros keep a stray
padding row from poisoning a loss with NaN.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "scaled_dot_product_attention",
    "attend",
    "uniform_attention_weights",
    "make_padding_mask",
    "make_causal_mask",
    "make_target_mask",
    "to_pytorch_mask",
    "from_pytorch_mask",
    "to_additive_mask",
    "check_mask",
    "check_bias",
]


def check_mask(mask: Tensor, scores_shape: tuple[int, ...] | torch.Size) -> None:
    """Raise ``ValueError`` unless ``mask`` is boolean and broadcasts to ``scores_shape``.

    ``scores_shape`` is ``(..., q_len, k_len)``, the shape of the attention scores.
    """
    if not isinstance(mask, Tensor):
        raise ValueError(f"mask must be a torch.Tensor, got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise ValueError(
            f"mask must be a boolean tensor (True = may attend), got dtype {mask.dtype}; "
            "convert a 0/1 mask with mask.bool(), or PyTorch's convention with from_pytorch_mask()"
        )
    _check_broadcast("mask", mask, scores_shape,
                     "padding masks are (batch, 1, 1, k_len), causal masks (q_len, k_len)")


def check_bias(bias: Tensor, scores_shape: tuple[int, ...] | torch.Size,
               dtype: torch.dtype) -> None:
    """Raise ``ValueError`` unless ``bias`` is a floating tensor of the scores' ``dtype`` that
    broadcasts to their shape ``(..., q_len, k_len)``."""
    if not isinstance(bias, Tensor) or not bias.is_floating_point():
        got = bias.dtype if isinstance(bias, Tensor) else type(bias).__name__
        raise ValueError(
            f"bias must be a floating tensor added to the scores, got {got}; a boolean tensor "
            "is a mask: pass it as mask="
        )
    if bias.dtype != dtype:
        raise ValueError(f"bias has dtype {bias.dtype}, the scores {dtype}")
    _check_broadcast("bias", bias, scores_shape, "a per-head bias is (heads, q_len, k_len)")


def _check_broadcast(name: str, tensor: Tensor, scores_shape, hint: str) -> None:
    # Broadcasting must not grow the scores: a (2, q, k) bias on (1, q, k) scores would. So
    # each of the tensor's sizes, aligned from the right, is 1 or the scores' own. (Checked
    # in Python: torch.broadcast_shapes costs more than a decoding step's attention at batch 1.)
    expected = tuple(scores_shape)
    shape = tuple(tensor.shape)
    fits = len(shape) <= len(expected) and all(
        size in (1, target) for size, target in zip(shape[::-1], expected[::-1], strict=False)
    )
    if not fits:
        raise ValueError(
            f"{name} of shape {tuple(tensor.shape)} does not broadcast to the attention scores' "
            f"shape {expected} (..., q_len, k_len); {hint}"
        )


def _check_qkv(query: Tensor, key: Tensor, value: Tensor) -> None:
    for name, t in (("query", query), ("key", key), ("value", value)):
        if t.dim() < 2:
            raise ValueError(f"{name} must have shape (..., seq_len, dim), got {tuple(t.shape)}")
    if query.shape[-1] != key.shape[-1]:
        raise ValueError(
            f"query and key must share their last dimension d_k: query {tuple(query.shape)}, "
            f"key {tuple(key.shape)}"
        )
    if key.shape[-2] != value.shape[-2]:
        raise ValueError(
            f"key and value must have the same number of positions: key {tuple(key.shape)}, "
            f"value {tuple(value.shape)} (expected (..., k_len, d_k) and (..., k_len, d_v))"
        )
    if not (query.shape[:-2] == key.shape[:-2] == value.shape[:-2]):
        raise ValueError(
            "query, key and value must have the same leading (batch, heads) dimensions: "
            f"query {tuple(query.shape)}, key {tuple(key.shape)}, value {tuple(value.shape)}"
        )
    if not (query.dtype == key.dtype == value.dtype) or not query.is_floating_point():
        raise ValueError(
            f"query, key and value must share one floating dtype, got {query.dtype}, "
            f"{key.dtype}, {value.dtype}"
        )


def scaled_dot_product_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    mask: Tensor | None = None,
    dropout_p: float = 0.0,
    scale: float | None = None,
    bias: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """softmax(Q K^T / sqrt(d_k) + bias) V, returning the output and the attention weights.

    Args:
        query: ``(..., q_len, d_k)``, usually ``(batch, heads, q_len, d_k)``.
        key: ``(..., k_len, d_k)``.
        value: ``(..., k_len, d_v)``.
        mask: boolean, broadcastable to ``(..., q_len, k_len)``; True = may attend.
        dropout_p: dropout on the attention weights (pass 0.0 at evaluation time).
        scale: multiplier of the scores; defaults to ``1 / sqrt(d_k)``.
        bias: optional floating tensor broadcastable to ``(..., q_len, k_len)``, added to the
            scaled scores before masking and softmax: the relative position biases of
            chapter 15 (T5, ALiBi), usually ``(heads, q_len, k_len)``. It is not scaled.

    Returns:
        ``output`` of shape ``(..., q_len, d_v)`` and ``weights`` of shape
        ``(..., q_len, k_len)``: each row sums to 1 (0 for a fully masked row). The weights
        are returned before dropout, which is what a heatmap should show.
    """
    _check_qkv(query, key, value)
    scores_shape = (*query.shape[:-1], key.shape[-2])  # (..., q_len, k_len)
    if bias is not None:
        check_bias(bias, scores_shape, query.dtype)
    if mask is not None:
        check_mask(mask, scores_shape)
    return attend(query, key, value, mask, dropout_p, scale, bias)


def attend(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    mask: Tensor | None = None,
    dropout_p: float = 0.0,
    scale: float | None = None,
    bias: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """:func:`scaled_dot_product_attention` without its input checks, for callers that checked
    their inputs already (:class:`~transformer_course.models.multihead.MultiHeadAttention`):
    the checks run once per call, where the tensors enter, not again in the hot path."""
    d_k = query.shape[-1]
    scale = 1.0 / math.sqrt(d_k) if scale is None else scale

    # Scaling the queries instead of the scores: the same numbers, on a smaller tensor.
    scores = torch.matmul(query * scale, key.transpose(-2, -1))  # (..., q_len, k_len)
    if bias is not None:
        scores = scores + bias  # (..., q_len, k_len); must not change the scores' shape
    fully_masked = None
    if mask is not None:
        # Add the most negative finite number where attending is not allowed. Its exponential
        # is exactly 0 after softmax; unlike masked_fill, an addition costs nothing in the
        # backward pass, and unlike -inf it cannot turn a fully masked row into NaN.
        bias = torch.zeros(mask.shape, dtype=scores.dtype, device=scores.device)
        scores = scores + bias.masked_fill_(~mask, torch.finfo(scores.dtype).min)
        fully_masked = ~mask.any(dim=-1, keepdim=True)  # rows with nothing to attend to
    weights = F.softmax(scores, dim=-1)  # (..., q_len, k_len), rows sum to 1
    if fully_masked is not None:
        # Zeros instead of a uniform row. Applied to every row rather than only when some row
        # is fully masked: asking "is any?" would make a GPU wait for the answer at each layer.
        weights = weights.masked_fill(fully_masked, 0.0)
    attended = F.dropout(weights, p=dropout_p) if dropout_p > 0.0 else weights
    output = torch.matmul(attended, value)  # (..., q_len, d_v)
    return output, weights


def uniform_attention_weights(
    scores_shape: tuple[int, ...] | torch.Size,
    mask: Tensor | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """Attention weights that ignore the content: each query spreads its attention evenly over
    the keys it may attend to (an ablation: what can a model do when attention cannot select?).

    Args:
        scores_shape: ``(..., q_len, k_len)``, the shape the attention scores would have.
        mask: boolean, broadcastable to ``scores_shape``; True = may attend.

    Returns:
        ``scores_shape`` weights: ``1 / n`` on the ``n`` allowed keys of each row, 0 on the
        masked ones, and an all-zero row where nothing is allowed (as in
        :func:`scaled_dot_product_attention`). Under a causal mask, query ``i`` gives
        ``1 / (i + 1)`` to each of keys ``0..i``: a running mean of the values.
    """
    shape = tuple(scores_shape)
    if len(shape) < 2:
        raise ValueError(f"scores_shape must be (..., q_len, k_len), got {shape}")
    if mask is None:
        return torch.full(shape, 1.0 / shape[-1], dtype=dtype, device=device)
    check_mask(mask, shape)
    allowed = mask.to(dtype=dtype, device=device).expand(shape)  # (..., q_len, k_len) 0/1
    counts = allowed.sum(dim=-1, keepdim=True)  # (..., q_len, 1) allowed keys per query
    return allowed / counts.clamp(min=1.0)  # a fully masked row stays all zeros


def make_padding_mask(tokens: Tensor, pad_id: int) -> Tensor:
    """Mask of the real (non-padding) key positions.

    Args:
        tokens: ``(batch, seq_len)`` token ids.
    Returns:
        ``(batch, 1, 1, seq_len)`` boolean, True at real tokens; it broadcasts over heads and
        query positions.
    """
    if tokens.dim() != 2:
        raise ValueError(f"tokens must have shape (batch, seq_len), got {tuple(tokens.shape)}")
    return (tokens != pad_id)[:, None, None, :]


def make_target_mask(tokens: Tensor, pad_id: int) -> Tensor:
    """The decoder's self-attention mask under teacher forcing: causal and not padding.

    Args:
        tokens: ``(batch, tgt_len)`` target token ids.
    Returns:
        ``(batch, 1, tgt_len, tgt_len)`` boolean: query ``i`` may attend to key ``j`` when
        ``j <= i`` and token ``j`` is not padding.
    """
    causal = make_causal_mask(tokens.shape[-1], tokens.device)  # (tgt_len, tgt_len)
    return make_padding_mask(tokens, pad_id) & causal  # (batch, 1, tgt_len, tgt_len)


def make_causal_mask(
    size: int, device: torch.device | str | None = None, key_len: int | None = None
) -> Tensor:
    """Boolean causal mask: position i may attend to positions <= i.

    ``make_causal_mask(size)`` is the lower-triangular ``(size, size)`` mask. With
    ``key_len``, the ``size`` queries are the *last* positions of a sequence of ``key_len``
    (decoding with a cache: earlier keys are cached, only the new queries are computed), and
    the mask is ``(size, key_len)``: the last ``size`` rows of the square mask.
    """
    key_len = size if key_len is None else key_len
    if size < 1 or key_len < size:
        raise ValueError(f"need 1 <= size <= key_len, got size={size}, key_len={key_len}")
    mask = torch.ones(size, key_len, dtype=torch.bool, device=device)
    return mask.tril(diagonal=key_len - size)


def to_pytorch_mask(mask: Tensor) -> Tensor:
    """Our convention (True = may attend) to ``nn.MultiheadAttention``'s (True = blocked).

    Works for attention masks and, after dropping the broadcast dimensions, for
    ``key_padding_mask``: ``to_pytorch_mask(make_padding_mask(x, pad)[:, 0, 0, :])``.
    """
    if mask.dtype != torch.bool:
        raise ValueError(f"expected a boolean mask, got dtype {mask.dtype}")
    return ~mask


def from_pytorch_mask(mask: Tensor) -> Tensor:
    """``nn.MultiheadAttention``'s masks (bool True = blocked, or additive float) to ours."""
    if mask.dtype == torch.bool:
        return ~mask
    if mask.is_floating_point():
        return mask == 0  # additive masks: 0 where allowed, -inf (or very negative) where not
    raise ValueError(f"expected a boolean or additive float mask, got dtype {mask.dtype}")


def to_additive_mask(mask: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """Boolean mask (True = may attend) to an additive one: 0 where allowed, -inf where not."""
    if mask.dtype != torch.bool:
        raise ValueError(f"expected a boolean mask, got dtype {mask.dtype}")
    additive = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
    return additive.masked_fill(~mask, float("-inf"))
