"""The course's encoder-decoder with PyTorch's ``nn.Transformer`` in place of our stacks.

Token embeddings, positions and the output projection are the course's; only the encoder and
decoder layers are PyTorch's. Chapter 14 trains it with the translator's recipe to compare it
with the from-scratch model, and ``benchmarks/training_step_benchmark.py`` times one step of each.
"""

from __future__ import annotations

from torch import Tensor, nn

from .attention import make_causal_mask, to_pytorch_mask
from .decoder import DecoderCache
from .transformer import Transformer, TransformerConfig

__all__ = ["TorchTransformer"]


class TorchTransformer(Transformer):
    """:class:`Transformer` whose encoder and decoder are one ``nn.Transformer``.

    ``nn.Transformer`` keeps no key/value cache, so generation recomputes the whole prefix at
    every step (``supports_cache`` tells the decoders), and it does not return attention weights.
    """

    supports_cache = False

    def __init__(self, config: TransformerConfig):
        if config.positional not in ("sinusoidal", "learned", "none"):
            # nn.Transformer's attention takes no position bias and no rotary embedding.
            raise ValueError(
                f"nn.Transformer's layers cannot use positional={config.positional!r}: "
                "choose 'sinusoidal', 'learned' or 'none'"
            )
        super().__init__(config)
        del self.encoder, self.decoder  # replaced by PyTorch's layers below
        c = config
        self.core = nn.Transformer(
            c.d_model, c.num_heads, c.num_encoder_layers, c.num_decoder_layers, c.d_ff,
            c.dropout, activation=c.activation, layer_norm_eps=c.layer_norm_eps,
            batch_first=True, norm_first=c.norm_first,
        )
        # The nested-tensor fast path is a prototype that warns on every call; the dense path
        # computes the same outputs.
        self.core.encoder.use_nested_tensor = False

    @staticmethod
    def _key_padding(src_mask: Tensor) -> Tensor:
        # Ours: (batch, 1, 1, src_len), True = real token. PyTorch's: (batch, src_len), True = pad.
        if src_mask.dim() != 4 or src_mask.shape[1:3] != (1, 1):
            raise ValueError(
                f"src_mask must have shape (batch, 1, 1, src_len), got {tuple(src_mask.shape)}"
            )
        return ~src_mask[:, 0, 0, :]

    def encode(self, src: Tensor, src_mask: Tensor | None = None) -> Tensor:
        self._check_tokens(src, "src")
        src_mask = self.source_mask(src) if src_mask is None else src_mask
        x = self.src_pos(self.src_embed(src))  # (batch, src_len, d_model)
        return self.core.encoder(x, src_key_padding_mask=self._key_padding(src_mask))

    def decode(
        self,
        tgt: Tensor,
        memory: Tensor,
        src_mask: Tensor,
        cache: DecoderCache | None = None,
    ) -> Tensor:
        if cache is not None:
            raise ValueError("nn.Transformer keeps no key/value cache; decode with use_cache=False")
        self._check_tokens(tgt, "tgt")
        causal = to_pytorch_mask(make_causal_mask(tgt.shape[1], tgt.device))  # True = blocked
        x = self.tgt_pos(self.tgt_embed(tgt))  # (batch, tgt_len, d_model)
        x = self.core.decoder(
            x, memory, tgt_mask=causal, tgt_key_padding_mask=tgt == self.config.pad_id,
            memory_key_padding_mask=self._key_padding(src_mask),
        )  # (batch, tgt_len, d_model)
        return self.generator(x)  # (batch, tgt_len, tgt_vocab)

    def new_cache(self) -> DecoderCache:
        raise ValueError("nn.Transformer keeps no key/value cache; decode with use_cache=False")

    def attention_weights(self) -> dict[str, list[Tensor]]:
        raise NotImplementedError("nn.Transformer's layers do not return their attention weights")
