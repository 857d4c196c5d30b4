"""BERT-style masked-language-model pretraining: an encoder that fills in blanks (chapter 16).

An encoder sees the whole sentence at once, so it cannot be trained to predict the next token
(it would simply read it). Devlin et al. (2019) hide some tokens instead and train the encoder
to recover them from both sides of the context: the *masked language model* (MLM).

:func:`mask_tokens` implements their corruption. Each ordinary token is selected with
probability 15% (padding and other special tokens never are); of the selected tokens, 80%
are replaced by ``[MASK]``, 10% by a random token and 10% are left unchanged, and the loss is
computed at the selected positions only. The random and unchanged cases matter because
``[MASK]`` never occurs in real text: without them the model would only learn to represent
the masked positions well, and could treat every visible token as trustworthy.

:class:`MaskedLanguageModel` is the encoder-only model: token embeddings and learned positions,
the course's :class:`~transformer_course.models.encoder.TransformerEncoder` (pre-norm, GELU), and
BERT's MLM head (a dense layer, GELU and LayerNorm, then logits through the token embedding
matrix itself: tied weights, plus one bias per token).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..utils.tokenizer import PAD_ID
from .attention import make_padding_mask
from .embeddings import LearnedPositionalEmbedding, TokenEmbedding
from .encoder import EncoderLayer, TransformerEncoder
from .feedforward import ACTIVATIONS
from .normalization import LayerNorm
from .transformer import check_layer_settings, check_positive, init_linear_layers

__all__ = [
    "IGNORE_INDEX",
    "mask_tokens",
    "mlm_loss",
    "BertConfig",
    "MaskedLanguageModel",
    "pad_sequences",
    "bert_layer",
]

IGNORE_INDEX = -100  # label of the positions the loss skips (F.cross_entropy's default)


def _check_probability(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value}")


def mask_tokens(
    tokens: Tensor,
    mask_id: int,
    vocab_size: int,
    special_ids: Sequence[int],
    mask_prob: float = 0.15,
    mask_token_prob: float = 0.8,
    random_token_prob: float = 0.1,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """BERT's corruption of a batch of token ids.

    Args:
        tokens: ``(batch, seq_len)`` integer ids, padded.
        mask_id: the id of ``[MASK]``; it is never selected itself, nor drawn as a random token.
        vocab_size: the model's vocabulary size (``[MASK]`` included); random replacements are
            drawn uniformly from the ids in ``[0, vocab_size)`` that are neither special nor
            ``mask_id``.
        special_ids: ids never selected: padding, ``<s>``, ``</s>``, ...
        mask_prob: chance that an ordinary token is selected for prediction (15%).
        mask_token_prob: chance that a selected token becomes ``[MASK]`` (80%).
        random_token_prob: chance that a selected token becomes a random token (10%); the rest
            (10%) stay unchanged.
        generator: for reproducible masks.

    Returns:
        ``inputs`` ``(batch, seq_len)``: the corrupted ids the model reads, and ``labels``
        ``(batch, seq_len)``: the original id at the selected positions and
        :data:`IGNORE_INDEX` (-100) everywhere else, so the loss covers the selected positions
        only.
    """
    if tokens.dim() != 2:
        raise ValueError(f"tokens must have shape (batch, seq_len), got {tuple(tokens.shape)}")
    if tokens.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"tokens must be integer ids, got dtype {tokens.dtype}")
    if not 0 <= mask_id < vocab_size:
        raise ValueError(f"mask_id must be in [0, vocab_size={vocab_size}), got {mask_id}")
    if tokens.numel():
        low, high = (int(v) for v in torch.aminmax(tokens))
        if low < 0 or high >= vocab_size:
            raise ValueError(f"token ids must lie in [0, {vocab_size}), got {low} to {high}")
    for name, value in (("mask_prob", mask_prob), ("mask_token_prob", mask_token_prob),
                        ("random_token_prob", random_token_prob)):
        _check_probability(name, value)
    if mask_token_prob + random_token_prob > 1.0:
        raise ValueError(
            f"mask_token_prob + random_token_prob must be at most 1, got {mask_token_prob} + "
            f"{random_token_prob}"
        )
    excluded = {int(i) for i in special_ids} | {mask_id}
    candidates = torch.tensor([i for i in range(vocab_size) if i not in excluded],
                              dtype=tokens.dtype, device=tokens.device)  # random replacements
    if len(candidates) == 0:
        raise ValueError("every id is special: no token could be drawn as a replacement")

    def uniform() -> Tensor:
        return torch.rand(tokens.shape, generator=generator).to(tokens.device)

    special = torch.zeros_like(tokens, dtype=torch.bool)
    for i in excluded:
        special |= tokens == i  # (batch, seq_len), True where a token may never be selected
    selected = (uniform() < mask_prob) & ~special  # (batch, seq_len)
    # One more uniform number per position splits the selected ones 80 / 10 / 10.
    choice = uniform()  # (batch, seq_len)
    to_mask = selected & (choice < mask_token_prob)
    to_random = selected & (choice >= mask_token_prob) & (
        choice < mask_token_prob + random_token_prob)
    random_ids = candidates[torch.randint(len(candidates), tokens.shape,
                                          generator=generator).to(tokens.device)]
    inputs = torch.where(to_mask, torch.full_like(tokens, mask_id), tokens)
    inputs = torch.where(to_random, random_ids, inputs)  # (batch, seq_len)
    labels = torch.where(selected, tokens, torch.full_like(tokens, IGNORE_INDEX))
    return inputs, labels


def mlm_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean cross-entropy over the selected positions (``labels != IGNORE_INDEX``).

    ``logits``: ``(batch, seq_len, vocab)`` with ``labels`` ``(batch, seq_len)``, or the
    logits of the selected positions only, ``(n_selected, vocab)``, with ``labels`` of the
    full ``(batch, seq_len)`` shape (see :meth:`MaskedLanguageModel.forward`'s
    ``positions``). A batch in which nothing was selected is an error rather than a silent NaN.
    """
    selected = labels != IGNORE_INDEX
    if not selected.any():
        raise ValueError("no position is selected for prediction in this batch")
    if logits.dim() == 2 and labels.dim() == 2:
        if logits.shape[0] != int(selected.sum()):
            raise ValueError(f"{logits.shape[0]} rows of logits for {int(selected.sum())} "
                             "selected positions")
        return F.cross_entropy(logits, labels[selected])
    if logits.shape[:-1] != labels.shape:
        raise ValueError(f"logits {tuple(logits.shape)} must be labels' shape "
                         f"{tuple(labels.shape)} plus a vocabulary dimension")
    return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX)


def pad_sequences(sequences: Sequence[Sequence[int]], pad_id: int,
                  max_len: int | None = None) -> Tensor:
    """Right-pad id lists to a ``(batch, longest)`` tensor, cutting each to ``max_len``."""
    if not sequences:
        raise ValueError("need at least one sequence")
    cut = [list(s)[:max_len] if max_len else list(s) for s in sequences]
    width = max(len(s) for s in cut)
    out = torch.full((len(cut), width), pad_id, dtype=torch.long)
    for row, ids in enumerate(cut):
        out[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out


@dataclass
class BertConfig:
    """Sizes of the encoder-only masked language model (a very small BERT)."""

    vocab_size: int
    max_len: int = 64
    d_model: int = 128
    num_heads: int = 4
    num_layers: int = 2
    d_ff: int | None = None  # None: 4 * d_model
    dropout: float = 0.1
    activation: str = "gelu"
    pad_id: int = PAD_ID

    def __post_init__(self) -> None:
        if self.d_ff is None:
            self.d_ff = 4 * self.d_model
        check_positive(self, ("vocab_size", "max_len", "d_model", "num_heads", "num_layers",
                              "d_ff"))
        check_layer_settings(self)
        if not 0 <= self.pad_id < self.vocab_size:
            raise ValueError(f"pad_id must be in [0, {self.vocab_size}), got {self.pad_id}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def bert_layer(config: BertConfig) -> EncoderLayer:
    """One encoder layer of the model: pre-norm, the config's activation (GELU)."""
    c = config
    return EncoderLayer(c.d_model, c.num_heads, c.d_ff, c.dropout, c.activation, norm_first=True)


class MaskedLanguageModel(nn.Module):
    """Encoder-only Transformer with BERT's MLM head; every position sees every real token.

    ``forward(tokens)``: ``(batch, seq_len)`` ids -> logits ``(batch, seq_len, vocab_size)``.
    Padding (``config.pad_id``) is masked out of the attention as keys. Learned positions, on
    the scale of the token embeddings.
    """

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = c = config
        self.token_embed = TokenEmbedding(c.vocab_size, c.d_model, padding_idx=c.pad_id)
        self.pos_embed = LearnedPositionalEmbedding(c.d_model, c.max_len, c.dropout)
        # TokenEmbedding scales the token vectors to entries of unit size; position vectors
        # start on the same scale (BERT starts both at the same small scale), so that attention
        # can tell positions apart from the first step. At the 0.02 of GPT-2's initialisation
        # they would be drowned by the tokens, and a model pretrained for seconds first spends
        # its steps growing them.
        nn.init.normal_(self.pos_embed.embedding.weight, std=1.0)
        # Pre-norm layers, so the stack ends with a LayerNorm.
        self.encoder = TransformerEncoder([bert_layer(c) for _ in range(c.num_layers)],
                                          LayerNorm(c.d_model))
        # BERT's head: transform each vector once more before comparing it with the vocabulary.
        self.head_dense = nn.Linear(c.d_model, c.d_model)
        self.head_norm = LayerNorm(c.d_model)
        self.head_activation = ACTIVATIONS[c.activation]
        self.output_bias = nn.Parameter(torch.zeros(c.vocab_size))
        init_linear_layers(self.encoder)
        init_linear_layers(self.head_dense)

    def encode(self, tokens: Tensor) -> Tensor:
        """Contextual vectors ``(batch, seq_len, d_model)``, one per token."""
        if tokens.dim() != 2:
            raise ValueError(f"tokens must have shape (batch, seq_len), got {tuple(tokens.shape)}")
        if tokens.shape[1] > self.config.max_len:
            raise ValueError(f"{tokens.shape[1]} tokens exceed max_len {self.config.max_len}")
        mask = make_padding_mask(tokens, self.config.pad_id)  # (batch, 1, 1, seq_len)
        x = self.pos_embed(self.token_embed(tokens))  # (batch, seq_len, d_model)
        return self.encoder(x, mask)  # (batch, seq_len, d_model)

    def forward(self, tokens: Tensor, positions: Tensor | None = None) -> Tensor:
        """Logits ``(batch, seq_len, vocab_size)``, or only at ``positions``.

        ``positions``: boolean ``(batch, seq_len)``, e.g. ``labels != IGNORE_INDEX``; the
        result is then ``(n_selected, vocab_size)`` in row-major order, matching
        ``labels[positions]``. Training needs the logits of the selected 15% only, and the
        vocabulary projection is the largest matrix product of a small model, so this saves
        most of its cost.
        """
        h = self.encode(tokens)  # (batch, seq_len, d_model)
        if positions is not None:
            if positions.dtype != torch.bool or positions.shape != tokens.shape:
                raise ValueError(
                    f"positions must be a boolean tensor of the tokens' shape "
                    f"{tuple(tokens.shape)}, got {positions.dtype} {tuple(positions.shape)}"
                )
            h = h[positions]  # (n_selected, d_model)
        h = self.head_norm(self.head_activation(self.head_dense(h)))
        # Tied output: the logit of token v is h . e_v + b_v, with e_v its input embedding.
        return F.linear(h, self.token_embed.weight, self.output_bias)  # (..., vocab_size)

    def attention_weights(self) -> list[Tensor]:
        return self.encoder.attention_weights()

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
