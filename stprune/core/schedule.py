"""Pruning schedules: where tokens are dropped, in how many groups, and how many.

A schedule is a list of :class:`Stage`. This module builds the paper's schedule, normalises
user-given schedules, and plans token counts through an encoder, validating every stage before
any forward pass runs. Pure Python: no tensors, no model names.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

from stprune.errors import SettingError, SettingTypeError

__all__ = [
    "Stage",
    "TokenPlan",
    "RTooLargeError",
    "paper_schedule",
    "every_block_schedule",
    "normalize_schedule",
    "plan_tokens",
    "largest_uniform_r",
    "with_schedule_r_bound",
    "with_r",
    "plural",
]

_T = TypeVar("_T")


def plural(count: int, noun: str, many: str | None = None) -> str:
    """``"1 group"``, ``"3 groups"``: a count with its noun in the right number."""
    return f"{count} {noun if count == 1 else (many or noun + 's')}"


class RTooLargeError(SettingError):
    """One stage's r is larger than its groups allow.

    Attributes:
        r: the r given.
        bound: the largest r allowed (this stage's, or the whole schedule's for one r at every stage).
        where: the stage, as the message names it.
        detail: what is too large, e.g. ``"r=9 is too large for groups of 16 tokens (...)"``.
    """

    def __init__(self, where: str, detail: str, r: int, bound: int, scope: str = "at this stage") -> None:
        super().__init__(f"{where}: {detail}; allowed {scope}: 0 <= r <= {bound}")
        self.r, self.bound, self.where, self.detail = r, bound, where, detail


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
        raise SettingError(
            f"the paper schedule needs an encoder depth >= 3 (blocks 0, D//3, 2D//3); got {depth}: use "
            "schedule='every' (after every block but the last) or a list of stages"
        )
    if num_slots < 4 or num_slots % 4:
        raise SettingError(
            "the paper schedule splits tokens into T0, T0/2 and T0/4 groups, so the number of temporal "
            f"slots T0 (frames / tubelet size) must be a positive multiple of 4; got T0={num_slots}: use "
            "schedule='every' (one group, after every block but the last), which takes any T0"
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
        raise SettingError(f"the 'every' schedule needs an encoder depth >= 2; got {depth}")
    rs = _expand_r(r, depth - 1)
    return [Stage(i, 1, rs[i]) for i in range(depth - 1)]


def _expand_r(r: int | Sequence[int] | None, count: int) -> list[int | None]:
    if r is None or isinstance(r, (str, bytes)) or not isinstance(r, Sequence):
        return [_check_r_type(r)] * count
    rs = [_check_r_type(v) for v in r]
    if len(rs) != count:
        raise SettingError(
            f"per-stage r needs one value per stage ({count}); got {plural(len(rs), 'value')}: {rs}"
        )
    return rs


def _check_r_type(r: object) -> int | None:
    """``r`` as an int (``None`` stays ``None``); raises for a non-integer or a negative r."""
    if r is None:
        return None
    if isinstance(r, bool) or not isinstance(r, numbers.Integral):
        raise SettingTypeError(
            f"r must be an int (tokens dropped per group); got {r!r} of type {type(r).__name__}"
        )
    if r < 0:
        raise SettingError(f"r must be >= 0 (tokens dropped per group); got {r}")
    return int(r)


def _check_int(value: object, name: str, index: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise SettingTypeError(
            f"stage {index}: {name} must be an int; got {value!r} of type {type(value).__name__}"
        )
    return int(value)


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
        raise SettingError(f"unknown schedule {schedule!r}; use 'paper', 'every' or a list of stages")
    if not isinstance(schedule, Sequence) or len(schedule) == 0:
        raise SettingTypeError(
            f"schedule must be 'paper', 'every' or a non-empty list of stages; got {schedule!r}"
        )
    stages = [_to_stage(s, i) for i, s in enumerate(schedule)]
    if r is not None:
        rs = _expand_r(r, len(stages))
        for i, s in enumerate(stages):
            if s.r is not None and s.r != rs[i]:
                raise SettingError(f"stage {i} sets r={s.r} and r={rs[i]} was also given; give r once")
        stages = [replace(s, r=rs[i]) for i, s in enumerate(stages)]
    prev = -1
    for i, s in enumerate(stages):
        if not 0 <= s.after_block < depth:
            raise SettingError(
                f"stage {i}: after_block={s.after_block} outside [0, {depth - 1}] (depth {depth})"
            )
        if s.after_block <= prev:
            raise SettingError(
                f"stage {i}: after_block={s.after_block} must be greater than the previous stage's ({prev})"
            )
        prev = s.after_block
        if s.groups < 1:
            raise SettingError(f"stage {i}: groups must be >= 1; got {s.groups}")
    return stages


def _to_stage(s: Stage | Sequence | Mapping, i: int) -> Stage:
    if isinstance(s, Mapping):
        unknown = set(s) - {"after_block", "groups", "r", "reverse"}
        if unknown:
            raise SettingError(
                f"stage {i}: unknown stage keys {sorted(unknown)}; allowed: after_block, groups, r, reverse"
            )
        missing = [k for k in ("after_block", "groups") if k not in s]
        if missing:
            raise SettingError(f"stage {i}: missing {', '.join(missing)}; got {dict(s)!r}")
        after, groups, rr, rev = s["after_block"], s["groups"], s.get("r"), s.get("reverse", False)
    elif isinstance(s, Stage):
        after, groups, rr, rev = s.after_block, s.groups, s.r, s.reverse
    elif isinstance(s, Sequence) and 2 <= len(s) <= 4 and not isinstance(s, str):
        after, groups, *rest = s
        rr = rest[0] if rest else None
        rev = rest[1] if len(rest) > 1 else False
    else:
        raise SettingTypeError(
            f"stage {i}: a stage is a Stage, a tuple (after_block, groups, r[, reverse]) or a dict; got {s!r}"
        )
    return Stage(
        _check_int(after, "after_block", i), _check_int(groups, "groups", i), _check_r_type(rr), bool(rev)
    )


def with_r(stages: Sequence[Stage], r: int) -> list[Stage]:
    """The same stages with every r set to ``r``."""
    return [replace(s, r=r) for s in stages]


def check_group_r(
    r: int, tokens: int, groups: int, max_r: Callable[[int], int], where: str, what: str
) -> int:
    """Check that dropping ``r`` tokens from each of ``groups`` equal groups of ``tokens`` tokens is
    allowed by ``max_r`` (groups of fewer than 2 tokens allow only r = 0); returns the group size.
    ``where`` and ``what`` name the pruning point and the groups in the error message.

    Raises:
        RTooLargeError naming the stage's bound.
    """
    n = tokens // groups
    hi = max_r(n) if n >= 2 else 0
    if r > hi:
        raise RTooLargeError(where, f"r={r} is too large for groups of {plural(n, 'token')} ({what})", r, hi)
    return n


def largest_uniform_r(accepts: Callable[[int], bool], upper: int) -> int:
    """The largest r in [0, upper] with ``accepts(r)`` (validity is monotone: every stage's bound
    shrinks as r grows), or -1 if there is none."""
    lo, hi = -1, upper
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if accepts(mid) else (lo, mid - 1)
    return lo


def with_schedule_r_bound(plan: Callable[[Sequence[Stage]], _T], stages: Sequence[Stage]) -> _T:
    """``plan(stages)``; if a stage's r is too large and every stage has the same r, the error
    names the largest r that the *whole* schedule accepts (a per-stage r names that stage's bound).

    Args:
        plan: validates and plans a schedule (raises :class:`RTooLargeError` for a too-large r).
        stages: stages with r set.
    """
    try:
        return plan(stages)
    except RTooLargeError as err:
        rs = {s.r for s in stages}
        if len(stages) < 2 or len(rs) != 1:
            raise

        def accepts(r: int) -> bool:
            try:
                plan(with_r(stages, r))
            except RTooLargeError:
                return False
            return True

        best = largest_uniform_r(accepts, err.r - 1)
        scope = f"with the same r at all {len(stages)} stages of this schedule"
        raise RTooLargeError(err.where, err.detail, err.r, best, scope) from None


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
        SettingError (a ValueError) naming the stage, the value and the allowed range; for an r
        too large (:class:`RTooLargeError`) with the same r at every stage, the largest r the
        whole schedule accepts.
    """
    return with_schedule_r_bound(
        lambda st: _plan_tokens(st, depth, num_slots, tokens_per_slot, protected, max_r), stages
    )


def _plan_tokens(
    stages: Sequence[Stage],
    depth: int,
    num_slots: int,
    tokens_per_slot: int,
    protected: int,
    max_r: Callable[[int], int] | None,
) -> TokenPlan:
    max_r = max_r or (lambda n: (n + 1) // 2)
    length = num_slots * tokens_per_slot
    prev_groups = num_slots
    tokens_per_block: list[int] = []
    sizes: list[int] = []
    block = 0
    for i, s in enumerate(stages):
        if s.r is None:
            raise SettingError(f"stage {i} has no r; give r= or flops_target=")
        if prev_groups % s.groups:
            raise SettingError(
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
            f"{plural(length, 'token')} in {plural(s.groups, 'group')}",
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
