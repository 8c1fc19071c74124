"""Token gathering helpers (pure tensor functions)."""

from __future__ import annotations

import torch

__all__ = ["gather_tokens"]


def gather_tokens(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Select tokens per sample.

    Args:
        x: (B, L, C) tokens.
        index: (B, K) int64 indices into L.

    Returns:
        (B, K, C) with ``out[b, k] = x[b, index[b, k]]``.
    """
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
