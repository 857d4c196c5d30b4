"""The encoder-decoder Transformer of "Attention Is All You Need" (assembled in chapters 8 and 13).

Source tokens -> embeddings + positions -> encoder -> memory; target tokens (shifted right,
starting with <s>) -> embeddings + positions -> decoder (causal self-attention, cross-attention
to the memory) -> a linear layer -> logits over the target vocabulary.

``TransformerConfig.positional`` picks where positions enter: added to the embeddings
(``"sinusoidal"``, the paper's and the translator's, or ``"learned"``), or inside the
self-attentions, with chapter 15's relative schemes (``"rope"``, ``"alibi"``, ``"t5"``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from torch import Tensor, nn

from ..utils.tokenizer import PAD_ID
from .attention import make_causal_mask, make_padding_mask, make_target_mask
from .decoder import DecoderCache, DecoderLayer, TransformerDecoder
from .embeddings import TokenEmbedding
from .encoder import EncoderLayer, TransformerEncoder
from .feedforward import ACTIVATIONS
from .normalization import LayerNorm
from .relative_positions import (
    POSITION_SCHEMES,
    RotaryEmbedding,
    attention_positions,
    token_positions,
)

__all__ = [
    "TransformerConfig",
    "Transformer",
    "encoder_layer",
    "decoder_layer",
    "stack_norm",
    "init_linear_layers",
    "check_positive",
    "check_layer_settings",
]


def check_positive(config, names: tuple[str, ...]) -> None:
    """Raise ``ValueError`` unless every size in ``names`` is at least 1."""
    for name in names:
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be positive, got {getattr(config, name)}")


def check_layer_settings(config) -> None:
    """The checks every model config shares: heads divide ``d_model``, ``dropout`` in [0, 1),
    a known ``activation`` (the Transformer, GPT, BERT and ViT configs)."""
    if config.d_model % config.num_heads != 0:
        raise ValueError(
            f"d_model ({config.d_model}) must be divisible by num_heads ({config.num_heads})"
        )
    if not 0.0 <= config.dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {config.dropout}")
    if config.activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}")


@dataclass
class TransformerConfig:
    """Every size and switch of the encoder-decoder model.

    The defaults are the base model of the original paper; the course's translator uses a
    smaller one (see ``translator.PROFILES``).

    ``positional`` is one of ``relative_positions.POSITION_SCHEMES``. ``"sinusoidal"`` and
    ``"learned"`` add a vector per position to the embeddings and limit inputs to ``max_len``
    positions. ``"rope"``, ``"alibi"`` and ``"t5"`` put the position into every self-attention
    (the encoder's bidirectional, the decoder's causal; cross-attention gets none) and ``"none"``
    uses no position at all: those accept any length (``max_len`` then only bounds the
    decoding loops of ``generation``). ``t5_buckets`` and ``t5_max_distance`` are T5's bucketing.
    """

    src_vocab_size: int
    tgt_vocab_size: int
    d_model: int = 512
    num_heads: int = 8
    num_encoder_layers: int = 6
    num_decoder_layers: int = 6
    d_ff: int = 2048
    dropout: float = 0.1
    activation: str = "relu"
    max_len: int = 256
    norm_first: bool = False  # False: post-norm (original paper); True: pre-norm
    positional: str = "sinusoidal"  # or "learned", "none", "rope", "alibi", "t5"
    share_embeddings: bool = False  # one table for source and target (needs a joint vocabulary)
    tie_output: bool = True  # the output projection reuses the target embedding matrix
    pad_id: int = PAD_ID
    layer_norm_eps: float = 1e-5
    t5_buckets: int = 32  # per direction in the encoder: 16 before the query, 16 after
    t5_max_distance: int = 128

    def __post_init__(self) -> None:
        check_positive(self, ("src_vocab_size", "tgt_vocab_size", "d_model", "num_heads", "d_ff",
                              "max_len"))
        for name in ("num_encoder_layers", "num_decoder_layers"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        check_layer_settings(self)
        if self.positional not in POSITION_SCHEMES:
            raise ValueError(
                f"positional must be one of {POSITION_SCHEMES}, got {self.positional!r}"
            )
        if self.positional == "rope" and (self.d_model // self.num_heads) % 2:
            raise ValueError("rope rotates pairs of dimensions: d_model / num_heads must be even")
        if self.share_embeddings and self.src_vocab_size != self.tgt_vocab_size:
            raise ValueError(
                "share_embeddings needs one joint vocabulary, but src_vocab_size="
                f"{self.src_vocab_size} and tgt_vocab_size={self.tgt_vocab_size}"
            )
        if not 0 <= self.pad_id < min(self.src_vocab_size, self.tgt_vocab_size):
            raise ValueError(f"pad_id {self.pad_id} is outside the vocabularies")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TransformerConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown TransformerConfig fields: {sorted(unknown)}")
        return cls(**values)


def encoder_layer(config: TransformerConfig, rotary: RotaryEmbedding | None = None
                  ) -> EncoderLayer:
    """One encoder layer of the sizes and switches in ``config`` (``rotary``: the rotary
    embedding of its self-attention, for ``positional="rope"``)."""
    c = config
    return EncoderLayer(c.d_model, c.num_heads, c.d_ff, c.dropout, c.activation, c.norm_first,
                        c.layer_norm_eps, rotary)


def decoder_layer(config: TransformerConfig, rotary: RotaryEmbedding | None = None
                  ) -> DecoderLayer:
    """One decoder layer, with cross-attention, of the sizes and switches in ``config``."""
    c = config
    return DecoderLayer(c.d_model, c.num_heads, c.d_ff, c.dropout, c.activation, c.norm_first,
                        c.layer_norm_eps, rotary=rotary)


def stack_norm(config) -> LayerNorm | None:
    """The LayerNorm on top of a pre-norm stack (``config.norm_first``), None for post-norm,
    whose layers end with a norm already. ``layer_norm_eps`` is read if the config has it."""
    if not config.norm_first:
        return None
    return LayerNorm(config.d_model, getattr(config, "layer_norm_eps", 1e-5))


def init_linear_layers(module: nn.Module) -> None:
    """Xavier-uniform weights and zero biases for every nn.Linear inside ``module``."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class Transformer(nn.Module):
    """The encoder-decoder model, configured by a :class:`TransformerConfig`."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = c = config
        self.src_embed = TokenEmbedding(c.src_vocab_size, c.d_model, padding_idx=c.pad_id)
        if c.share_embeddings:
            self.tgt_embed = self.src_embed
        else:
            self.tgt_embed = TokenEmbedding(c.tgt_vocab_size, c.d_model, padding_idx=c.pad_id)
        self.src_pos = token_positions(c.positional, c.d_model, c.max_len, c.dropout)
        self.tgt_pos = token_positions(c.positional, c.d_model, c.max_len, c.dropout)
        # Relative schemes: a bias module (T5, ALiBi) per stack, shared by its layers, or the
        # rotary embedding of every self-attention (RoPE). The encoder sees keys on both
        # sides of a query, the decoder only the past, so T5 gives each its own buckets.
        d_k = c.d_model // c.num_heads
        self.src_position_bias, src_rotary = attention_positions(
            c.positional, c.num_heads, d_k, True, c.t5_buckets, c.t5_max_distance)
        self.tgt_position_bias, tgt_rotary = attention_positions(
            c.positional, c.num_heads, d_k, False, c.t5_buckets, c.t5_max_distance)
        self.encoder = TransformerEncoder(
            [encoder_layer(c, src_rotary) for _ in range(c.num_encoder_layers)], stack_norm(c))
        self.decoder = TransformerDecoder(
            [decoder_layer(c, tgt_rotary) for _ in range(c.num_decoder_layers)], stack_norm(c))
        self.generator = nn.Linear(c.d_model, c.tgt_vocab_size, bias=False)
        init_linear_layers(self.encoder)
        init_linear_layers(self.decoder)
        if c.tie_output:
            self.generator.weight = self.tgt_embed.embedding.weight
        else:
            nn.init.xavier_uniform_(self.generator.weight)

    def _check_tokens(self, tokens: Tensor, name: str) -> None:
        if tokens.dim() != 2:
            raise ValueError(f"{name} must have shape (batch, seq_len), got {tuple(tokens.shape)}")

    def source_mask(self, src: Tensor) -> Tensor:
        """``(batch, 1, 1, src_len)``: True at real source tokens."""
        return make_padding_mask(src, self.config.pad_id)

    def target_mask(self, tgt: Tensor) -> Tensor:
        """``(batch, 1, tgt_len, tgt_len)``: causal and not padding."""
        return make_target_mask(tgt, self.config.pad_id)

    def encode(self, src: Tensor, src_mask: Tensor | None = None) -> Tensor:
        """``src``: ``(batch, src_len)`` ids -> memory ``(batch, src_len, d_model)``."""
        self._check_tokens(src, "src")
        src_mask = self.source_mask(src) if src_mask is None else src_mask
        x = self.src_pos(self.src_embed(src))  # (batch, src_len, d_model)
        src_len = src.shape[1]
        bias = None if self.src_position_bias is None else self.src_position_bias(src_len, src_len)
        # bias: (heads, src_len, src_len) or None, shared by the encoder layers
        return self.encoder(x, src_mask, bias)  # (batch, src_len, d_model)

    def decode(
        self,
        tgt: Tensor,
        memory: Tensor,
        src_mask: Tensor,
        cache: DecoderCache | None = None,
    ) -> Tensor:
        """Logits ``(batch, tgt_len, tgt_vocab)`` for the target prefix ``tgt``.

        With a ``cache`` (see :meth:`new_cache`), ``tgt`` holds only the new positions; the
        earlier ones are read from the cache.
        """
        self._check_tokens(tgt, "tgt")
        start = 0 if cache is None else cache.length
        if cache is None:
            tgt_mask = self.target_mask(tgt)  # (batch, 1, tgt_len, tgt_len)
        elif tgt.shape[1] == 1:
            tgt_mask = None  # one new position may attend to every cached one and itself
        else:
            # New positions start..start+n-1 see every cached position and the new ones up
            # to themselves: (n, start + n).
            tgt_mask = make_causal_mask(tgt.shape[1], tgt.device, key_len=start + tgt.shape[1])
        x = self.tgt_pos(self.tgt_embed(tgt), start=start)  # (batch, tgt_len, d_model)
        end = start + tgt.shape[1]
        # The new queries are the last tgt_len of `end` positions, like the mask's rows.
        bias = None if self.tgt_position_bias is None else self.tgt_position_bias(tgt.shape[1], end)
        # bias: (heads, tgt_len, end) or None, shared by the decoder layers' self-attention
        x = self.decoder(x, memory, tgt_mask, src_mask, cache, bias)  # (batch, tgt_len, d_model)
        return self.generator(x)  # (batch, tgt_len, tgt_vocab)

    def forward(self, src: Tensor, tgt: Tensor) -> Tensor:
        """Teacher forcing: logits ``(batch, tgt_len, tgt_vocab)`` for every target position."""
        self._check_tokens(src, "src")
        self._check_tokens(tgt, "tgt")
        if src.shape[0] != tgt.shape[0]:
            raise ValueError(
                f"src and tgt must have the same batch size, got {tuple(src.shape)} and "
                f"{tuple(tgt.shape)}"
            )
        src_mask = self.source_mask(src)
        memory = self.encode(src, src_mask)
        return self.decode(tgt, memory, src_mask)

    def new_cache(self, max_len: int | None = None) -> DecoderCache:
        """Empty decoder caches; ``max_len`` preallocates room for that many target positions
        (see :meth:`TransformerDecoder.new_cache`)."""
        return self.decoder.new_cache(max_len)

    def attention_weights(self) -> dict[str, list[Tensor]]:
        """The weights of the last forward pass, one ``(batch, heads, q, k)`` tensor per layer:
        ``encoder`` self-attention, ``decoder`` self-attention and ``cross``-attention."""
        decoder = self.decoder.attention_weights()
        return {
            "encoder": self.encoder.attention_weights(),
            "decoder": decoder["self"],
            "cross": decoder["cross"],
        }

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
