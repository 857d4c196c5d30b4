"""The ``transformer-course`` command: the things people run outside notebooks."""

from __future__ import annotations

import argparse
import sys


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
    return parser


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
    raise AssertionError(f"unhandled command {args.command}")  # argparse rejects unknown ones


if __name__ == "__main__":
    sys.exit(main())
