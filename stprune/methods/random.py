"""Random pruning: the floor any informed method must beat. Same schedule and r as STA."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from stprune.core.schedule import Stage
from stprune.methods.base import IndexPruningMethod

__all__ = ["RandomPruning"]


class RandomPruning(IndexPruningMethod):
    """Drop r uniformly random tokens from every group; kept tokens stay in their order.

    Args:
        seed: every forward draws from a generator re-seeded with ``seed``, so a forward's
            selection does not depend on what ran before.
    """

    name: ClassVar[str] = "random"

    def __init__(self, seed: int = 0) -> None:
        self.seed = int(seed)

    def start_forward(self, ctx: dict[str, Any]) -> None:
        ctx["random_generators"] = {}

    def keep_indices(
        self, x: torch.Tensor, keys: torch.Tensor, stage: Stage, ctx: dict[str, Any]
    ) -> torch.Tensor:
        b, length, _ = x.shape
        g = stage.groups
        n = length // g
        if x.device.type == "meta":  # shape-only run (FLOP counting): no random numbers needed
            noise = torch.empty(b, g, n, device=x.device)
        else:
            gens = ctx.setdefault("random_generators", {})
            gen = gens.get(x.device)
            if gen is None:
                gen = gens[x.device] = torch.Generator(device=x.device).manual_seed(self.seed)
            noise = torch.rand(b, g, n, generator=gen, device=x.device)
        keep = noise.topk(n - stage.r, dim=-1).indices.sort(dim=-1).values  # (B, G, n - r)
        offsets = torch.arange(g, device=x.device).view(1, g, 1) * n
        return (keep + offsets).reshape(b, -1)
