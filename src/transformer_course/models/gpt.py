"""A decoder-only Transformer language model (the TinyTalks capstone; chapter 16).

Tokens -> embeddings + learned positions -> decoder layers without cross-attention (causal
self-attention + FFN, pre-norm) -> final LayerNorm -> logits for the next token.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from torch import Tensor, nn

from .attention import make_causal_mask
from .decoder import LayerCache, TransformerDecoder
from .embeddings import LearnedPositionalEmbedding, TokenEmbedding
from .transformer import check_layer_settings, check_positive, init_linear_layers

__all__ = ["GPTConfig", "GPT"]


@dataclass
class GPTConfig:
    """Sizes of the decoder-only model; the defaults are the TinyTalks milestone's."""

    vocab_size: int
    context_length: int = 128
    d_model: int = 64
    num_heads: int = 4
    num_layers: int = 3
    d_ff: int | None = None  # None: 4 * d_model
    dropout: float = 0.1
    activation: str = "gelu"
    norm_first: bool = True
    tie_weights: bool = True

    def __post_init__(self) -> None:
        if self.d_ff is None:
            self.d_ff = 4 * self.d_model
        check_positive(self, ("vocab_size", "context_length", "d_model", "num_heads", "num_layers",
                              "d_ff"))
        check_layer_settings(self)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> GPTConfig:
        return cls(**values)


class GPT(nn.Module):
    """Decoder-only Transformer: predicts token t+1 from tokens 0..t."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = c = config
        self.token_embed = TokenEmbedding(c.vocab_size, c.d_model)
        self.pos_embed = LearnedPositionalEmbedding(c.d_model, c.context_length, c.dropout)
        self.decoder = TransformerDecoder(
            c.num_layers, c.d_model, c.num_heads, c.d_ff, c.dropout, c.activation, c.norm_first,
            cross_attention=False,
        )
        self.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        init_linear_layers(self.decoder)
        if c.tie_weights:
            self.lm_head.weight = self.token_embed.embedding.weight
        else:
            nn.init.xavier_uniform_(self.lm_head.weight)

    def forward(self, tokens: Tensor, cache: list[LayerCache] | None = None) -> Tensor:
        """``tokens``: ``(batch, seq_len)`` -> logits ``(batch, seq_len, vocab_size)``.

        With a ``cache`` (see :meth:`new_cache`) ``tokens`` are the new positions only.
        """
        if tokens.dim() != 2:
            raise ValueError(f"tokens must have shape (batch, seq_len), got {tuple(tokens.shape)}")
        start = len(cache[0][0]) if cache else 0
        end = start + tokens.shape[1]
        if end > self.config.context_length:
            raise ValueError(
                f"{end} positions exceed the context length {self.config.context_length}; "
                "crop the input to its last context_length tokens"
            )
        mask = make_causal_mask(tokens.shape[1], tokens.device, key_len=end)  # (seq_len, end)
        x = self.pos_embed(self.token_embed(tokens), start=start)  # (batch, seq_len, d_model)
        x = self.decoder(x, self_mask=mask, cache=cache)  # (batch, seq_len, d_model)
        return self.lm_head(x)  # (batch, seq_len, vocab_size)

    def new_cache(self) -> list[LayerCache]:
        return self.decoder.new_cache()

    def attention_weights(self) -> list[Tensor]:
        """Per layer, ``(batch, heads, seq_len, seq_len)`` weights of the last forward pass."""
        return self.decoder.attention_weights()["self"]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
