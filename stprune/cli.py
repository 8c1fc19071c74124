"""Command-line interface: thin. Each sub-command parses its arguments, calls library functions
and prints. Register a sub-command by adding a ``_add_<name>(sub)`` function below and listing it
in ``_COMMANDS``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence


def _add_version(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("version", help="print the stprune version")
    p.set_defaults(func=_run_version)


def _run_version(args: argparse.Namespace) -> int:
    from stprune import __version__

    print(__version__)
    return 0


def _add_make_demo_videos(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "make-demo-videos",
        help="write synthetic demo clips as mp4 files plus a '<split>.txt' list (path label per line)",
    )
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--num", type=int, required=True, help="number of clips")
    p.add_argument("--seed", type=int, default=0, help="split seed (default 0, the demo's validation set)")
    p.add_argument("--split", choices=["val", "train"], default="val")
    p.set_defaults(func=_run_make_demo_videos)


def _run_make_demo_videos(args: argparse.Namespace) -> int:
    from stprune.demo.videos import make_demo_videos

    list_path = make_demo_videos(args.out, args.num, split=args.split, seed=args.seed)
    print(f"wrote {args.num} clips and {list_path}")
    return 0


_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_version, _add_make_demo_videos]


def build_parser() -> argparse.ArgumentParser:
    """The top-level ``stprune`` parser with every registered sub-command."""
    parser = argparse.ArgumentParser(
        prog="stprune", description="Training-free spatio-temporal token pruning for video transformers."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for add in _COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``stprune`` command; returns the process exit code."""
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
