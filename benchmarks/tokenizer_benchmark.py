"""Benchmark the course's BPE tokenizer on Multi30k against library tokenizers.

Trains a joint German+English vocabulary on the full Multi30k training split (29,000 + 29,000
sentences), times training and encoding of the whole split, and reports tokens per sentence
per language. Hugging Face ``tokenizers`` and ``sentencepiece`` are measured the same way when
they are installed; they are optional, and reported as "not installed" otherwise.

    python benchmarks/tokenizer_benchmark.py --vocab-size 8000 \
        --output results/tokenizer_benchmark.json

Fairness notes: the libraries are compiled and may use every CPU core, ours is single-threaded
Python. Our vocabulary and SentencePiece's (byte_fallback=True) both contain the 256 byte
tokens; the Hugging Face model has no byte fallback here, so it gets ``vocab_size - 256`` tokens
to have as many characters and merged tokens as ours.
"""

from __future__ import annotations

import argparse
import io
import os
import time
from typing import Any

from common import use_local_data, write_result

from transformer_course.utils.dataset import load_multi30k
from transformer_course.utils.tokenizer import SPECIAL_TOKENS, WORD_PATTERN, BPETokenizer


def load_train_split() -> tuple[list[str], list[str]]:
    """German and English sentences of Multi30k's training split."""
    use_local_data()
    pairs = load_multi30k("train")
    return [de for de, _ in pairs], [en for _, en in pairs]


def measure(
    name: str,
    train: Any,
    encode_batch: Any,
    decode: Any,
    german: list[str],
    english: list[str],
) -> dict[str, Any]:
    """Time ``train()`` and ``encode_batch(sentences)``; count tokens and round-trip failures."""
    sentences = german + english
    start = time.perf_counter()
    tokenizer, vocab_size = train(sentences)
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    encoded = encode_batch(tokenizer, sentences)
    encode_seconds = time.perf_counter() - start
    german_ids, english_ids = encoded[: len(german)], encoded[len(german) :]
    failures = sum(decode(tokenizer, ids) != s for ids, s in zip(encoded, sentences, strict=True))
    return {
        "name": name,
        "vocab_size": vocab_size,
        "train_seconds": round(train_seconds, 3),
        "encode_seconds": round(encode_seconds, 3),
        "sentences_encoded": len(sentences),
        "tokens_per_sentence_de": round(sum(map(len, german_ids)) / len(german), 3),
        "tokens_per_sentence_en": round(sum(map(len, english_ids)) / len(english), 3),
        "round_trip_failures": failures,
    }


def ours(args: argparse.Namespace, german: list[str], english: list[str]) -> dict[str, Any]:
    def train(sentences):
        tokenizer = BPETokenizer.train(sentences, args.vocab_size, min_frequency=args.min_frequency)
        return tokenizer, tokenizer.vocab_size

    return measure(
        "ours (BPETokenizer, pure Python)",
        train,
        lambda tokenizer, sentences: tokenizer.encode_batch(sentences),
        lambda tokenizer, ids: tokenizer.decode(ids),
        german,
        english,
    )


def huggingface(args: argparse.Namespace, german: list[str], english: list[str]) -> dict[str, Any]:
    try:
        import tokenizers
        from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    except ImportError:
        return {"name": "Hugging Face tokenizers", "status": "not installed"}

    def train(sentences):
        tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
        # The same pre-tokenization as ours: words keep their leading space.
        tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(WORD_PATTERN), behavior="isolated")
        tokenizer.decoder = decoders.Fuse()  # tokens hold their spaces: decoding is joining
        trainer = trainers.BpeTrainer(
            vocab_size=args.vocab_size - 256,  # no byte tokens; see the module docstring
            min_frequency=args.min_frequency,
            special_tokens=list(SPECIAL_TOKENS),
            show_progress=False,
        )
        tokenizer.train_from_iterator(sentences, trainer=trainer)
        return tokenizer, tokenizer.get_vocab_size()

    def encode_batch(tokenizer, sentences):
        return [encoding.ids for encoding in tokenizer.encode_batch(sentences)]

    result = measure(
        f"Hugging Face tokenizers {tokenizers.__version__} (BPE)",
        train,
        encode_batch,
        lambda tokenizer, ids: tokenizer.decode(ids),
        german,
        english,
    )
    return {**result, "status": "ok"}


def sentencepiece_bpe(
    args: argparse.Namespace, german: list[str], english: list[str]
) -> dict[str, Any]:
    try:
        import sentencepiece as spm
    except ImportError:
        return {"name": "sentencepiece", "status": "not installed"}

    def train(sentences):
        model = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences),
            model_writer=model,
            model_type="bpe",
            vocab_size=args.vocab_size,
            character_coverage=1.0,
            byte_fallback=True,
            # Keep text as it is, like ours: no NFKC normalisation, no whitespace clean-up.
            normalization_rule_name="identity",
            remove_extra_whitespaces=False,
            pad_id=0,
            unk_id=1,
            bos_id=2,
            eos_id=3,
            num_threads=os.cpu_count() or 1,
            minloglevel=2,
        )
        tokenizer = spm.SentencePieceProcessor(model_proto=model.getvalue())
        return tokenizer, tokenizer.get_piece_size()

    result = measure(
        f"sentencepiece {spm.__version__} (BPE)",
        train,
        lambda tokenizer, sentences: tokenizer.encode(sentences),
        lambda tokenizer, ids: tokenizer.decode(ids),
        german,
        english,
    )
    return {**result, "status": "ok"}


def print_table(results: list[dict[str, Any]]) -> None:
    header = f"{'tokenizer':<42} {'vocab':>6} {'train s':>8} {'encode s':>9} {'tok/de':>7} "
    header += f"{'tok/en':>7} {'round-trip failures':>20}"
    print(header)
    print("-" * len(header))
    for r in results:
        if r.get("status", "ok") != "ok":
            print(f"{r['name']:<42} {r['status']}")
            continue
        print(
            f"{r['name']:<42} {r['vocab_size']:>6} {r['train_seconds']:>8.2f} "
            f"{r['encode_seconds']:>9.2f} {r['tokens_per_sentence_de']:>7.2f} "
            f"{r['tokens_per_sentence_en']:>7.2f} {r['round_trip_failures']:>20}"
        )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--min-frequency", type=int, default=2)
    parser.add_argument("--output", default=None)
    parser.add_argument("--skip-libraries", action="store_true", help="measure only ours")
    args = parser.parse_args(argv)

    german, english = load_train_split()
    print(f"Multi30k train: {len(german)} German + {len(english)} English sentences")
    results = [ours(args, german, english)]
    if not args.skip_libraries:
        results += [huggingface(args, german, english), sentencepiece_bpe(args, german, english)]
    print()
    print_table(results)

    ratios = {}
    for library in results[1:]:
        if library.get("status") == "ok":
            ratios[library["name"]] = {
                "train": round(results[0]["train_seconds"] / library["train_seconds"], 2),
                "encode": round(results[0]["encode_seconds"] / library["encode_seconds"], 2),
            }
    if ratios:
        print("\nTime ratio, ours / library (above 1: ours is slower):")
        for name, ratio in ratios.items():
            print(f"  {name:<40} train {ratio['train']:>6.1f}x   encode {ratio['encode']:>6.1f}x")

    report = {
        "settings": {"vocab_size": args.vocab_size, "min_frequency": args.min_frequency},
        "data": {"dataset": "Multi30k train", "german": len(german), "english": len(english)},
        "results": results,
        "time_ratio_ours_over_library": ratios,
    }
    write_result("tokenizer_benchmark", report, args.output)
    return report


if __name__ == "__main__":
    main()
