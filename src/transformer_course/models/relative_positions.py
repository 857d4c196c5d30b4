"""Relative position schemes: T5's bucketed bias, ALiBi and rotary embeddings (chapter 15).

Chapter 4 added a position vector to each token, so attention scores mix content with
*absolute* positions. The three schemes here put the position into attention itself, as a
function of the *offset* between a query and a key:

- T5 adds a learned scalar per head to every score, looked up by the bucket of the offset
  (exact for small offsets, logarithmic beyond, one shared bucket past ``max_distance``).
- ALiBi adds a fixed penalty ``-slope * |offset|``, with a different slope per head.
- RoPE rotates each query and key by an angle proportional to its position, so that their
  dot product depends on the offset only.

Query ``i`` and key ``j`` follow the course's decoding convention (``make_causal_mask`` with
``key_len``): with ``q_len < k_len`` the queries are the *last* ``q_len`` positions, so the
biases of a step of cached decoding are the last rows of the full ones.

The schemes plug into the one attention of the course,
:class:`~transformer_course.models.multihead.MultiHeadAttention` (x-transformers style): a bias
module is called once per forward pass with ``(q_len, k_len)`` and its ``(heads, q_len, k_len)``
output goes to every layer's ``forward(..., bias=...)``; a :class:`RotaryEmbedding` is given to
the self-attention's constructor (``rotary=``). :data:`POSITION_SCHEMES` names them together
with chapter 4's absolute encodings, and :func:`token_positions` and :func:`attention_positions`
build, from a name, what a model needs: ``GPTConfig(positional=...)`` and
``TransformerConfig(positional=...)`` use them.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .embeddings import (
    LearnedPositionalEmbedding,
    SinusoidalPositionalEncoding,
    sinusoidal_encoding,
)

__all__ = [
    "relative_offsets",
    "relative_position_bucket",
    "T5RelativePositionBias",
    "alibi_slopes",
    "alibi_bias",
    "rotary_angles",
    "apply_rotary",
    "RotaryEmbedding",
    "ALiBiBias",
    "ExtendableSinusoidalEncoding",
    "NoPositionalEncoding",
    "POSITION_SCHEMES",
    "check_scheme",
    "token_positions",
    "attention_positions",
]

POSITION_SCHEMES = ("none", "sinusoidal", "learned", "rope", "alibi", "t5")


def _check_lengths(q_len: int, k_len: int) -> None:
    if q_len < 1 or k_len < q_len:
        raise ValueError(f"need 1 <= q_len <= k_len, got q_len={q_len}, k_len={k_len}")


def relative_offsets(q_len: int, k_len: int, device: torch.device | str | None = None) -> Tensor:
    """``(q_len, k_len)`` integer matrix of ``key position - query position``.

    Negative entries are keys in the past, positive ones keys in the future. The queries are
    the last ``q_len`` of the ``k_len`` positions.
    """
    _check_lengths(q_len, k_len)
    query_pos = torch.arange(k_len - q_len, k_len, device=device)  # (q_len,)
    key_pos = torch.arange(k_len, device=device)  # (k_len,)
    return key_pos[None, :] - query_pos[:, None]  # (q_len, k_len)


# --------------------------------------------------------------------------------------------
# T5: a learned scalar per head and offset bucket
# --------------------------------------------------------------------------------------------


def relative_position_bucket(
    offset: Tensor, bidirectional: bool = True, num_buckets: int = 32, max_distance: int = 128
) -> Tensor:
    """Map offsets (key - query) to bucket ids in ``0 .. num_buckets - 1``, as T5 does.

    Small distances get a bucket each; larger ones share logarithmically wider buckets, and
    every distance from ``max_distance`` on falls into the last bucket (which starts a little
    before ``max_distance``, the logarithm being rounded down), so a model trained on
    sequences of ``max_distance`` tokens has already seen the bucket of any longer distance.
    Bidirectional models spend half the buckets on keys after the query; a causal model sends
    every future key to bucket 0 (the causal mask hides those keys anyway).

    Args:
        offset: integer tensor of any shape, key position minus query position.
    Returns:
        int64 tensor of the same shape.
    """
    if offset.is_floating_point() or offset.dtype == torch.bool:
        raise ValueError(f"offset must be an integer tensor, got dtype {offset.dtype}")
    if bidirectional:
        num_buckets //= 2  # half for keys before the query, half for keys after it
    if num_buckets < 2:
        raise ValueError(f"need at least 2 buckets per direction, got {num_buckets}")
    exact = num_buckets // 2  # distances 0 .. exact-1 get one bucket each
    if max_distance <= exact:
        raise ValueError(f"max_distance must exceed {exact} exact distances, got {max_distance}")
    offset = offset.long()
    if bidirectional:
        bucket = (offset > 0).long() * num_buckets  # keys after the query: upper half
        distance = offset.abs()
    else:
        bucket = torch.zeros_like(offset)
        distance = (-offset).clamp(min=0)  # how far back the key is; future keys -> 0
    # Logarithmic buckets: distance `exact` maps to bucket `exact`, `max_distance` to the end.
    log_ratio = torch.log(distance.clamp(min=exact).float() / exact)
    log_ratio = log_ratio / math.log(max_distance / exact)  # 0 at `exact`, 1 at `max_distance`
    far = exact + (log_ratio * (num_buckets - exact)).long()
    far = far.clamp(max=num_buckets - 1)
    return bucket + torch.where(distance < exact, distance, far)


class T5RelativePositionBias(nn.Module):
    """T5's relative position bias: ``bias[h, i, j] = table[bucket(j - i), h]``.

    One learned scalar per (bucket, head). T5 computes it once and adds it to the scores of
    every layer's self-attention; no position is added to the token vectors.

    Args:
        num_heads: heads of the attention it feeds.
        num_buckets: total buckets (T5: 32).
        max_distance: distance from which all offsets share the last bucket (T5: 128).
        bidirectional: True for an encoder, False for a causal decoder.
    """

    def __init__(
        self,
        num_heads: int,
        num_buckets: int = 32,
        max_distance: int = 128,
        bidirectional: bool = True,
    ):
        super().__init__()
        self.num_heads = num_heads
        self.num_buckets = num_buckets
        self.max_distance = max_distance
        self.bidirectional = bidirectional
        relative_position_bucket(torch.zeros(1, dtype=torch.long), bidirectional, num_buckets,
                                 max_distance)  # validates the arguments now, not at run time
        self.table = nn.Embedding(num_buckets, num_heads)
        nn.init.zeros_(self.table.weight)  # start with no preference; training shapes it

    def forward(self, q_len: int, k_len: int | None = None) -> Tensor:
        """Bias ``(heads, q_len, k_len)`` to add to the scores ``(batch, heads, q_len, k_len)``."""
        k_len = q_len if k_len is None else k_len
        offsets = relative_offsets(q_len, k_len, self.table.weight.device)  # (q_len, k_len)
        buckets = relative_position_bucket(
            offsets, self.bidirectional, self.num_buckets, self.max_distance
        )  # (q_len, k_len)
        return self.table(buckets).permute(2, 0, 1)  # (q_len, k_len, heads) -> (heads, q, k)


# --------------------------------------------------------------------------------------------
# ALiBi: fixed linear penalties, one slope per head
# --------------------------------------------------------------------------------------------


def alibi_slopes(num_heads: int) -> Tensor:
    """The head slopes of ALiBi, ``(num_heads,)``.

    For ``n`` heads, a power of two, the slopes form the geometric sequence
    ``2^(-8/n), 2^(-16/n), ..., 2^(-8)``. Otherwise the paper takes the slopes of the closest
    smaller power of two, ``m``, and fills the remaining ``n - m`` heads with every other slope
    of the sequence for ``2m`` heads.
    """
    if num_heads < 1:
        raise ValueError(f"num_heads must be positive, got {num_heads}")

    def geometric(n: int) -> list[float]:
        first = 2.0 ** (-8.0 / n)
        return [first ** (i + 1) for i in range(n)]

    power = 2 ** math.floor(math.log2(num_heads))
    slopes = geometric(power)
    if power < num_heads:
        slopes += geometric(2 * power)[0::2][: num_heads - power]
    return torch.tensor(slopes)


def alibi_bias(
    num_heads: int,
    q_len: int,
    k_len: int | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """ALiBi's bias ``-slope_h * |j - i|``, ``(heads, q_len, k_len)``.

    Under a causal mask (the paper's setting) only keys ``j <= i`` count, where this is
    ``-slope_h * (i - j)``; the symmetric form is the usual choice for an encoder.
    """
    k_len = q_len if k_len is None else k_len
    distance = relative_offsets(q_len, k_len, device).abs().float()  # (q_len, k_len)
    slopes = alibi_slopes(num_heads).to(device)  # (heads,)
    return -slopes[:, None, None] * distance  # (heads, q_len, k_len)


# --------------------------------------------------------------------------------------------
# RoPE: rotate queries and keys by their positions
# --------------------------------------------------------------------------------------------


def rotary_angles(
    head_dim: int,
    seq_len: int,
    start: int = 0,
    base: float = 10000.0,
    device: torch.device | str | None = None,
) -> Tensor:
    """Angles ``p * theta_i`` for positions ``start .. start + seq_len - 1``.

    ``theta_i = base^(-2i / head_dim)`` for the ``head_dim / 2`` pairs of dimensions, the
    frequencies of the sinusoidal encoding of chapter 4. Returns ``(seq_len, head_dim / 2)``.
    """
    if head_dim < 2 or head_dim % 2:
        raise ValueError(f"RoPE rotates pairs of dimensions: head_dim must be even, got {head_dim}")
    if seq_len < 1 or start < 0:
        raise ValueError(f"need seq_len >= 1 and start >= 0, got {seq_len}, {start}")
    theta = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim)
    positions = torch.arange(start, start + seq_len, dtype=torch.float32, device=device)
    return positions[:, None] * theta[None, :]  # (seq_len, head_dim / 2)


def apply_rotary(x: Tensor, angles: Tensor) -> Tensor:
    """Rotate each pair of dimensions ``(x[..., 2i], x[..., 2i+1])`` of position ``p`` by the
    angle ``angles[p, i]``.

    Args:
        x: ``(..., seq_len, head_dim)``, e.g. queries ``(batch, heads, seq_len, d_k)``.
        angles: ``(seq_len, head_dim / 2)`` from :func:`rotary_angles`.
    Returns:
        A tensor of the shape of ``x``. Rotations preserve lengths, so ``|x|`` is unchanged.
    """
    if x.dim() < 2 or x.shape[-1] % 2:
        raise ValueError(f"x must be (..., seq_len, even head_dim), got {tuple(x.shape)}")
    if angles.shape != (x.shape[-2], x.shape[-1] // 2):
        raise ValueError(
            f"angles of shape {tuple(angles.shape)} do not fit x of shape {tuple(x.shape)}: "
            f"expected (seq_len, head_dim / 2) = {(x.shape[-2], x.shape[-1] // 2)}"
        )
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)  # (seq_len, head_dim / 2)
    even, odd = x[..., 0::2], x[..., 1::2]  # (..., seq_len, head_dim / 2) each
    rotated = torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1)
    return rotated.flatten(-2)  # (..., seq_len, head_dim / 2, 2) -> (..., seq_len, head_dim)


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (RoFormer): ``forward(x, start)`` rotates queries or keys.

    Nothing is learned. Applied to both queries and keys before the dot product, it makes
    ``score(i, j)`` a function of the content and of ``j - i`` only.
    """

    def __init__(self, head_dim: int, base: float = 10000.0):
        super().__init__()
        rotary_angles(head_dim, 1, base=base)  # validates head_dim
        self.head_dim = head_dim
        self.base = base

    def forward(self, x: Tensor, start: int = 0) -> Tensor:
        """``x``: ``(..., seq_len, head_dim)`` at positions ``start ..``; same shape out."""
        angles = rotary_angles(self.head_dim, x.shape[-2], start, self.base, x.device)
        return apply_rotary(x, angles)


# --------------------------------------------------------------------------------------------
# Position schemes by name: what a model builds for each
# --------------------------------------------------------------------------------------------


class ALiBiBias(nn.Module):
    """ALiBi with the interface of :class:`T5RelativePositionBias`: ``forward(q_len, k_len)``
    returns the ``(heads, q_len, k_len)`` bias of :func:`alibi_bias`.

    Nothing is learned. The slopes are a buffer so that the bias follows the model's device
    and dtype; it is not persistent, so a checkpoint holds nothing for it.
    """

    def __init__(self, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.register_buffer("slopes", alibi_slopes(num_heads), persistent=False)  # (heads,)

    def forward(self, q_len: int, k_len: int | None = None) -> Tensor:
        """Bias ``(heads, q_len, k_len)``; with ``q_len < k_len`` the queries are the last
        positions (a step of cached decoding)."""
        k_len = q_len if k_len is None else k_len
        offsets = relative_offsets(q_len, k_len, self.slopes.device)  # (q_len, k_len)
        distance = offsets.abs().to(self.slopes.dtype)  # (q_len, k_len)
        return -self.slopes[:, None, None] * distance  # (heads, q_len, k_len)


class ExtendableSinusoidalEncoding(SinusoidalPositionalEncoding):
    """Chapter 4's sinusoidal encoding without a maximum length.

    The formula is defined at every position, so instead of raising beyond ``max_len`` this
    version recomputes a longer table (rows depend on their position only, so the rows it
    had are unchanged). GPT uses it, for it to run on inputs longer than it was trained on.
    """

    def forward(self, x: Tensor, start: int = 0) -> Tensor:
        end = start + (x.shape[1] if x.dim() == 3 else 0)
        if end > self.max_len:
            self.max_len = max(end, 2 * self.max_len)  # doubling: few regrowths while decoding
            self.table = sinusoidal_encoding(self.max_len, self.d_model).to(self.table.device)
        return super().forward(x, start)  # (batch, seq_len, d_model)


class NoPositionalEncoding(nn.Module):
    """Stands in for chapter 4's encodings when no position is added to the token vectors
    (the position enters attention, or nowhere): only the embedding dropout is applied.

    ``forward(x, start)`` has their signature, so a model calls every scheme the same way.
    """

    def __init__(self, d_model: int, dropout: float = 0.0):
        super().__init__()
        self.d_model = d_model
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, start: int = 0) -> Tensor:
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ValueError(
                f"expected input of shape (batch, seq_len, d_model={self.d_model}), "
                f"got {tuple(x.shape)}"
            )
        if start < 0:
            raise ValueError(f"start must be >= 0, got {start}")
        return self.dropout(x)  # (batch, seq_len, d_model)


def check_scheme(scheme: str) -> None:
    """Raise ``ValueError`` unless ``scheme`` is one of :data:`POSITION_SCHEMES`."""
    if scheme not in POSITION_SCHEMES:
        raise ValueError(f"positional must be one of {POSITION_SCHEMES}, got {scheme!r}")


def token_positions(
    scheme: str, d_model: int, max_len: int, dropout: float = 0.0, extendable: bool = False
) -> nn.Module:
    """The module that adds positions to the token vectors, then applies dropout.

    ``"learned"``: a table of ``max_len`` rows (raises beyond them); ``"sinusoidal"``: the fixed
    table, limited to ``max_len`` positions unless ``extendable``; every other scheme adds
    nothing (:class:`NoPositionalEncoding`). All are called as ``module(x, start=...)``.
    """
    check_scheme(scheme)
    if scheme == "learned":
        return LearnedPositionalEmbedding(d_model, max_len, dropout)
    if scheme == "sinusoidal":
        kind = ExtendableSinusoidalEncoding if extendable else SinusoidalPositionalEncoding
        return kind(d_model, max_len, dropout)
    return NoPositionalEncoding(d_model, dropout)


def attention_positions(
    scheme: str,
    num_heads: int,
    head_dim: int,
    bidirectional: bool,
    t5_buckets: int = 32,
    t5_max_distance: int = 128,
) -> tuple[nn.Module | None, RotaryEmbedding | None]:
    """What the self-attention of a model with ``scheme`` needs: ``(bias, rotary)``.

    ``bias`` (``"t5"``, ``"alibi"``) is called once per forward pass as ``bias(q_len, k_len)``
    and its ``(heads, q_len, k_len)`` output is shared by all layers (as T5 shares its table);
    ``rotary`` (``"rope"``) is given to each self-attention's constructor. At most one of the
    two is not None; both are None for the absolute schemes and ``"none"``.

    Args:
        bidirectional: T5's buckets for keys on both sides (an encoder) or for the past only
            (a causal decoder). ALiBi's ``-slope * |offset|`` serves both.
    """
    check_scheme(scheme)
    if scheme == "t5":
        return T5RelativePositionBias(num_heads, t5_buckets, t5_max_distance, bidirectional), None
    if scheme == "alibi":
        return ALiBiBias(num_heads), None
    if scheme == "rope":
        return None, RotaryEmbedding(head_dim)
    return None, None
