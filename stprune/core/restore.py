"""Scatter a pruned model's tokens back into the full T0 x N token grid (pure tensor functions).

For feature extraction and dense tasks: a pruned encoder returns L < T0 * N tokens of each clip
together with their grid positions (``slot * N + spatial index``, e.g. the ``positions`` of the
last stage in a trace); :func:`restore_grid` puts each token back in its place and fills the
places that were pruned.
"""

from __future__ import annotations

import numbers

import torch

from stprune.errors import InputError, SettingError, SettingTypeError

__all__ = ["restore_grid"]


def _nearest_time_source(real: torch.Tensor) -> torch.Tensor:
    """For every grid place, the slot in time whose token fills it.

    Args:
        real: (B, T0, N) bool, where a real token sits.

    Returns:
        (B, T0, N) int64 slot of the nearest real token at the same spatial index (the place's
        own slot where it is real; ties go to the earlier slot); 0 where that spatial index has
        no real token in any slot.
    """
    t0 = real.shape[1]
    t = torch.arange(t0, device=real.device).view(1, t0, 1)
    # last real slot at or before t (-1: none), first real slot at or after t (T0: none)
    before = torch.where(real, t, -1).cummax(dim=1).values
    after = torch.where(real, t, t0).flip(1).cummin(dim=1).values.flip(1)
    has_before, has_after = before >= 0, after < t0
    take_before = has_before & (~has_after | (t - before <= after - t))
    return torch.where(take_before, before, torch.where(has_after, after, 0))


def restore_grid(
    tokens: torch.Tensor,
    positions: torch.Tensor,
    grid_size: tuple[int, int],
    fill: str | float = "nearest_time",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Put each clip's tokens back into the T0 x N grid and fill the pruned places.

    Checks the positions (range, no place twice in a clip), which reads one flag on the host.
    Differentiable with respect to ``tokens``.

    Args:
        tokens: (B, L, C) tokens of a pruned model (protected tokens outside the grid, e.g.
            CLS, removed).
        positions: (B, L) int64 place of each token in the grid, ``slot * N + spatial index``;
            -1 marks padding (that token is ignored). Distinct within a clip.
        grid_size: (T0, N), temporal slots and tokens per slot.
        fill: what a pruned place gets:

            * ``"nearest_time"``: the features of the real token at the same spatial index in
              the nearest slot in time that has one (ties go to the earlier slot); where no slot
              has a real token at that spatial index, 0.
            * a number: that value in every channel.

    Returns:
        ``(grid, real)``: (B, T0 * N, C) tokens in grid order, and (B, T0 * N) bool, True where
        the place holds one of ``tokens`` (False where it was filled).

    Raises:
        InputError: bad shapes, a position outside [-1, T0 * N), or one place given twice.
        SettingError / SettingTypeError: bad ``grid_size`` or ``fill``.
    """
    if not (isinstance(grid_size, (tuple, list)) and len(grid_size) == 2):
        raise SettingTypeError(f"grid_size must be a pair (T0, N); got {grid_size!r}")
    t0, n = grid_size
    if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1 for v in (t0, n)):
        raise SettingError(f"grid_size must be two ints >= 1 (T0, N); got {grid_size!r}")
    t0, n = int(t0), int(n)
    nearest = isinstance(fill, str)
    if nearest and fill != "nearest_time":
        raise SettingError(f"fill must be 'nearest_time' or a number; got {fill!r}")
    if not nearest and (not isinstance(fill, numbers.Real) or isinstance(fill, bool)):
        raise SettingTypeError(
            f"fill must be 'nearest_time' or a number; got {fill!r} ({type(fill).__name__})"
        )
    if tokens.dim() != 3 or positions.shape != tokens.shape[:2]:
        raise InputError(
            f"tokens must be (B, L, C) and positions (B, L); got {tuple(tokens.shape)} and "
            f"{tuple(positions.shape)}"
        )
    if positions.dtype.is_floating_point or positions.dtype == torch.bool:
        raise InputError(f"positions must be an integer tensor; got {positions.dtype}")
    b, _, c = tokens.shape
    m = t0 * n
    positions = positions.long()
    valid = positions >= 0
    # padding goes to one extra place, M, dropped at the end
    place = torch.where(valid, positions, m)
    hits = torch.zeros(b, m + 1, dtype=torch.int64, device=tokens.device)
    hits = hits.scatter_add(1, place.clamp(0, m), torch.ones_like(place))
    bad = (positions < -1) | (positions >= m)
    if bool(bad.any() | (hits[:, :m] > 1).any()):  # the one host synchronisation
        raise InputError(
            f"positions must be distinct places in [0, {m}) per clip ({t0} x {n} grid), or -1 for padding; "
            f"got values in [{int(positions.min())}, {int(positions.max())}]"
            + (" with a place given twice" if bool((hits[:, :m] > 1).any()) else "")
        )
    real = hits[:, :m] > 0
    base_value = 0.0 if nearest else float(fill)
    grid = tokens.new_full((b, m + 1, c), base_value)
    grid = grid.scatter(1, place.unsqueeze(-1).expand(-1, -1, c), tokens)[:, :m]
    if not nearest:
        return grid, real
    slot = _nearest_time_source(real.view(b, t0, n))
    source = (slot * n + torch.arange(n, device=tokens.device)).view(b, m)
    # a spatial index with no real token in any slot points at its empty place in slot 0, which holds 0
    return grid.gather(1, source.unsqueeze(-1).expand(-1, -1, c)), real
