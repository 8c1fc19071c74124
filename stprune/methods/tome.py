"""ToMe-style token merging (Bolya et al., ICLR 2023) as a training-free baseline.

Bipartite soft matching on the block's head-averaged keys, size-weighted merging with size
tracking, and proportional attention: later attention layers add log(size) of each key token
to the attention logits (passed to SDPA as an additive mask by the model's adapter, so the
fused kernel stays in use). Mean-pooled models pool with size weights.

Its own default schedule merges r tokens after every block but the last, over all tokens.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from stprune.core.merge import bipartite_plan, bipartite_scoring_macs, merge_weighted
from stprune.core.schedule import Stage
from stprune.methods.base import ForwardContext, Method

__all__ = ["ToMe"]


class ToMe(Method):
    """Merge the r most redundant tokens of each group per stage (``ctx.size`` tracks sizes)."""

    name: ClassVar[str] = "tome"
    tracks_size: ClassVar[bool] = True
    sets_anchor: ClassVar[bool] = True
    default_schedule: ClassVar[str] = "every"

    def scoring_macs(self, n: int, groups: int, r: int, key_dim: int) -> int:
        return bipartite_scoring_macs(n, groups, r, key_dim)

    def reduce(
        self, x: torch.Tensor, keys: torch.Tensor, stage: Stage, ctx: ForwardContext
    ) -> tuple[torch.Tensor, None]:
        b, length, c = x.shape
        g = stage.groups
        n = length // g
        size = ctx.size
        if size is None:
            size = torch.ones(b, length, 1, dtype=x.dtype, device=x.device)
        keep_a, src, dst = bipartite_plan(keys.reshape(b * g, n, -1), stage.r)
        merged, new_size = merge_weighted(
            x.reshape(b * g, n, c), size.reshape(b * g, n, 1).to(x.dtype), keep_a, src, dst
        )
        # sizes are counts (piecewise constant in the weights): detached, so a stage replayed by
        # gradient checkpointing does not reach into the forward's graph; gradients are unchanged
        ctx.size = new_size.detach().reshape(b, -1, 1)
        # where each output token sits (index into x of the token it is anchored at: the B token a
        # merged one merged into), for rotary-position models: merge_weighted's output order is
        # the unmerged A tokens (even positions 2 * keep_a), then all of B (odd positions), per group
        odd = torch.arange(1, n, 2, device=x.device).expand(b * g, -1)
        local = torch.cat([2 * keep_a, odd], dim=1)
        offsets = torch.arange(g, device=x.device).view(1, g, 1) * n
        ctx.anchor = (local.view(b, g, -1) + offsets).reshape(b, -1)
        return merged.reshape(b, -1, c), None
