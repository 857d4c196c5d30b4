"""Train short, test long: accuracy of each position scheme on sequences longer than in training.

Every scheme of ``transformer_course.models.relative_positions.POSITION_SCHEMES`` trains the
same small decoder-only model, the course's ``GPT`` with ``GPTConfig(positional=scheme)`` (2
layers, d_model 64, 4 heads), on the "continue the repeating pattern" task of
``transformer_course.recipes.length_extrapolation`` with inputs of ``--train-len`` positions,
for several seeds (two runs at a time by default, one per core). Each model is then tested on
fresh sequences of several lengths, up to four times the training length. Learned absolute
positions have no vector beyond the training length: those entries are null, with the reason in
``unsupported``.

    python benchmarks/length_extrapolation.py   # writes results/length_extrapolation.json
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from concurrent.futures import ProcessPoolExecutor

import torch
from common import write_result

from transformer_course.models.relative_positions import POSITION_SCHEMES
from transformer_course.recipes.length_extrapolation import (
    ExtrapolationConfig,
    accuracy_by_position,
    evaluate_lengths,
    train_scheme,
)


def run_one(job: tuple) -> dict:
    """Train and test one (scheme, seed); runs in a worker process."""
    scheme, seed, args, lengths = job
    torch.set_num_threads(1)  # one core per run: fastest for a model this small
    config = ExtrapolationConfig(steps=args.steps, train_len=args.train_len, seed=seed)
    model, history = train_scheme(scheme, config, log_every=max(1, args.steps // 20))
    accuracy = evaluate_lengths(model, lengths, config, args.eval_sequences)
    by_position = accuracy_by_position(model, lengths[-1], config, args.eval_sequences)
    run = {
        "seed": seed,
        "train_seconds": history["seconds"],
        "loss_steps": history["step"],
        "loss": history["loss"],
        "accuracy": {str(n): a for n, a in accuracy.items()},
        "accuracy_by_position": None if by_position is None else [
            None if math.isnan(v) else v for v in by_position.tolist()
        ],
    }
    if scheme == "t5":  # the learned (bucket, head) table, to draw the biases
        run["t5_table"] = model.position_bias.table.weight.detach().T.tolist()
    shown = " ".join(f"{n}:{'  -  ' if a is None else f'{a:.3f}'}" for n, a in accuracy.items())
    print(f"{scheme:<10} seed {seed}: {history['seconds']:5.1f} s, final loss "
          f"{history['loss'][-1]:.3f} | accuracy by length {shown}", flush=True)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--schemes", nargs="+", default=list(POSITION_SCHEMES))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--steps", type=int, default=ExtrapolationConfig.steps)
    parser.add_argument("--train-len", type=int, default=ExtrapolationConfig.train_len)
    parser.add_argument("--test-factors", type=float, nargs="+",
                        default=[0.5, 1.0, 1.5, 2.0, 3.0, 4.0])
    parser.add_argument("--eval-sequences", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2,
                        help="runs trained in parallel, one process and one thread each")
    parser.add_argument("--output", default=None)
    args = parser.parse_args()

    lengths = sorted({int(round(f * args.train_len)) for f in args.test_factors})
    jobs = [(scheme, seed, args, lengths) for scheme in args.schemes for seed in args.seeds]
    start = time.perf_counter()
    # Each run is seeded and single-threaded, so running them side by side changes no number.
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        finished = list(pool.map(run_one, jobs))
    results = {}
    for scheme in args.schemes:
        runs = [run for (s, _, _, _), run in zip(jobs, finished, strict=True) if s == scheme]
        mean = {}
        for n in lengths:
            values = [r["accuracy"][str(n)] for r in runs]
            mean[str(n)] = None if None in values else statistics.mean(values)
        results[scheme] = {"mean_accuracy": mean, "runs": runs}
        shown = " ".join(f"{n}:{'  -  ' if a is None else f'{a:.3f}'}" for n, a in mean.items())
        print(f"{scheme:<10} mean over {len(args.seeds)} seeds | {shown}", flush=True)
    total = time.perf_counter() - start
    print(f"total {total:.0f} s")

    config = ExtrapolationConfig(steps=args.steps, train_len=args.train_len)
    write_result("length_extrapolation", {
        "measured": "next-token accuracy on the determined positions of repeating-pattern "
                    "sequences, by test length, after training at train_len",
        "config": {k: v for k, v in config.to_dict().items() if k != "seed"},
        "seeds": args.seeds,
        "train_len": args.train_len,
        "lengths": lengths,
        "eval_sequences": args.eval_sequences,
        "unsupported": {
            "learned": f"no position vector beyond position {args.train_len - 1}: the model "
                       "cannot process longer inputs (ValueError)"
        },
        "total_seconds": total,
        "schemes": results,
    }, args.output)


if __name__ == "__main__":
    main()
