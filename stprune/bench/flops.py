"""Measured FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` under the math SDPA kernel.

FlopCounterMode counts 2 FLOPs per multiply-accumulate and does not see inside the fused CPU
SDPA kernel, so counting runs under ``sdpa_kernel(SDPBackend.MATH)`` (attention becomes plain
matmuls) and the total is halved to the field's convention (fvcore: 1 MAC = 1 FLOP).
VideoMAE-B at 16x224 then reads 180.3 G, the paper's 180 GFLOPs.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["count_macs"]


def count_macs(model: nn.Module, inputs: Mapping[str, torch.Tensor]) -> int:
    """Multiply-accumulates of ``model(**inputs)`` for the whole batch (matmuls, convs, attention)."""
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(**inputs)
    total = counter.get_total_flops()
    return int(total) // 2
