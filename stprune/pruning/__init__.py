"""Pruning: one resolver plans every family; one pruner per kind of model.

* :mod:`~stprune.pruning.resolve`: schedule, ``r`` / ``flops_target``, the uniform-r search.
* :mod:`~stprune.pruning.trace`: what the last forward did (every family's trace type).
* :mod:`~stprune.pruning.sequence`: token-sequence encoders (ViT family), via hooks.
* :mod:`~stprune.pruning.input_level`: input-level methods (RLT), tokens dropped before block 0.
* :mod:`~stprune.pruning.window_grid`: window-attention models (Video Swin), pruned in the grid.

Dependencies run one way: core -> methods -> adapters -> pruning -> api.
"""

from __future__ import annotations

from typing import Any

from stprune.adapters.base import Adapter, SequenceAdapter
from stprune.adapters.video_llm import VideoLLMAdapter
from stprune.adapters.video_swin import VideoSwinAdapter
from stprune.errors import SettingError, UnsupportedModelError
from stprune.methods.base import Method
from stprune.pruning.input_level import build_input_pruner
from stprune.pruning.sequence import build_sequence_pruner
from stprune.pruning.trace import Pruner
from stprune.pruning.video_llm import build_video_llm_pruner
from stprune.pruning.window_grid import build_window_grid_pruner

__all__ = ["build_pruner"]


def build_pruner(
    adapter: Adapter,
    method: Method,
    schedule: Any,
    r: Any,
    flops_target: float | None,
    keep_ratio: float | None = None,
    **options: Any,
) -> Pruner:
    """Validate a setting for ``adapter``'s model and return its uninstalled pruner.

    ``options`` are the family's own (e.g. ``shifted_windows`` for Video Swin); unknown ones
    raise ``SettingTypeError``. ``keep_ratio`` is for video LLMs only.
    """
    if isinstance(adapter, VideoLLMAdapter):
        return build_video_llm_pruner(adapter, method, schedule, r, flops_target, keep_ratio, **options)
    if keep_ratio is not None:
        raise SettingError(
            "keep_ratio (fraction of a video's tokens kept) is for video LLMs; "
            f"{type(adapter.model).__name__} "
            "takes r (tokens dropped per group) or flops_target"
        )
    if method.video_only:
        from stprune.methods import encoder_methods

        raise UnsupportedModelError(
            f"method {method.name!r} selects among a video LLM's video tokens; "
            f"{type(adapter.model).__name__} is an encoder: use one of {', '.join(encoder_methods())}"
        )
    if method.input_level:
        if isinstance(adapter, SequenceAdapter):
            return build_input_pruner(adapter, method, schedule, r, flops_target, **options)
        raise UnsupportedModelError(
            f"method {method.name!r} drops tokens before the first block, but "
            f"{type(adapter.model).__name__}'s windows and patch merging need the whole token grid "
            "(stprune prunes window models inside their stages only); use 'sta' or 'random'"
        )
    if isinstance(adapter, SequenceAdapter):
        return build_sequence_pruner(adapter, method, schedule, r, flops_target, **options)
    if isinstance(adapter, VideoSwinAdapter):
        return build_window_grid_pruner(adapter, method, schedule, r, flops_target, **options)
    raise UnsupportedModelError(f"no pruner for {type(adapter).__name__}'s kind of model")
