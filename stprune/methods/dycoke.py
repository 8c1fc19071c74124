"""DyCoke's temporal token merging stage (Tao et al., CVPR 2025) for video LLMs, as published.

The rule and its quirks are in :mod:`stprune.core.dycoke`. The published knob is
``merging_ratio`` (DyCoke's ``dycoke_k``, default 0.7): every *pruned* frame keeps
``int((1 - merging_ratio) * N)`` tokens, the full frames stay whole (so the video keeps more
than ``1 - merging_ratio`` of its tokens). With a budget (``keep_ratio`` / ``r`` of
``stprune.patch``) instead, the largest per-frame count whose total fits the budget is used, so
DyCoke can be compared with other methods at the same number of tokens; a budget below the full
frames alone keeps the full frames (the trace records the count). DyCoke's second stage
(pruning the KV cache during decoding, guided by attention to the question) is not implemented:
stprune prunes the video independently of the question.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from stprune.core.dycoke import dycoke_keep_from_ratio, dycoke_kept_count, dycoke_ttm_keep
from stprune.methods.base import VideoTokenMethod

__all__ = ["DyCoke", "DEFAULT_MERGING_RATIO"]

#: DyCoke's default ``dycoke_k`` in the authors' evaluation scripts
DEFAULT_MERGING_RATIO = 0.7


class DyCoke(VideoTokenMethod):
    """DyCoke's TTM stage on one video's tokens (see the module docstring).

    Args:
        merging_ratio: the published knob (fraction of every pruned frame's tokens removed, in
            [0, 1]); ``None``: a budget (``keep_ratio`` / ``r``) decides.
    """

    name: ClassVar[str] = "dycoke"
    option_names: ClassVar[tuple[str, ...]] = ("merging_ratio",)

    def __init__(self, merging_ratio: float | None = None) -> None:
        if merging_ratio is not None:
            dycoke_keep_from_ratio(merging_ratio, 1)  # checks the value, names it in the error
        self.merging_ratio = merging_ratio

    def has_own_budget(self) -> bool:
        return self.merging_ratio is not None

    def _per_frame(self, frames: int, n: int, keep: int | None) -> int:
        """Tokens kept in every pruned frame: the published knob's, or the largest that fits ``keep``."""
        if keep is None:
            return dycoke_keep_from_ratio(self.merging_ratio, n)
        return max((k for k in range(n + 1) if dycoke_kept_count(frames, n, k) <= keep), default=0)

    def kept_count(self, slots: int, per_slot: int, keep: int | None) -> int:
        if slots < 2:
            return slots * per_slot
        return dycoke_kept_count(slots, per_slot, self._per_frame(slots, per_slot, keep))

    def keep_video(self, tokens: torch.Tensor, keep: int | None) -> torch.Tensor:
        frames, n, c = tokens.shape
        if frames < 2:  # one temporal slot: nothing to compare it with, kept whole
            return torch.arange(frames * n, device=tokens.device)
        return dycoke_ttm_keep(tokens.reshape(frames * n, c), n, self._per_frame(frames, n, keep))
