"""argparse building blocks every command line of stprune shares (the ``stprune`` CLI and the
developer scripts ``python -m stprune.demo.train`` / ``check``): one-line usage errors with exit
code 2, and option types that check values while parsing, before any work."""

from __future__ import annotations

import argparse
from typing import NoReturn

__all__ = ["OneLineParser", "int_at_least", "positive_int", "nonnegative_int", "flops_ratio", "keep_ratio"]


class OneLineParser(argparse.ArgumentParser):
    """argparse with its usage errors in one line (exit code 2, as argparse's own)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")

    def parse_args(self, args=None, namespace=None):  # noqa: ANN001, ANN201 - argparse's signature
        """As argparse's, but an unrecognised argument is reported by the sub-command that was given
        (``stprune flops: error: unrecognized arguments: --bogus (see 'stprune flops --help')``),
        whose help lists its options, rather than by the top-level parser."""
        namespace, extras = self.parse_known_args(args, namespace)
        if extras:
            sub = next((a for a in self._actions if isinstance(a, argparse._SubParsersAction)), None)
            command = getattr(namespace, sub.dest, None) if sub is not None and sub.dest else None
            parser = sub.choices.get(command, self) if sub is not None else self
            parser.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace


def int_at_least(text: str, low: int) -> int:
    """``text`` as an integer >= ``low``, or argparse's one-line error naming the value."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= {low}; got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be an integer >= {low}; got {value}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return int_at_least(text, 1)


def nonnegative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return int_at_least(text, 0)


def _fraction(text: str, what: str) -> float:
    """``text`` as a number in (0, 1], or argparse's one-line error naming it (``what`` says what it is)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what} in (0, 1]; got {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be {what} in (0, 1]; got {value}")
    return value


def flops_ratio(text: str) -> float:
    """argparse type: a FLOPs ratio in (0, 1]."""
    return _fraction(text, "a FLOPs ratio")


def keep_ratio(text: str) -> float:
    """argparse type: the fraction of each video's tokens kept, in (0, 1] (video LLMs)."""
    return _fraction(text, "a fraction of each video's tokens kept")
