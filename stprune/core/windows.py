"""Where tokens of a 3D grid fall in (shifted) windows, and how to pack a token subset per window.

Pure tensor functions for window attention over a *subset* of a (T, H, W) token grid (no
modules, no model names). A token is named by its flat grid position ``(t * H + h) * W + w``.
The grid must be a whole number of windows along every axis (no padding). A shifted partition
is the one obtained by rolling the grid by ``-shift`` and cutting it into windows; windows and
the slots inside a window are numbered in (t, h, w) raster order.

Packing turns per-sample token sets into ``(windows, K)`` slot tables that batched attention can
use: either compacted to the largest per-window count (fewest slots, but K depends on the data:
one host synchronisation to read it), or aligned to the window's own slots (K = window size,
static shapes, no synchronisation).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from stprune.errors import SettingError

__all__ = [
    "WindowPacking",
    "check_whole_windows",
    "grid_positions_by_window",
    "locate_in_windows",
    "pack_windows",
]


def check_whole_windows(grid: Sequence[int], window: Sequence[int]) -> None:
    """Raise SettingError (a ValueError) unless every grid axis is a multiple of the window along it."""
    bad = [a for a, (g, w) in enumerate(zip(grid, window, strict=True)) if g % w]
    if bad:
        names = ", ".join("THW"[a] for a in bad)
        raise SettingError(
            f"token grid {tuple(grid)} is not a whole number of windows {tuple(window)} along {names}"
        )


def grid_positions_by_window(
    grid: Sequence[int], window: Sequence[int], device: torch.device | str
) -> torch.Tensor:
    """Flat grid positions of every slot of every (unshifted) window.

    Returns (nW, N) int64: row w lists window w's tokens in raster order (the order of
    ``window_partition``), N = prod(window), nW = prod(grid / window).
    """
    check_whole_windows(grid, window)
    t, h, w = (int(v) for v in grid)
    wt, wh, ww = (int(v) for v in window)
    pos = torch.arange(t * h * w, device=device).view(t // wt, wt, h // wh, wh, w // ww, ww)
    return pos.permute(0, 2, 4, 1, 3, 5).reshape(-1, wt * wh * ww)


def locate_in_windows(
    positions: torch.Tensor, grid: Sequence[int], window: Sequence[int], shift: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Window and slot of every token in the partition shifted by ``shift``.

    Args:
        positions: (...) int64 flat grid positions.
        grid, window, shift: (T, H, W) each; grid a multiple of window.

    Returns:
        window id (...), slot inside the window (...), and the rolled coordinates (..., 3)
        (position after rolling the grid by ``-shift``), all int64.
    """
    check_whole_windows(grid, window)
    t, h, w = (int(v) for v in grid)
    coords = torch.stack([positions // (h * w), (positions // w) % h, positions % w], dim=-1)
    size = torch.tensor([t, h, w], device=positions.device)
    win = torch.tensor([int(v) for v in window], device=positions.device)
    rolled = (coords - torch.tensor([int(v) for v in shift], device=positions.device)) % size
    cell, inner = rolled // win, rolled % win
    per_axis = size // win
    window_id = (cell[..., 0] * per_axis[1] + cell[..., 1]) * per_axis[2] + cell[..., 2]
    slot = (inner[..., 0] * win[1] + inner[..., 1]) * win[2] + inner[..., 2]
    return window_id, slot, rolled


@dataclass(frozen=True)
class WindowPacking:
    """A per-sample token set laid out as ``(num_windows, size)`` slots.

    Attributes:
        size: K, slots per window.
        gather: (B, nW * K) index into the sample's A tokens of the token in every slot
            (0 for an empty slot: any valid token, its result is never used).
        scatter: (B, A) index into the nW * K slots of every token.
        valid: (B, nW, K) whether a slot holds a token.
        slot: (B, nW, K) the window slot (0..N-1) of the token in every slot (0 when empty).
    """

    size: int
    gather: torch.Tensor
    scatter: torch.Tensor
    valid: torch.Tensor
    slot: torch.Tensor


def pack_windows(
    window_id: torch.Tensor,
    slot: torch.Tensor,
    num_windows: int,
    window_tokens: int,
    compact: bool,
    meta_size: int | None = None,
) -> WindowPacking:
    """Lay out every sample's tokens window by window.

    Args:
        window_id: (B, A) window of every token, in [0, num_windows).
        slot: (B, A) slot of every token inside its window, in [0, window_tokens); no two tokens
            of a sample share (window, slot).
        num_windows: nW.
        window_tokens: N, slots of a full window.
        compact: True: a window's tokens fill its first slots in slot order and K is the
            largest count over all windows of all samples (read on the host: one
            synchronisation; on the meta device, where there are no values, K = ``meta_size``,
            by default N). False: every token keeps its own slot, K = N (static shapes, no
            synchronisation).
        meta_size: K on the meta device with ``compact`` (e.g. the size a plan expects).
    """
    b, a = window_id.shape
    device = window_id.device
    if compact:
        key = window_id * window_tokens + slot
        order = key.argsort(dim=1)  # by window, then by slot
        sorted_window = window_id.gather(1, order)
        counts = torch.zeros(b, num_windows, dtype=torch.int64, device=device)
        counts.scatter_add_(1, window_id, torch.ones_like(window_id))
        start = counts.cumsum(1) - counts
        rank = torch.arange(a, device=device).expand(b, -1) - start.gather(1, sorted_window)
        size = (meta_size or window_tokens) if device.type == "meta" else int(counts.max())
        target_sorted = sorted_window * size + rank
        target = torch.empty_like(target_sorted).scatter_(1, order, target_sorted)
    else:
        size = window_tokens
        target = window_id * size + slot
    tokens = torch.arange(a, device=device).expand(b, -1)
    gather = torch.zeros(b, num_windows * size, dtype=torch.int64, device=device).scatter_(1, target, tokens)
    valid = torch.zeros(b, num_windows * size, dtype=torch.bool, device=device)
    valid = valid.scatter(1, target, torch.ones_like(target, dtype=torch.bool))
    slots = torch.zeros(b, num_windows * size, dtype=torch.int64, device=device).scatter_(1, target, slot)
    return WindowPacking(
        size=size,
        gather=gather,
        scatter=target,
        valid=valid.view(b, num_windows, size),
        slot=slots.view(b, num_windows, size),
    )
