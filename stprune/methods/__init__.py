"""Token-reduction methods, one per file, all with the :class:`Method` interface."""

from __future__ import annotations

from stprune.errors import SettingError, SettingTypeError
from stprune.methods.base import ForwardContext, IndexPruningMethod, Method
from stprune.methods.random import RandomPruning
from stprune.methods.sta import STA
from stprune.methods.tome import ToMe

__all__ = [
    "ForwardContext",
    "Method",
    "IndexPruningMethod",
    "STA",
    "ToMe",
    "RandomPruning",
    "METHODS",
    "get_method",
]

#: name -> class of every available method
METHODS: dict[str, type[Method]] = {m.name: m for m in (STA, ToMe, RandomPruning)}


def get_method(method: str | Method) -> Method:
    """A method instance from its name (``"sta"``, ...) or an instance."""
    if isinstance(method, Method):
        return method
    if not isinstance(method, str):
        raise SettingTypeError(
            f"method must be a name ({', '.join(sorted(METHODS))}) or a Method; got {method!r} of type "
            f"{type(method).__name__}"
        )
    if method not in METHODS:
        raise SettingError(f"unknown method {method!r}; available: {', '.join(sorted(METHODS))}")
    return METHODS[method]()
