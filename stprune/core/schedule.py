"""Pruning schedules: where tokens are dropped, in how many groups, and how many.

A schedule is a list of :class:`Stage`. This module builds the paper's schedule, normalises
user-given schedules, and plans token counts through an encoder, validating every stage before
any forward pass runs. Pure Python: no tensors, no model names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

__all__ = [
    "Stage",
    "TokenPlan",
    "paper_schedule",
    "every_block_schedule",
    "normalize_schedule",
    "plan_tokens",
    "with_r",
]


@dataclass(frozen=True)
class Stage:
    """One pruning point.

    Attributes:
        after_block: index of the block whose output is pruned (0-based).
        groups: G, the prunable tokens are split into G contiguous equal groups.
        r: tokens dropped from every group (``None``: not yet chosen, e.g. by ``flops_target``).
        reverse: visit the groups last-to-first.
    """

    after_block: int
    groups: int
    r: int | None
    reverse: bool = False


@dataclass(frozen=True)
class TokenPlan:
    """Token counts a schedule produces for one input geometry.

    Attributes:
        tokens_per_block: tokens (protected included) each block processes, length = depth.
        stage_group_sizes: n, tokens per group entering each stage.
        final_tokens: tokens leaving the encoder (protected included).
    """

    tokens_per_block: list[int]
    stage_group_sizes: list[int]
    final_tokens: int


def paper_schedule(depth: int, num_slots: int, r: int | Sequence[int] | None) -> list[Stage]:
    """The paper's three pruning points: after blocks 0, D//3, 2D//3 with T0, T0/2, T0/4 groups.

    Args:
        depth: D, number of encoder blocks (>= 3 so the three points are distinct).
        num_slots: T0, temporal slots (frames / tubelet size), divisible by 4.
        r: tokens dropped per group, one int for all stages or a list of three.
    """
    if depth < 3:
        raise ValueError(
            f"the paper schedule needs an encoder depth >= 3 (blocks 0, D//3, 2D//3); got {depth}"
        )
    if num_slots < 4 or num_slots % 4:
        raise ValueError(
            "the paper schedule splits tokens into T0, T0/2 and T0/4 groups, so the number of temporal "
            f"slots T0 (frames / tubelet size) must be a positive multiple of 4; got T0={num_slots}"
        )
    rs = _expand_r(r, 3)
    return [
        Stage(0, num_slots, rs[0], False),
        Stage(depth // 3, num_slots // 2, rs[1], True),
        Stage(2 * depth // 3, num_slots // 4, rs[2], False),
    ]


def every_block_schedule(depth: int, r: int | Sequence[int] | None) -> list[Stage]:
    """ToMe's schedule: after every block but the last, one group (all prunable tokens)."""
    if depth < 2:
        raise ValueError(f"the 'every' schedule needs an encoder depth >= 2; got {depth}")
    rs = _expand_r(r, depth - 1)
    return [Stage(i, 1, rs[i]) for i in range(depth - 1)]


def _expand_r(r: int | Sequence[int] | None, count: int) -> list[int | None]:
    if r is None or not isinstance(r, Sequence):
        _check_r_type(r)
        return [r] * count
    rs = list(r)
    if len(rs) != count:
        raise ValueError(f"per-stage r needs one value per stage ({count}); got {len(rs)}: {rs}")
    for v in rs:
        _check_r_type(v)
    return rs


def _check_r_type(r: object) -> None:
    if r is None:
        return
    if isinstance(r, bool) or not isinstance(r, int):
        raise TypeError(f"r must be an int (tokens dropped per group); got {r!r} of type {type(r).__name__}")
    if r < 0:
        raise ValueError(f"r must be >= 0 (tokens dropped per group); got {r}")


def normalize_schedule(
    schedule: str | Sequence[Stage | Sequence | Mapping],
    depth: int,
    num_slots: int,
    r: int | Sequence[int] | None,
) -> list[Stage]:
    """Turn a user schedule into a validated list of stages (r may still be ``None``).

    Args:
        schedule: ``"paper"``, ``"every"`` (after every block but the last, one group), or a
            list of stages given as :class:`Stage`, tuples ``(after_block, groups, r[, reverse])``
            or dicts with those keys (``r`` may be None).
        depth: encoder depth D.
        num_slots: T0, temporal slots at the first stage.
        r: for ``"paper"``, one int or a per-stage list; for an explicit schedule, fills the stages
            whose r is None (one int or one value per stage).
    """
    if isinstance(schedule, str):
        if schedule == "paper":
            return paper_schedule(depth, num_slots, r)
        if schedule == "every":
            return every_block_schedule(depth, r)
        raise ValueError(f"unknown schedule {schedule!r}; use 'paper', 'every' or a list of stages")
    if not isinstance(schedule, Sequence) or len(schedule) == 0:
        raise TypeError(f"schedule must be 'paper' or a non-empty list of stages; got {schedule!r}")
    stages = [_to_stage(s) for s in schedule]
    if r is not None:
        rs = _expand_r(r, len(stages))
        for i, s in enumerate(stages):
            if s.r is not None and s.r != rs[i]:
                raise ValueError(f"stage {i} sets r={s.r} and r={rs[i]} was also given; give r once")
        stages = [replace(s, r=rs[i]) for i, s in enumerate(stages)]
    prev = -1
    for i, s in enumerate(stages):
        if not 0 <= s.after_block < depth:
            raise ValueError(
                f"stage {i}: after_block={s.after_block} outside [0, {depth - 1}] (depth {depth})"
            )
        if s.after_block <= prev:
            raise ValueError(
                f"stage {i}: after_block={s.after_block} must be greater than the previous stage's ({prev})"
            )
        prev = s.after_block
        if s.groups < 1:
            raise ValueError(f"stage {i}: groups must be >= 1; got {s.groups}")
        _check_r_type(s.r)
    return stages


def _to_stage(s: Stage | Sequence | Mapping) -> Stage:
    if isinstance(s, Stage):
        return s
    if isinstance(s, Mapping):
        unknown = set(s) - {"after_block", "groups", "r", "reverse"}
        if unknown:
            raise ValueError(
                f"unknown stage keys {sorted(unknown)}; allowed: after_block, groups, r, reverse"
            )
        return Stage(int(s["after_block"]), int(s["groups"]), s.get("r"), bool(s.get("reverse", False)))
    if isinstance(s, Sequence) and 2 <= len(s) <= 4 and not isinstance(s, str):
        after, groups, *rest = s
        rr = rest[0] if rest else None
        rev = bool(rest[1]) if len(rest) > 1 else False
        return Stage(int(after), int(groups), rr, rev)
    raise TypeError(f"a stage is a Stage, a tuple (after_block, groups, r[, reverse]) or a dict; got {s!r}")


def with_r(stages: Sequence[Stage], r: int) -> list[Stage]:
    """The same stages with every r set to ``r``."""
    return [replace(s, r=r) for s in stages]


def check_group_r(
    r: int, tokens: int, groups: int, max_r: Callable[[int], int], where: str, what: str
) -> int:
    """Check that dropping ``r`` tokens from each of ``groups`` equal groups of ``tokens`` tokens is
    allowed by ``max_r`` (groups of fewer than 2 tokens allow only r = 0); returns the group size.
    ``where`` and ``what`` name the pruning point and the groups in the error message."""
    n = tokens // groups
    hi = max_r(n) if n >= 2 else 0
    if r > hi:
        raise ValueError(
            f"{where}: r={r} is too large for groups of {n} tokens ({what}); allowed 0 <= r <= {hi}"
        )
    return n


def plan_tokens(
    stages: Sequence[Stage],
    depth: int,
    num_slots: int,
    tokens_per_slot: int,
    protected: int = 0,
    max_r: Callable[[int], int] | None = None,
) -> TokenPlan:
    """Validate a schedule against an input geometry and count tokens per block.

    Every group must be a union of whole groups of the previous stage (whole temporal slots at
    the first stage), so ``groups`` must divide the previous stage's group count (T0 at first).

    Args:
        stages: normalised stages with r set.
        depth: encoder depth.
        num_slots: T0.
        tokens_per_slot: N, spatial tokens per slot.
        protected: leading tokens never pruned (e.g. a CLS token).
        max_r: the method's largest allowed r for a group of n tokens (default ceil(n / 2)).

    Raises:
        ValueError naming the stage, the value and the allowed range.
    """
    max_r = max_r or (lambda n: (n + 1) // 2)
    length = num_slots * tokens_per_slot
    prev_groups = num_slots
    tokens_per_block: list[int] = []
    sizes: list[int] = []
    block = 0
    for i, s in enumerate(stages):
        if s.r is None:
            raise ValueError(f"stage {i} has no r; give r= or flops_target=")
        if prev_groups % s.groups:
            raise ValueError(
                f"stage {i} (after block {s.after_block}): groups={s.groups} must divide the "
                f"{'temporal slot count T0' if i == 0 else 'previous stage group count'} ({prev_groups}) "
                f"so that groups hold whole temporal slots; allowed: divisors of {prev_groups}"
            )
        n = check_group_r(
            s.r,
            length,
            s.groups,
            max_r,
            f"stage {i} (after block {s.after_block})",
            f"{s.groups} groups of {length} tokens",
        )
        while block <= s.after_block:
            tokens_per_block.append(length + protected)
            block += 1
        sizes.append(n)
        length = s.groups * (n - s.r)
        prev_groups = s.groups
    while block < depth:
        tokens_per_block.append(length + protected)
        block += 1
    return TokenPlan(tokens_per_block, sizes, length + protected)
