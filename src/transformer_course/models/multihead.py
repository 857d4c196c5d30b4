"""Multi-head attention and its key/value cache (introduced in chapter 3; the cache in chapter 9).

Each head attends in its own ``d_k = d_model / num_heads`` dimensional subspace. The heads are
not separate modules: one ``d_model x d_model`` projection computes all of them at once, and a
reshape splits its output into heads.

It is the one attention of the course: the relative position schemes of chapter 15 plug into
it rather than into a parallel implementation. An additive bias (T5, ALiBi) is an argument of
``forward``; rotary embeddings (RoPE) are a constructor argument of a self-attention.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .attention import attend, check_bias, check_mask, uniform_attention_weights
from .relative_positions import RotaryEmbedding

__all__ = ["MultiHeadAttention", "KVCache", "PreallocatedKVCache", "use_uniform_attention"]


class KVCache:
    """Keys and values already computed for one attention module during decoding.

    For self-attention (``static=False``) each decoding step appends the new position's keys
    and values, so step t attends over positions 0..t without recomputing them. For
    cross-attention (``static=True``) the keys and values come from the encoder output and are
    computed once, on the first step, then reused.

    Shapes: ``key`` and ``value`` are ``(batch, heads, cached_len, d_k)``.
    """

    def __init__(self, static: bool = False):
        self.static = static
        self.key: Tensor | None = None
        self.value: Tensor | None = None

    def __len__(self) -> int:
        return 0 if self.key is None else self.key.shape[-2]

    @property
    def is_filled(self) -> bool:
        return self.key is not None

    def update(self, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor]:
        """Store (static) or append (dynamic) new keys and values; return all of them."""
        if self.key is None or self.static:
            self.key, self.value = key, value
        else:
            self.key = torch.cat([self.key, key], dim=-2)  # (batch, heads, cached_len + new, d_k)
            self.value = torch.cat([self.value, value], dim=-2)
        return self.key, self.value

    def reorder(self, index: Tensor) -> None:
        """Keep the batch rows in ``index`` (beam search reorders hypotheses every step)."""
        if self.key is not None:
            self.key = self.key.index_select(0, index)
            self.value = self.value.index_select(0, index)


class PreallocatedKVCache(KVCache):
    """A self-attention cache that writes into buffers allocated once (chapter 17).

    :class:`KVCache` grows by ``torch.cat``: step t allocates new ``(batch, heads, t, d_k)``
    tensors and copies the t - 1 cached positions into them, so decoding T tokens copies
    O(T^2) numbers and asks the allocator for 2 new tensors per layer and step. This cache
    allocates ``(batch, heads, max_len, d_k)`` buffers on the first update, writes each new
    position in place at index ``length`` and returns views of the filled part: nothing
    already cached is copied again. Same interface and same results as :class:`KVCache`.

    ``key`` and ``value`` are the filled views ``(batch, heads, length, d_k)``; appending
    beyond ``max_len`` positions raises ``ValueError``.
    """

    def __init__(self, max_len: int):
        if max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {max_len}")
        super().__init__(static=False)
        self.max_len = max_len
        self.length = 0  # positions filled so far
        self._key_buffer: Tensor | None = None  # (batch, heads, max_len, d_k)
        self._value_buffer: Tensor | None = None

    def __len__(self) -> int:
        return self.length

    @property
    def key(self) -> Tensor | None:
        return None if self._key_buffer is None else self._key_buffer[:, :, : self.length]

    @key.setter
    def key(self, value: Tensor | None) -> None:  # KVCache.__init__ assigns None
        if value is not None:
            raise ValueError("write to a PreallocatedKVCache with update(), not by assignment")

    @property
    def value(self) -> Tensor | None:
        return None if self._value_buffer is None else self._value_buffer[:, :, : self.length]

    @value.setter
    def value(self, value: Tensor | None) -> None:
        if value is not None:
            raise ValueError("write to a PreallocatedKVCache with update(), not by assignment")

    def update(self, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor]:
        """Write ``key``/``value`` ``(batch, heads, new, d_k)`` at the next free positions;
        return views of every filled position, ``(batch, heads, length, d_k)``."""
        if key.dim() != 4 or key.shape != value.shape:
            raise ValueError(
                f"key and value must both be (batch, heads, new, d_k), got {tuple(key.shape)} "
                f"and {tuple(value.shape)}"
            )
        batch, heads, new, d_k = key.shape
        if self._key_buffer is None:
            shape = (batch, heads, self.max_len, d_k)
            self._key_buffer = key.new_empty(shape)
            self._value_buffer = value.new_empty(shape)
        elif (batch, heads, d_k) != (self._key_buffer.shape[0], self._key_buffer.shape[1],
                                     self._key_buffer.shape[3]):
            raise ValueError(
                f"new keys {tuple(key.shape)} do not match the cache's "
                f"(batch, heads, _, d_k) = {tuple(self._key_buffer.shape)}"
            )
        end = self.length + new
        if end > self.max_len:
            raise ValueError(
                f"the cache holds max_len={self.max_len} positions; {self.length} are filled "
                f"and {new} more were given"
            )
        self._key_buffer[:, :, self.length : end] = key  # in place: no copy of the old ones
        self._value_buffer[:, :, self.length : end] = value
        self.length = end
        return self.key, self.value  # (batch, heads, length, d_k) views

    def reorder(self, index: Tensor) -> None:
        """Keep the batch rows in ``index`` (beam search): only the filled part is gathered."""
        if self._key_buffer is None:
            return
        filled = slice(0, self.length)
        if index.numel() == self._key_buffer.shape[0]:
            self._key_buffer[:, :, filled] = self._key_buffer[:, :, filled].index_select(0, index)
            self._value_buffer[:, :, filled] = self._value_buffer[:, :, filled].index_select(
                0, index)
        else:  # a different batch size: new buffers of the new size
            self._key_buffer = self._key_buffer.index_select(0, index)
            self._value_buffer = self._value_buffer.index_select(0, index)


class MultiHeadAttention(nn.Module):
    """Multi-head attention with the projections W_Q, W_K, W_V and W_O.

    Args:
        d_model: model width; must be divisible by ``num_heads``.
        num_heads: number of heads, each of width ``d_k = d_model // num_heads``.
        dropout: dropout on the attention weights during training.
        bias: whether the four projections have biases.
        uniform: replace the softmax weights by uniform ones over the allowed keys (see
            :func:`~transformer_course.models.attention.uniform_attention_weights`): the values are
            still projected and mixed, but no query can select a key. An ablation, used by
            the TinyTalks capstone to show that a task needs attention; switch a whole model
            with :func:`use_uniform_attention`. It ignores ``rotary`` and ``bias``, which only
            change scores it never computes.
        rotary: a :class:`~transformer_course.models.relative_positions.RotaryEmbedding` of
            width ``d_k`` (chapter 15): queries and keys are rotated by their positions before
            the scores, so that these depend on the offset between positions. Self-attention
            only: queries and keys must be positions of one sequence. It has no parameters,
            so the state dict is the same with or without it.

    After each call, ``attention_weights`` holds the weights just computed (detached),
    ``(batch, heads, q_len, k_len)``, so a trained model's maps can be read layer by layer.
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        uniform: bool = False,
        rotary: RotaryEmbedding | None = None,
    ):
        super().__init__()
        if num_heads < 1 or d_model % num_heads != 0:
            raise ValueError(
                f"d_model ({d_model}) must be divisible by num_heads ({num_heads}): each head "
                "gets d_model // num_heads dimensions"
            )
        self.d_model = d_model
        self.num_heads = num_heads
        self.d_k = d_model // num_heads
        self.dropout = dropout
        self.uniform = uniform
        self.W_Q = nn.Linear(d_model, d_model, bias=bias)
        self.W_K = nn.Linear(d_model, d_model, bias=bias)
        self.W_V = nn.Linear(d_model, d_model, bias=bias)
        self.W_O = nn.Linear(d_model, d_model, bias=bias)
        if rotary is not None and rotary.head_dim != self.d_k:
            raise ValueError(
                f"rotary rotates vectors of width {rotary.head_dim}, but each head has "
                f"d_k = {self.d_k}"
            )
        self.rotary = rotary  # None: positions come from elsewhere (token vectors or a bias)
        self.attention_weights: Tensor | None = None

    def split_heads(self, x: Tensor) -> Tensor:
        """``(batch, seq_len, d_model)`` -> ``(batch, heads, seq_len, d_k)``."""
        batch, seq_len, _ = x.shape
        x = x.view(batch, seq_len, self.num_heads, self.d_k)  # (batch, seq_len, heads, d_k)
        return x.transpose(1, 2)  # (batch, heads, seq_len, d_k)

    def merge_heads(self, x: Tensor) -> Tensor:
        """``(batch, heads, seq_len, d_k)`` -> ``(batch, seq_len, d_model)``."""
        batch, _, seq_len, _ = x.shape
        x = x.transpose(1, 2)  # (batch, seq_len, heads, d_k)
        return x.reshape(batch, seq_len, self.d_model)  # (batch, seq_len, d_model)

    def _check_inputs(self, query: Tensor, key: Tensor, value: Tensor) -> None:
        for name, t in (("query", query), ("key", key), ("value", value)):
            if t.dim() != 3 or t.shape[-1] != self.d_model:
                raise ValueError(
                    f"{name} must have shape (batch, seq_len, d_model={self.d_model}), "
                    f"got {tuple(t.shape)}"
                )
        if not (query.shape[0] == key.shape[0] == value.shape[0]):
            raise ValueError(
                f"query, key and value must have the same batch size: query "
                f"{tuple(query.shape)}, key {tuple(key.shape)}, value {tuple(value.shape)}"
            )
        if key.shape[1] != value.shape[1]:
            raise ValueError(
                f"key and value must have the same length: key {tuple(key.shape)}, "
                f"value {tuple(value.shape)}"
            )

    def forward(
        self,
        query: Tensor,
        key: Tensor | None = None,
        value: Tensor | None = None,
        mask: Tensor | None = None,
        cache: KVCache | None = None,
        bias: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Attend from ``query`` to ``key``/``value`` (self-attention when they are omitted).

        Args:
            query: ``(batch, q_len, d_model)``.
            key, value: ``(batch, k_len, d_model)``; default to ``query``.
            mask: boolean, broadcastable to ``(batch, heads, q_len, k_len)``; True = may attend.
            cache: during incremental decoding, the keys/values of earlier positions
                (self-attention) or of the encoder output (cross-attention, ``static``).
                A filled static cache is used as is and ``key``/``value`` are ignored.
            bias: floating, broadcastable to ``(batch, heads, q_len, k_len)``, added to the
                scaled scores before the softmax: a relative position bias of chapter 15,
                usually ``(heads, q_len, k_len)``. ``k_len`` counts the cached keys too.

        With ``rotary``, the new queries and keys sit at positions ``len(cache) ..``: cached
        keys were stored already rotated, so a step of cached decoding rotates only the new
        position, by its absolute position, and gives the outputs of a full forward pass.

        Returns:
            ``output`` ``(batch, q_len, d_model)`` and ``weights``
            ``(batch, heads, q_len, k_len)``.
        """
        key = query if key is None else key
        value = key if value is None else value
        self._check_inputs(query, key, value)
        if self.rotary is not None and (key is not query or (cache is not None and cache.static)):
            # Rotating by position only makes sense when query i and key i are one position.
            raise ValueError("rotary embeddings apply to self-attention only (key is query)")

        q = self.split_heads(self.W_Q(query))  # (batch, heads, q_len, d_k)
        if cache is not None and cache.static and cache.is_filled:
            k, v = cache.key, cache.value  # encoder keys/values from the first step
        else:
            k = self.split_heads(self.W_K(key))  # (batch, heads, k_len, d_k)
            v = self.split_heads(self.W_V(value))  # (batch, heads, k_len, d_k)
            if self.rotary is not None:
                # The new positions follow the cached ones; values are not rotated (what a head
                # reads carries no position, only where it looks does).
                start = 0 if cache is None else len(cache)
                q = self.rotary(q, start)  # (batch, heads, q_len, d_k)
                k = self.rotary(k, start)  # (batch, heads, k_len, d_k)
            if cache is not None:
                k, v = cache.update(k, v)  # (batch, heads, cached_len + k_len, d_k)

        scores_shape = (*q.shape[:-1], k.shape[-2])  # (batch, heads, q_len, k_len)
        if mask is not None:
            check_mask(mask, scores_shape)
        if bias is not None:
            check_bias(bias, scores_shape, q.dtype)
        dropout_p = self.dropout if self.training else 0.0
        if self.uniform:
            # The ablation: the scores q k^T are never computed, so W_Q and W_K get no gradient.
            weights = uniform_attention_weights((*q.shape[:-1], k.shape[-2]), mask, q.dtype,
                                                q.device)  # (batch, heads, q_len, k_len)
            heads = torch.matmul(weights, v)  # (batch, heads, q_len, d_k)
        else:
            # attend, not scaled_dot_product_attention: the inputs were checked above, once.
            heads, weights = attend(q, k, v, mask, dropout_p, bias=bias)
        # heads: (batch, heads, q_len, d_k); weights: (batch, heads, q_len, k_len)
        self.attention_weights = weights.detach()
        output = self.W_O(self.merge_heads(heads))  # (batch, q_len, d_model)
        return output, weights


def use_uniform_attention(model: nn.Module, enabled: bool = True) -> int:
    """Switch every :class:`MultiHeadAttention` inside ``model`` to uniform weights (or back).

    Returns how many attention modules were switched, so a caller can check that the model
    has any. The weights of the model are untouched: switching back restores the original.
    """
    modules = [m for m in model.modules() if isinstance(m, MultiHeadAttention)]
    for module in modules:
        module.uniform = enabled
    return len(modules)
