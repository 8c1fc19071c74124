"""Random pruning: the floor any informed method must beat. Same schedule and r as STA."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from stprune.core.hashrand import hash_uniform
from stprune.core.schedule import Stage
from stprune.methods.base import IndexPruningMethod

__all__ = ["RandomPruning"]


class RandomPruning(IndexPruningMethod):
    """Drop r uniformly random tokens from every group; kept tokens stay in their order.

    Args:
        seed: the draw is a fixed function of (seed, stage, sample position in the batch,
            token position), so every forward with the same batch layout prunes alike, there
            is no RNG state, and ``torch.compile`` traces it without graph breaks.
    """

    name: ClassVar[str] = "random"

    def __init__(self, seed: int = 0) -> None:
        self.seed = int(seed)

    def keep_indices(
        self, x: torch.Tensor, keys: torch.Tensor, stage: Stage, ctx: dict[str, Any]
    ) -> torch.Tensor:
        b, length, _ = x.shape
        g = stage.groups
        n = length // g
        noise = hash_uniform((b, g, n), self.seed, stage.after_block, x.device)
        keep = noise.topk(n - stage.r, dim=-1).indices.sort(dim=-1).values  # (B, G, n - r)
        offsets = torch.arange(g, device=x.device).view(1, g, 1) * n
        return (keep + offsets).reshape(b, -1)
