"""The Transformer encoder: self-attention and feed-forward sublayers, stacked (chapter 7)."""

from __future__ import annotations

from collections.abc import Iterable

from torch import Tensor, nn

from .feedforward import PositionwiseFeedForward
from .multihead import MultiHeadAttention
from .normalization import LayerNorm, rename_state_keys
from .relative_positions import RotaryEmbedding

__all__ = ["EncoderLayer", "TransformerEncoder"]


class EncoderLayer(nn.Module):
    """One encoder layer: every position attends to every (unmasked) position, then an FFN.

    Written as ``nn.TransformerEncoderLayer`` is: the same argument names and defaults, and
    the same names for the norms, ``norm1`` (around the self-attention) and ``norm2`` (around
    the feed-forward network), so chapter 7's layer built by hand loads its state dict as it
    is, and ``interop.copy_encoder_layer`` is a table of names. Each sublayer sits in chapter
    6's residual connection, written inline: pre-norm ``x = x + dropout(sublayer(norm(x)))``,
    post-norm ``x = norm(x + dropout(sublayer(x)))``. ``rotary`` plugs rotary position
    embeddings into the self-attention (chapter 15).
    """

    # Checkpoints written when each sublayer sat in a ResidualConnection name its norm
    # ``attn_residual.norm`` / ``ffn_residual.norm``; loading renames them (see
    # _load_from_state_dict).
    OLD_NAMES = {"attn_residual.norm.": "norm1.", "ffn_residual.norm.": "norm2."}

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        d_ff: int,
        dropout: float = 0.1,
        activation: str = "relu",
        norm_first: bool = False,
        layer_norm_eps: float = 1e-5,
        rotary: RotaryEmbedding | None = None,
    ):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, num_heads, dropout, rotary=rotary)
        self.ffn = PositionwiseFeedForward(d_model, d_ff, dropout, activation)
        self.norm1 = LayerNorm(d_model, layer_norm_eps)  # around the self-attention
        self.norm2 = LayerNorm(d_model, layer_norm_eps)  # around the feed-forward network
        self.dropout = nn.Dropout(dropout)  # on each sublayer's output, before the addition
        self.norm_first = norm_first

    def forward(self, x: Tensor, mask: Tensor | None = None, bias: Tensor | None = None) -> Tensor:
        """``x``: ``(batch, src_len, d_model)``; ``mask``: ``(batch, 1, 1, src_len)`` padding
        mask or anything broadcastable to ``(batch, heads, src_len, src_len)``; ``bias``: a
        relative position bias for the scores, usually ``(heads, src_len, src_len)``."""

        def self_attention(h: Tensor) -> Tensor:  # (batch, src_len, d_model), both directions
            return self.self_attn(h, h, h, mask, bias=bias)[0]

        if self.norm_first:  # pre-norm: x + dropout(sublayer(norm(x)))
            x = x + self.dropout(self_attention(self.norm1(x)))  # (batch, src_len, d_model)
            x = x + self.dropout(self.ffn(self.norm2(x)))  # (batch, src_len, d_model)
        else:  # post-norm: norm(x + dropout(sublayer(x)))
            x = self.norm1(x + self.dropout(self_attention(x)))  # (batch, src_len, d_model)
            x = self.norm2(x + self.dropout(self.ffn(x)))  # (batch, src_len, d_model)
        return x

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        rename_state_keys(state_dict, prefix, self.OLD_NAMES)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class TransformerEncoder(nn.Module):
    """A stack of encoder layers, applied in turn, then ``norm`` (if given) on the output.

    The model that owns the stack builds its layers (``Transformer``, BERT and ViT each have
    a small function that makes one from their config): unlike ``nn.TransformerEncoder``,
    which deep-copies one layer, every layer here is constructed, and so initialised, on its
    own. A pre-norm stack passes its final LayerNorm as ``norm``: pre-norm layers add
    unnormalized sublayer outputs to the stream, so it is normalized once at the end, and the
    decoder (or a classifier) sees vectors on a fixed scale.

    A position ``bias`` given to :meth:`forward` is shared by every layer, as T5 shares its
    bias (rotary embeddings sit in the layers' self-attention).
    """

    def __init__(self, layers: Iterable[EncoderLayer], norm: nn.Module | None = None):
        super().__init__()
        self.layers = layers if isinstance(layers, nn.ModuleList) else nn.ModuleList(layers)
        self.final_norm = nn.Identity() if norm is None else norm

    def forward(self, x: Tensor, mask: Tensor | None = None, bias: Tensor | None = None) -> Tensor:
        for layer in self.layers:
            x = layer(x, mask, bias)  # (batch, src_len, d_model)
        return self.final_norm(x)  # (batch, src_len, d_model)

    def attention_weights(self) -> list[Tensor]:
        """Per layer, the self-attention weights of the last call, (batch, heads, src, src)."""
        return [layer.self_attn.attention_weights for layer in self.layers]
