"""Token-reduction methods, one per file, all with the :class:`Method` interface."""

from __future__ import annotations

from stprune.methods.base import IndexPruningMethod, Method
from stprune.methods.sta import STA

__all__ = ["Method", "IndexPruningMethod", "STA", "METHODS", "get_method"]

#: name -> class of every available method
METHODS: dict[str, type[Method]] = {STA.name: STA}


def get_method(method: str | Method) -> Method:
    """A method instance from its name (``"sta"``, ...) or an instance."""
    if isinstance(method, Method):
        return method
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"unknown method {method!r}; available: {', '.join(sorted(METHODS))}")
    return METHODS[method]()
