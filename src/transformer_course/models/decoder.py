"""The Transformer decoder: masked self-attention, cross-attention, feed-forward (chapter 8).

A decoder layer without cross-attention is the block of a decoder-only model (GPT), so the
same class serves both.
"""

from __future__ import annotations

from torch import Tensor, nn

from .feedforward import PositionwiseFeedForward
from .multihead import KVCache, MultiHeadAttention, PreallocatedKVCache
from .normalization import LayerNorm, ResidualConnection
from .relative_positions import RotaryEmbedding

__all__ = ["DecoderLayer", "TransformerDecoder", "LayerCache"]

# One decoder layer's caches during generation: (self-attention, cross-attention or None).
LayerCache = tuple[KVCache, KVCache | None]


class DecoderLayer(nn.Module):
    """Masked self-attention, then cross-attention to the encoder output, then an FFN.

    The argument names follow ``nn.TransformerDecoderLayer``; ``cross_attention=False`` drops
    the middle sublayer, which gives a GPT block. ``rotary`` plugs rotary position embeddings
    into the self-attention (chapter 15); the cross-attention gets none, since its queries and
    keys are positions of two different sequences.
    """

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
        self.self_attn = MultiHeadAttention(d_model, num_heads, dropout, rotary=rotary)
        self.self_attn_residual = ResidualConnection(d_model, dropout, norm_first, layer_norm_eps)
        if cross_attention:
            self.cross_attn = MultiHeadAttention(d_model, num_heads, dropout)
            self.cross_attn_residual = ResidualConnection(
                d_model, dropout, norm_first, layer_norm_eps
            )
        else:
            self.cross_attn = None
        self.ffn = PositionwiseFeedForward(d_model, d_ff, dropout, activation)
        self.ffn_residual = ResidualConnection(d_model, dropout, norm_first, layer_norm_eps)

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
        self_cache, cross_cache = cache if cache is not None else (None, None)
        x = self.self_attn_residual(
            x, lambda h: self.self_attn(h, h, h, self_mask, cache=self_cache, bias=self_bias)[0]
        )
        if self.cross_attn is not None:
            if memory is None:
                raise ValueError("this decoder layer has cross-attention: pass the encoder memory")
            x = self.cross_attn_residual(
                x, lambda h: self.cross_attn(h, memory, memory, memory_mask, cache=cross_cache)[0]
            )
        return self.ffn_residual(x, self.ffn)  # (batch, tgt_len, d_model)


class TransformerDecoder(nn.Module):
    """A stack of decoder layers (plus a final LayerNorm when pre-norm).

    ``rotary`` goes to every layer's self-attention; a ``self_bias`` given to :meth:`forward`
    is shared by every layer's self-attention, as T5 shares its bias.
    """

    def __init__(
        self,
        num_layers: int,
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
        self.cross_attention = cross_attention
        self.layers = nn.ModuleList(
            DecoderLayer(
                d_model, num_heads, d_ff, dropout, activation, norm_first, layer_norm_eps,
                cross_attention, rotary,
            )
            for _ in range(num_layers)
        )
        self.final_norm = LayerNorm(d_model, layer_norm_eps) if norm_first else nn.Identity()

    def new_cache(self, max_len: int | None = None) -> list[LayerCache]:
        """Empty caches for incremental decoding, one pair per layer.

        ``max_len=None`` gives growing :class:`KVCache` self-attention caches; an integer gives
        :class:`PreallocatedKVCache` buffers with room for ``max_len`` positions (chapter 17).
        """
        return [
            (KVCache() if max_len is None else PreallocatedKVCache(max_len),
             KVCache(static=True) if self.cross_attention else None)
            for _ in self.layers
        ]

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None = None,
        self_mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
        cache: list[LayerCache] | None = None,
        self_bias: Tensor | None = None,
    ) -> Tensor:
        if cache is not None and len(cache) != len(self.layers):
            raise ValueError(f"cache has {len(cache)} layers, the decoder {len(self.layers)}")
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
