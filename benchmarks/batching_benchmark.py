"""How much of a batch is padding: random batches vs length-bucketed ones, on Multi30k.

Sentences are tokenized with the course's BPE (8,000 tokens, learned on the training split);
a pair's length is its longer side. Padding fraction = padded cells / all cells of the padded
batch tensors, over one epoch.

    python benchmarks/batching_benchmark.py          # writes results/batching_benchmark.json
"""

from __future__ import annotations

import argparse

from common import use_local_data, write_result

from transformer_course.utils.batching import BucketBatchSampler, padding_fraction, random_batches
from transformer_course.utils.dataset import load_multi30k
from transformer_course.utils.tokenizer import BPETokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--max-tokens", type=int, default=4096)
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    use_local_data()

    pairs = load_multi30k("train")
    tokenizer = BPETokenizer.train([t for pair in pairs for t in pair], args.vocab_size)
    lengths = [max(len(tokenizer.encode(de)), len(tokenizer.encode(en))) + 1 for de, en in pairs]

    strategies = {
        f"random, {args.batch_size} sentences": random_batches(len(pairs), args.batch_size, 0),
        f"bucketed, {args.batch_size} sentences": BucketBatchSampler(
            lengths, batch_size=args.batch_size, seed=0).batches(),
        f"bucketed, {args.max_tokens} tokens": BucketBatchSampler(
            lengths, max_tokens=args.max_tokens, seed=0).batches(),
    }
    rows = []
    for name, batches in strategies.items():
        rows.append({"strategy": name, "batches": len(batches),
                     "padding_fraction": padding_fraction(batches, lengths)})
        print(f"{name:<28} {len(batches):>5} batches  padding {rows[-1]['padding_fraction']:.1%}")
    write_result("batching_benchmark", {
        "data": "Multi30k train, 29,000 pairs, BPE lengths (+1 for <s> or </s>)",
        "vocab_size": tokenizer.vocab_size, "rows": rows,
    }, args.output)


if __name__ == "__main__":
    main()
