"""Decoding with the key/value cache against recomputing the whole prefix at every step.

The translator-sized encoder-decoder generates exactly N tokens greedily (the end token is
disabled so every run has the same length), with and without the cache, for N = 64, 128 and
256, alternating the two. The cache makes step t cost O(t) attention work instead of
re-running all t positions through every layer.

    python benchmarks/kv_cache_benchmark.py         # writes results/kv_cache_benchmark.json
"""

from __future__ import annotations

import argparse
import dataclasses

import torch
from common import median_times, write_result

from transformer_course.models.generation import greedy_decode
from transformer_course.models.transformer import Transformer
from transformer_course.recipes.translator import PROFILES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--lengths", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--profile", default="cpu", choices=sorted(PROFILES),
                        help="the recipe profile whose model is measured (default: cpu)")
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    torch.manual_seed(0)

    # The translator that is decoded, with room for the longest output measured.
    config = dataclasses.replace(PROFILES[args.profile].model_config(),
                                 max_len=max(args.lengths) + 1)
    vocab = config.src_vocab_size
    model = Transformer(config).eval()
    rows = []
    for batch_size in args.batch_sizes:
        src = torch.randint(4, vocab, (batch_size, 20))
        for n in args.lengths:
            def run(use_cache, n=n, src=src):
                out = greedy_decode(model, src, eos_id=-1, max_len=n, use_cache=use_cache)
                assert len(out[0]) == n

            t = median_times({"cache": lambda: run(True), "recompute": lambda: run(False)},
                             args.repeats, warmup=1)
            rows.append({"batch_size": batch_size, "tokens": n, "cache_s": t["cache"],
                         "recompute_s": t["recompute"], "speedup": t["recompute"] / t["cache"]})
            print(f"batch {batch_size}, {n:>4} tokens: cache {t['cache']:.2f} s, recompute "
                  f"{t['recompute']:.2f} s, speedup {rows[-1]['speedup']:.1f}x", flush=True)
    write_result("kv_cache_benchmark", {
        "measured": "greedy decoding of exactly N tokens with vs without the KV cache",
        "config": config.to_dict(), "repeats": args.repeats, "rows": rows,
    }, args.output)


if __name__ == "__main__":
    main()
