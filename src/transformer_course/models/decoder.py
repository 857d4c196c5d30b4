"""The Transformer decoder: masked self-attention, cross-attention, feed-forward (chapter 8).

A decoder layer without cross-attention is the block of a decoder-only model (GPT), so the
same class serves both.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import Tensor, nn

from .feedforward import PositionwiseFeedForward
from .multihead import KVCache, MultiHeadAttention, PreallocatedKVCache
from .normalization import LayerNorm, rename_state_keys
from .relative_positions import RotaryEmbedding

__all__ = ["DecoderLayer", "TransformerDecoder", "LayerCache", "DecoderCache"]

# One decoder layer's caches during generation: (self-attention, cross-attention or None).
LayerCache = tuple[KVCache, KVCache | None]


class DecoderCache:
    """What a decoder keeps between generation steps (chapter 9), made by ``new_cache()``.

    ``layers[i]`` is layer i's pair: its self-attention cache (the keys and values of every
    target position decoded so far) and its cross-attention cache (the encoder output's keys
    and values, computed on the first step; None in a decoder-only model). ``length`` is the
    number of positions decoded so far, which is also the position of the next token.
    """

    def __init__(self, layers: list[LayerCache]):
        if not layers:
            raise ValueError("a decoder without layers has nothing to cache: decode with "
                             "use_cache=False")
        self.layers = layers

    @property
    def length(self) -> int:
        return len(self.layers[0][0])  # every layer caches the same positions

    def __getitem__(self, index: int) -> LayerCache:
        return self.layers[index]

    def __iter__(self):
        return iter(self.layers)

    def reorder(self, index: Tensor) -> None:
        """Keep the batch rows in ``index`` (beam search): only the self-attention caches,
        since every beam of a sentence reads the same encoder keys and values."""
        for self_cache, _ in self.layers:
            self_cache.reorder(index)


class DecoderLayer(nn.Module):
    """Masked self-attention, then cross-attention to the encoder output, then an FFN.

    Written as ``nn.TransformerDecoderLayer`` is: the same argument names, and the norms
    numbered as PyTorch numbers them, ``norm1`` (self-attention), ``norm2`` (cross-attention)
    and ``norm3`` (feed-forward network), so chapter 8's layer built by hand loads its state
    dict as it is. Each sublayer sits in chapter 6's residual connection, written inline:
    pre-norm ``x = x + dropout(sublayer(norm(x)))``, post-norm
    ``x = norm(x + dropout(sublayer(x)))``.

    ``cross_attention=False`` drops the middle sublayer, which gives a GPT block: it has
    ``norm1`` and ``norm3`` and no ``norm2`` (``cross_attn`` and ``norm2`` are None), so a
    norm's name always says which sublayer it serves. ``rotary`` plugs rotary position
    embeddings into the self-attention (chapter 15); the cross-attention gets none, since its
    queries and keys are positions of two different sequences.
    """

    # Checkpoints written when each sublayer sat in a ResidualConnection (the translator's and
    # TinyTalks') name the norms after the sublayers; loading renames them.
    OLD_NAMES = {
        "self_attn_residual.norm.": "norm1.",
        "cross_attn_residual.norm.": "norm2.",
        "ffn_residual.norm.": "norm3.",
    }

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        d_ff: int,
        dropout: float = 0.1,
        activation: str = "relu",
        norm_first: bool = False,
        layer_norm_eps: float = 1e-5,
        cross_attention: bool = True,
        rotary: RotaryEmbedding | None = None,
    ):
        super().__init__()
        # Each norm is made next to its sublayer, so parameters() keeps the order of earlier
        # versions (the optimizer states saved in Trainer checkpoints are listed in it).
        self.self_attn = MultiHeadAttention(d_model, num_heads, dropout, rotary=rotary)
        self.norm1 = LayerNorm(d_model, layer_norm_eps)
        if cross_attention:
            self.cross_attn = MultiHeadAttention(d_model, num_heads, dropout)
            self.norm2 = LayerNorm(d_model, layer_norm_eps)
        else:
            self.cross_attn = self.norm2 = None
        self.ffn = PositionwiseFeedForward(d_model, d_ff, dropout, activation)
        self.norm3 = LayerNorm(d_model, layer_norm_eps)
        self.dropout = nn.Dropout(dropout)  # on each sublayer's output, before the addition
        self.norm_first = norm_first

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None = None,
        self_mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
        cache: LayerCache | None = None,
        self_bias: Tensor | None = None,
    ) -> Tensor:
        """
        Args:
            x: ``(batch, tgt_len, d_model)`` target-side vectors.
            memory: ``(batch, src_len, d_model)`` encoder output (None without cross-attention).
            self_mask: broadcastable to ``(batch, heads, tgt_len, tgt_len)``, usually causal
                and padding combined; None when decoding one new position with a cache.
            memory_mask: broadcastable to ``(batch, heads, tgt_len, src_len)``, usually the
                source padding mask ``(batch, 1, 1, src_len)``.
            cache: this layer's caches when decoding incrementally.
            self_bias: a relative position bias for the self-attention scores, broadcastable
                to ``(batch, heads, tgt_len, cached_len + tgt_len)``; cross-attention has none.
        """
        if self.cross_attn is not None and memory is None:
            raise ValueError("this decoder layer has cross-attention: pass the encoder memory")
        self_cache, cross_cache = cache if cache is not None else (None, None)

        def self_attention(h: Tensor) -> Tensor:  # (batch, tgt_len, d_model), causal
            return self.self_attn(h, h, h, self_mask, cache=self_cache, bias=self_bias)[0]

        def cross_attention(h: Tensor) -> Tensor:  # queries h, keys and values the memory
            return self.cross_attn(h, memory, memory, memory_mask, cache=cross_cache)[0]

        if self.norm_first:  # pre-norm: x + dropout(sublayer(norm(x)))
            x = x + self.dropout(self_attention(self.norm1(x)))  # (batch, tgt_len, d_model)
            if self.cross_attn is not None:
                x = x + self.dropout(cross_attention(self.norm2(x)))  # (batch, tgt_len, d_model)
            x = x + self.dropout(self.ffn(self.norm3(x)))  # (batch, tgt_len, d_model)
        else:  # post-norm: norm(x + dropout(sublayer(x)))
            x = self.norm1(x + self.dropout(self_attention(x)))  # (batch, tgt_len, d_model)
            if self.cross_attn is not None:
                x = self.norm2(x + self.dropout(cross_attention(x)))  # (batch, tgt_len, d_model)
            x = self.norm3(x + self.dropout(self.ffn(x)))  # (batch, tgt_len, d_model)
        return x

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        rename_state_keys(state_dict, prefix, self.OLD_NAMES)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class TransformerDecoder(nn.Module):
    """A stack of decoder layers, applied in turn, then ``norm`` (if given) on the output.

    The model that owns the stack builds its layers (``Transformer`` and ``GPT`` each have a
    small function that makes one from their config), every layer constructed on its own; a
    pre-norm stack passes its final LayerNorm as ``norm``, as in ``TransformerEncoder``. The
    layers either all have cross-attention (an encoder-decoder) or none has (GPT).

    A ``self_bias`` given to :meth:`forward` is shared by every layer's self-attention, as T5
    shares its bias (rotary embeddings sit in the layers' self-attention).
    """

    def __init__(self, layers: Iterable[DecoderLayer], norm: nn.Module | None = None):
        super().__init__()
        self.layers = layers if isinstance(layers, nn.ModuleList) else nn.ModuleList(layers)
        crossing = {layer.cross_attn is not None for layer in self.layers}
        if len(crossing) > 1:
            raise ValueError("either every decoder layer has cross-attention or none has")
        self.cross_attention = crossing != {False}  # True for an empty stack, as before
        self.final_norm = nn.Identity() if norm is None else norm

    def new_cache(self, max_len: int | None = None) -> DecoderCache:
        """An empty cache for incremental decoding, one pair of caches per layer.

        ``max_len=None`` gives growing :class:`KVCache` self-attention caches; an integer gives
        :class:`PreallocatedKVCache` buffers with room for ``max_len`` positions (chapter 17).
        """
        return DecoderCache([
            (KVCache() if max_len is None else PreallocatedKVCache(max_len),
             KVCache(static=True) if self.cross_attention else None)
            for _ in self.layers
        ])

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None = None,
        self_mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
        cache: DecoderCache | None = None,
        self_bias: Tensor | None = None,
    ) -> Tensor:
        if cache is not None and len(cache.layers) != len(self.layers):
            raise ValueError(
                f"cache has {len(cache.layers)} layers, the decoder {len(self.layers)}"
            )
        for i, layer in enumerate(self.layers):
            layer_cache = cache[i] if cache is not None else None
            x = layer(x, memory, self_mask, memory_mask, layer_cache, self_bias)  # (batch, tgt, d)
        return self.final_norm(x)

    def attention_weights(self) -> dict[str, list[Tensor]]:
        """Per layer, the weights of the last call: ``self`` (batch, heads, tgt, tgt) and, with
        cross-attention, ``cross`` (batch, heads, tgt, src)."""
        maps = {"self": [layer.self_attn.attention_weights for layer in self.layers]}
        if self.cross_attention:
            maps["cross"] = [layer.cross_attn.attention_weights for layer in self.layers]
        return maps
