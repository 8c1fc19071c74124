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


_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_version]


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
