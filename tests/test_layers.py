import pytest
import torch
import torch.nn.functional as F
from torch import nn

from transformer_course.models.attention import make_causal_mask, make_padding_mask, to_pytorch_mask
from transformer_course.models.decoder import DecoderLayer
from transformer_course.models.encoder import EncoderLayer
from transformer_course.models.feedforward import PositionwiseFeedForward
from transformer_course.models.interop import (
    copy_decoder_layer,
    copy_encoder_layer,
    copy_layer_norm,
)
from transformer_course.models.normalization import LayerNorm, ResidualConnection


def test_layer_norm_matches_pytorch(tol):
    theirs = nn.LayerNorm(32)
    with torch.no_grad():
        theirs.weight.normal_()
        theirs.bias.normal_()
    ours = LayerNorm(32)
    copy_layer_norm(ours, theirs)
    x = torch.randn(4, 9, 32) * 3 + 1
    torch.testing.assert_close(ours(x), theirs(x), **tol)


def test_layer_norm_output_is_standardized_per_position():
    y = LayerNorm(64)(torch.randn(3, 5, 64) * 10 + 4)
    torch.testing.assert_close(y.mean(-1), torch.zeros(3, 5), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(-1, unbiased=False), torch.ones(3, 5), atol=1e-3, rtol=0)


def test_layer_norm_rejects_wrong_width():
    with pytest.raises(ValueError, match="d_model=8"):
        LayerNorm(8)(torch.randn(2, 3, 4))


@pytest.mark.parametrize("activation, fn", [("relu", F.relu), ("gelu", F.gelu)])
def test_feed_forward_is_position_wise(activation, fn, tol):
    ffn = PositionwiseFeedForward(8, 32, dropout=0.0, activation=activation)
    x = torch.randn(2, 5, 8)
    expected = ffn.linear2(fn(ffn.linear1(x)))
    torch.testing.assert_close(ffn(x), expected, **tol)
    # each position is transformed independently of the others
    torch.testing.assert_close(ffn(x[:, 2:3]), ffn(x)[:, 2:3], **tol)


def test_feed_forward_rejects_unknown_activation():
    with pytest.raises(ValueError, match="activation"):
        PositionwiseFeedForward(8, 32, activation="tanh")


def test_residual_connection_placements(tol):
    block = ResidualConnection(8, dropout=0.0, norm_first=False)
    x = torch.randn(2, 3, 8)
    torch.testing.assert_close(block(x, torch.sin), block.norm(x + torch.sin(x)), **tol)
    block.norm_first = True
    torch.testing.assert_close(block(x, torch.sin), x + torch.sin(block.norm(x)), **tol)


def randomize_norms(module):
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_encoder_layer_matches_pytorch(norm_first, activation, tol):
    theirs = nn.TransformerEncoderLayer(
        32, 4, 64, dropout=0.0, activation=activation, batch_first=True, norm_first=norm_first
    ).eval()
    randomize_norms(theirs)
    ours = EncoderLayer(32, 4, 64, dropout=0.0, activation=activation, norm_first=norm_first)
    copy_encoder_layer(ours, theirs)
    ours.eval()
    x = torch.randn(3, 6, 32)
    tokens = torch.tensor([[1] * 6, [1] * 4 + [0] * 2, [1] * 2 + [0] * 4])
    mask = make_padding_mask(tokens, 0)
    out = ours(x, mask)
    with torch.no_grad():  # no_grad lets PyTorch take its fused "fast path" in eval mode
        ref = theirs(x, src_key_padding_mask=to_pytorch_mask(mask[:, 0, 0]))
    real = tokens.bool()
    torch.testing.assert_close(out[real], ref[real], **tol)
    with torch.no_grad():
        ref_slow = theirs(x)
    torch.testing.assert_close(ours(x), ref_slow, **tol)


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_layer_matches_pytorch(norm_first, tol):
    theirs = nn.TransformerDecoderLayer(
        32, 4, 64, dropout=0.0, batch_first=True, norm_first=norm_first
    ).eval()
    randomize_norms(theirs)
    ours = DecoderLayer(32, 4, 64, dropout=0.0, norm_first=norm_first).eval()
    copy_decoder_layer(ours, theirs)
    tgt, memory = torch.randn(2, 5, 32), torch.randn(2, 7, 32)
    src = torch.tensor([[1] * 7, [1] * 3 + [0] * 4])
    src_mask = make_padding_mask(src, 0)
    out = ours(tgt, memory, make_causal_mask(5), src_mask)
    ref = theirs(
        tgt, memory, tgt_mask=to_pytorch_mask(make_causal_mask(5)),
        memory_key_padding_mask=to_pytorch_mask(src_mask[:, 0, 0]),
    )
    torch.testing.assert_close(out, ref, **tol)


def test_decoder_layer_without_memory_is_an_error():
    with pytest.raises(ValueError, match="memory"):
        DecoderLayer(16, 2, 32)(torch.randn(1, 3, 16))
