"""The nn.Transformer variant used by chapter 14's comparison: same numbers as ours when it
holds our weights, and usable by the translator's decoders (no KV cache)."""

import pytest
import torch

from transformer_course.models.generation import beam_search, greedy_decode
from transformer_course.models.interop import (
    copy_decoder_layer,
    copy_encoder_layer,
    copy_layer_norm,
)
from transformer_course.models.torch_transformer import TorchTransformer
from transformer_course.models.transformer import Transformer, TransformerConfig


def make_pair(norm_first: bool):
    torch.manual_seed(0)
    config = TransformerConfig(40, 40, d_model=32, num_heads=4, num_encoder_layers=2,
                               num_decoder_layers=2, d_ff=64, dropout=0.0, max_len=32,
                               share_embeddings=True, norm_first=norm_first)
    theirs = TorchTransformer(config).eval()
    ours = Transformer(config).eval()
    ours.load_state_dict({k: v for k, v in theirs.state_dict().items()
                          if not k.startswith("core.")}, strict=False)
    for mine, its in zip(ours.encoder.layers, theirs.core.encoder.layers, strict=True):
        copy_encoder_layer(mine, its)
    for mine, its in zip(ours.decoder.layers, theirs.core.decoder.layers, strict=True):
        copy_decoder_layer(mine, its)
    if norm_first:  # both end each stack with a LayerNorm
        copy_layer_norm(ours.encoder.final_norm, theirs.core.encoder.norm)
        copy_layer_norm(ours.decoder.final_norm, theirs.core.decoder.norm)
    else:
        # nn.Transformer ends each stack with one more LayerNorm, which our post-norm stacks
        # lack; without it the two compute the same function.
        theirs.core.encoder.norm = theirs.core.decoder.norm = None
    return ours, theirs


def padded_batch():
    src = torch.randint(4, 40, (3, 7))
    src[0, 5:] = 0  # padding, which both models must ignore the same way
    tgt = torch.randint(4, 40, (3, 6))
    tgt[1, 4:] = 0
    return src, tgt


@pytest.mark.parametrize("norm_first", [False, True])
def test_nn_transformer_variant_computes_what_ours_computes_with_the_same_weights(norm_first):
    ours, theirs = make_pair(norm_first)
    src, tgt = padded_batch()
    with torch.no_grad():
        torch.testing.assert_close(theirs(src, tgt), ours(src, tgt), atol=1e-5, rtol=1e-5)


def test_decoders_run_without_a_cache_and_match_ours():
    ours, theirs = make_pair(False)
    src, _ = padded_batch()
    assert greedy_decode(theirs, src, 2, 3, 10, use_cache=False) == greedy_decode(
        ours, src, 2, 3, 10)
    assert beam_search(theirs, src, 3, 2, 3, 10, use_cache=False) == beam_search(
        ours, src, 3, 2, 3, 10)
    with pytest.raises(ValueError, match="no key/value cache"):
        greedy_decode(theirs, src, 2, 3, 10)


@pytest.mark.parametrize("scheme", ["rope", "alibi", "t5"])
def test_nn_transformer_variant_refuses_positions_inside_attention(scheme):
    config = TransformerConfig(20, 20, d_model=16, num_heads=2, num_encoder_layers=1,
                               num_decoder_layers=1, d_ff=32, positional=scheme)
    with pytest.raises(ValueError, match="cannot use positional"):
        TorchTransformer(config)
