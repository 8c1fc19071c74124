"""The public API: ``patch`` / ``unpatch`` a model in place, and read what pruning did."""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from stprune.adapters import get_adapter
from stprune.core.schedule import Stage, TokenPlan
from stprune.errors import UnsupportedModelError
from stprune.methods import Method, get_method
from stprune.pruning import build_pruner
from stprune.pruning.resolve import check_setting
from stprune.pruning.trace import Pruner, Trace

__all__ = [
    "patch",
    "unpatch",
    "is_patched",
    "patch_info",
    "last_trace",
    "last_macs",
    "restore_tokens",
    "prompt_cost",
    "check_setting",
    "PatchInfo",
]

_ATTR = "_stprune"

ScheduleSpec = str | Sequence[Stage | Sequence | Mapping]


@dataclass(frozen=True)
class PatchInfo:
    """How a patched model prunes.

    Attributes:
        method: method name.
        stages: the stages with their r.
        plan: planned tokens per block for the model's configured input.
        macs: estimated multiply-accumulates of one sample's forward (pruned). For a method that
            decides per clip how many tokens to keep (RLT's threshold mode) the unpruned upper
            bound; :func:`last_macs` then gives what each clip used.
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

    def __str__(self) -> str:
        """One line: the method, where it prunes, the tokens per block and the FLOPs ratio, e.g.
        ``sta: after blocks 0, 2, 4 (r=10, 10, 10); tokens in the first / last block 288 / 148; est.
        FLOPs ratio 0.680 (0.7074 of 1.04 GMACs per sample)``."""
        parts = [self.method]
        per_clip = any(s.r is None for s in self.stages)  # RLT's threshold mode
        if self.stages:
            where = ", ".join(
                "before block 0" if s.after_block < 0 else str(s.after_block) for s in self.stages
            )
            rs = ", ".join("chosen per clip" if s.r is None else str(s.r) for s in self.stages)
            parts.append(f"after blocks {where} (r={rs})".replace("after blocks before", "before"))
            if not per_clip:
                blocks = self.plan.tokens_per_block
                parts.append(f"tokens in the first / last block {blocks[0]} / {blocks[-1]}")
        gmacs = f"{self.macs / 1e9:.4g} of {self.macs_unpruned / 1e9:.4g} GMACs per sample"
        if per_clip:
            parts.append(
                f"est. FLOPs ratio <= {self.flops_ratio:.3f} ({gmacs}): the tokens kept follow each clip, "
                "stprune.last_macs(model) gives what each clip of the last forward used"
            )
        elif not self.stages:  # a video LLM: counted on its family's example prompt
            parts.append(
                f"est. FLOPs ratio {self.flops_ratio:.3f} on the family's example prompt ({gmacs}); "
                "stprune.prompt_cost(model, ...) counts another"
            )
        else:
            parts.append(f"est. FLOPs ratio {self.flops_ratio:.3f} ({gmacs})")
        return f"{parts[0]}: " + "; ".join(parts[1:])


def patch(
    model: nn.Module,
    method: str | Method = "sta",
    r: int | Sequence[int] | None = None,
    flops_target: float | None = None,
    schedule: ScheduleSpec | None = None,
    keep_ratio: float | None = None,
    **options: Any,
) -> nn.Module:
    """Prune tokens inside ``model``, in place; returns the model.

    Made for inference; training works too (``model.train()``, with or without
    ``gradient_checkpointing_enable()``): gradients flow through the kept or merged tokens, the
    selection itself is not differentiable. Patch *before* ``torch.compile``: a compiled wrapper
    is refused (its graph would not see hooks added or removed after compiling).

    Args:
        model: a supported video transformer (see ``stprune.models.supported_models()``).
        method: ``"sta"``, ``"tome"``, ``"random"``, ``"rlt"``, ``"vid_tldr"`` (or a :class:`Method`
            instance).
        r: tokens dropped from every group at every stage, or one value per stage (RLT: tokens
            of the T0 x N grid dropped per clip, before block 0).
        flops_target: instead of r, the wanted FLOPs ratio in (0, 1]; the r (same for every
            stage) with the largest ratio not above it is chosen.
        schedule: ``"paper"`` (after blocks 0, D//3, 2D//3 with T0, T0/2, T0/4 groups, the
            middle stage reversed), ``"every"`` (after every block but the last, one group), or a
            list of stages ``(after_block, groups, r[, reverse])``. ``None``: the method's own
            default (``"paper"`` for STA and random pruning, ``"every"`` for ToMe, blocks 0, 1, 2
            for vid-TLDR). On Video Swin,
            ``"paper"`` is the paper's three points inside every Swin stage and ``groups`` counts
            groups per window (see ``stprune.pruning.window_grid``).
        keep_ratio: video LLMs only: the fraction of every video's tokens kept, in (0, 1] (instead
            of ``r``, which there counts tokens dropped per temporal slot); see
            ``docs/video_llm.md``.
        options: the method's options (RLT's ``threshold``: the paper's mode, tokens kept per clip
            follow the data; RandomPruning's ``seed``), then model-family options, e.g.
            ``shifted_windows="static"`` for Video Swin (static shapes, no host synchronisation);
            a family without options rejects any.

    Raises:
        RuntimeError: the model is already patched, one of its submodules is, or it is a submodule
            of a patched model (the message names the submodule's path).
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
    _refuse_nested(model)
    adapter = get_adapter(model)
    options = dict(options)
    chosen = get_method(method, options)
    _refuse_other_methods_options(chosen, options)
    pruner = build_pruner(adapter, chosen, schedule, r, flops_target, keep_ratio=keep_ratio, **options)
    _warn_unpooled_sizes(adapter, pruner)
    pruner.install()
    setattr(model, _ATTR, pruner)
    _PATCHED.add(model)
    return model


#: the models patched now (weakly held): a submodule of one of them cannot be patched as well
_PATCHED: weakref.WeakSet[nn.Module] = weakref.WeakSet()


def _patched_roots() -> list[nn.Module]:
    return [m for m in list(_PATCHED) if is_patched(m)]


def _refuse_nested(model: nn.Module) -> None:
    """RuntimeError if ``model`` contains a patched module or is (or shares a module with) part of a
    patched model: both would prune the same blocks, and the second plan would no longer hold."""
    name = type(model).__name__
    for path, sub in model.named_modules():
        if path and is_patched(sub):
            raise RuntimeError(
                f"{name}'s submodule {path!r} ({type(sub).__name__}) is already patched by stprune "
                f"({patch_info(sub).method}); patching {name} as well would prune its tokens twice: call "
                f"stprune.unpatch(model.{path}) first, or keep that patch alone"
            )
    mine = {id(m): path for path, m in model.named_modules()}
    for root in _patched_roots():
        for path, sub in root.named_modules():
            if id(sub) not in mine:
                continue
            outer = type(root).__name__
            if mine[id(sub)] == "":
                where = f"{name} is the submodule {path!r} of a {outer}"
            else:
                where = f"{name}'s submodule {mine[id(sub)]!r} is also the submodule {path!r} of a {outer}"
            raise RuntimeError(
                f"{where} that is already patched by stprune ({patch_info(root).method}); patching it as "
                f"well would prune its tokens twice: call stprune.unpatch on that {outer} first"
            )


def _refuse_other_methods_options(method: Method, options: Mapping[str, Any]) -> None:
    """SettingTypeError for an option of another method (``seed=`` without ``method="random"``),
    naming the method it belongs to and the options the chosen method takes."""
    from stprune.errors import SettingTypeError
    from stprune.methods import METHODS

    for key in options:
        owners = [n for n, cls in sorted(METHODS.items()) if key in cls.option_names and n != method.name]
        if owners:
            takes = ", ".join(f"{o}=" for o in method.option_names) or "no options"
            raise SettingTypeError(
                f"{key}= is an option of method {' or '.join(map(repr, owners))}, not of method "
                f"{method.name!r} (which takes {takes}); use method={owners[0]!r} or leave {key}= out"
            )


def _warn_unpooled_sizes(adapter: Any, pruner: Pruner) -> None:
    """Warn when the model returns tokens that stand for different numbers of input tokens
    (merged tokens; padding of a token count per clip) to a caller who may pool them unweighted."""
    import warnings

    if not getattr(adapter, "outputs_tokens", False) or all(s.r == 0 for s in pruner.stages):
        return
    name, method = type(adapter.model).__name__, pruner.method.name
    if pruner.method.tracks_size:
        what = f"method {method!r} merges tokens, so each token {name} returns stands for 1 or more"
    elif getattr(pruner, "adaptive", False):
        what = f"method {method!r} keeps a token count per clip, so {name} pads clips to the longest"
    else:
        return
    warnings.warn(
        f"{what}; a plain mean over its output tokens is not the unpruned model's mean: weight them by "
        "s = stprune.last_trace(model).sizes (B, tokens: input tokens per token, 0 for padding), "
        "(hidden * s[..., None]).sum(1) / s.sum(1, keepdim=True), or patch the classifier that holds "
        f"{name} (its pooling is weighted for you)",
        UserWarning,
        stacklevel=3,
    )


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
        inside = [(r, p) for r in _patched_roots() for p, sub in r.named_modules() if sub is model]
        where = ""
        if inside:
            root, path = inside[0]
            where = f" (it is the submodule {path!r} of a patched {type(root).__name__}: unpatch that)"
        raise ValueError(f"{type(model).__name__} is not patched by stprune; nothing to unpatch{where}")
    pruner.remove()
    delattr(model, _ATTR)
    _PATCHED.discard(model)
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


def prompt_cost(
    model: nn.Module,
    num_frames: int | None = None,
    size: int | tuple[int, int] | None = None,
    text_tokens: int = 64,
) -> Any:
    """What one prompt costs a patched video LLM, pruned and unpruned, from the plan (no forward).

    The prompt is one video of ``num_frames`` frames of ``size`` (H, W) pixels (an int: square) between
    ``text_tokens`` text tokens (``None``: the family's example defaults). Returns a
    :class:`~stprune.pruning.video_llm.PromptCost`: the video's grid and tokens kept, the sequence
    length, MACs of the vision tower, of the selection and of the LLM prefill (the head on the
    last position), ``ratio`` (whole call) and ``prefill_ratio``; equal to ``FlopCounterMode``.

    Raises:
        ValueError: the model is not patched; UnsupportedModelError: it is not a video LLM;
        SettingError: a frame count or size the family cannot take.
    """
    from stprune.pruning.video_llm import VideoLLMPruner
    from stprune.pruning.video_llm import prompt_cost as _cost

    p = _pruner(model)
    if not isinstance(p, VideoLLMPruner):
        raise UnsupportedModelError(
            f"{type(model).__name__} is not a video LLM; use stprune.patch_info(model) for its FLOPs"
        )
    if isinstance(size, int) and not isinstance(size, bool):
        size = (size, size)
    return _cost(p, num_frames, size, text_tokens)


def last_trace(model: nn.Module) -> Trace:
    """Tokens per block and kept indices/positions of every stage in the model's last forward."""
    p = _pruner(model)
    if p.trace is None:
        raise ValueError("the patched model has not run a forward pass yet")
    return p.trace


def last_macs(model: nn.Module) -> torch.Tensor:
    """(B,) int64 multiply-accumulates each clip of the model's last forward used.

    For a method that keeps a different number of tokens per clip (RLT's threshold mode) each
    clip's own cost, as if it ran alone (a batch computes the padding too, see
    ``stprune.pruning.input_level``); otherwise every entry is the same, the cost of one clip of
    that forward (exact, what ``FlopCounterMode`` counts for the batch, divided by B).
    """
    p = _pruner(model)
    trace = last_trace(model)
    per_clip = getattr(p, "macs_per_clip", None)
    if per_clip is not None:
        return per_clip()
    return torch.full((trace.batch_size,), p.traced_macs(), dtype=torch.int64)


def restore_tokens(
    model: nn.Module, hidden: torch.Tensor, fill: str | float = "nearest_time"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scatter the encoder output of a patched model's last forward back into the T0 x N grid.

    For feature extraction and dense tasks with a pruned ViT-family encoder: the tokens that
    survived go back to their places in the grid (from :func:`last_trace`), the pruned places
    are filled.

    Args:
        model: the patched model (ViT family) whose last forward produced ``hidden``.
        hidden: (B, P + L, C) the encoder's output tokens (e.g. ``last_hidden_state`` of
            ``VideoMAEModel``), the P protected tokens outside the grid (ViViT's CLS) first, as
            the model returns them. (In a mean-pooling classifier the last block's tokens carry
            the weights of its size-weighted / padding-free mean: use the encoder model.)
        fill: ``"nearest_time"`` (a pruned place gets the features of the kept token at the same
            spatial index in the nearest slot in time; ties: the earlier slot; 0 where no slot
            kept that index) or a number (every channel).

    Returns:
        ``(grid, real)``: (B, T0 * N, C) tokens in grid order (slot * N + spatial index; the
        protected tokens outside the grid are not in it) and (B, T0 * N) bool, True where the
        place holds a token of ``hidden``.

    Raises:
        ValueError: the model is not patched or has not run; InputError: ``hidden`` does not
        match the last forward; SettingError: the last forward merged tokens (ToMe: a merged token
        stands for several places); UnsupportedModelError: a window model (Video Swin keeps
        its grid).
    """
    from stprune.core.restore import restore_grid
    from stprune.errors import InputError, SettingError
    from stprune.pruning.trace import SequenceTrace

    p = _pruner(model)
    trace = last_trace(model)
    if not isinstance(trace, SequenceTrace):
        raise UnsupportedModelError(
            f"{type(model).__name__} keeps every token in its grid (pruned ones are skipped, not removed); "
            "there is nothing to restore"
        )
    lay = get_adapter(model).layout()
    b = trace.batch_size
    if trace.stages:
        last = trace.stages[-1]
        if last.positions is None:
            raise SettingError(
                f"the last forward merged tokens (method {p.method.name!r}): a merged token stands for "
                "several places, so tokens cannot be put back; use an index-pruning method (sta, random, rlt)"
            )
        positions = last.positions
    else:
        positions = (torch.arange(trace.input_tokens, device=hidden.device) + lay.grid_offset).expand(b, -1)
    p_out = 0 if lay.protected_in_grid else trace.protected  # protected tokens outside the grid
    expected = (b, p_out + positions.shape[1])
    if hidden.dim() != 3 or tuple(hidden.shape[:2]) != expected:
        raise InputError(
            f"hidden must be (B, tokens, C) = ({expected[0]}, {expected[1]}, C) as the last forward "
            f"returned; got {tuple(hidden.shape)}"
        )
    tokens = hidden[:, p_out:]
    positions = positions.to(hidden.device)
    if lay.protected_in_grid and trace.protected:  # token 0 is grid place 0 and is not in positions
        head = torch.arange(trace.protected, device=hidden.device).expand(b, -1)
        positions = torch.cat([head, positions], dim=1)
    return restore_grid(tokens, positions, (lay.num_slots, lay.tokens_per_slot), fill)
