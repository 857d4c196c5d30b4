"""Getting a trained translator ready to serve: int8 quantization, ONNX export and an
onnxruntime decoder (chapter 17).

- :func:`quantize_dynamic_int8` stores the weights of every ``nn.Linear`` as 8-bit integers
  and quantizes the activations on the fly at each call ("dynamic" quantization): about 4x
  smaller linear layers and integer matrix products on the CPU, with no calibration data.
- :func:`export_onnx` writes the encoder and a decoder step as two ONNX graphs, and
  :class:`OnnxTranslator` runs greedy decoding with onnxruntime in a Python loop, so the model
  can be served without PyTorch.

The key/value cache that preallocates its buffers is
:class:`~transformer_course.models.multihead.PreallocatedKVCache`; the HTTP service is in
:mod:`transformer_course.serving.service`.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ..models.transformer import Transformer
from ..recipes.translator import Translator

__all__ = [
    "state_dict_bytes",
    "quantize_weight_int8",
    "quantize_dynamic_int8",
    "quantize_translator",
    "EncoderForExport",
    "DecoderStepForExport",
    "export_onnx",
    "OnnxTranslator",
]


# --- size on disk -------------------------------------------------------------------------------


def state_dict_bytes(model: nn.Module, dtype: torch.dtype | None = None) -> int:
    """Bytes that ``torch.save(model.state_dict())`` writes, optionally with every floating
    tensor cast to ``dtype`` (e.g. ``torch.float16``) first.

    Tensors that share storage (tied embeddings) are written once, as ``torch.save`` does;
    the cast keeps the sharing by casting each storage once. Entries that are not plain float
    tensors (the packed weights of quantized layers) are written as they are.
    """
    state = model.state_dict()
    if dtype is not None:
        cast: dict[int, Tensor] = {}  # one cast per shared tensor, so ties stay tied
        converted = {}
        for name, value in state.items():
            if isinstance(value, Tensor) and value.is_floating_point():
                key = value.data_ptr()
                if key not in cast:
                    cast[key] = value.to(dtype)
                converted[name] = cast[key]
            else:
                converted[name] = value
        state = converted
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getbuffer().nbytes


# --- int8 quantization --------------------------------------------------------------------------


def quantize_weight_int8(weight: Tensor, per_channel: bool = True) -> tuple[Tensor, Tensor]:
    """Symmetric int8 quantization of a weight matrix ``(out_features, in_features)``.

    ``scale = max |w| / 127.5`` (per output row, or one for the whole matrix) and
    ``q = clamp(round(w / scale), -128, 127)``, so ``q * scale`` approximates ``w`` with an
    error of at most ``scale / 2`` per entry. This is the rule of PyTorch's default weight
    observers for dynamic quantization, written out.

    Returns ``q`` (int8, same shape) and ``scale`` (``(out_features, 1)`` or ``()``).
    """
    if weight.dim() != 2 or not weight.is_floating_point():
        raise ValueError(
            f"weight must be a floating (out_features, in_features) matrix, got shape "
            f"{tuple(weight.shape)} and dtype {weight.dtype}"
        )
    w = weight.detach().float()
    amax = w.abs().amax(dim=1, keepdim=True) if per_channel else w.abs().amax()
    # An all-zero row would give scale 0; any positive scale represents it exactly.
    scale = torch.clamp(amax / 127.5, min=torch.finfo(torch.float32).eps)
    # Multiplying by the reciprocal (as PyTorch's kernels do) rather than dividing can round
    # a value lying almost exactly between two steps the other way; this way the integers
    # match PyTorch's bit for bit.
    q = torch.clamp(torch.round(w * (1.0 / scale)), -128, 127).to(torch.int8)
    return q, scale


def quantize_dynamic_int8(model: nn.Module, per_channel: bool = True) -> nn.Module:
    """A copy of ``model`` whose ``nn.Linear`` layers hold int8 weights (CPU inference only).

    Each linear layer becomes a dynamically quantized one: its weight is stored as int8 with
    one scale per output row (``per_channel``) or one per matrix, and at every call the input
    is quantized to 8 bits with a scale computed from its own range, multiplied with integer
    arithmetic, and the result rescaled to float. Embeddings, layer norms and the attention
    products stay in float32. The original model is left untouched.

    PyTorch 2.13 still ships the eager-mode API used here,
    ``torch.ao.quantization.quantize_dynamic``, but marks it deprecated in favour of the
    separate ``torchao`` package (``quantize_(model, Int8DynamicActivationInt8WeightConfig())``
    does the same job there); the deprecation warnings are silenced and the call is kept in
    this one function so that moving to torchao touches nothing else.
    """
    try:
        from torch.ao.quantization import (
            default_dynamic_qconfig,
            per_channel_dynamic_qconfig,
            quantize_dynamic,
        )
    except ImportError as error:  # pragma: no cover - depends on the PyTorch release
        raise RuntimeError(
            "this PyTorch has no torch.ao.quantization.quantize_dynamic; install torchao and "
            "use torchao.quantization.quantize_ with Int8DynamicActivationInt8WeightConfig"
        ) from error
    if any(p.device.type != "cpu" for p in model.parameters()):
        raise ValueError("dynamic int8 quantization runs on the CPU: move the model with .cpu()")
    qconfig = per_channel_dynamic_qconfig if per_channel else default_dynamic_qconfig
    model = copy.deepcopy(model).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        return quantize_dynamic(model, {nn.Linear: qconfig}, dtype=torch.qint8)


def quantize_translator(translator: Translator, per_channel: bool = True) -> Translator:
    """The same translator with :func:`quantize_dynamic_int8` applied to its model."""
    model = quantize_dynamic_int8(translator.model.cpu(), per_channel)
    info = {**translator.info, "quantized": "dynamic int8 (nn.Linear)"}
    return dataclasses.replace(translator, model=model, info=info)


# --- ONNX export --------------------------------------------------------------------------------


class EncoderForExport(nn.Module):
    """``src`` ``(batch, src_len)`` int64 ids -> memory ``(batch, src_len, d_model)``."""

    def __init__(self, model: Transformer):
        super().__init__()
        self.model = model

    def forward(self, src: Tensor) -> Tensor:
        return self.model.encode(src)  # (batch, src_len, d_model)


class DecoderStepForExport(nn.Module):
    """One greedy step without a cache: the whole prefix in, the next token's logits out.

    ``tgt`` ``(batch, tgt_len)``, ``memory`` ``(batch, src_len, d_model)`` and ``src``
    ``(batch, src_len)`` (for its padding mask) -> logits ``(batch, tgt_vocab)`` of the last
    position. Returning only the last position keeps the output small: the full
    ``(batch, tgt_len, vocab)`` tensor would be copied out of onnxruntime at every step.
    """

    def __init__(self, model: Transformer):
        super().__init__()
        self.model = model

    def forward(self, tgt: Tensor, memory: Tensor, src: Tensor) -> Tensor:
        src_mask = self.model.source_mask(src)  # (batch, 1, 1, src_len)
        return self.model.decode(tgt, memory, src_mask)[:, -1]  # (batch, tgt_vocab)


def export_onnx(model: Transformer, folder: str | Path, opset_version: int = 17
                ) -> dict[str, Path]:
    """Write ``encoder.onnx`` and ``decoder.onnx`` for ``model`` into ``folder``.

    The batch and sequence dimensions are dynamic, so one file serves every batch size and
    length. The graphs are traced (the TorchScript-based exporter, ``dynamo=False``): the
    course's modules check their inputs with Python ``if``s on tensor values (token ids in
    range, fully masked rows), which tracing evaluates once on the example inputs while
    ``torch.export`` refuses them. PyTorch 2.13 marks the tracing exporter deprecated; its
    warning is silenced here. The example inputs must be valid: real ids, no fully padded
    row. The decoder has no key/value cache: each step reruns the prefix
    (a cache would add 2 inputs and 2 outputs per layer, and fixed-size buffers, to the graph).
    """
    if not isinstance(model, Transformer):
        raise ValueError(
            f"export_onnx expects the course's Transformer, got {type(model).__name__}"
        )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model = model.cpu().eval()
    # The wrappers must be in eval mode too: the exporter puts a module back into the mode it
    # found it in, recursively, and a fresh nn.Module is in training mode (dropout on).
    encoder, decoder = EncoderForExport(model).eval(), DecoderStepForExport(model).eval()
    c = model.config
    src = torch.randint(4, c.src_vocab_size, (2, 7))  # (batch, src_len)
    tgt = torch.randint(4, c.tgt_vocab_size, (2, 5))  # (batch, tgt_len)
    paths = {"encoder": folder / "encoder.onnx", "decoder": folder / "decoder.onnx"}
    with torch.no_grad(), warnings.catch_warnings():
        # Tracing warns about every Python bool/int taken from a tensor (the input checks).
        warnings.simplefilter("ignore")
        memory = model.encode(src)  # (batch, src_len, d_model)
        torch.onnx.export(
            encoder, (src,), paths["encoder"], dynamo=False,
            input_names=["src"], output_names=["memory"], opset_version=opset_version,
            dynamic_axes={"src": {0: "batch", 1: "src_len"},
                          "memory": {0: "batch", 1: "src_len"}},
        )
        torch.onnx.export(
            decoder, (tgt, memory, src), paths["decoder"], dynamo=False,
            input_names=["tgt", "memory", "src"], output_names=["logits"],
            opset_version=opset_version,
            dynamic_axes={"tgt": {0: "batch", 1: "tgt_len"},
                          "memory": {0: "batch", 1: "src_len"},
                          "src": {0: "batch", 1: "src_len"}, "logits": {0: "batch"}},
        )
    model.train(was_training)
    return paths


class OnnxTranslator:
    """Greedy translation with the two exported graphs, run by onnxruntime.

    The decoding loop is the one of :func:`~transformer_course.models.generation.greedy_decode`
    without a cache, in NumPy: encode once, then feed the growing prefix to the decoder graph
    and append the most probable token until every sentence has produced ``</s>``.
    ``translator`` provides the tokenizer and the configuration (its model is not used).
    """

    def __init__(self, translator: Translator, folder: str | Path, threads: int | None = None):
        import onnxruntime as ort

        folder = Path(folder)
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        self.encoder = ort.InferenceSession(str(folder / "encoder.onnx"), options,
                                            providers=providers)
        self.decoder = ort.InferenceSession(str(folder / "decoder.onnx"), options,
                                            providers=providers)
        self.translator = translator
        self.tokenizer = translator.tokenizer

    def encode(self, src: np.ndarray) -> np.ndarray:
        """``(batch, src_len)`` int64 ids -> memory ``(batch, src_len, d_model)`` float32."""
        return self.encoder.run(["memory"], {"src": src})[0]

    def next_logits(self, tgt: np.ndarray, memory: np.ndarray, src: np.ndarray) -> np.ndarray:
        """Logits ``(batch, vocab)`` of the position after the prefix ``tgt`` (batch, t)."""
        return self.decoder.run(["logits"], {"tgt": tgt, "memory": memory, "src": src})[0]

    def greedy_decode(self, src: np.ndarray, max_len: int) -> list[list[int]]:
        """Token ids (without <s> and </s>) for each row of ``src`` ``(batch, src_len)``."""
        if src.ndim != 2 or src.dtype != np.int64:
            raise ValueError(f"src must be an int64 (batch, src_len) array, got {src.dtype} "
                             f"{src.shape}")
        bos, eos = self.tokenizer.bos_id, self.tokenizer.eos_id
        memory = self.encode(src)  # (batch, src_len, d_model)
        tokens = np.full((src.shape[0], 1), bos, dtype=np.int64)  # (batch, 1)
        finished = np.zeros(src.shape[0], dtype=bool)
        for _ in range(max_len):
            logits = self.next_logits(tokens, memory, src)  # (batch, vocab)
            next_token = np.where(finished, eos, logits.argmax(axis=-1))  # (batch,)
            tokens = np.concatenate([tokens, next_token[:, None]], axis=1)  # (batch, t + 1)
            finished |= next_token == eos
            if finished.all():
                break
        rows = tokens[:, 1:].tolist()
        return [row[: row.index(eos)] if eos in row else row for row in rows]

    def translate(self, sentences: list[str] | str, batch_size: int = 64) -> list[str] | str:
        """German -> English, greedy, batched and length-limited as
        :meth:`Translator.translate` with ``beam_size=1``."""
        return self.translator.translate_with(
            sentences, lambda src, max_len: self.greedy_decode(src.cpu().numpy(), max_len),
            batch_size)
