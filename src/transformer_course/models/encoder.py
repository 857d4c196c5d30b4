"""The Transformer encoder: self-attention and feed-forward sublayers, stacked (chapter 7)."""

from __future__ import annotations

from torch import Tensor, nn

from .feedforward import PositionwiseFeedForward
from .multihead import MultiHeadAttention
from .normalization import LayerNorm, ResidualConnection
from .relative_positions import RotaryEmbedding

__all__ = ["EncoderLayer", "TransformerEncoder"]


class EncoderLayer(nn.Module):
    """One encoder layer: every position attends to every (unmasked) position, then an FFN.

    The argument names and defaults follow ``nn.TransformerEncoderLayer`` so the two can be
    compared weight for weight (see ``interop.copy_encoder_layer``). ``rotary`` plugs rotary
    position embeddings into the self-attention (chapter 15).
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
        rotary: RotaryEmbedding | None = None,
    ):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, num_heads, dropout, rotary=rotary)
        self.ffn = PositionwiseFeedForward(d_model, d_ff, dropout, activation)
        self.attn_residual = ResidualConnection(d_model, dropout, norm_first, layer_norm_eps)
        self.ffn_residual = ResidualConnection(d_model, dropout, norm_first, layer_norm_eps)

    def forward(self, x: Tensor, mask: Tensor | None = None, bias: Tensor | None = None) -> Tensor:
        """``x``: ``(batch, src_len, d_model)``; ``mask``: ``(batch, 1, 1, src_len)`` padding
        mask or anything broadcastable to ``(batch, heads, src_len, src_len)``; ``bias``: a
        relative position bias for the scores, usually ``(heads, src_len, src_len)``."""
        x = self.attn_residual(x, lambda h: self.self_attn(h, h, h, mask, bias=bias)[0])
        return self.ffn_residual(x, self.ffn)  # (batch, src_len, d_model)


class TransformerEncoder(nn.Module):
    """A stack of ``num_layers`` encoder layers (plus a final LayerNorm when pre-norm).

    ``rotary`` goes to every layer's self-attention; a position ``bias`` given to
    :meth:`forward` is shared by every layer, as T5 shares its bias.
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
        rotary: RotaryEmbedding | None = None,
    ):
        super().__init__()
        self.layers = nn.ModuleList(
            EncoderLayer(d_model, num_heads, d_ff, dropout, activation, norm_first, layer_norm_eps,
                         rotary)
            for _ in range(num_layers)
        )
        # Pre-norm layers add unnormalized sublayer outputs to the stream; normalize once at
        # the end so the decoder (or a classifier) sees vectors on a fixed scale.
        self.final_norm = LayerNorm(d_model, layer_norm_eps) if norm_first else nn.Identity()

    def forward(self, x: Tensor, mask: Tensor | None = None, bias: Tensor | None = None) -> Tensor:
        for layer in self.layers:
            x = layer(x, mask, bias)  # (batch, src_len, d_model)
        return self.final_norm(x)

    def attention_weights(self) -> list[Tensor]:
        """Per layer, the self-attention weights of the last call, (batch, heads, src, src)."""
        return [layer.self_attn.attention_weights for layer in self.layers]
