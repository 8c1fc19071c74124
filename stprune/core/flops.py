"""Analytic multiply-accumulate counts and the FLOPs-target search.

Counts follow the field's convention (fvcore): one multiply-accumulate = one "FLOP", matrix
products only, attention included. The counts here are what
``torch.utils.flop_counter.FlopCounterMode`` measures (divided by 2) under the math SDPA kernel;
the tests check that equality. They are used to *choose* schedules quickly; reported figures
are measured (``stprune.bench.flops``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from stprune.errors import SettingError, SettingTypeError

__all__ = ["vit_block_macs", "window_block_macs", "check_flops_target", "choose_r_for_target"]


def vit_block_macs(tokens: int, hidden: int, intermediate: int, attn_dim: int | None = None) -> int:
    """MACs of one pre-norm ViT block on ``tokens`` tokens (one sample).

    qkv (3 L C A) + attention scores and weighted sum (2 L^2 A) + output projection (L A C)
    + MLP (2 L C I), where A is the attention width (heads x head dim, usually C).
    """
    a = hidden if attn_dim is None else attn_dim
    return 4 * tokens * hidden * a + 2 * tokens * tokens * a + 2 * tokens * hidden * intermediate


def window_block_macs(
    linear_tokens: int, windows: int, window_slots: int, mlp_tokens: int, dim: int, hidden: int
) -> int:
    """MACs of one pre-norm window-attention block (one sample).

    qkv and output projection on ``linear_tokens`` tokens (4 L C^2), attention scores and
    weighted sum inside ``windows`` windows of ``window_slots`` slots each (2 M K^2 C), MLP on
    ``mlp_tokens`` tokens (2 L C I). The dense Swin block projects padded windows
    (``linear_tokens = windows * window_slots``) but runs its MLP on the real tokens only.
    """
    return 4 * linear_tokens * dim * dim + 2 * windows * window_slots**2 * dim + 2 * mlp_tokens * dim * hidden


def check_flops_target(target: object) -> float:
    """``target`` as a float if it is a number in (0, 1] (the one place this range is checked).

    Raises:
        SettingTypeError for a non-number, SettingError for a number outside (0, 1].
    """
    if not isinstance(target, (int, float)) or isinstance(target, bool):
        raise SettingTypeError(f"flops_target must be a number in (0, 1]; got {target!r}")
    if not 0.0 < target <= 1.0:
        raise SettingError(f"flops_target must be a number in (0, 1]; got {target!r}")
    return float(target)


def choose_r_for_target(
    ratio_of_r: Callable[[int], float], candidates: Iterable[int], target: float
) -> tuple[int, float]:
    """The r whose FLOPs ratio is the largest one not above ``target``.

    Args:
        ratio_of_r: FLOPs(pruned with r) / FLOPs(unpruned).
        candidates: the r values allowed by the schedule and model.
        target: wanted ratio, 0 < target <= 1.

    Returns:
        (r, ratio). Ties go to the smaller r.

    Raises:
        SettingError (a ValueError) if target is outside (0, 1] or no candidate reaches it.
    """
    check_flops_target(target)
    best: tuple[int, float] | None = None
    lowest: tuple[int, float] | None = None
    for r in candidates:
        ratio = ratio_of_r(r)
        if lowest is None or ratio < lowest[1]:
            lowest = (r, ratio)
        if ratio <= target + 1e-12 and (best is None or ratio > best[1]):
            best = (r, ratio)
    if best is None:
        floor = f"{lowest[1]:.4f} (r={lowest[0]})" if lowest else "n/a"
        raise SettingError(
            f"flops_target={target} cannot be reached with this schedule and model: the lowest "
            f"achievable FLOPs ratio is {floor}; allowed range: [{floor.split(' ')[0]}, 1]"
        )
    return best
