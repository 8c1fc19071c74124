"""One resolver for every family: the schedule, ``r`` or ``flops_target``, the uniform-r search.

A pruner describes what it needs resolved as a :class:`Planner` (how to read a schedule for its
family, how to validate a schedule against the model's token geometry, and the planned FLOPs
ratio of a schedule); :func:`resolve_stages` does the rest, once, for every family:

* ``r`` and ``flops_target`` are exclusive, and ``flops_target`` lies in (0, 1];
* the schedule is read (named or explicit) with ``r`` set or left for the search;
* with ``flops_target``, the same ``r`` at every stage is searched: the largest ``r`` the whole
  schedule accepts bounds the search, and the ``r`` whose planned ratio is the largest one not
  above the target wins (``stprune.core.flops.choose_r_for_target``); when no ``r`` reaches the
  target, the error names the lowest achievable ratio;
* with ``r``, the schedule is validated against the geometry (too large an ``r`` names the
  largest ``r`` the whole schedule accepts).

Everything raises before a hook is installed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from stprune.core.flops import check_flops_target, choose_r_for_target
from stprune.core.schedule import RTooLargeError, Stage, largest_uniform_r, with_r
from stprune.errors import SettingError

__all__ = ["Planner", "check_setting", "resolve_stages"]


class Planner(Protocol):
    """What a family's pruner tells the resolver."""

    def read_schedule(self, schedule: Any, r: int | Sequence[int] | None) -> list[Stage]:
        """The stages of ``schedule`` (a name or a list), with ``r`` set (or ``None`` to search)."""
        ...

    def validate(self, stages: Sequence[Stage]) -> None:
        """Raise :class:`SettingError` (``RTooLargeError`` for too large an r) if the stages do not fit."""
        ...

    def ratio(self, stages: Sequence[Stage]) -> float:
        """Planned FLOPs(pruned) / FLOPs(unpruned) of one clip under valid ``stages``."""
        ...

    def r_upper(self, stages: Sequence[Stage]) -> int:
        """An ``r`` no stage can take (the upper end of the uniform-r search)."""
        ...


def check_setting(r: object, flops_target: object) -> None:
    """The checks every entry point shares: ``r`` xor ``flops_target``, the target's range."""
    if r is not None and flops_target is not None:
        raise SettingError(
            f"give either r or flops_target, not both (got r={r!r}, flops_target={flops_target!r})"
        )
    if flops_target is not None:
        check_flops_target(flops_target)


def resolve_stages(
    planner: Planner,
    schedule: Any,
    r: int | Sequence[int] | None,
    flops_target: float | None,
) -> list[Stage]:
    """Validated stages with ``r`` set, from ``r`` or ``flops_target`` (see the module docstring)."""
    check_setting(r, flops_target)
    stages = planner.read_schedule(schedule, r)
    if flops_target is None:
        if any(s.r is None for s in stages):
            raise SettingError("give r (tokens dropped per group) or flops_target (a FLOPs ratio in (0, 1])")
        planner.validate(stages)
        return stages
    if any(s.r is not None for s in stages):
        raise SettingError("flops_target chooses r itself; leave r out of the schedule's stages")
    planner.validate(with_r(stages, 0))  # the errors that do not depend on r

    def accepts(r: int) -> bool:
        try:
            planner.validate(with_r(stages, r))
        except RTooLargeError:
            return False
        return True

    top = largest_uniform_r(accepts, planner.r_upper(stages))
    best, _ = choose_r_for_target(
        lambda r: planner.ratio(with_r(stages, r)), range(top + 1), float(flops_target)
    )
    return with_r(stages, best)
