"""Time and peak memory of attention as the sequence grows: naive, blockwise, PyTorch's kernel.

Three ways to compute softmax(Q K^T / sqrt(d)) V for one sequence of n positions
(batch 1, 4 heads of 64 dimensions, float32, no mask), for n = 256 ... 8192:

* ``naive``: ``transformer_course.models.attention.scaled_dot_product_attention``, which builds the
  (heads, n, n) scores and weights;
* ``blockwise``: ``transformer_course.models.flash_attention.blockwise_attention``, a Python loop
  over blocks of keys with an online softmax (extra memory linear in n);
* ``pytorch``: ``torch.nn.functional.scaled_dot_product_attention``, a fused C++ kernel (on
  the CPU, PyTorch's own flash-attention implementation).

Time: median seconds per call, the three methods alternating in one process
(``common.median_times``). Memory: every (method, n) runs once in a fresh subprocess, which
resets the kernel's peak-RSS counter of the process just before the call
(``/proc/self/clear_refs``) and reads the peak (``VmHWM``) after it; the number reported is
that peak minus the resident memory just before the call, i.e. the extra memory the call
needed on top of its inputs (outputs and temporaries included). Where ``/proc`` is missing,
``resource.getrusage`` peak RSS (since the process started) is used instead, and the JSON says
so. The outputs of the three methods are compared as well (largest absolute difference).

    python benchmarks/flash_attention_benchmark.py   # writes results/flash_attention_benchmark.json
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from common import median_times, write_result

from transformer_course.models.attention import scaled_dot_product_attention
from transformer_course.models.flash_attention import blockwise_attention

METHODS = ("naive", "blockwise", "pytorch")


def attention_functions(block_size: int) -> dict:
    return {
        "naive": lambda q, k, v: scaled_dot_product_attention(q, k, v)[0],
        "blockwise": lambda q, k, v: blockwise_attention(q, k, v, block_size=block_size),
        "pytorch": lambda q, k, v: F.scaled_dot_product_attention(q, k, v),
    }


def make_inputs(n: int, heads: int, d_head: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(n)
    return tuple(torch.randn(1, heads, n, d_head, generator=g) for _ in range(3))


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def measure_memory(method: str, n: int, heads: int, d_head: int, block_size: int) -> dict:
    """Run one call in this (fresh) process; return the extra peak memory in MiB."""
    fn = attention_functions(block_size)[method]
    q, k, v = make_inputs(n, heads, d_head)
    fn(*make_inputs(64, heads, d_head))  # load the kernels' code once, outside the measurement
    before = _status_kib("VmRSS")
    reset = False
    if before is not None:
        try:
            Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to now
            reset = True
        except OSError:
            reset = False
    start_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = fn(q, k, v)
    if reset:
        peak_kib = _status_kib("VmHWM")
        source = "VmHWM after clear_refs"
    else:  # ru_maxrss: KiB on Linux, bytes on macOS
        scale = 1024 if sys.platform == "darwin" else 1
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // scale
        before = start_peak // scale
        source = "getrusage ru_maxrss (peak since start)"
    del out
    return {"extra_mib": max(0, peak_kib - before) / 1024, "source": source}


def memory_in_subprocess(method: str, n: int, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--measure", method, str(n), "--heads", str(args.heads),
               "--d-head", str(args.d_head), "--block-size", str(args.block_size),
               "--threads", str(args.threads)]
    result = subprocess.run(command, capture_output=True, text=True, check=True,
                            cwd=Path(__file__).parent)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+",
                        default=[256, 512, 1024, 2048, 4096, 8192])
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--d-head", type=int, default=64)
    parser.add_argument("--block-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--measure", nargs=2, metavar=("METHOD", "N"), help=argparse.SUPPRESS)
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    if args.measure:  # the child process of memory_in_subprocess
        method, n = args.measure[0], int(args.measure[1])
        print(json.dumps(measure_memory(method, n, args.heads, args.d_head, args.block_size)))
        return

    functions = attention_functions(args.block_size)
    rows = []
    for n in args.lengths:
        q, k, v = make_inputs(n, args.heads, args.d_head)
        with torch.no_grad():
            outputs = {name: fn(q, k, v) for name, fn in functions.items()}
            times = median_times({name: (lambda fn=fn, q=q, k=k, v=v: fn(q, k, v))
                                  for name, fn in functions.items()},
                                 args.repeats, warmup=1)
        del outputs["naive"]  # keep the reference below, free the rest
        reference = scaled_dot_product_attention(q, k, v)[0]
        max_diff = {name: (out - reference).abs().max().item() for name, out in outputs.items()}
        memory = {name: memory_in_subprocess(name, n, args) for name in METHODS}
        row = {"n": n,
               **{f"{name}_s": times[name] for name in METHODS},
               **{f"{name}_mib": memory[name]["extra_mib"] for name in METHODS},
               "blockwise_vs_pytorch_time": times["blockwise"] / times["pytorch"],
               "naive_vs_blockwise_memory": memory["naive"]["extra_mib"]
               / max(memory["blockwise"]["extra_mib"], 1e-9),
               "scores_matrix_mib": args.heads * n * n * 4 / 2**20,
               "max_abs_diff_vs_naive": max_diff, "memory_source": memory["naive"]["source"]}
        rows.append(row)
        print(f"n={n:>5}: time naive {times['naive'] * 1e3:8.1f} ms, blockwise "
              f"{times['blockwise'] * 1e3:8.1f} ms, pytorch {times['pytorch'] * 1e3:8.1f} ms | "
              f"extra memory naive {memory['naive']['extra_mib']:7.1f} MiB, blockwise "
              f"{memory['blockwise']['extra_mib']:6.1f} MiB, pytorch "
              f"{memory['pytorch']['extra_mib']:6.1f} MiB | one (heads, n, n) matrix "
              f"{row['scores_matrix_mib']:.1f} MiB", flush=True)
    write_result("flash_attention_benchmark", {
        "measured": ("median seconds per call (methods alternating in one process) and extra "
                     "peak resident memory of one call in a fresh process (peak RSS during the "
                     "call minus RSS just before it), for attention over n positions"),
        "shape": {"batch": 1, "heads": args.heads, "d_head": args.d_head, "dtype": "float32",
                  "mask": None},
        "block_size": args.block_size, "repeats": args.repeats, "threads": args.threads,
        "methods": {
            "naive": "transformer_course.models.attention.scaled_dot_product_attention",
            "blockwise": "transformer_course.models.flash_attention.blockwise_attention",
            "pytorch": "torch.nn.functional.scaled_dot_product_attention"},
        "rows": rows,
    }, args.output)


if __name__ == "__main__":
    main()
