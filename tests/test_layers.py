import pytest
import torch
import torch.nn.functional as F
from torch import nn

from transformer_course.models.attention import make_causal_mask, make_padding_mask, to_pytorch_mask
from transformer_course.models.decoder import DecoderLayer, TransformerDecoder
from transformer_course.models.encoder import EncoderLayer, TransformerEncoder
from transformer_course.models.feedforward import PositionwiseFeedForward
from transformer_course.models.interop import (
    copy_decoder_layer,
    copy_encoder_layer,
    copy_layer_norm,
)
from transformer_course.models.multihead import MultiHeadAttention
from transformer_course.models.normalization import (
    LayerNorm,
    ResidualConnection,
    upgrade_state_dict,
)


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


def test_layers_name_their_norms_as_pytorch_does():
    assert [n for n, _ in EncoderLayer(8, 2, 16).named_children()] == [
        "self_attn", "ffn", "norm1", "norm2", "dropout"]
    decoder = {n for n, _ in DecoderLayer(8, 2, 16).named_children()}
    assert {"self_attn", "cross_attn", "ffn", "norm1", "norm2", "norm3", "dropout"} == decoder
    gpt_block = DecoderLayer(8, 2, 16, cross_attention=False)
    assert gpt_block.cross_attn is None and gpt_block.norm2 is None
    assert {n.split(".")[0] for n in gpt_block.state_dict()} == {"self_attn", "ffn", "norm1",
                                                                  "norm3"}


def old_names(state_dict, renames):
    """``state_dict`` as the layers built from ResidualConnection modules named it."""
    new_to_old = {new: old for old, new in renames.items()}
    out = {}
    for key, value in state_dict.items():
        for new, old in new_to_old.items():
            if new in key:
                key = key.replace(new, old)
                break
        out[key] = value
    return out


def randomize(module):
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, 0.5)


def build_stack(kind, norm_first):
    norm = LayerNorm(16) if norm_first else None
    if kind == "encoder":
        return TransformerEncoder([EncoderLayer(16, 2, 32, 0.0, norm_first=norm_first)
                                   for _ in range(2)], norm)
    return TransformerDecoder([DecoderLayer(16, 2, 32, 0.0, norm_first=norm_first,
                                            cross_attention=kind == "decoder")
                               for _ in range(2)], norm)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("kind", ["encoder", "decoder", "gpt"])
def test_old_named_state_dicts_load_with_identical_outputs(kind, norm_first):
    """Checkpoints of the layers that wrapped each sublayer in a ResidualConnection
    (``attn_residual.norm.gamma``, ...) load into ``norm1``, ``norm2`` (, ``norm3``)."""
    torch.manual_seed(0)
    stack = build_stack(kind, norm_first)
    randomize(stack)
    renames = EncoderLayer.OLD_NAMES if kind == "encoder" else DecoderLayer.OLD_NAMES
    state = old_names(stack.state_dict(), renames)
    assert any("_residual.norm." in k for k in state)
    assert not any(".norm1." in k for k in state)
    fresh = build_stack(kind, norm_first)
    # what load_model_state (Trainer, the recipes) checks before loading: the model's keys
    assert upgrade_state_dict(fresh, state).keys() == fresh.state_dict().keys()
    fresh.load_state_dict(state)  # strict
    x, memory, causal = torch.randn(2, 5, 16), torch.randn(2, 6, 16), make_causal_mask(5)

    @torch.no_grad()
    def run(model):
        if kind == "encoder":
            return model.eval()(x)
        return model.eval()(x, memory if kind == "decoder" else None, causal)

    assert torch.equal(run(fresh), run(stack))


class EncoderLayerFromScratch(nn.Module):
    """Chapter 7's layer, built inline from the package's sublayers."""

    def __init__(self, d_model, num_heads, d_ff, dropout=0.1, norm_first=False):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, num_heads, dropout)
        self.ffn = PositionwiseFeedForward(d_model, d_ff, dropout)
        self.norm1 = LayerNorm(d_model)
        self.norm2 = LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.norm_first = norm_first

    def forward(self, x, mask=None):
        if self.norm_first:
            h = self.norm1(x)
            x = x + self.dropout(self.self_attn(h, h, h, mask)[0])
            return x + self.dropout(self.ffn(self.norm2(x)))
        x = self.norm1(x + self.dropout(self.self_attn(x, x, x, mask)[0]))
        return self.norm2(x + self.dropout(self.ffn(x)))


@pytest.mark.parametrize("norm_first", [False, True])
def test_inline_layer_state_dict_loads_into_encoder_layer_without_renaming(norm_first, tol):
    ours = EncoderLayerFromScratch(16, 2, 32, dropout=0.0, norm_first=norm_first)
    randomize(ours)
    package = EncoderLayer(16, 2, 32, dropout=0.0, norm_first=norm_first)
    package.load_state_dict(ours.state_dict())  # strict: the same names
    assert ours.state_dict().keys() == package.state_dict().keys()
    x = torch.randn(2, 5, 16)
    mask = make_padding_mask(torch.tensor([[1] * 5, [1] * 3 + [0] * 2]), 0)
    torch.testing.assert_close(package.eval()(x, mask), ours.eval()(x, mask), **tol)


def test_stacks_take_their_layers():
    layers = [EncoderLayer(8, 2, 16) for _ in range(3)]
    stack = TransformerEncoder(layers, LayerNorm(8))
    assert list(stack.layers) == layers and isinstance(stack.final_norm, LayerNorm)
    assert isinstance(TransformerEncoder(nn.ModuleList(layers)).final_norm, nn.Identity)
    stack(torch.randn(1, 4, 8))
    assert [tuple(w.shape) for w in stack.attention_weights()] == [(1, 2, 4, 4)] * 3
    with pytest.raises(ValueError, match="cross-attention"):
        TransformerDecoder([DecoderLayer(8, 2, 16), DecoderLayer(8, 2, 16, cross_attention=False)])
    assert not TransformerDecoder([DecoderLayer(8, 2, 16, cross_attention=False)]).cross_attention
