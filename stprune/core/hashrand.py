"""Counter-based pseudo-random numbers from tensor ops (no generator objects).

Deterministic functions of integer counters, so they need no RNG state, trace under
``torch.compile(fullgraph=True)`` and run on any device (meta included).
"""

from __future__ import annotations

import torch

__all__ = ["hash_uniform"]

_MASK = 0xFFFFFFFF
_MUL = 0x45D9F3B  # 28-bit odd multiplier: products of 32-bit values stay exact in int64


def _mix(x: torch.Tensor) -> torch.Tensor:
    x = (((x >> 16) ^ x) * _MUL) & _MASK
    x = (((x >> 16) ^ x) * _MUL) & _MASK
    return (x >> 16) ^ x


def hash_uniform(shape: tuple[int, ...], seed: int, stream: int, device: torch.device | str) -> torch.Tensor:
    """Uniform [0, 1) float32 values, a deterministic function of (seed, stream, position).

    Args:
        shape: output shape; element positions are the counters.
        seed: user seed.
        stream: an extra key (e.g. the stage index) so different calls differ.
        device: where to build the tensor.
    """
    n = 1
    for s in shape:
        n *= s
    counter = torch.arange(n, device=device, dtype=torch.int64)
    key = _mix(torch.tensor((seed * 0x9E37 + stream * 0x85EB + 1) & _MASK, device=device, dtype=torch.int64))
    h = _mix((counter ^ key) & _MASK)
    h = _mix(h ^ ((key * 0x2C1B) & _MASK))
    return (h.to(torch.float64) / 2**32).to(torch.float32).view(shape)
