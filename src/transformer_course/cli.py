"""The ``transformer-course`` command: the things people run outside notebooks."""

from __future__ import annotations

import argparse
import sys
import time


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="transformer-course",
        description="Transformers from Scratch: command-line tools of the course.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("doctor", help="check the installation and show the device in use")
    download = commands.add_parser(
        "download", help="download and verify the data sets into the cache (for offline use)"
    )
    download.add_argument("datasets", nargs="*", choices=["multi30k", "tinytalks"],
                          default=["multi30k", "tinytalks"], help="which data sets (default: both)")

    grade = commands.add_parser(
        "grade", help="autograde a folder of submitted assignment notebooks (for instructors)")
    grade.add_argument("assignment", help="the assignment, e.g. ch02_attention (or just ch02)")
    grade.add_argument("folder", help="the submissions: one <student id>.ipynb per student")
    grade.add_argument("--output", default=None,
                       help="where grades.csv and feedback/ go (default: grades/ASSIGNMENT)")
    grade.add_argument("--course-dir", default=None,
                       help="grade in this nbgrader course directory and keep it, e.g. to grade "
                            "the written answers in formgrader afterwards (default: a temporary "
                            "one)")
    grade.add_argument("--repository", default=None,
                       help="the course repository, with nbgrader_config.py and solutions/ "
                            "(default: found from the current directory)")

    translator = commands.add_parser("translator", help="the Multi30k German-English translator")
    actions = translator.add_subparsers(dest="action", required=True, metavar="ACTION")
    train = actions.add_parser("train", help="train with a recipe profile")
    train.add_argument("--profile", default="cpu", help="smoke, cpu or gpu (default: cpu)")
    train.add_argument("--output", default=None,
                       help="run folder (default: runs/translator-PROFILE)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--epochs", type=int, default=None, help="override the profile's epochs")
    train.add_argument("--resume", action="store_true", help="continue from the run folder")
    train.add_argument("--device", default=None, help="cpu, cuda or mps (default: automatic)")
    for name, text in (("translate", "translate German sentences"),
                       ("evaluate", "score a checkpoint on a Multi30k split with sacreBLEU")):
        action = actions.add_parser(name, help=text)
        action.add_argument("--checkpoint", default=None,
                            help="a model.pt written by train (default: the course's checkpoint)")
        action.add_argument("--beam", type=int, default=4, help="beam size (1: greedy)")
        action.add_argument("--device", default=None)
        if name == "translate":
            action.add_argument("sentences", nargs="+", help="German sentences")
            action.add_argument("--attention-image", default=None,
                                help="save the cross-attention of the first sentence as a PNG")
        else:
            action.add_argument("--split", nargs="+", default=["test_2016_flickr"],
                                help="one or more Multi30k splits (default: test_2016_flickr)")
            action.add_argument("--limit", type=int, default=None, help="first N sentences only")
            action.add_argument("--json", default=None,
                                help="also write the scores of every split to this JSON file")
    return parser


def default_translator_checkpoint():
    from pathlib import Path

    return Path(__file__).resolve().parents[2] / "checkpoints" / "translator-cpu" / "model.pt"


def translator_command(args) -> int:
    from pathlib import Path

    from . import translator

    if args.action == "train":
        if args.profile not in translator.PROFILES:
            print(f"error: unknown profile {args.profile!r}; choose from "
                  f"{sorted(translator.PROFILES)}", file=sys.stderr)
            return 2
        output = Path(args.output or f"runs/translator-{args.profile}")
        summary = translator.train_translator(args.profile, output, seed=args.seed,
                                              device=args.device, resume=args.resume,
                                              epochs=args.epochs)
        beam = summary["evaluation"]["beam"]
        print(f"BLEU {beam['bleu']:.2f} on test_2016_flickr [{beam['signature']}] after "
              f"{summary['training_minutes']:.1f} minutes of training; model in {output}")
        return 0
    if args.action == "evaluate":
        from .datasets import MULTI30K_SPLITS

        unknown = [split for split in args.split if split not in MULTI30K_SPLITS]
        if unknown:
            print(f"error: unknown Multi30k split {unknown[0]!r}; choose from "
                  f"{sorted(MULTI30K_SPLITS)}", file=sys.stderr)
            return 2
    checkpoint = Path(args.checkpoint) if args.checkpoint else default_translator_checkpoint()
    try:
        model = translator.load_translator(checkpoint, args.device)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.action == "translate":
        for source, target in zip(args.sentences, model.translate(args.sentences, args.beam),
                                  strict=True):
            print(f"{source}\n  -> {target}")
        if args.attention_image:
            save_cross_attention(model, args.sentences[0], args.attention_image, args.beam)
            print(f"cross-attention saved to {args.attention_image}")
        return 0
    results = {split: translator.evaluate_translator(model, split, args.beam, limit=args.limit)
               for split in args.split}
    if args.json:
        import json

        results = {"checkpoint": str(checkpoint), "command": " ".join(sys.argv), **results}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        print(f"scores written to {args.json}")
    return 0


def save_cross_attention(model, sentence: str, path: str, beam: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from .visualization import plot_attention

    maps = model.cross_attention(sentence, beam_size=beam)
    weights = maps["weights"][-1].mean(0)  # last layer, averaged over heads
    ax = plot_attention(weights, maps["output_tokens"], maps["source_tokens"],
                        title=f"cross-attention (last layer): {maps['translation']}")
    ax.set_xlabel("German source token")
    ax.set_ylabel("English output token")
    ax.figure.tight_layout()
    ax.figure.savefig(path, dpi=120)


def grade_command(args) -> int:
    try:
        from . import grading
    except ImportError as error:
        print(f"error: grading needs nbgrader ({error}); install it with: pip install nbgrader",
              file=sys.stderr)
        return 1
    start = time.perf_counter()
    try:
        report = grading.grade_folder(args.assignment, args.folder, args.output,
                                      args.course_dir, args.repository)
    except grading.GradingError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2 if "unknown assignment" in str(error) else 1
    print(f"{report.assignment}: {len(report.submissions)} submissions")
    print(grading.format_table(report))
    feedback = sum(s.feedback is not None for s in report.submissions)
    print(f"grades.csv and {feedback} feedback reports in {report.output} "
          f"({time.perf_counter() - start:.0f} s)")
    failed = [s.student for s in report.submissions if s.error] + report.skipped
    if failed:
        print(f"error: {len(failed)} files could not be graded (see above)", file=sys.stderr)
        return 1
    return 0


def download(names: list[str]) -> int:
    from .datasets import MULTI30K_SPLITS, DatasetError, load_multi30k, load_tinytalks

    try:
        if "multi30k" in names:
            for split in MULTI30K_SPLITS:
                print(f"multi30k {split}: {len(load_multi30k(split)):,} sentence pairs, verified")
        if "tinytalks" in names:
            for split in ("all", "train", "val", "test"):
                print(f"tinytalks {split}: {len(load_tinytalks(split))} pairs, verified")
    except DatasetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "doctor":
        from . import doctor

        return doctor.run()
    if args.command == "download":
        return download(args.datasets)
    if args.command == "grade":
        return grade_command(args)
    if args.command == "translator":
        return translator_command(args)
    raise AssertionError(f"unhandled command {args.command}")  # argparse rejects unknown ones


if __name__ == "__main__":
    sys.exit(main())
