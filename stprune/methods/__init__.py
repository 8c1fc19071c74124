"""Token-reduction methods, one per file, all with the :class:`Method` interface."""

from __future__ import annotations

from typing import Any

from stprune.errors import SettingError, SettingTypeError
from stprune.methods.base import (
    BlockAttention,
    ForwardContext,
    IndexPruningMethod,
    InputSelection,
    InputSelectionMethod,
    Method,
    StageShape,
    VideoTokenMethod,
)
from stprune.methods.dycoke import DyCoke
from stprune.methods.evs import EVS
from stprune.methods.random import RandomPruning
from stprune.methods.rlt import RLT
from stprune.methods.sta import STA
from stprune.methods.tome import ToMe
from stprune.methods.vid_tldr import VidTLDR

__all__ = [
    "ForwardContext",
    "Method",
    "IndexPruningMethod",
    "STA",
    "ToMe",
    "VidTLDR",
    "BlockAttention",
    "StageShape",
    "RandomPruning",
    "RLT",
    "InputSelection",
    "InputSelectionMethod",
    "VideoTokenMethod",
    "DyCoke",
    "EVS",
    "METHODS",
    "encoder_methods",
    "get_method",
]

#: name -> class of every available method
METHODS: dict[str, type[Method]] = {m.name: m for m in (STA, ToMe, RandomPruning, RLT, DyCoke, EVS, VidTLDR)}


def encoder_methods() -> tuple[str, ...]:
    """Names of the methods that prune inside video encoders (the others select among a video
    LLM's video tokens only), in registration order."""
    return tuple(name for name, cls in METHODS.items() if not cls.video_only)


def get_method(method: str | Method, options: dict[str, Any] | None = None) -> Method:
    """A method instance from its name (``"sta"``, ...) or an instance.

    ``options``: keyword arguments of ``stprune.patch``; the ones the method takes
    (``option_names``, e.g. RLT's ``threshold``) are removed from it and passed to its
    constructor (an instance takes none).
    """
    if isinstance(method, Method):
        given = sorted(set(options or ()) & set(method.option_names))
        if given:
            raise SettingTypeError(
                f"{given} configure the method; an instance of {type(method).__name__} is already "
                f"configured: pass them to its constructor or give the method by name ({method.name!r})"
            )
        return method
    if not isinstance(method, str):
        raise SettingTypeError(
            f"method must be a name ({', '.join(sorted(METHODS))}) or a Method; got {method!r} of type "
            f"{type(method).__name__}"
        )
    if method not in METHODS:
        llm = sorted(m for m in METHODS if m not in encoder_methods())
        raise SettingError(
            f"unknown method {method!r}; available: {', '.join(encoder_methods())}, and for video LLMs "
            f"only {', '.join(llm)}"
        )
    cls = METHODS[method]
    mine = {k: options.pop(k) for k in list(options or ()) if k in cls.option_names} if options else {}
    return cls(**mine)
