"""Copy weights from PyTorch's built-in modules into the course's, for parity checks.

With identical weights, the from-scratch modules must produce the same numbers as
``nn.MultiheadAttention``, ``nn.LayerNorm``, ``nn.TransformerEncoderLayer`` and
``nn.TransformerDecoderLayer`` (chapters 3, 6, 7 and 8 and the tests check this).
"""

from __future__ import annotations

import torch
from torch import nn

from .decoder import DecoderLayer
from .encoder import EncoderLayer
from .multihead import MultiHeadAttention
from .normalization import LayerNorm

__all__ = [
    "copy_multihead_attention",
    "copy_layer_norm",
    "copy_encoder_layer",
    "copy_decoder_layer",
    "ENCODER_LAYER_NAMES",
    "DECODER_LAYER_NAMES",
]


def _copy_linear(target: nn.Linear, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    if target.weight.shape != weight.shape:
        raise ValueError(f"weight shape {tuple(weight.shape)} != {tuple(target.weight.shape)}")
    target.weight.copy_(weight)
    if target.bias is not None and bias is not None:
        target.bias.copy_(bias)


@torch.no_grad()
def copy_multihead_attention(ours: MultiHeadAttention, theirs: nn.MultiheadAttention) -> None:
    """``nn.MultiheadAttention`` stacks W_Q, W_K, W_V into one ``(3 d_model, d_model)``
    ``in_proj_weight``; split it into our three projections."""
    if theirs.in_proj_weight is None:
        raise ValueError("only nn.MultiheadAttention with equal query/key/value sizes is supported")
    w_q, w_k, w_v = theirs.in_proj_weight.chunk(3, dim=0)  # each (d_model, d_model)
    if theirs.in_proj_bias is not None:
        b_q, b_k, b_v = theirs.in_proj_bias.chunk(3, dim=0)
    else:
        b_q = b_k = b_v = None
    _copy_linear(ours.W_Q, w_q, b_q)
    _copy_linear(ours.W_K, w_k, b_k)
    _copy_linear(ours.W_V, w_v, b_v)
    _copy_linear(ours.W_O, theirs.out_proj.weight, theirs.out_proj.bias)


@torch.no_grad()
def copy_layer_norm(ours: LayerNorm, theirs: nn.LayerNorm) -> None:
    ours.gamma.copy_(theirs.weight)
    ours.beta.copy_(theirs.bias)
    ours.eps = theirs.eps


# Our submodule -> PyTorch's, in a layer: the norms have the same names (``norm1``, ...), the
# feed-forward network's linear layers sit directly in PyTorch's layer, and its cross-attention
# is called ``multihead_attn``.
ENCODER_LAYER_NAMES = {
    "self_attn": "self_attn",
    "ffn.linear1": "linear1",
    "ffn.linear2": "linear2",
    "norm1": "norm1",
    "norm2": "norm2",
}
DECODER_LAYER_NAMES = {
    "self_attn": "self_attn",
    "cross_attn": "multihead_attn",
    "ffn.linear1": "linear1",
    "ffn.linear2": "linear2",
    "norm1": "norm1",
    "norm2": "norm2",
    "norm3": "norm3",
}


def _copy_layer(ours: nn.Module, theirs: nn.Module, names: dict[str, str]) -> None:
    for our_name, their_name in names.items():
        mine, its = ours.get_submodule(our_name), theirs.get_submodule(their_name)
        if isinstance(mine, MultiHeadAttention):
            copy_multihead_attention(mine, its)
        elif isinstance(mine, LayerNorm):
            copy_layer_norm(mine, its)
        else:
            _copy_linear(mine, its.weight, its.bias)


@torch.no_grad()
def copy_encoder_layer(ours: EncoderLayer, theirs: nn.TransformerEncoderLayer) -> None:
    _copy_layer(ours, theirs, ENCODER_LAYER_NAMES)


@torch.no_grad()
def copy_decoder_layer(ours: DecoderLayer, theirs: nn.TransformerDecoderLayer) -> None:
    if ours.cross_attn is None:
        raise ValueError("our decoder layer has no cross-attention to receive multihead_attn")
    _copy_layer(ours, theirs, DECODER_LAYER_NAMES)
