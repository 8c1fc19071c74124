"""STA: Semantic-aware Temporal Accumulation (Ding et al., ICCV 2023)."""

from __future__ import annotations

from typing import ClassVar

import torch

from stprune.core.schedule import Stage
from stprune.core.sta import sta_keep_indices, sta_scoring_macs
from stprune.methods.base import ForwardContext, IndexPruningMethod

__all__ = ["STA"]


class STA(IndexPruningMethod):
    """Drops the tokens that are both temporally redundant and semantically unimportant.

    Exact: with the paper schedule it reproduces the authors' reference logit for logit.
    """

    name: ClassVar[str] = "sta"

    def keep_indices(
        self, x: torch.Tensor, keys: torch.Tensor, stage: Stage, ctx: ForwardContext
    ) -> torch.Tensor:
        return sta_keep_indices(x, keys, stage.groups, stage.r, stage.reverse)

    def scoring_macs(self, n: int, groups: int, r: int, key_dim: int) -> int:
        return sta_scoring_macs(n, groups, r, key_dim)
