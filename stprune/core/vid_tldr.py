"""vid-TLDR (Choi et al., CVPR 2024) as pure tensor functions (no modules, no model names).

One merging step of "vid-TLDR: Training Free Token merging for Light-weight Video Transformer",
as the authors' code computes it (github.com/mlvlab/vid-TLDR, ``multi_modality/utils/vid_TLDR.py``:
``get_objective_score``, ``merging``, ``merge_wavg``; checked against it on seeded inputs,
``tests/test_vid_tldr.py``):

1. **Saliency** from the attention probabilities of the block that merges (its queries against
   its keys, no size bias), averaged over heads: each token's negative attention entropy
   ``sum_j p_ij log p_ij``, min-max normalised over the tokens; tokens below the mean are
   background (saliency 0), the others are centred on the mean and divided by their maximum
   (foreground sharpening), so saliency lies in [0, 1].
2. **Matching**: ToMe's bipartite soft matching on the tokens themselves (not keys): even
   positions (A) against odd positions (B) by cosine similarity, the r A tokens with the best
   match merge into their partners; the unmerged A tokens keep their order.
3. **Merging** weighted by size *and* saliency: a merged A token enters its partner with weight
   ``size * saliency`` (a background token, saliency 0, vanishes), sizes add up the same way,
   so sizes become fractional. Output: unmerged A tokens (ascending), then all of B.

Two guards the published code lacks, both exact wherever it is finite: ``0 * log 0`` counts as 0
(a probability that underflowed to 0 gives NaN there), and a clip whose tokens all have the same
entropy gets saliency 0 instead of 0 / 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = [
    "SaliencyMergePlan",
    "mean_attention",
    "attention_saliency",
    "saliency_plan",
    "saliency_merge",
    "vid_tldr_macs",
]


def mean_attention(queries: torch.Tensor, keys: torch.Tensor, scale: float) -> torch.Tensor:
    """Attention probabilities averaged over heads: ``softmax((q * scale) k^T)`` over the keys.

    Computed head by head, so the peak memory is two (B, Lq, Lk) maps, not H of them.

    Args:
        queries: (B, H, Lq, d) the rows wanted (e.g. the prunable tokens only).
        keys: (B, H, Lk, d) every token the attention reads.
        scale: the logit scale (``d ** -0.5``).

    Returns:
        (B, Lq, Lk) the mean over the H heads.
    """
    heads = queries.shape[1]
    total = None
    for h in range(heads):
        p = ((queries[:, h] * scale) @ keys[:, h].transpose(-1, -2)).softmax(dim=-1)
        total = p if total is None else total + p
    return total / heads


def _safe_divide(x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    # clamp only guards the degenerate all-equal clip (0 / 0); exact otherwise
    return x / d.clamp_min(torch.finfo(x.dtype).tiny)


def attention_saliency(attn: torch.Tensor) -> torch.Tensor:
    """Saliency of every token from its attention row (the authors' "objective score").

    Args:
        attn: (B, L, Lk) head-averaged attention probabilities of L tokens (rows sum to 1; the
            keys may include tokens that are never merged, e.g. a CLS token).

    Returns:
        (B, L, 1) in [0, 1]: 0 for background tokens (normalised negative entropy below the
        clip's mean), ``(s - mean) / max(s - mean)`` for the others.
    """
    plogp = torch.where(attn > 0, attn * attn.log(), attn.new_zeros(()))
    s = plogp.sum(dim=-1, keepdim=True)
    s = s - s.amin(dim=1, keepdim=True)
    s = _safe_divide(s, s.amax(dim=1, keepdim=True))
    background = s < s.mean(dim=1, keepdim=True)
    s = s - s.mean(dim=1, keepdim=True)
    s = _safe_divide(s, s.amax(dim=1, keepdim=True))
    return s.masked_fill(background, 0.0)


@dataclass(frozen=True)
class SaliencyMergePlan:
    """Which tokens merge where, for M independent token sets of n tokens (A = even positions).

    Attributes:
        unmerged: (M, |A| - r) int64 indices into A of the unmerged A tokens, ascending.
        src: (M, r) int64 indices into A of the merged A tokens (best match first).
        dst: (M, r) int64 indices into B of their partners.
        src_saliency: (M, r, 1) saliency of each merged A token (its weight in the merge).
    """

    unmerged: torch.Tensor
    src: torch.Tensor
    dst: torch.Tensor
    src_saliency: torch.Tensor


def saliency_plan(metric: torch.Tensor, r: int, saliency: torch.Tensor) -> SaliencyMergePlan:
    """Bipartite soft matching of vid-TLDR.

    Args:
        metric: (M, n, C) what tokens are compared by (vid-TLDR: the tokens themselves), n >= 2.
        r: A tokens merged away, 0 <= r <= n // 2.
        saliency: (M, n, 1) from :func:`attention_saliency`.

    Returns:
        the plan (see :class:`SaliencyMergePlan`). Similarities are ``(cos + 1) / 2`` as the
        authors compute them (the same order as the cosine up to rounding, and the same ties).
    """
    m = metric / metric.norm(dim=-1, keepdim=True)
    a, b = m[:, ::2], m[:, 1::2]
    sim = (a @ b.transpose(-1, -2) + 1) / 2  # (M, |A|, |B|)
    best, partner = sim.max(dim=-1)
    order = best.argsort(dim=-1, descending=True)
    src = order[:, :r]
    unmerged = order[:, r:].sort(dim=1).values
    dst = partner.gather(1, src)
    src_saliency = saliency[:, ::2].gather(1, src.unsqueeze(-1))
    return SaliencyMergePlan(unmerged, src, dst, src_saliency)


def _apply(x: torch.Tensor, plan: SaliencyMergePlan) -> torch.Tensor:
    """(M, n, C) -> (M, n - r, C): unmerged A tokens, then B with ``saliency * A`` summed in."""
    c = x.shape[-1]
    src, dst = x[:, ::2], x[:, 1::2]
    unm = src.gather(1, plan.unmerged.unsqueeze(-1).expand(-1, -1, c))
    moved = src.gather(1, plan.src.unsqueeze(-1).expand(-1, -1, c)) * plan.src_saliency
    dst = dst.scatter_reduce(1, plan.dst.unsqueeze(-1).expand(-1, -1, c), moved, reduce="sum")
    return torch.cat([unm, dst], dim=1)


def saliency_merge(
    x: torch.Tensor,
    size: torch.Tensor,
    plan: SaliencyMergePlan,
    size_max: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply a plan: the size- and saliency-weighted average of merged tokens.

    ``out_j = (size_j x_j + sum_i saliency_i size_i x_i) / (size_j + sum_i saliency_i size_i)``
    over the A tokens i merged into B token j; computed as the authors do, with sizes divided by
    the clip's largest size first (which cancels, up to rounding).

    Args:
        x: (M, n, C) tokens.
        size: (M, n, 1) how many input tokens each stands for (fractional after a first merge).
        plan: from :func:`saliency_plan`.
        size_max: (M, 1, 1) the divisor of the sizes (default: ``size.amax(1)``; a clip split
            into groups passes its own maximum to every group).

    Returns:
        (M, n - r, C) tokens and (M, n - r, 1) sizes: unmerged A tokens, then all B tokens.
    """
    c = x.shape[-1]
    if size_max is None:
        size_max = size.amax(dim=-2, keepdim=True)
    both = _apply(torch.cat([x * (size / size_max), size], dim=-1), plan)
    new_size = both[..., c:]
    return both[..., :c] / (new_size / size_max), new_size


def vid_tldr_macs(n: int, groups: int, r: int, heads: int, head_dim: int, width: int, protected: int) -> int:
    """Matrix-product MACs of one vid-TLDR step, per sample.

    The attention map of the L = groups * n merged-over tokens against all L + protected keys
    (``heads * head_dim * L * (L + protected)``) and the A x B similarities of every group on
    tokens of width ``width`` (``groups * ceil(n / 2) * floor(n / 2) * width``). 0 when r = 0.
    """
    if r == 0:
        return 0
    length = groups * n
    return heads * head_dim * length * (length + protected) + groups * ((n + 1) // 2) * (n // 2) * width
