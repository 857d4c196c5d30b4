"""One training step of our encoder-decoder against nn.Transformer of the same size.

Both models have the same token embeddings, sinusoidal positions and output projection (from
the package); only the encoder and decoder stacks differ: ours (from scratch) versus
``nn.Transformer``'s (:class:`transformer_course.models.torch_transformer.TorchTransformer`, in
training mode). A step is forward, label-smoothed loss, backward and an Adam update, on a
batch shaped like a Multi30k batch.

    python benchmarks/training_step_benchmark.py     # writes results/training_step_benchmark.json
"""

from __future__ import annotations

import argparse

import torch
from common import median_times, write_result

from transformer_course.models.torch_transformer import TorchTransformer
from transformer_course.models.transformer import Transformer
from transformer_course.recipes.translator import PROFILES
from transformer_course.training.losses import LabelSmoothingLoss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--profile", default="cpu", choices=sorted(PROFILES),
                        help="the recipe profile whose model is measured (default: cpu)")
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    torch.manual_seed(0)

    config = PROFILES[args.profile].model_config()  # the translator that is trained
    vocab = config.src_vocab_size
    ours = Transformer(config)
    theirs = TorchTransformer(config)
    src_len, tgt_len = 18, 19
    src = torch.randint(4, vocab, (args.batch_size, src_len))
    tgt = torch.randint(4, vocab, (args.batch_size, tgt_len))
    for row in range(0, args.batch_size, 3):  # some padding, as in real batches
        src[row, -4:] = 0
        tgt[row, -3:] = 0
    criterion = LabelSmoothingLoss(0.1)

    def step_fn(model):
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

        def step():
            optimizer.zero_grad(set_to_none=True)
            logits = model(src, tgt[:, :-1])
            criterion(logits, tgt[:, 1:]).backward()
            optimizer.step()

        return step

    ours.train()
    theirs.train()
    times = median_times({"ours": step_fn(ours), "pytorch": step_fn(theirs)}, args.repeats)
    ratio = times["ours"] / times["pytorch"]
    params = sum(p.numel() for p in ours.parameters())
    print(f"parameters: ours {params:,}, nn.Transformer-based "
          f"{sum(p.numel() for p in theirs.parameters()):,}")
    print(f"training step (batch {args.batch_size}): ours {times['ours'] * 1e3:.0f} ms, "
          f"nn.Transformer {times['pytorch'] * 1e3:.0f} ms, ratio {ratio:.2f}")
    write_result("training_step_benchmark", {
        "measured": "forward + loss + backward + Adam step; same embeddings and generator, "
                    "our encoder/decoder stacks vs nn.Transformer's (training mode)",
        "config": config.to_dict(), "batch_size": args.batch_size,
        "src_len": src_len, "tgt_len": tgt_len, "repeats": args.repeats,
        "ours_ms": times["ours"] * 1e3, "pytorch_ms": times["pytorch"] * 1e3, "ratio": ratio,
    }, args.output)


if __name__ == "__main__":
    main()
