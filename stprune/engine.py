"""The pruning engine for token-sequence encoders (ViT family).

It installs forward hooks and nothing else, so the model's own modules (and their fused SDPA
attention) run unchanged and ``unpatch`` restores the exact original behaviour:

* a hook on the key projection of every pruning block keeps the keys it computed, averaged
  over heads (no recomputation, no attention matrix);
* a hook on every pruning block replaces its output by the method's reduced tokens;
* a pre-hook on block 0 checks the token count and starts a fresh :class:`Trace`.

Data flows one way: adapter (blocks, keys) -> method (reduce) -> engine (gather, bookkeeping).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from torch import nn

from stprune.core.schedule import Stage, TokenPlan, plan_tokens
from stprune.methods.base import Method
from stprune.models.base import SequenceAdapter

__all__ = ["StageTrace", "Trace", "SequencePruner", "estimate_macs"]


@dataclass
class StageTrace:
    """What one pruning point did in the last forward.

    Attributes:
        index: position of the stage in the schedule.
        stage: the stage.
        tokens_in: prunable tokens entering (protected excluded).
        tokens_out: prunable tokens leaving.
        kept: (B, tokens_out) indices into the stage's input tokens, in output order
            (``None`` for merging methods).
        positions: (B, tokens_out) index of each kept token in the original T0 x N grid
            (slot * N + spatial index); ``None`` once a merging method ran.
    """

    index: int
    stage: Stage
    tokens_in: int
    tokens_out: int
    kept: torch.Tensor | None
    positions: torch.Tensor | None


@dataclass
class Trace:
    """Token bookkeeping of the last forward of a patched model."""

    depth: int
    protected: int
    input_tokens: int
    stages: list[StageTrace] = field(default_factory=list)

    @property
    def tokens_per_block(self) -> list[int]:
        """Tokens (protected included) each block processed in the last forward."""
        out, length, it = [], self.input_tokens, iter(self.stages)
        nxt = next(it, None)
        for block in range(self.depth):
            out.append(length + self.protected)
            if nxt is not None and nxt.stage.after_block == block:
                length = nxt.tokens_out
                nxt = next(it, None)
        return out


def estimate_macs(adapter: SequenceAdapter, method: Method, stages: Sequence[Stage]) -> tuple[int, TokenPlan]:
    """Analytic MACs of one sample's forward under ``stages`` (the method's own scoring included)."""
    lay = adapter.layout()
    plan = plan_tokens(stages, lay.depth, lay.num_slots, lay.tokens_per_slot, lay.protected, method.max_r)
    total = adapter.macs(plan.tokens_per_block)
    total += sum(
        method.scoring_macs(n, s.groups, s.r, lay.key_dim)
        for s, n in zip(stages, plan.stage_group_sizes, strict=True)
    )
    return total, plan


class SequencePruner:
    """Applies a method at the stages of a schedule to a ViT-family model, via hooks.

    Args:
        adapter: where the blocks and keys are.
        method: what to prune.
        stages: validated stages with r set.
    """

    def __init__(self, adapter: SequenceAdapter, method: Method, stages: Sequence[Stage]) -> None:
        self.adapter = adapter
        self.method = method
        self.stages = list(stages)
        self.layout = adapter.layout()
        self.macs, self.plan = estimate_macs(adapter, method, self.stages)
        self.macs_unpruned = adapter.macs(
            [self.layout.num_slots * self.layout.tokens_per_slot + self.layout.protected] * self.layout.depth
        )
        self.trace: Trace | None = None
        self._keys: dict[int, torch.Tensor] = {}
        self._ctx: dict[str, Any] = {}
        self._positions: torch.Tensor | None = None
        self._merged = False
        self._bias: torch.Tensor | None = None
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._undo: list[Callable[[], None]] = []

    @property
    def macs_ratio(self) -> float:
        """Estimated FLOPs(pruned) / FLOPs(unpruned)."""
        return self.macs / self.macs_unpruned

    def install(self) -> None:
        lay = self.layout
        self._handles.append(
            self.adapter.model.register_forward_pre_hook(self._check_inputs, with_kwargs=True)
        )
        self._handles.append(lay.layers[0].register_forward_pre_hook(self._start, with_kwargs=True))
        for i, s in enumerate(self.stages):
            if s.r == 0:
                continue  # a no-op stage: nothing to capture, tokens stay in place
            self._handles.append(
                lay.key_modules[s.after_block].register_forward_hook(
                    partial(self._capture_keys, s.after_block)
                )
            )
            self._handles.append(lay.layers[s.after_block].register_forward_hook(partial(self._prune, i)))
        if self.method.tracks_size:
            # proportional attention: later blocks add log(size) of each key token to their logits
            self._undo.append(self.adapter.install_attention_bias(lambda: self._bias))
            if self.adapter.mean_pooled:
                self._handles.append(lay.layers[-1].register_forward_hook(self._size_weighted_output))

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        for undo in self._undo:
            undo()
        self._handles.clear()
        self._undo.clear()
        self._keys.clear()
        self._bias = None

    # hooks -----------------------------------------------------------------------------------

    def _check_inputs(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        self.adapter.check_inputs(args, kwargs)

    def _start(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        hidden = args[0] if args else kwargs["hidden_states"]
        lay = self.layout
        expected = self.plan.tokens_per_block[0]
        if hidden.shape[1] != expected:
            raise ValueError(
                f"the model received {hidden.shape[1]} tokens but was patched for {expected} "
                f"({lay.num_slots} temporal slots x {lay.tokens_per_slot} tokens"
                + (f" + {lay.protected} protected" if lay.protected else "")
                + "): the input's frame count or frame size does not match the model's config"
            )
        self.trace = Trace(lay.depth, lay.protected, expected - lay.protected)
        self._keys.clear()
        self._ctx = {}
        self._positions = None
        self._merged = False
        self._bias = None
        self.method.start_forward(self._ctx)

    def _capture_keys(self, block: int, module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        b, length, width = output.shape
        self._keys[block] = output.view(
            b, length, self.layout.num_heads, width // self.layout.num_heads
        ).mean(2)

    def _prune(self, index: int, module: nn.Module, args: tuple, output: Any) -> Any:
        stage = self.stages[index]
        hidden = output[0] if isinstance(output, tuple) else output
        keys = self._keys.pop(stage.after_block, None)
        if keys is None:
            raise RuntimeError(
                f"block {stage.after_block} produced no keys through its key projection: either this "
                "model version computes keys in a way the adapter does not support, or a torch.compile "
                "graph break inside the pruning method skipped the key hook (methods must trace "
                "without graph breaks)"
            )
        p = self.layout.protected
        x, k = hidden[:, p:], keys[:, p:]
        n_in = x.shape[1]
        expected = self.plan.stage_group_sizes[index] * stage.groups
        if n_in != expected:
            raise ValueError(
                f"stage {index} (after block {stage.after_block}) received {n_in} prunable tokens; "
                f"the schedule planned {expected}"
            )
        reduced, kept = self.method.reduce(x, k, stage, self._ctx)
        out = torch.cat([hidden[:, :p], reduced], dim=1) if p else reduced
        self._record(index, stage, n_in, reduced.shape[1], kept)
        if self.method.tracks_size:
            log_size = self._ctx["size"].squeeze(-1).log()  # (B, L')
            if p:
                log_size = torch.cat([log_size.new_zeros(log_size.shape[0], p), log_size], dim=1)
            self._bias = log_size[:, None, None, :]
        if isinstance(output, tuple):
            return (out, *output[1:])
        return out

    def _size_weighted_output(self, module: nn.Module, args: tuple, output: Any) -> Any:
        """Scale the last block's tokens so that the head's plain mean is the size-weighted mean."""
        size = self._ctx.get("size")
        if size is None:
            return None
        hidden = output[0] if isinstance(output, tuple) else output
        p = self.layout.protected
        total = hidden.shape[1]
        size = size.to(hidden.dtype)
        factor = total / (p + size.sum(1, keepdim=True))  # (B, 1, 1)
        weight = size * factor
        if p:
            weight = torch.cat([factor.expand(-1, p, 1), weight], dim=1)
        out = hidden * weight
        return (out, *output[1:]) if isinstance(output, tuple) else out

    def _record(self, index: int, stage: Stage, n_in: int, n_out: int, kept: torch.Tensor | None) -> None:
        if kept is None:
            self._merged = True
            self._positions = None
        elif not self._merged:
            self._positions = kept if self._positions is None else self._positions.gather(1, kept)
        if self.trace is not None:
            pos = None if self._merged else self._positions
            self.trace.stages.append(StageTrace(index, stage, n_in, n_out, kept, pos))
