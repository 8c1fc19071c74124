"""STA token selection as pure tensor functions (no modules, no model names).

Implements one pruning point of Semantic-aware Temporal Accumulation exactly as stated in
``sta-algorithm.md`` (and as the authors' reference computes it), vectorised so that the only
sequential part is a cheap recurrence over groups:

* every group-to-previous-group similarity ``K_gt K_g(t-1)^T`` is one batched matmul;
* the softmax runs over the *current* group's tokens (dim of ``i``), i.e. column-wise, so a
  column's probabilities do not depend on which other columns were kept; accumulating from the
  kept tokens of the previous group is therefore ``P_t @ w`` with ``w`` zero at dropped tokens;
* no host-device synchronisation: no ``.item()``, no branching on tensor values.
"""

from __future__ import annotations

import contextlib

import torch

__all__ = ["semantic_importance", "first_group_keep", "sta_keep_indices", "sta_scoring_macs"]


def semantic_importance(x: torch.Tensor, groups: int) -> torch.Tensor:
    """L1 norm of each token, min-max normalised to [0, 1] inside its group.

    Args:
        x: (B, L, C) block output (protected tokens excluded).
        groups: G, number of equal contiguous groups (L % G == 0).

    Returns:
        (B, G, n) importance, n = L // G. A group whose tokens all have the same norm gets 0.
    """
    b, length, _ = x.shape
    a = x.abs().sum(-1).view(b, groups, length // groups)
    lo = a.amin(-1, keepdim=True)
    hi = a.amax(-1, keepdim=True)
    # clamp only guards the degenerate all-equal group (0/0); exact otherwise
    return (a - lo) / (hi - lo).clamp_min(torch.finfo(a.dtype).tiny)


def first_group_keep(k: torch.Tensor, r: int) -> torch.Tensor:
    """Spatial-redundancy selection for the first visited group.

    Tokens at even positions form A, odd positions B. For every a in A,
    ``m_a = max_b cos(K_a, K_b)``; the r tokens of A with the largest m_a are dropped.

    Args:
        k: (B, n, d) L2-normalised keys of the group, n >= 2.
        r: tokens to drop, 0 <= r <= ceil(n / 2).

    Returns:
        (B, n - r) local indices of the kept tokens, in the reference order: all of B in
        their original order, then the kept A tokens by m_a ascending.
    """
    b, n, _ = k.shape
    a_keys, b_keys = k[:, 0::2], k[:, 1::2]
    m = torch.bmm(a_keys, b_keys.transpose(1, 2)).amax(-1)  # (B, |A|)
    order = m.argsort(dim=-1)  # ascending, as the reference
    n_a = a_keys.shape[1]
    kept_a = 2 * order[:, : n_a - r]
    odd = torch.arange(1, n, 2, device=k.device).expand(b, -1)
    return torch.cat([odd, kept_a], dim=1)


def _autocast_off(device: torch.device) -> contextlib.AbstractContextManager:
    """Disable autocast on ``device`` (it would run the scoring matmuls in half precision)."""
    if device.type in ("cpu", "cuda", "xpu", "mps"):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()  # e.g. meta: autocast does not apply


def sta_keep_indices(
    x: torch.Tensor,
    keys: torch.Tensor,
    groups: int,
    r: int,
    reverse: bool = False,
) -> torch.Tensor:
    """Indices of the tokens STA keeps at one pruning point.

    Args:
        x: (B, L, C) block output, protected tokens excluded.
        keys: (B, L, d) head-averaged keys of the same block (not yet normalised).
        groups: G; L must be divisible by G, each group has n = L // G >= 2 tokens.
        r: tokens dropped per group, 0 <= r <= ceil(n / 2). r = 0 keeps every token in place.
        reverse: visit groups last-to-first (the paper's middle stage).

    Returns:
        (B, G * (n - r)) int64 indices into L: kept tokens of every group, groups in temporal
        order, each group's tokens in the reference order (see ``sta-algorithm.md``).
    """
    b, length, _ = x.shape
    if r == 0:
        return torch.arange(length, device=x.device).expand(b, -1)
    # score in at least float32 (half-precision softmax/topk would change the selection), also
    # under autocast, which would otherwise run the matmuls below in half precision
    with _autocast_off(x.device):
        return _sta_keep_indices(x, keys, groups, r, reverse)


def _sta_keep_indices(
    x: torch.Tensor, keys: torch.Tensor, groups: int, r: int, reverse: bool
) -> torch.Tensor:
    # Every product and reduction below runs on the same values, in the same shapes, as the
    # straightforward version (tests/test_core_sta.py keeps it and checks bitwise equal indices);
    # what is saved is work around them: no flipped copies of the keys for a reversed stage (the
    # group pairs are indexed instead), 3D bmm instead of matmul's reshapes, one 1 - importance
    # for all groups, one stack for the output. Few operators matter: the selection runs between
    # blocks, where each small operator costs a fixed overhead (and a profiler event).
    b, length, _ = x.shape
    n = length // groups
    device = x.device
    work = torch.promote_types(keys.dtype, torch.float32)
    k = keys if keys.dtype == work else keys.to(work)
    k = (k / k.norm(dim=-1, keepdim=True)).view(b, groups, n, -1)
    x = x if x.dtype == work else x.to(work)
    unimportance = (1.0 - semantic_importance(x, groups)).unbind(1)  # G x (B, n)

    order = range(groups - 1, -1, -1) if reverse else range(groups)
    kept: list[torch.Tensor] = [torch.empty(0)] * groups
    kept[order[0]] = first_group_keep(k[:, order[0]], r)

    if groups > 1:
        # pair i couples group i + 1 (current) with group i (previous) when visiting forward, group
        # i (current) with group i + 1 (previous) when visiting last-to-first
        cur, prev = (k[:, :-1], k[:, 1:]) if reverse else (k[:, 1:], k[:, :-1])
        d = k.shape[-1]
        sim = torch.bmm(cur.reshape(-1, n, d), prev.reshape(-1, n, d).transpose(1, 2))
        # P[i][:, c, j]: previous token j spreads one unit of mass over current tokens c
        p = sim.view(b, groups - 1, n, n).softmax(dim=2).unbind(1)  # G-1 x (B, n, n)
        w = torch.ones(b, n, 1, dtype=work, device=device)  # mass of g0: all n tokens
        zeros = torch.zeros(b, n, dtype=work, device=device)
        for g in order[1:]:
            acc = torch.bmm(p[g if reverse else g - 1], w).squeeze(-1)  # (B, n) temporal accumulation
            keep = (acc * unimportance[g]).topk(n - r, dim=1, largest=False).indices  # ascending score
            kept[g] = keep
            kept_acc = acc.gather(1, keep)
            w = zeros.scatter(1, keep, kept_acc / kept_acc.sum(1, keepdim=True)).unsqueeze(-1)

    offsets = torch.arange(0, length, n, device=device).view(1, groups, 1)
    return (torch.stack(kept, 1) + offsets).view(b, -1)


def sta_scoring_macs(n: int, groups: int, r: int, key_dim: int) -> int:
    """Multiply-accumulates of STA's matrix products at one pruning point, per sample.

    Counts what ``torch.utils.flop_counter`` counts (matmul/bmm): the first group's A x B
    similarities, the G-1 group-to-group similarities and the G-1 accumulation products.
    """
    if r == 0:
        return 0
    n_a, n_b = (n + 1) // 2, n // 2
    return n_a * n_b * key_dim + (groups - 1) * (n * n * key_dim + n * n)
