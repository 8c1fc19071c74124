"""Measured FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` under the math SDPA kernel.

FlopCounterMode counts 2 FLOPs per multiply-accumulate and does not see inside the fused CPU
SDPA kernel, so counting runs under ``sdpa_kernel(SDPBackend.MATH)`` (attention becomes plain
matmuls) and the total is halved to the field's convention (fvcore: 1 MAC = 1 FLOP).
VideoMAE-B at 16x224 then reads 180.3 G, the paper's 180 GFLOPs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["count_macs", "FlopsComparison", "compare_flops"]


def count_macs(model: nn.Module, inputs: Mapping[str, torch.Tensor]) -> int:
    """Multiply-accumulates of ``model(**inputs)`` for the whole batch (matmuls, convs, attention)."""
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(**inputs)
    total = counter.get_total_flops()
    return int(total) // 2


@dataclass(frozen=True)
class FlopsComparison:
    """GFLOPs (1 MAC = 1 FLOP) of one clip, unpruned and pruned, plus tokens per block."""

    gflops_unpruned: float
    gflops_pruned: float
    tokens_unpruned: list[int]
    tokens_pruned: list[int]

    @property
    def ratio(self) -> float:
        return self.gflops_pruned / self.gflops_unpruned


def compare_flops(
    model: nn.Module, inputs: Mapping[str, torch.Tensor], **patch_kwargs: object
) -> FlopsComparison:
    """Measure one clip unpruned, then patched with ``patch_kwargs``; the model is left unpatched.

    Args:
        model: an unpatched supported model.
        inputs: forward kwargs for a batch of one clip.
        patch_kwargs: arguments of :func:`stprune.patch` (method, r, flops_target, schedule).
    """
    import stprune
    from stprune.models import get_adapter

    lay = get_adapter(model).layout()
    base_tokens = [lay.num_slots * lay.tokens_per_slot + lay.protected] * lay.depth
    before = count_macs(model, inputs)
    stprune.patch(model, **patch_kwargs)
    try:
        after = count_macs(model, inputs)
        tokens = stprune.last_trace(model).tokens_per_block
    finally:
        stprune.unpatch(model)
    return FlopsComparison(before / 1e9, after / 1e9, base_tokens, tokens)
