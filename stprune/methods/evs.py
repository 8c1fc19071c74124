"""EVS (Efficient Video Sampling, as vLLM implements it) for video LLMs.

Drops the merged tokens most similar (cosine) to the same token one temporal slot earlier, on
the video's embeddings; the first slot is always kept (see :mod:`stprune.core.evs`). vLLM's
knob is the pruning rate ``q``: ``max(N, int(T * N * (1 - q)))`` tokens kept. With a budget
(``keep_ratio`` / ``r`` of ``stprune.patch``) instead, that many are kept (at least the first
slot's N), so EVS can be compared with other methods at the same number of tokens.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from stprune.core.evs import evs_retained_count, evs_retention_mask
from stprune.methods.base import VideoTokenMethod

__all__ = ["EVS"]


class EVS(VideoTokenMethod):
    """EVS on one video's tokens (see the module docstring).

    Args:
        pruning_rate: vLLM's ``q`` in [0, 1); ``None``: a budget (``keep_ratio`` / ``r``) decides.
    """

    name: ClassVar[str] = "evs"
    option_names: ClassVar[tuple[str, ...]] = ("pruning_rate",)

    def __init__(self, pruning_rate: float | None = None) -> None:
        if pruning_rate is not None:
            evs_retained_count(1, 1, pruning_rate)  # checks the value, names it in the error
        self.pruning_rate = pruning_rate

    def has_own_budget(self) -> bool:
        return self.pruning_rate is not None

    def kept_count(self, slots: int, per_slot: int, keep: int | None) -> int:
        if keep is None:
            return evs_retained_count(per_slot, slots, self.pruning_rate)
        return min(slots * per_slot, max(per_slot, keep))

    def keep_video(self, tokens: torch.Tensor, keep: int | None) -> torch.Tensor:
        frames, n, c = tokens.shape
        retain = self.kept_count(frames, n, keep)
        mask = evs_retention_mask(tokens.reshape(frames * n, c), n, retain)
        return mask.nonzero().squeeze(1)
