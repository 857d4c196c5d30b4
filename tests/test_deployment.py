"""Chapter 17: the preallocated KV cache, int8 quantization and ONNX export."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from transformer_course.models.generation import beam_search, greedy_decode
from transformer_course.models.multihead import KVCache, PreallocatedKVCache
from transformer_course.models.transformer import Transformer, TransformerConfig
from transformer_course.serving.deployment import (
    OnnxTranslator,
    export_onnx,
    quantize_dynamic_int8,
    quantize_translator,
    quantize_weight_int8,
    state_dict_bytes,
)

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "checkpoints" / "translator-cpu" / "model.pt"


def tiny_model(**overrides) -> Transformer:
    config = dict(d_model=32, num_heads=4, num_encoder_layers=2, num_decoder_layers=2, d_ff=64,
                  dropout=0.1, max_len=64, share_embeddings=True)
    config.update(overrides)
    return Transformer(TransformerConfig(40, 40, **config)).eval()


def padded_sources(batch=3, length=9, vocab=40):
    src = torch.randint(4, vocab, (batch, length))
    src[1, length - 3:] = 0  # padding, so the masks matter
    return src


# --- the preallocated cache ---------------------------------------------------------------------


def test_preallocated_cache_returns_what_the_growing_cache_returns():
    growing, fixed = KVCache(), PreallocatedKVCache(max_len=10)
    for new in (3, 1, 1, 4):  # a prompt, then single steps, then a chunk
        k, v = torch.randn(2, 4, new, 8), torch.randn(2, 4, new, 8)
        expected = growing.update(k, v)
        got = fixed.update(k, v)
        for a, b in zip(got, expected, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        assert len(fixed) == len(growing)
    assert fixed.is_filled and not fixed.static


def test_preallocated_cache_writes_in_place_into_one_buffer():
    cache = PreallocatedKVCache(max_len=6)
    k1, _ = cache.update(torch.randn(1, 2, 1, 4), torch.randn(1, 2, 1, 4))
    k2, _ = cache.update(torch.randn(1, 2, 1, 4), torch.randn(1, 2, 1, 4))
    assert k1.data_ptr() == k2.data_ptr()  # views of the same buffer: nothing reallocated
    assert k2.shape == (1, 2, 2, 4)


def test_preallocated_cache_reorders_like_the_growing_cache():
    growing, fixed = KVCache(), PreallocatedKVCache(max_len=5)
    k, v = torch.randn(3, 2, 2, 4), torch.randn(3, 2, 2, 4)
    growing.update(k, v)
    fixed.update(k, v)
    for index in (torch.tensor([2, 2, 0]), torch.tensor([1, 0])):  # same and smaller batch
        growing.reorder(index)
        fixed.reorder(index)
        torch.testing.assert_close(fixed.key, growing.key, rtol=0, atol=0)
        torch.testing.assert_close(fixed.value, growing.value, rtol=0, atol=0)


def test_preallocated_cache_rejects_overflow_and_mismatched_shapes():
    cache = PreallocatedKVCache(max_len=2)
    cache.update(torch.randn(1, 2, 2, 4), torch.randn(1, 2, 2, 4))
    with pytest.raises(ValueError, match="max_len=2"):
        cache.update(torch.randn(1, 2, 1, 4), torch.randn(1, 2, 1, 4))
    other = PreallocatedKVCache(4)
    other.update(torch.randn(1, 2, 1, 4), torch.randn(1, 2, 1, 4))
    with pytest.raises(ValueError, match="do not match"):
        other.update(torch.randn(2, 2, 1, 4), torch.randn(2, 2, 1, 4))  # another batch size
    with pytest.raises(ValueError, match="both be"):
        other.update(torch.randn(1, 2, 1, 4), torch.randn(1, 2, 2, 4))
    with pytest.raises(ValueError, match="max_len must be >= 1"):
        PreallocatedKVCache(0)
    with pytest.raises(ValueError, match="update"):
        PreallocatedKVCache(3).key = torch.zeros(1)


def test_new_cache_selects_the_cache_kind():
    model = tiny_model()
    assert all(type(s) is KVCache and c.static for s, c in model.new_cache())
    caches = model.new_cache(max_len=12)
    assert all(isinstance(s, PreallocatedKVCache) and s.max_len == 12 for s, _ in caches)
    assert all(type(c) is KVCache and c.static for _, c in caches)


def test_decoding_with_the_preallocated_cache_gives_the_same_logits_and_tokens():
    model = tiny_model()
    src = padded_sources()
    src_mask = model.source_mask(src)
    memory = model.encode(src, src_mask)
    tgt = torch.randint(4, 40, (3, 7))
    growing, fixed = model.new_cache(), model.new_cache(max_len=7)
    with torch.no_grad():
        for t in range(7):
            a = model.decode(tgt[:, t : t + 1], memory, src_mask, growing)
            b = model.decode(tgt[:, t : t + 1], memory, src_mask, fixed)
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
        full = model.decode(tgt, memory, src_mask)  # no cache: the reference
    torch.testing.assert_close(b[:, -1], full[:, -1], rtol=1e-4, atol=1e-4)
    for eos in (3, -1):  # with early stopping, and forced to the full length
        expected = greedy_decode(model, src, eos_id=eos, max_len=20)
        assert greedy_decode(model, src, eos_id=eos, max_len=20, preallocate=True) == expected
    expected = beam_search(model, src, beam_size=3, max_len=15)
    assert beam_search(model, src, beam_size=3, max_len=15, preallocate=True) == expected


# --- quantization -------------------------------------------------------------------------------


@pytest.mark.parametrize("per_channel", [True, False])
def test_int8_weights_match_pytorchs_quantized_linear(per_channel):
    layer = nn.Linear(24, 16)
    quantized = quantize_dynamic_int8(nn.Sequential(layer), per_channel=per_channel)[0]
    q, scale = quantize_weight_int8(layer.weight, per_channel=per_channel)
    packed = quantized.weight()  # PyTorch's int8 weight
    assert torch.equal(q, packed.int_repr())
    if per_channel:
        torch.testing.assert_close(scale.squeeze(1), packed.q_per_channel_scales().float())
    else:
        torch.testing.assert_close(scale, torch.tensor(packed.q_scale()).float())
    # Rounding to the nearest step: the error is at most half a step.
    error = (q.float() * scale - layer.weight.detach()).abs()
    assert bool((error <= scale / 2 + 1e-7).all())


def test_quantize_weight_rejects_bad_input():
    with pytest.raises(ValueError, match="out_features, in_features"):
        quantize_weight_int8(torch.randn(3, 4, 5))
    with pytest.raises(ValueError, match="dtype"):
        quantize_weight_int8(torch.ones(3, 4, dtype=torch.long))


def test_quantized_model_is_smaller_close_and_leaves_the_original_alone():
    model = tiny_model(d_model=64, d_ff=256)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    quantized = quantize_dynamic_int8(model)
    linear = [m for m in model.modules() if isinstance(m, nn.Linear)]
    converted = [m for m in quantized.modules() if type(m).__name__ == "Linear"
                 and "quantized" in type(m).__module__]
    assert len(converted) == len(linear)  # every nn.Linear, including the output layer
    assert not any(isinstance(m, nn.Linear) for m in quantized.modules())
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)
    src, tgt = padded_sources(vocab=40), torch.randint(4, 40, (3, 6))
    with torch.no_grad():
        reference, approx = model(src, tgt), quantized(src, tgt)
    relative = (approx - reference).norm() / reference.norm()
    assert relative < 0.05, relative  # 8 bits: about 2 decimal digits
    assert state_dict_bytes(quantized) < 0.6 * state_dict_bytes(model)


def test_state_dict_bytes_counts_tied_weights_once_and_halves_in_fp16():
    tied = tiny_model(d_model=64)
    untied = tiny_model(d_model=64, share_embeddings=False, tie_output=False)
    embedding_bytes = 40 * 64 * 4
    assert state_dict_bytes(untied) - state_dict_bytes(tied) >= 2 * embedding_bytes
    fp32, fp16 = state_dict_bytes(tied), state_dict_bytes(tied, torch.float16)
    assert 0.45 < fp16 / fp32 < 0.6  # half, plus the file's fixed overhead


# --- ONNX ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = tiny_model()
    folder = tmp_path_factory.mktemp("onnx")
    export_onnx(model, folder)
    return model, folder


def test_export_leaves_the_model_in_eval_mode(exported):
    model, _ = exported
    assert not any(m.training for m in model.modules())


def test_onnx_graphs_match_pytorch_on_other_shapes_than_the_example(exported):
    import numpy as np
    import onnxruntime as ort

    model, folder = exported
    encoder = ort.InferenceSession(str(folder / "encoder.onnx"))
    decoder = ort.InferenceSession(str(folder / "decoder.onnx"))
    for batch, src_len, tgt_len in ((1, 4, 1), (5, 13, 9)):  # the example was (2, 7, 5)
        src = padded_sources(batch=max(batch, 2), length=src_len)[:batch]
        tgt = torch.randint(4, 40, (batch, tgt_len))
        with torch.no_grad():
            memory = model.encode(src)
            logits = model.decode(tgt, memory, model.source_mask(src))[:, -1]
        onnx_memory = encoder.run(None, {"src": src.numpy()})[0]
        onnx_logits = decoder.run(None, {"tgt": tgt.numpy(), "memory": onnx_memory,
                                         "src": src.numpy()})[0]
        np.testing.assert_allclose(onnx_memory, memory.numpy(), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(onnx_logits, logits.numpy(), rtol=1e-4, atol=1e-4)


def test_onnx_greedy_decoding_matches_pytorch(exported):
    model, folder = exported
    # The parts of a Translator that OnnxTranslator reads.
    stub = SimpleNamespace(model=model, tokenizer=SimpleNamespace(bos_id=2, eos_id=3))
    runner = OnnxTranslator(stub, folder, threads=1)
    src = padded_sources(batch=4, length=8)
    for eos in (3, -1):
        runner.tokenizer.eos_id = eos
        expected = greedy_decode(model, src, eos_id=eos, max_len=12, use_cache=False)
        assert runner.greedy_decode(src.numpy(), max_len=12) == expected
    with pytest.raises(ValueError, match="int64"):
        runner.greedy_decode(src.numpy().astype("int32"), max_len=3)


def test_export_rejects_other_models(tmp_path):
    with pytest.raises(ValueError, match="Transformer"):
        export_onnx(nn.Linear(2, 2), tmp_path)


# --- the committed translator ------------------------------------------------------------------


@pytest.mark.slow
def test_committed_translator_quantized_and_exported_still_translates(tmp_path):
    from conftest import load_or_skip

    from transformer_course.recipes.translator import load_translator
    from transformer_course.utils.dataset import load_multi30k

    if not CHECKPOINT.is_file():
        pytest.skip("no committed translator checkpoint")
    translator = load_translator(CHECKPOINT, device="cpu")
    sources = [de for de, _ in load_or_skip(load_multi30k, "test_2016_flickr")[:16]]
    reference = translator.translate(sources, beam_size=1)
    export_onnx(translator.model, tmp_path)
    assert OnnxTranslator(translator, tmp_path).translate(sources) == reference
    quantized = quantize_translator(translator).translate(sources, beam_size=1)
    agree = sum(a == b for a, b in zip(quantized, reference, strict=True))
    assert agree >= len(sources) // 2  # int8 changes a few words, not the whole output
    assert state_dict_bytes(quantize_translator(translator).model) < state_dict_bytes(
        translator.model)
