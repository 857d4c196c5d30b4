"""A decoder-only Transformer language model (the TinyTalks capstone; chapter 16).

Tokens -> embeddings (+ positions) -> decoder layers without cross-attention (causal
self-attention + FFN, pre-norm) -> final LayerNorm -> logits for the next token.

Where the positions enter is a setting, ``GPTConfig.positional``: the learned table of GPT-2
(the default and the TinyTalks checkpoints'), or any other scheme of chapter 15 (see
``relative_positions.POSITION_SCHEMES``), which the length-extrapolation experiment compares.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from torch import Tensor, nn

from .attention import make_causal_mask
from .decoder import DecoderCache, DecoderLayer, TransformerDecoder
from .embeddings import TokenEmbedding
from .relative_positions import (
    POSITION_SCHEMES,
    RotaryEmbedding,
    attention_positions,
    token_positions,
)
from .transformer import check_layer_settings, check_positive, init_linear_layers, stack_norm

__all__ = ["GPTConfig", "GPT", "gpt_block"]


@dataclass
class GPTConfig:
    """Sizes of the decoder-only model; the defaults are the TinyTalks milestone's.

    ``positional`` is one of ``POSITION_SCHEMES``: ``"learned"`` (a vector per position, added
    to the tokens; the default), ``"sinusoidal"`` (chapter 4's fixed vectors), ``"rope"``,
    ``"alibi"``, ``"t5"`` (chapter 15: positions inside attention) or ``"none"``. ``t5_buckets``
    and ``t5_max_distance`` are T5's causal bucketing (``"t5"`` only; T5's own values).

    ``context_length`` is the number of rows of the learned table, the longest input of a
    ``"learned"`` model. The other schemes have no such limit: the model then runs on longer
    inputs than it was trained on (how well it predicts there is chapter 15's question), and
    ``context_length`` only states the training length.
    """

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
    positional: str = "learned"
    t5_buckets: int = 32
    t5_max_distance: int = 128

    def __post_init__(self) -> None:
        if self.d_ff is None:
            self.d_ff = 4 * self.d_model
        check_positive(self, ("vocab_size", "context_length", "d_model", "num_heads", "num_layers",
                              "d_ff"))
        check_layer_settings(self)
        if self.positional not in POSITION_SCHEMES:
            raise ValueError(
                f"positional must be one of {POSITION_SCHEMES}, got {self.positional!r}"
            )
        if self.positional == "rope" and (self.d_model // self.num_heads) % 2:
            raise ValueError("rope rotates pairs of dimensions: d_model / num_heads must be even")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> GPTConfig:
        return cls(**values)


def gpt_block(config: GPTConfig, rotary: RotaryEmbedding | None = None) -> DecoderLayer:
    """One layer of the model: a decoder layer without cross-attention (causal
    self-attention and a feed-forward network; its norms are ``norm1`` and ``norm3``)."""
    c = config
    return DecoderLayer(c.d_model, c.num_heads, c.d_ff, c.dropout, c.activation, c.norm_first,
                        cross_attention=False, rotary=rotary)


class GPT(nn.Module):
    """Decoder-only Transformer: predicts token t+1 from tokens 0..t.

    Modules by scheme: ``pos_embed`` adds positions to the tokens (a learned or sinusoidal
    table; only dropout otherwise); ``position_bias`` is T5's or ALiBi's bias module, called
    once per forward pass and shared by all layers (None otherwise); with ``"rope"``, every
    self-attention holds the rotary embedding. A ``"learned"`` model has exactly the state-dict
    keys of the TinyTalks checkpoints.
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = c = config
        self.token_embed = TokenEmbedding(c.vocab_size, c.d_model)
        # A sinusoidal table grows with the input: only the learned one limits the length.
        self.pos_embed = token_positions(c.positional, c.d_model, c.context_length, c.dropout,
                                         extendable=True)
        self.position_bias, rotary = attention_positions(
            c.positional, c.num_heads, c.d_model // c.num_heads, bidirectional=False,
            t5_buckets=c.t5_buckets, t5_max_distance=c.t5_max_distance,
        )
        self.decoder = TransformerDecoder(
            [gpt_block(c, rotary) for _ in range(c.num_layers)], stack_norm(c))
        self.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        init_linear_layers(self.decoder)
        if c.tie_weights:
            self.lm_head.weight = self.token_embed.embedding.weight
        else:
            nn.init.xavier_uniform_(self.lm_head.weight)

    def forward(self, tokens: Tensor, cache: DecoderCache | None = None) -> Tensor:
        """``tokens``: ``(batch, seq_len)`` -> logits ``(batch, seq_len, vocab_size)``.

        With a ``cache`` (see :meth:`new_cache`) ``tokens`` are the new positions only. A
        ``"learned"`` model raises ``ValueError`` beyond ``context_length`` positions; the
        other schemes accept any length.
        """
        if tokens.dim() != 2:
            raise ValueError(f"tokens must have shape (batch, seq_len), got {tuple(tokens.shape)}")
        start = 0 if cache is None else cache.length
        end = start + tokens.shape[1]
        if self.config.positional == "learned" and end > self.config.context_length:
            raise ValueError(
                f"{end} positions exceed the context length {self.config.context_length}; "
                "crop the input to its last context_length tokens"
            )
        # The new positions start..end-1 see every cached position and themselves: (seq_len, end).
        mask = make_causal_mask(tokens.shape[1], tokens.device, key_len=end)
        x = self.pos_embed(self.token_embed(tokens), start=start)  # (batch, seq_len, d_model)
        # One bias for all layers, for the same (new queries, all keys) as the mask.
        bias = None if self.position_bias is None else self.position_bias(tokens.shape[1], end)
        # bias: (heads, seq_len, end) or None
        x = self.decoder(x, self_mask=mask, cache=cache, self_bias=bias)  # (batch, seq, d_model)
        return self.lm_head(x)  # (batch, seq_len, vocab_size)

    def new_cache(self) -> DecoderCache:
        return self.decoder.new_cache()

    def attention_weights(self) -> list[Tensor]:
        """Per layer, ``(batch, heads, seq_len, seq_len)`` weights of the last forward pass."""
        return self.decoder.attention_weights()["self"]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
