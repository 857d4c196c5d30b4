"""The committed translator made ready to deploy: int8 quantization, ONNX Runtime, and a key/value
cache with preallocated buffers, each measured side by side against the float32 PyTorch model.

Three parts, each writing its own file (choose with --parts):

- quantization: checkpoint size (fp32, fp16, int8), CPU latency per sentence (batch 1) and per
  batch of 64, and BLEU on test_2016_flickr with the same decoding (greedy and beam 4) for the
  fp32 and the dynamically quantized int8 model -> results/quantization_benchmark.json;
- onnx: export the encoder and a decoder step, report the largest absolute difference of the
  encoder output and of the next-token logits against PyTorch on real batches, whether the
  greedy translations of the whole test set are identical, and the speed of greedy decoding
  with onnxruntime against PyTorch with and without the cache -> results/onnx_benchmark.json;
- cache: greedy decoding of exactly N tokens with the growing (torch.cat) cache and with the
  preallocated one, several lengths and batch sizes -> results/kv_cache_preallocated.json.

    python benchmarks/deployment_benchmark.py                  # all three parts
    python benchmarks/deployment_benchmark.py --parts cache    # one of them
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from common import ROOT, median_times, use_local_data, write_result

from transformer_course.evaluation.analysis import evaluate_translations
from transformer_course.models.generation import greedy_decode
from transformer_course.recipes.translator import load_translator
from transformer_course.serving.deployment import (
    OnnxTranslator,
    export_onnx,
    quantize_translator,
    state_dict_bytes,
)
from transformer_course.utils.dataset import load_multi30k

SPLIT = "test_2016_flickr"


def translate_one_by_one(translator, sentences, beam_size=1):
    return [translator.translate(s, beam_size=beam_size) for s in sentences]


def quantization_part(translator, sources, references, args) -> None:
    quantized = quantize_translator(translator)
    sizes = {
        "fp32": state_dict_bytes(translator.model),
        "fp16": state_dict_bytes(translator.model, torch.float16),
        "int8": state_dict_bytes(quantized.model),
        # int8 linear layers, and the float tensors left (the embedding table) in fp16
        "int8_fp16": state_dict_bytes(quantized.model, torch.float16),
    }
    print("state dict bytes: " + ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in sizes.items()))
    models = {"fp32": translator, "int8": quantized}

    # Latency: one sentence per call (an interactive user), and a batch of 64 (a bulk job).
    singles = sources[: args.latency_sentences]
    batch = sources[:64]
    per_sentence = median_times(
        {name: (lambda t=t: translate_one_by_one(t, singles)) for name, t in models.items()},
        args.repeats, warmup=1)
    per_batch = median_times(
        {name: (lambda t=t: t.translate(batch, beam_size=1)) for name, t in models.items()},
        args.repeats, warmup=1)
    latency = {
        name: {"ms_per_sentence_batch1": 1000 * per_sentence[name] / len(singles),
               "ms_per_batch64": 1000 * per_batch[name]}
        for name in models
    }
    for name, row in latency.items():
        print(f"{name}: {row['ms_per_sentence_batch1']:.1f} ms per sentence (batch 1), "
              f"{row['ms_per_batch64']:.0f} ms per batch of 64 (greedy)")
    speedup = {
        "batch1": per_sentence["fp32"] / per_sentence["int8"],
        "batch64": per_batch["fp32"] / per_batch["int8"],
    }
    print(f"int8 speed-up: {speedup['batch1']:.2f}x (batch 1), {speedup['batch64']:.2f}x "
          "(batch 64)")

    quality = {}
    hypotheses = {}
    for decoding, beam in (("greedy", 1), ("beam", 4)):
        if decoding == "beam" and not args.beam:
            continue
        for name, t in models.items():
            start = time.perf_counter()
            hyp = t.translate(sources, beam_size=beam)
            seconds = time.perf_counter() - start
            report = evaluate_translations(hyp, references)
            hypotheses[name, decoding] = hyp
            quality[f"{name}_{decoding}"] = {
                "bleu": report.sacrebleu_bleu, "chrf": report.sacrebleu_chrf,
                "signature": report.sacrebleu_bleu_signature, "seconds": seconds,
            }
            print(f"{name} {decoding}: BLEU {report.sacrebleu_bleu:.2f}, chrF "
                  f"{report.sacrebleu_chrf:.2f} ({seconds:.1f} s for {len(sources)} sentences)")
        same = sum(a == b for a, b in zip(hypotheses["fp32", decoding],
                                          hypotheses["int8", decoding], strict=True))
        quality[f"identical_{decoding}"] = same / len(sources)
        print(f"{decoding}: {same}/{len(sources)} translations identical for fp32 and int8")
    examples = [
        {"source": s, "fp32": a, "int8": b}
        for s, a, b in zip(sources, hypotheses["fp32", "greedy"], hypotheses["int8", "greedy"],
                           strict=True)
        if a != b
    ][:5]
    write_result("quantization_benchmark", {
        "measured": "dynamic int8 quantization of the translator's nn.Linear layers vs fp32",
        "checkpoint": args.checkpoint, "split": SPLIT, "sentences": len(sources),
        "repeats": args.repeats, "latency_sentences": len(singles),
        "state_dict_bytes": sizes, "latency": latency, "speedup": speedup,
        "quality": quality, "differing_examples": examples,
    })


def onnx_part(translator, sources, references, args) -> None:
    model = translator.model
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        paths = export_onnx(model, folder)
        export_seconds = time.perf_counter() - start
        file_bytes = {name: Path(p).stat().st_size for name, p in paths.items()}
        runner = OnnxTranslator(translator, folder, threads=torch.get_num_threads())

        # Parity on real batches: encoder outputs, and next-token logits after every prefix of
        # the translations PyTorch produces (teacher forcing with the model's own output).
        memory_diff = logits_diff = 0.0
        compared = 0
        for start_index in range(0, args.parity_sentences, 64):
            chunk = sources[start_index : start_index + 64]
            src = translator.encode_sources(chunk)  # (batch, src_len)
            with torch.no_grad():
                memory = model.encode(src)  # (batch, src_len, d_model)
                src_mask = model.source_mask(src)
                ids = greedy_decode(model, src, translator.tokenizer.bos_id,
                                    translator.tokenizer.eos_id, max_len=src.shape[1] + 20)
                width = max(len(row) for row in ids) + 1
                tgt = torch.full((len(ids), width), translator.tokenizer.pad_id)
                for row, token_ids in enumerate(ids):
                    tgt[row, : len(token_ids) + 1] = torch.tensor(
                        [translator.tokenizer.bos_id, *token_ids])
                onnx_memory = runner.encode(src.numpy())
                memory_diff = max(memory_diff, float((torch.from_numpy(onnx_memory)
                                                      - memory).abs().max()))
                for t in range(1, width + 1):
                    reference = model.decode(tgt[:, :t], memory, src_mask)[:, -1]  # (b, vocab)
                    onnx_logits = runner.next_logits(tgt[:, :t].numpy(), onnx_memory,
                                                      src.numpy())
                    logits_diff = max(logits_diff, float((torch.from_numpy(onnx_logits)
                                                          - reference).abs().max()))
                    compared += 1
        print(f"parity: max |memory difference| {memory_diff:.2e}, max |logit difference| "
              f"{logits_diff:.2e} over {compared} decoder calls")

        start = time.perf_counter()
        torch_translations = translator.translate(sources, beam_size=1)
        torch_seconds = time.perf_counter() - start
        start = time.perf_counter()
        onnx_translations = runner.translate(sources)
        onnx_seconds = time.perf_counter() - start
        identical = sum(a == b for a, b in zip(torch_translations, onnx_translations,
                                               strict=True))
        bleu = {"pytorch": evaluate_translations(torch_translations, references).sacrebleu_bleu,
                "onnxruntime": evaluate_translations(onnx_translations,
                                                     references).sacrebleu_bleu}
        print(f"{identical}/{len(sources)} greedy translations identical; BLEU pytorch "
              f"{bleu['pytorch']:.2f}, onnxruntime {bleu['onnxruntime']:.2f}")

        # Speed, side by side: the same greedy loop, with onnxruntime and with PyTorch.
        speed = {}
        bos, eos = translator.tokenizer.bos_id, translator.tokenizer.eos_id
        for label, chunk in (("batch64", sources[:64]), ("batch1", sources[:1])):
            src = translator.encode_sources(chunk)
            max_len = min(int(src.shape[1] * 1.5) + 10, model.config.max_len - 1)
            src_np = src.numpy()
            times = median_times({
                "pytorch_cache": lambda src=src, m=max_len: greedy_decode(
                    model, src, bos, eos, m, use_cache=True),
                "pytorch_no_cache": lambda src=src, m=max_len: greedy_decode(
                    model, src, bos, eos, m, use_cache=False),
                "onnxruntime_no_cache": lambda s=src_np, m=max_len: runner.greedy_decode(s, m),
            }, args.repeats * 3, warmup=2)
            speed[label] = {
                **{f"{k}_ms": 1000 * v for k, v in times.items()},
                "onnx_vs_pytorch_no_cache": times["pytorch_no_cache"]
                / times["onnxruntime_no_cache"],
                "onnx_vs_pytorch_cache": times["pytorch_cache"] / times["onnxruntime_no_cache"],
            }
            print(f"{label}: pytorch+cache {1000 * times['pytorch_cache']:.1f} ms, pytorch "
                  f"{1000 * times['pytorch_no_cache']:.1f} ms, onnxruntime "
                  f"{1000 * times['onnxruntime_no_cache']:.1f} ms "
                  f"(onnxruntime {speed[label]['onnx_vs_pytorch_no_cache']:.2f}x pytorch "
                  f"without cache, {speed[label]['onnx_vs_pytorch_cache']:.2f}x with)")
    import onnxruntime

    write_result("onnx_benchmark", {
        "measured": "ONNX export of encoder + decoder step (no cache) run with onnxruntime vs "
                    "PyTorch, greedy decoding",
        "checkpoint": args.checkpoint, "split": SPLIT, "sentences": len(sources),
        "onnxruntime": onnxruntime.__version__, "export_seconds": export_seconds,
        "onnx_file_bytes": file_bytes,
        "parity": {"max_abs_memory_diff": memory_diff, "max_abs_logits_diff": logits_diff,
                   "decoder_calls_compared": compared,
                   "sentences_compared": min(args.parity_sentences, len(sources))},
        "translations_identical": identical, "bleu_greedy": bleu,
        "full_test_seconds": {"pytorch_cache": torch_seconds, "onnxruntime": onnx_seconds},
        "speed": speed,
    })


def cache_part(translator, sources, args) -> None:
    model = translator.model
    rows = []
    for batch_size in args.batch_sizes:
        src = translator.encode_sources(sources[:batch_size])
        for n in args.lengths:
            def run(preallocate, n=n, src=src):
                return greedy_decode(model, src, eos_id=-1, max_len=n, preallocate=preallocate)

            assert run(True) == run(False), "the two caches must give the same tokens"
            t = median_times({"growing": lambda: run(False), "preallocated": lambda: run(True)},
                             args.repeats * 3, warmup=1)
            rows.append({"batch_size": batch_size, "tokens": n,
                         "growing_ms": 1000 * t["growing"],
                         "preallocated_ms": 1000 * t["preallocated"],
                         "speedup": t["growing"] / t["preallocated"]})
            print(f"batch {batch_size}, {n:>3} tokens: growing {rows[-1]['growing_ms']:.0f} ms, "
                  f"preallocated {rows[-1]['preallocated_ms']:.0f} ms, "
                  f"speed-up {rows[-1]['speedup']:.2f}x", flush=True)
    write_result("kv_cache_preallocated", {
        "measured": "greedy decoding of exactly N tokens with the growing (torch.cat) KV cache "
                    "vs the preallocated one (identical tokens checked)",
        "checkpoint": args.checkpoint, "repeats": args.repeats * 3, "rows": rows,
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", nargs="+", default=["quantization", "onnx", "cache"],
                        choices=["quantization", "onnx", "cache"])
    parser.add_argument("--checkpoint", default="checkpoints/translator-cpu/model.pt")
    parser.add_argument("--sentences", type=int, default=None,
                        help="test sentences scored (default: all 1000)")
    parser.add_argument("--latency-sentences", type=int, default=32)
    parser.add_argument("--parity-sentences", type=int, default=256)
    parser.add_argument("--no-beam", dest="beam", action="store_false",
                        help="score greedy decoding only")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--lengths", type=int, nargs="+", default=[32, 64, 128, 255])
    args = parser.parse_args()
    use_local_data()
    torch.manual_seed(0)
    translator = load_translator(ROOT / args.checkpoint, device="cpu")
    pairs = load_multi30k(SPLIT)[: args.sentences]
    sources = [de for de, _ in pairs]
    references = [en for _, en in pairs]
    print(f"{translator.model.num_parameters():,} parameters; {len(sources)} {SPLIT} sentences; "
          f"torch threads {torch.get_num_threads()}")
    if "quantization" in args.parts:
        quantization_part(translator, sources, references, args)
    if "cache" in args.parts:
        cache_part(translator, sources, args)
    if "onnx" in args.parts:
        onnx_part(translator, sources, references, args)


if __name__ == "__main__":
    main()
