"""The public API: ``patch`` / ``unpatch`` a model in place, and read what pruning did."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from stprune.adapters import get_adapter
from stprune.core.schedule import Stage, TokenPlan
from stprune.errors import UnsupportedModelError
from stprune.methods import Method, get_method
from stprune.pruning import build_pruner
from stprune.pruning.resolve import check_setting
from stprune.pruning.trace import Pruner, Trace

__all__ = ["patch", "unpatch", "is_patched", "patch_info", "last_trace", "check_setting", "PatchInfo"]

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
    **options: Any,
) -> nn.Module:
    """Prune tokens inside ``model``, in place; returns the model.

    Made for inference; training works too (``model.train()``, with or without
    ``gradient_checkpointing_enable()``): gradients flow through the kept or merged tokens, the
    selection itself is not differentiable. Patch *before* ``torch.compile``: a compiled wrapper
    is refused (its graph would not see hooks added or removed after compiling).

    Args:
        model: a supported video transformer (see ``stprune.models.supported_models()``).
        method: ``"sta"`` or another registered method (or a :class:`Method` instance).
        r: tokens dropped from every group at every stage, or one value per stage.
        flops_target: instead of r, the wanted FLOPs ratio in (0, 1]; the r (same for every
            stage) with the largest ratio not above it is chosen.
        schedule: ``"paper"`` (after blocks 0, D//3, 2D//3 with T0, T0/2, T0/4 groups, the
            middle stage reversed), ``"every"`` (after every block but the last, one group), or a
            list of stages ``(after_block, groups, r[, reverse])``. ``None``: the method's own
            default (``"paper"`` for STA and random pruning, ``"every"`` for ToMe). On Video Swin,
            ``"paper"`` is the paper's three points inside every Swin stage and ``groups`` counts
            groups per window (see ``stprune.pruning.window_grid``).
        options: model-family options, e.g. ``shifted_windows="static"`` for Video Swin (static
            shapes, no host synchronisation); a family without options rejects any.

    Raises:
        RuntimeError: the model is already patched.
        UnsupportedModelError (a NotImplementedError): the model is not supported, is a
            ``torch.compile`` wrapper, or cannot take the method (e.g. ToMe on flash attention).
        SettingError / SettingTypeError (ValueError / TypeError): bad r, flops_target, method or
            schedule; the message names the value and the allowed range (before any forward).
    """
    _refuse_compiled(model, "patch")
    if is_patched(model):
        raise RuntimeError(
            f"{type(model).__name__} is already patched by stprune ({patch_info(model).method}); "
            "call stprune.unpatch(model) first"
        )
    adapter = get_adapter(model)
    pruner = build_pruner(adapter, get_method(method), schedule, r, flops_target, **options)
    pruner.install()
    setattr(model, _ATTR, pruner)
    return model


def _refuse_compiled(model: nn.Module, action: str) -> None:
    """Raise for a ``torch.compile`` wrapper: hooks added or removed after compiling are not seen
    by graphs already compiled (dynamo does not guard on module hooks)."""
    original = getattr(model, "_orig_mod", None)
    if isinstance(original, nn.Module) and type(model).__name__ == "OptimizedModule":
        name = type(original).__name__
        if action == "patch":
            raise UnsupportedModelError(
                f"got a torch.compile wrapper of {name}: patch before compiling, "
                "i.e. stprune.patch(model, ...); model = torch.compile(model)"
            )
        raise UnsupportedModelError(
            f"got a torch.compile wrapper of {name}: unpatch the model you patched (compiled._orig_mod), "
            "then compile again; graphs compiled while it was patched keep pruning"
        )


def unpatch(model: nn.Module) -> nn.Module:
    """Remove stprune's hooks: the model computes exactly what it did before ``patch``.

    Raises:
        UnsupportedModelError for a ``torch.compile`` wrapper (unpatch the module you patched).
        ValueError if ``model`` is not patched.
    """
    _refuse_compiled(model, "unpatch")
    pruner = getattr(model, _ATTR, None)
    if pruner is None:
        raise ValueError(f"{type(model).__name__} is not patched by stprune; nothing to unpatch")
    pruner.remove()
    delattr(model, _ATTR)
    return model


def is_patched(model: nn.Module) -> bool:
    """Whether ``model`` carries stprune hooks."""
    return getattr(model, _ATTR, None) is not None


def _pruner(model: nn.Module) -> Pruner:
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
