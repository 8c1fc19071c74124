"""The errors stprune raises for a user's mistake (a bad setting, an unsupported model, a bad file).

Each is a subclass of the built-in exception a Python user would expect (``ValueError``,
``TypeError``, ``NotImplementedError``, ``FileNotFoundError``), so ``except ValueError`` keeps
working, and of :class:`StpruneError`, so the command line can tell a user's mistake (one line,
exit code 2) from a programming error (which keeps its traceback). This module imports nothing
of stprune: every layer may raise these.

Messages name the value that was given and the allowed range, in one line.
"""

from __future__ import annotations


class StpruneError(Exception):
    """Base class of every user-facing stprune error."""


class SettingError(StpruneError, ValueError):
    """A setting has a bad value (e.g. ``r`` too large, ``flops_target`` outside (0, 1])."""


class SettingTypeError(StpruneError, TypeError):
    """A setting has the wrong type (e.g. ``r='8'``)."""


class UnsupportedModelError(StpruneError, NotImplementedError):
    """The model (or this model with this method) cannot be pruned; the message says why."""


class InputError(StpruneError, ValueError):
    """Bad input data: an unreadable or corrupt video, a malformed list or checkpoint."""


class MissingFileError(StpruneError, FileNotFoundError):
    """A file or folder the user named does not exist."""


__all__ = [
    "StpruneError",
    "SettingError",
    "SettingTypeError",
    "UnsupportedModelError",
    "InputError",
    "MissingFileError",
]
