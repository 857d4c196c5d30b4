"""Our attention and multi-head attention against PyTorch's built-ins, forward + backward.

Measured path: the from-scratch code of the package (explicit matmul, masked softmax, matmul;
four nn.Linear projections and reshapes), which is the only path it has. PyTorch's side is
``F.scaled_dot_product_attention`` with its default backend (on CPU a fused, flash-style
kernel that never materialises the score matrix), the same function forced onto its unfused
"math" backend (the algorithm ours implements), and ``nn.MultiheadAttention`` called with
``need_weights=False``, its fastest training path (``need_weights=True`` is reported too).

    python benchmarks/attention_benchmark.py            # writes results/attention_benchmark.json
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from common import median_times, write_result
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from transformer_course.models.attention import (
    make_padding_mask,
    scaled_dot_product_attention,
    to_pytorch_mask,
)
from transformer_course.models.interop import copy_multihead_attention
from transformer_course.models.multihead import MultiHeadAttention


def attention_case(batch, heads, seq_len, d_k, repeats):
    q, k, v = (torch.randn(batch, heads, seq_len, d_k, requires_grad=True) for _ in range(3))
    lengths = torch.randint(seq_len // 2, seq_len + 1, (batch,))
    tokens = (torch.arange(seq_len)[None] < lengths[:, None]).long()  # 1 = real, 0 = pad
    mask = make_padding_mask(tokens, pad_id=0)  # (batch, 1, 1, seq_len)

    def ours():
        out, _ = scaled_dot_product_attention(q, k, v, mask)
        out.sum().backward()

    def builtin():
        F.scaled_dot_product_attention(q, k, v, attn_mask=mask).sum().backward()

    def builtin_math():  # PyTorch's own unfused reference implementation
        with sdpa_kernel(SDPBackend.MATH):
            F.scaled_dot_product_attention(q, k, v, attn_mask=mask).sum().backward()

    return median_times({"ours": ours, "pytorch": builtin, "pytorch_math": builtin_math}, repeats)


def multihead_case(batch, seq_len, d_model, heads, repeats):
    theirs = nn.MultiheadAttention(d_model, heads, batch_first=True)
    ours = MultiHeadAttention(d_model, heads)
    copy_multihead_attention(ours, theirs)
    x = torch.randn(batch, seq_len, d_model, requires_grad=True)
    lengths = torch.randint(seq_len // 2, seq_len + 1, (batch,))
    tokens = (torch.arange(seq_len)[None] < lengths[:, None]).long()
    mask = make_padding_mask(tokens, 0)
    key_padding = to_pytorch_mask(mask[:, 0, 0])

    def run_ours():
        ours(x, mask=mask)[0].sum().backward()

    def run_theirs():
        theirs(x, x, x, key_padding_mask=key_padding, need_weights=False)[0].sum().backward()

    def run_theirs_weights():
        theirs(x, x, x, key_padding_mask=key_padding, need_weights=True,
               average_attn_weights=False)[0].sum().backward()

    return median_times(
        {"ours": run_ours, "pytorch": run_theirs, "pytorch_need_weights": run_theirs_weights},
        repeats,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    torch.manual_seed(0)

    rows = []
    for batch, heads, seq_len, d_k in [(64, 8, 32, 32), (16, 8, 128, 64), (4, 8, 512, 64)]:
        t = attention_case(batch, heads, seq_len, d_k, args.repeats)
        rows.append({"module": "attention", "shape": f"b={batch} h={heads} L={seq_len} d_k={d_k}",
                     "ours_ms": t["ours"] * 1e3, "pytorch_ms": t["pytorch"] * 1e3,
                     "pytorch_math_ms": t["pytorch_math"] * 1e3,
                     "ratio": t["ours"] / t["pytorch"],
                     "ratio_vs_math": t["ours"] / t["pytorch_math"]})
    for batch, seq_len, d_model, heads in [(64, 32, 256, 8), (16, 128, 512, 8)]:
        t = multihead_case(batch, seq_len, d_model, heads, args.repeats)
        rows.append({"module": "multi-head attention",
                     "shape": f"b={batch} L={seq_len} d_model={d_model} h={heads}",
                     "ours_ms": t["ours"] * 1e3, "pytorch_ms": t["pytorch"] * 1e3,
                     "pytorch_need_weights_ms": t["pytorch_need_weights"] * 1e3,
                     "ratio": t["ours"] / t["pytorch"]})

    print(f"{'module':<22}{'shape':<32}{'ours ms':>10}{'torch ms':>10}{'ratio':>8}"
          f"{'vs unfused':>12}")
    for r in rows:
        unfused = f"{r['ratio_vs_math']:>12.2f}" if "ratio_vs_math" in r else ""
        print(f"{r['module']:<22}{r['shape']:<32}{r['ours_ms']:>10.2f}{r['pytorch_ms']:>10.2f}"
              f"{r['ratio']:>8.2f}{unfused}")
    print("ratio = ours / PyTorch (forward + backward, median of alternating runs; < 1 is faster)."
          "\nFor bare attention PyTorch runs a fused kernel; 'vs unfused' compares with its own "
          "explicit math backend, the same algorithm as ours.")
    write_result("attention_benchmark", {
        "measured": "forward + backward, from-scratch path vs F.scaled_dot_product_attention "
                    "and nn.MultiheadAttention(need_weights=False)",
        "repeats": args.repeats, "rows": rows,
    }, args.output)


if __name__ == "__main__":
    main()
