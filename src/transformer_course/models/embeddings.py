"""Token embeddings and positional encodings (introduced in chapter 4).

Attention is blind to order: permuting the input permutes the output and nothing else. The
positional encoding is added to the token embeddings so that position becomes part of each
vector.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = [
    "sinusoidal_encoding",
    "SinusoidalPositionalEncoding",
    "LearnedPositionalEmbedding",
    "TokenEmbedding",
]


def sinusoidal_encoding(max_len: int, d_model: int) -> Tensor:
    """The table of "Attention Is All You Need", ``(max_len, d_model)``.

    ``PE[pos, 2i] = sin(pos / 10000^(2i/d_model))`` and
    ``PE[pos, 2i+1] = cos(pos / 10000^(2i/d_model))``: each pair of dimensions is a clock
    turning at its own speed, from one turn every 2*pi positions down to one every 10000*2*pi.
    """
    if d_model % 2 != 0:
        raise ValueError(f"d_model must be even for sinusoidal encodings, got {d_model}")
    position = torch.arange(max_len, dtype=torch.float32)[:, None]  # (max_len, 1)
    inv_freq = torch.exp(
        torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model)
    )  # (d_model / 2,)
    angles = position * inv_freq  # (max_len, d_model / 2)
    table = torch.zeros(max_len, d_model)
    table[:, 0::2] = torch.sin(angles)
    table[:, 1::2] = torch.cos(angles)
    return table


def _check_positions(x: Tensor, start: int, max_len: int, d_model: int) -> int:
    if x.dim() != 3 or x.shape[-1] != d_model:
        raise ValueError(
            f"expected input of shape (batch, seq_len, d_model={d_model}), got {tuple(x.shape)}"
        )
    end = start + x.shape[1]
    if start < 0 or end > max_len:
        raise ValueError(
            f"positions {start}..{end - 1} are outside the table of max_len={max_len}; "
            "raise max_len in the model configuration"
        )
    return end


class SinusoidalPositionalEncoding(nn.Module):
    """Adds the fixed sinusoidal table to ``(batch, seq_len, d_model)`` inputs, then dropout."""

    def __init__(self, d_model: int, max_len: int = 512, dropout: float = 0.0):
        super().__init__()
        self.d_model = d_model
        self.max_len = max_len
        self.dropout = nn.Dropout(dropout)
        # A buffer: saved with the model and moved by .to(device), but not trained.
        self.register_buffer("table", sinusoidal_encoding(max_len, d_model), persistent=False)

    def forward(self, x: Tensor, start: int = 0) -> Tensor:
        """``x``: ``(batch, seq_len, d_model)``; ``start`` is the first position (for decoding
        with a cache, where the new token sits at position ``start``)."""
        end = _check_positions(x, start, self.max_len, self.d_model)
        return self.dropout(x + self.table[start:end])  # (batch, seq_len, d_model)


class LearnedPositionalEmbedding(nn.Module):
    """A trained vector per position (as in BERT and GPT), added to the inputs, then dropout."""

    def __init__(self, d_model: int, max_len: int = 512, dropout: float = 0.0):
        super().__init__()
        self.d_model = d_model
        self.max_len = max_len
        self.embedding = nn.Embedding(max_len, d_model)
        nn.init.normal_(self.embedding.weight, std=0.02)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, start: int = 0) -> Tensor:
        end = _check_positions(x, start, self.max_len, self.d_model)
        positions = torch.arange(start, end, device=x.device)  # (seq_len,)
        return self.dropout(x + self.embedding(positions))  # (batch, seq_len, d_model)


class TokenEmbedding(nn.Module):
    """Token ids to vectors, multiplied by sqrt(d_model).

    The embeddings are initialised with standard deviation ``d_model ** -0.5``, the scale that
    suits them as the (tied) output projection; multiplied by sqrt(d_model), their entries
    have unit scale on input, comparable with the positional encodings in [-1, 1] instead of
    being drowned by them. The original paper does the same.
    """

    def __init__(self, vocab_size: int, d_model: int, padding_idx: int | None = None):
        super().__init__()
        self.vocab_size = vocab_size
        self.d_model = d_model
        self.embedding = nn.Embedding(vocab_size, d_model, padding_idx=padding_idx)
        nn.init.normal_(self.embedding.weight, std=d_model**-0.5)
        if padding_idx is not None:
            with torch.no_grad():
                self.embedding.weight[padding_idx].zero_()
        self.scale = math.sqrt(d_model)

    @property
    def weight(self) -> Tensor:
        return self.embedding.weight

    def forward(self, tokens: Tensor) -> Tensor:
        """``tokens``: ``(batch, seq_len)`` integer ids -> ``(batch, seq_len, d_model)``."""
        if tokens.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"token ids must be an integer tensor, got dtype {tokens.dtype}")
        # Checked where the ids live on the CPU; on an accelerator, reading the range back
        # would stall every step, and nn.Embedding's own device-side check still fires.
        if tokens.numel() and tokens.device.type == "cpu":
            low, high = (int(v) for v in torch.aminmax(tokens))
            if low < 0 or high >= self.vocab_size:
                raise ValueError(
                    f"token ids must lie in [0, {self.vocab_size}), got values from {low} to {high}"
                )
        return self.embedding(tokens) * self.scale  # (batch, seq_len, d_model)
