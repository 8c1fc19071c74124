"""The public API: ``patch`` / ``unpatch`` a model in place, and read what pruning did."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from torch import nn

from stprune.core.flops import choose_r_for_target
from stprune.core.schedule import Stage, TokenPlan, normalize_schedule, plan_tokens, with_r
from stprune.engine import SequencePruner, Trace, estimate_macs
from stprune.methods import Method, get_method
from stprune.models import get_adapter

__all__ = ["patch", "unpatch", "is_patched", "patch_info", "last_trace", "PatchInfo"]

_ATTR = "_stprune"

ScheduleSpec = str | Sequence[Stage | Sequence | Mapping]


@dataclass(frozen=True)
class PatchInfo:
    """How a patched model prunes.

    Attributes:
        method: method name.
        stages: the stages with their r.
        plan: planned tokens per block for the model's configured input.
        macs: estimated multiply-accumulates of one sample's forward (pruned).
        macs_unpruned: the same without pruning.
    """

    method: str
    stages: list[Stage]
    plan: TokenPlan
    macs: int
    macs_unpruned: int

    @property
    def flops_ratio(self) -> float:
        """Estimated FLOPs(pruned) / FLOPs(unpruned)."""
        return self.macs / self.macs_unpruned


def patch(
    model: nn.Module,
    method: str | Method = "sta",
    r: int | Sequence[int] | None = None,
    flops_target: float | None = None,
    schedule: ScheduleSpec | None = None,
) -> nn.Module:
    """Prune tokens inside ``model`` at inference, in place; returns the model.

    Args:
        model: a supported video transformer (see ``stprune.models.supported_models()``).
        method: ``"sta"`` or another registered method (or a :class:`Method` instance).
        r: tokens dropped from every group at every stage, or one value per stage.
        flops_target: instead of r, the wanted FLOPs ratio in (0, 1]; the r (same for every
            stage) with the largest ratio not above it is chosen.
        schedule: ``"paper"`` (after blocks 0, D//3, 2D//3 with T0, T0/2, T0/4 groups, the
            middle stage reversed), ``"every"`` (after every block but the last, one group), or a
            list of stages ``(after_block, groups, r[, reverse])``. ``None``: the method's own
            default (``"paper"`` for STA and random pruning, ``"every"`` for ToMe).

    Raises:
        RuntimeError: the model is already patched.
        NotImplementedError: the model is not supported.
        ValueError / TypeError: bad r, flops_target, method or schedule (before any forward).
    """
    if is_patched(model):
        raise RuntimeError(
            f"{type(model).__name__} is already patched by stprune ({patch_info(model).method}); "
            "call stprune.unpatch(model) first"
        )
    adapter = get_adapter(model)
    meth = get_method(method)
    if r is not None and flops_target is not None:
        raise ValueError(
            f"give either r or flops_target, not both (got r={r!r}, flops_target={flops_target!r})"
        )
    lay = adapter.layout()
    stages = normalize_schedule(
        meth.default_schedule if schedule is None else schedule, lay.depth, lay.num_slots, r
    )
    if flops_target is not None:
        if any(s.r is not None for s in stages):
            raise ValueError("flops_target chooses r itself; leave r out of the schedule's stages")
        r_best = choose_flops_target_r(adapter, meth, stages, flops_target)
        stages = with_r(stages, r_best)
    elif any(s.r is None for s in stages):
        raise ValueError("give r (tokens dropped per group) or flops_target (a FLOPs ratio in (0, 1])")
    pruner = SequencePruner(adapter, meth, stages)
    pruner.install()
    setattr(model, _ATTR, pruner)
    return model


def choose_flops_target_r(adapter: object, method: Method, stages: Sequence[Stage], target: float) -> int:
    """The uniform r whose estimated FLOPs ratio is the largest one not above ``target``."""
    lay = adapter.layout()
    base = adapter.macs([lay.num_slots * lay.tokens_per_slot + lay.protected] * lay.depth)

    def valid(r: int) -> bool:
        try:
            plan_tokens(
                with_r(stages, r), lay.depth, lay.num_slots, lay.tokens_per_slot, lay.protected, method.max_r
            )
        except ValueError:
            return False
        return True

    # validity is monotone in r (every stage's limit shrinks as r grows): bisect the largest valid r
    lo, hi = 0, lay.num_slots * lay.tokens_per_slot // stages[0].groups
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if valid(mid) else (lo, mid - 1)
    candidates = range(lo + 1)
    r, _ = choose_r_for_target(
        lambda r: estimate_macs(adapter, method, with_r(stages, r))[0] / base, candidates, target
    )
    return r


def unpatch(model: nn.Module) -> nn.Module:
    """Remove stprune's hooks: the model computes exactly what it did before ``patch``."""
    pruner = getattr(model, _ATTR, None)
    if pruner is None:
        raise ValueError(f"{type(model).__name__} is not patched by stprune; nothing to unpatch")
    pruner.remove()
    delattr(model, _ATTR)
    return model


def is_patched(model: nn.Module) -> bool:
    """Whether ``model`` carries stprune hooks."""
    return getattr(model, _ATTR, None) is not None


def _pruner(model: nn.Module) -> SequencePruner:
    pruner = getattr(model, _ATTR, None)
    if pruner is None:
        raise ValueError(f"{type(model).__name__} is not patched by stprune")
    return pruner


def patch_info(model: nn.Module) -> PatchInfo:
    """Method, stages, planned tokens per block and estimated FLOPs of a patched model."""
    p = _pruner(model)
    return PatchInfo(p.method.name, list(p.stages), p.plan, p.macs, p.macs_unpruned)


def last_trace(model: nn.Module) -> Trace:
    """Tokens per block and kept indices/positions of every stage in the model's last forward."""
    p = _pruner(model)
    if p.trace is None:
        raise ValueError("the patched model has not run a forward pass yet")
    return p.trace
