"""The pruner of input-level methods (RLT): tokens dropped once, before block 0, from the pixels.

For a token-sequence encoder (ViT family), via hooks only, like :mod:`~stprune.pruning.sequence`:

* a pre-hook on the model reads the clip the model receives (``adapter.clip_input``, in the
  (B, T, C, H, W) order of ``adapter.input_grid()``) and asks the method which tokens of the
  T0 x N grid to keep (:meth:`~stprune.methods.base.InputSelectionMethod.select`), with the
  geometry of the tubelet embedding (frames per slot, pixels per token);
* a pre-hook on block 0 gathers the kept tokens (after the embedding: each keeps its position
  embedding), protected tokens (CLS) first; for rotary-position models (V-JEPA 2) every block is
  told the kept tokens' grid positions (``adapter.with_positions``);
* when clips keep different numbers of tokens (RLT's threshold mode), the batch is padded to the
  longest clip; padded tokens get an attention bias of -inf in every block and in an attentive
  pooler (``adapter.install_attention_bias``) and weight 0 in a mean-pooling head, so each clip's
  output equals running it alone (up to floating-point summation order).

The stage is ``Stage(after_block=-1, groups=1, r)``: ``r`` tokens of the grid dropped per clip (a
fixed budget, from ``r`` or ``flops_target``), or ``r=None`` when the method decides per clip;
then :class:`~stprune.api.PatchInfo`'s MACs are the unpruned upper bound and
``stprune.last_macs`` gives what each clip of the last forward used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from stprune.core.schedule import RTooLargeError, Stage, TokenPlan, _check_r_type, plural
from stprune.errors import InputError, SettingError, SettingTypeError, UnsupportedModelError
from stprune.methods.base import InputSelection, InputSelectionMethod
from stprune.pruning.resolve import check_setting, resolve_stages
from stprune.pruning.sequence import _in_backward, profile_scope
from stprune.pruning.trace import HookedPruner, SequenceTrace, StageTrace

if TYPE_CHECKING:
    from stprune.adapters.base import SequenceAdapter

__all__ = ["INPUT_STAGE", "InputPlanner", "InputPruner", "build_input_pruner"]

#: ``after_block`` of the input stage (it runs before block 0)
INPUT_STAGE = -1


class InputPlanner:
    """What :func:`~stprune.pruning.resolve.resolve_stages` needs for an input-level method: one
    stage before block 0, ``r`` = tokens of the T0 x N grid dropped per clip (slot 0 always kept)."""

    def __init__(self, adapter: SequenceAdapter, method: InputSelectionMethod) -> None:
        self.adapter = adapter
        self.method = method
        self.layout = adapter.layout()
        self.grid_tokens = self.layout.num_slots * self.layout.tokens_per_slot
        #: the most tokens a clip may drop: every token but the first slot's
        self.max_drop = self.grid_tokens - self.layout.tokens_per_slot
        full = self.layout.input_tokens
        self.base = adapter.planned_macs([full] * self.layout.depth, full)

    def read_schedule(self, schedule: Any, r: int | Sequence[int] | None) -> list[Stage]:
        if schedule is not None and schedule != self.method.default_schedule:
            raise SettingError(
                f"method {self.method.name!r} drops input tokens once, before block 0; it takes no "
                f"schedule (got schedule={schedule!r}); give r (tokens dropped per clip) or flops_target"
            )
        if isinstance(r, Sequence) and not isinstance(r, (str, bytes)):
            raise SettingTypeError(
                f"method {self.method.name!r} has one stage (before block 0): give one r, not {list(r)!r}"
            )
        return [Stage(INPUT_STAGE, 1, _check_r_type(r))]

    def plan(self, r: int) -> TokenPlan:
        tokens = self.layout.input_tokens - r
        return TokenPlan([tokens] * self.layout.depth, [self.layout.prunable_tokens], tokens)

    def validate(self, stages: Sequence[Stage]) -> None:
        r = stages[0].r
        if r is not None and r > self.max_drop:
            lay = self.layout
            raise RTooLargeError(
                "the input stage (before block 0)",
                f"r={r} is too large: of the {plural(self.grid_tokens, 'token')} ({lay.num_slots} slots x "
                f"{lay.tokens_per_slot}) the first slot's {lay.tokens_per_slot} are always kept",
                r,
                self.max_drop,
            )

    def macs(self, tokens: int) -> int:
        """MACs of one clip whose block 0 gets ``tokens`` tokens (protected included)."""
        return self.adapter.planned_macs([tokens] * self.layout.depth, tokens)

    def ratio(self, stages: Sequence[Stage]) -> float:
        return self.macs(self.layout.input_tokens - stages[0].r) / self.base

    def r_upper(self, stages: Sequence[Stage]) -> int:
        return self.max_drop + 1


class InputPruner(HookedPruner):
    """Applies an input-level method to a ViT-family model, via hooks (see the module docstring).

    Args:
        adapter: the model's adapter (geometry, input, attention bias, positions).
        method: the input-level method.
        stage: ``Stage(-1, 1, r)``; ``r=None``: the method decides per clip.
    """

    def __init__(self, adapter: SequenceAdapter, method: InputSelectionMethod, stage: Stage) -> None:
        super().__init__()
        self.adapter = adapter
        self.method = method
        self.stages = [stage]
        self.planner = InputPlanner(adapter, method)
        self.layout = lay = self.planner.layout
        self.grid = adapter.input_grid()
        self.adaptive = stage.r is None
        self.plan = self.planner.plan(stage.r or 0)
        self.macs = self.planner.macs(self.plan.final_tokens)
        self.macs_unpruned = self.planner.base
        self.trace: SequenceTrace | None = None
        # grid tokens each clip keeps (fixed budget), None: the method decides
        self._keep = None if self.adaptive else self.planner.grid_tokens - stage.r
        self._pending: InputSelection | None = None
        # this forward's (B, L) gather indices into block 0's input, and what follows from them
        self._gather: torch.Tensor | None = None
        self._positions: torch.Tensor | None = None
        self._valid: torch.Tensor | None = None  # (B, L) bool incl. protected; None: no padding
        self._bias: torch.Tensor | None = None
        self._counts: torch.Tensor | None = None  # (B,) grid tokens each clip kept
        self._macs_by_count: dict[int, int] = {}
        if adapter.needs_positions and lay.protected:
            raise UnsupportedModelError(
                f"{type(adapter.model).__name__}: positions of protected tokens are not tracked"
            )

    # bookkeeping --------------------------------------------------------------------------------

    def traced_macs(self) -> int:
        """MACs per clip that the last forward computed (a padded batch: the longest clip's)."""
        if self.trace is None:
            raise ValueError("the patched model has not run a forward pass yet")
        return self.planner.macs(self.trace.tokens_per_block[0])

    def macs_per_clip(self) -> torch.Tensor:
        """(B,) int64 MACs each clip of the last forward needs on its own (padding excluded)."""
        if self.trace is None or self._counts is None:
            raise ValueError("the patched model has not run a forward pass yet")
        extra = self.layout.input_tokens - self.planner.grid_tokens  # protected tokens outside the grid
        out = []
        for c in self._counts.tolist():
            if c not in self._macs_by_count:
                self._macs_by_count[c] = self.planner.macs(c + extra)
            out.append(self._macs_by_count[c])
        return torch.tensor(out, dtype=torch.int64)

    def attention_bias(self, block: int) -> torch.Tensor | None:
        """(B, 1, 1, L) bias of every block (and the head): -inf for padding, or ``None``."""
        return self._bias

    # install / remove -------------------------------------------------------------------------

    def _install(self) -> None:
        lay = self.layout
        if self.adaptive:  # padded batches: padding is kept out of attention by a bias
            self._undo.append(self.adapter.install_attention_bias(self.attention_bias))
        self._handles.append(self.adapter.model.register_forward_pre_hook(self._begin, with_kwargs=True))
        self._handles.append(lay.layers[0].register_forward_pre_hook(self._start, with_kwargs=True))
        if self.adaptive and self.adapter.mean_pooled:
            self._handles.append(lay.layers[-1].register_forward_hook(self._mean_over_valid))
        if self.adapter.needs_positions:
            for block in range(1, lay.depth):
                self._handles.append(
                    lay.layers[block].register_forward_pre_hook(self._inject_positions, with_kwargs=True)
                )
        if self.adaptive or self._keep < self.planner.grid_tokens:
            self._handles.extend(self.adapter.pruning_guards())

    def _forget(self) -> None:
        self._pending = self._gather = self._positions = self._valid = self._bias = None

    # hooks ------------------------------------------------------------------------------------

    def _begin(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        """Model pre-hook: check the input, select the tokens from its pixels."""
        self.adapter.check_inputs(args, kwargs)
        clip = self.adapter.clip_input(args, kwargs)
        if clip is None:
            raise InputError(
                f"method {self.method.name!r} selects tokens from the input clip, but the call to "
                f"{type(module).__name__} passed none"
            )
        pixels = clip.detach()
        if self.grid.input_layout == "BCTHW":
            pixels = pixels.transpose(1, 2)
        with profile_scope(), torch.no_grad():
            self._pending = self.method.select(pixels, self.grid.tubelet, self.grid.patch, self._keep)

    def _start(self, module: nn.Module, args: tuple, kwargs: dict) -> Any:
        """Block 0 pre-hook: gather the kept tokens (and hand their positions to a RoPE model)."""
        hidden = args[0] if args else kwargs["hidden_states"]
        lay = self.layout
        if hidden.shape[1] != lay.input_tokens:
            raise InputError(
                f"the model received {hidden.shape[1]} tokens but was patched for {lay.input_tokens}: the "
                "input's frame count or frame size does not match the model's config"
            )
        if not (torch.is_grad_enabled() and _in_backward() and self._gather is not None):
            self._new_forward(hidden)  # (not when block 0 is recomputed by gradient checkpointing)
        tokens = hidden.gather(1, self._gather[..., None].expand(-1, -1, hidden.shape[-1]))
        if args:
            args = (tokens, *args[1:])
        else:
            kwargs = {**kwargs, "hidden_states": tokens}
        if self.adapter.needs_positions:
            return self.adapter.with_positions(args, kwargs, self._positions)
        return args, kwargs

    def _new_forward(self, hidden: torch.Tensor) -> None:
        sel, self._pending = self._pending, None
        if sel is None:
            raise InputError(
                f"method {self.method.name!r} selects tokens from the input clip: call the patched model "
                "itself, not its encoder or blocks"
            )
        lay = self.layout
        b = hidden.shape[0]
        if sel.indices.shape[0] != b:
            raise InputError(f"the clip has batch {sel.indices.shape[0]} but block 0 received batch {b}")
        idx = sel.indices.to(hidden.device)
        valid = None if sel.valid is None else sel.valid.to(hidden.device)
        safe = idx.clamp(min=0)  # padding gathers token 0 of the grid (then masked out)
        p = lay.protected
        if lay.protected_in_grid or not p:  # the grid is block 0's whole input (token 0 is grid 0)
            gather, full_valid, kept, positions, counts = safe, valid, idx, idx, sel.counts
            if lay.protected_in_grid and p:  # the first slot is always kept: token 0 stays first
                kept = torch.where(idx[:, p:] >= 0, idx[:, p:] - p, -1)
                positions, counts = idx[:, p:], sel.counts - p
        else:  # protected tokens (CLS) before the grid
            head = torch.arange(p, device=idx.device).expand(b, p)
            gather = torch.cat([head, safe + p], dim=1)
            full_valid = None if valid is None else torch.cat([valid.new_ones(b, p), valid], dim=1)
            kept, positions, counts = idx, idx, sel.counts
        self._gather, self._valid, self._counts = gather, full_valid, sel.counts
        self._positions = safe  # RoPE models have no protected tokens
        if full_valid is None:
            self._bias = None
        else:
            zero = torch.zeros((), dtype=hidden.dtype, device=hidden.device)
            self._bias = torch.where(full_valid, zero, -math.inf)[:, None, None, :]
        self.trace = SequenceTrace(lay.depth, p, lay.prunable_tokens, batch_size=b, device=hidden.device)
        if not self.adaptive:
            counts = None  # every clip keeps tokens_out
        st = StageTrace(0, self.stages[0], lay.prunable_tokens, kept.shape[1], kept, positions, counts=counts)
        self.trace.stages.append(st)

    def _inject_positions(self, module: nn.Module, args: tuple, kwargs: dict) -> Any:
        """Pre-hook of blocks 1.. of a RoPE model: the kept tokens' grid positions."""
        hidden = args[0] if args else kwargs["hidden_states"]
        pos = self._positions
        if pos is None or pos.shape != hidden.shape[:2]:
            raise InputError(
                f"a block received {tuple(hidden.shape[:2])} (batch, tokens), not the tokens the pruner "
                "selected: call the patched model itself, not its blocks"
            )
        return self.adapter.with_positions(args, kwargs, pos)

    def _mean_over_valid(self, module: nn.Module, args: tuple, output: Any) -> Any:
        """Scale the last block's tokens so that a mean-pooling head averages the valid ones only."""
        valid = self._valid
        if valid is None:
            return None
        hidden = output[0] if isinstance(output, tuple) else output
        weight = valid.to(hidden.dtype)
        weight = weight * (hidden.shape[1] / weight.sum(1, keepdim=True))
        out = hidden * weight[..., None]
        return (out, *output[1:]) if isinstance(output, tuple) else out


def build_input_pruner(
    adapter: SequenceAdapter,
    method: InputSelectionMethod,
    schedule: Any,
    r: int | Sequence[int] | None,
    flops_target: float | None,
    **options: Any,
) -> InputPruner:
    """Resolve ``r`` / ``flops_target`` (or the method's own per-clip choice) and build the pruner.

    ``options`` are the family's (``adapter.with_options``). Raises SettingError /
    SettingTypeError for every bad combination before anything is installed.
    """
    adapter = adapter.with_options(**options)  # the family's (e.g. V-JEPA 2's num_frames); others refuse
    check_setting(r, flops_target)
    planner = InputPlanner(adapter, method)
    if r is None and flops_target is None:
        if not method.adaptive:
            raise SettingError(
                f"method {method.name!r} needs r (tokens dropped per clip) or flops_target (a FLOPs ratio "
                "in (0, 1])"
            )
        stage = planner.read_schedule(schedule, None)[0]
    else:
        method.check_budget()
        stage = resolve_stages(planner, schedule, r, flops_target)[0]
    return InputPruner(adapter, method, stage)
