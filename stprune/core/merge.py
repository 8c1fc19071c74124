"""Bipartite soft matching (ToMe-style token merging) as pure tensor functions.

Tokens at even positions (A) are each matched to their most similar token at odd positions
(B) by key cosine similarity; the r best-matched A tokens are merged into their B partners by a
size-weighted average, and sizes add up. The kept A tokens come first, then all of B.
"""

from __future__ import annotations

import torch

__all__ = ["bipartite_plan", "merge_weighted", "bipartite_scoring_macs"]


def bipartite_plan(keys: torch.Tensor, r: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Decide which tokens merge where.

    Args:
        keys: (M, n, d) keys of M independent token sets (batch x groups), n >= 2.
        r: tokens of A merged away, 0 <= r <= ceil(n / 2).

    Returns:
        ``keep_a`` (M, |A| - r) indices into A of the unmerged A tokens,
        ``src`` (M, r) indices into A of the merged A tokens,
        ``dst`` (M, r) indices into B where each of them goes.
    """
    k = keys / keys.norm(dim=-1, keepdim=True)
    sim = k[:, 0::2] @ k[:, 1::2].transpose(1, 2)  # (M, |A|, |B|)
    best, partner = sim.max(dim=-1)
    order = best.argsort(dim=-1, descending=True)
    src = order[:, :r]
    return order[:, r:], src, partner.gather(1, src)


def merge_weighted(
    x: torch.Tensor, size: torch.Tensor, keep_a: torch.Tensor, src: torch.Tensor, dst: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply a plan: size-weighted average of merged tokens.

    Args:
        x: (M, n, C) tokens.
        size: (M, n, 1) how many original tokens each token stands for.
        keep_a, src, dst: from :func:`bipartite_plan`.

    Returns:
        (M, n - r, C) tokens and (M, n - r, 1) sizes: kept A tokens, then all B tokens.
    """
    c = x.shape[-1]
    xs = torch.cat([x * size, size], dim=-1)  # merge the weighted sum and the size together
    a, b = xs[:, 0::2], xs[:, 1::2]
    kept = a.gather(1, keep_a.unsqueeze(-1).expand(-1, -1, c + 1))
    moved = a.gather(1, src.unsqueeze(-1).expand(-1, -1, c + 1))
    b = b.scatter_add(1, dst.unsqueeze(-1).expand(-1, -1, c + 1), moved)
    out = torch.cat([kept, b], dim=1)
    new_size = out[..., c:]
    return out[..., :c] / new_size, new_size


def bipartite_scoring_macs(n: int, groups: int, r: int, key_dim: int) -> int:
    """MACs of the A x B similarity products of one stage, per sample."""
    if r == 0:
        return 0
    return groups * ((n + 1) // 2) * (n // 2) * key_dim
