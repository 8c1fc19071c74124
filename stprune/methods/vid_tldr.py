"""vid-TLDR: training-free token merging with attention saliency (Choi et al., CVPR 2024).

As published (github.com/mlvlab/vid-TLDR, checked against its functions, ``tests/test_vid_tldr.py``):
inside a merging block, after its attention and residual and before its MLP, every token gets a
saliency from that block's own attention map (negative entropy of its head-averaged row,
background suppressed, foreground sharpened; :func:`stprune.core.vid_tldr.attention_saliency`),
then ToMe's bipartite matching on the tokens themselves merges r tokens per group, each merged
token weighted by its size times its saliency (background tokens vanish). Sizes are tracked
(fractional) and later attention adds log(size) (proportional attention), as for ToMe.

The attention map is computed from the block's query and key projections (captured by hooks),
so the model's own attention stays fused. Default schedule: blocks 0, 1 and 2, one group each, the
same r (or ``r=[r0, r1, r2]``), the shape of the authors' settings, which merge in the first few
blocks only (ViT-B, 12 blocks, 2352 tokens, MSR-VTT: r = 600, 200, 100 in blocks 0-2; any
``schedule=`` works, e.g. ``"every"`` as ToMe).
"""

from __future__ import annotations

from typing import ClassVar

import torch

from stprune.core.schedule import Stage
from stprune.core.vid_tldr import (
    attention_saliency,
    mean_attention,
    saliency_merge,
    saliency_plan,
    vid_tldr_macs,
)
from stprune.methods.base import ForwardContext, Method, StageShape

__all__ = ["VidTLDR"]


class VidTLDR(Method):
    """Merge r redundant tokens per group, weighted by saliency, inside each stage's block (sizes tracked).

    The saliency is computed over all prunable tokens of a clip (the authors merge one group);
    with several groups the matching stays inside each group. Protected tokens (a CLS token) are
    never merged; their attention columns count in every token's attention row.
    """

    name: ClassVar[str] = "vid_tldr"
    tracks_size: ClassVar[bool] = True
    uses_attention: ClassVar[bool] = True
    reduces_after_attention: ClassVar[bool] = True
    default_schedule: ClassVar[tuple[tuple[int, int, None], ...]] = ((0, 1, None), (1, 1, None), (2, 1, None))

    def max_r(self, n: int) -> int:
        """At most half the group (the authors cap r at N // 2)."""
        return n // 2

    def stage_macs(self, shape: StageShape) -> int:
        return vid_tldr_macs(
            shape.n, shape.groups, shape.r, shape.heads, shape.key_dim, shape.width, shape.protected
        )

    def reduce(
        self, x: torch.Tensor, keys: torch.Tensor, stage: Stage, ctx: ForwardContext
    ) -> tuple[torch.Tensor, None]:
        att = ctx.attention
        if att is None:
            raise RuntimeError(
                "vid_tldr needs the attention of the block it merges in (ctx.attention); the pruner gave none"
            )
        b, length, c = x.shape
        g = stage.groups
        n = length // g
        p = att.protected
        saliency = attention_saliency(mean_attention(att.queries[:, :, p:], att.keys, att.scale))
        size = ctx.size
        if size is None:
            size = torch.ones(b, length, 1, dtype=x.dtype, device=x.device)
        size = size.to(x.dtype)
        size_max = size.amax(dim=1, keepdim=True).repeat_interleave(g, dim=0)  # the clip's, per group
        plan = saliency_plan(
            x.detach().reshape(b * g, n, c), stage.r, saliency.to(x.dtype).reshape(b * g, n, 1)
        )
        merged, new_size = saliency_merge(x.reshape(b * g, n, c), size.reshape(b * g, n, 1), plan, size_max)
        # sizes are weights of the selection (no gradient), as for ToMe
        ctx.size = new_size.detach().reshape(b, -1, 1)
        return merged.reshape(b, -1, c), None
