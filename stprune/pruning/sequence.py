"""The pruning engine for token-sequence encoders (ViT family).

It installs forward hooks and nothing else, so the model's own modules (and their fused SDPA
attention) run unchanged and ``unpatch`` restores the exact original behaviour:

* a pre-hook on the model checks the input and, for methods that need it, keys every clip by
  its content (``ctx.sample_key``, see :func:`stprune.core.hashrand.content_keys`);
* a pre-hook on block 0 checks the token count and starts a fresh :class:`Trace`;
* a hook on the key projection of every pruning block keeps the keys it computed, averaged
  over heads (no recomputation, no attention matrix);
* a hook on every pruning block replaces its output by the method's reduced tokens; a method
  that reduces between a block's attention and its MLP (``reduces_after_attention``, vid-TLDR)
  instead replaces the post-attention residual where the adapter says hooks reach it
  (``EncoderLayout.mid_blocks``: the MLP's norm and the module that adds the MLP's output back),
  so that block's MLP runs on the reduced tokens;
* for a method that reads the attention (``uses_attention``), hooks on the query and key
  projections of its blocks keep them per head, handed to the method as ``ctx.attention``
  (it computes the map it needs itself: the model's attention stays fused);
* for models that rotate tokens by their grid position (``adapter.needs_positions``, V-JEPA 2's
  RoPE), a pre-hook on every block after the first pruning point hands it the grid positions of
  its tokens (``adapter.with_positions``); a merging method says where each merged token sits
  (``ctx.anchor``), or is refused;
* the adapter's ``pruning_guards`` (e.g. V-JEPA 2's refusal to run its predictor on a pruned
  encoder) are installed while some stage prunes.

The attention bias of size-tracking methods (ToMe) is given per block, and once more for the
head (index ``depth``: the sizes after the last stage, for a head that attends over the tokens,
e.g. V-JEPA 2's attentive pooler). Costs: ``adapter.planned_macs`` gets the tokens the head
reads (fewer than the last block's when a stage follows the last block).

Training works too: gradients flow through the kept (or merged) tokens; the selection itself
is not differentiable. Under gradient checkpointing a block may run again during backward; its
hooks then replay the selection from the state this forward had before that block (the same
tokens, the same attention bias), and leave the trace and the method's state alone.

Data flows one way: adapter (blocks, keys) -> method (reduce) -> engine (gather, bookkeeping).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from stprune.core.hashrand import content_keys
from stprune.core.schedule import (
    Stage,
    TokenPlan,
    normalize_schedule,
    plan_tokens,
    plural,
)
from stprune.errors import InputError, SettingError, UnsupportedModelError
from stprune.methods.base import BlockAttention, ForwardContext, Method, StageShape
from stprune.pruning.resolve import resolve_stages
from stprune.pruning.trace import HookedPruner, SequenceTrace, StageTrace

if TYPE_CHECKING:
    from stprune.adapters.base import SequenceAdapter

#: torch.profiler label of the pruning work (scoring + selection + gather) at every stage
PROFILE_LABEL = "stprune.reduce"


def profile_scope() -> contextlib.AbstractContextManager:
    """``torch.profiler.record_function(PROFILE_LABEL)``, except while ``torch.compile`` traces the
    forward: dynamo ignores a record_function and logs a warning on every compile, so a compiled
    graph has no label (profile the eager model for the share of time spent pruning)."""
    if torch.compiler.is_compiling():
        return contextlib.nullcontext()
    return torch.profiler.record_function(PROFILE_LABEL)


__all__ = [
    "SequencePlanner",
    "SequencePruner",
    "build_sequence_pruner",
    "check_method_fits",
    "estimate_macs",
    "profile_scope",
]


def _in_backward() -> bool:
    """Whether autograd is running a backward pass (a checkpointed block being recomputed).

    Asked only with grad mode on, so inference never reaches it; the same test FSDP and
    ``torch.utils.module_tracker`` use. Inside a ``torch.compile`` trace it is False (the query
    would break the graph; a compiled forward is traced once, not replayed hook by hook).
    """
    if torch.compiler.is_compiling():
        return False
    task_id = getattr(torch._C, "_current_graph_task_id", None)
    return task_id is not None and task_id() != -1


def _plan(lay: Any, stages: Sequence[Stage], max_r: Callable[[int], int]) -> TokenPlan:
    slots, per_slot = lay.plan_grid
    return plan_tokens(stages, lay.depth, slots, per_slot, lay.protected, max_r)


def estimate_macs(adapter: SequenceAdapter, method: Method, stages: Sequence[Stage]) -> tuple[int, TokenPlan]:
    """Analytic MACs of one sample's forward under ``stages`` (the method's own scoring included;
    a stage that reduces between attention and MLP saves that block's MLP on the removed tokens)."""
    lay = adapter.layout()
    plan = _plan(lay, stages, method.max_r)
    total = adapter.planned_macs(plan.tokens_per_block, plan.final_tokens)
    for s, n in zip(stages, plan.stage_group_sizes, strict=True):
        shape = StageShape(n, s.groups, s.r, lay.key_dim, lay.num_heads, lay.width or 0, lay.protected)
        total += method.stage_macs(shape)
        if method.reduces_after_attention and s.r and lay.mid_blocks is not None:
            total -= s.groups * s.r * lay.mid_blocks[s.after_block].mlp_macs_per_token
    return total, plan


def check_method_fits(adapter: SequenceAdapter, method: Method) -> None:
    """Raise ``UnsupportedModelError`` (one line, why) if the model cannot give ``method`` what it reads."""
    lay = adapter.layout()
    name = type(adapter.model).__name__
    if method.uses_attention and (lay.query_modules is None or lay.width is None):
        why = (
            "rotates queries and keys by grid position inside its attention (RoPE), so its query and key "
            "projections do not give its attention map"
            if adapter.needs_positions
            else "has no query projections the adapter names"
        )
        raise UnsupportedModelError(f"method {method.name!r} reads a block's attention map, but {name} {why}")
    if method.reduces_after_attention and lay.mid_blocks is None:
        raise UnsupportedModelError(
            f"method {method.name!r} merges between a block's attention and its MLP, but {name}'s blocks add "
            "both residuals inside their own forward, where no hook can replace the tokens"
        )


class SequencePruner(HookedPruner):
    """Applies a method at the stages of a schedule to a ViT-family model, via hooks.

    Works in ``model.train()`` as well (gradients through the kept or merged tokens, with or
    without gradient checkpointing); see the module docstring.

    Args:
        adapter: where the blocks and keys are.
        method: what to prune.
        stages: validated stages with r set.
    """

    def __init__(self, adapter: SequenceAdapter, method: Method, stages: Sequence[Stage]) -> None:
        super().__init__()
        self.adapter = adapter
        self.method = method
        self.stages = list(stages)
        self.layout = adapter.layout()
        self.macs, self.plan = estimate_macs(adapter, method, self.stages)
        full = self.layout.input_tokens
        self.macs_unpruned = adapter.planned_macs([full] * self.layout.depth, full)
        self.trace: SequenceTrace | None = None
        self._keys: dict[int, torch.Tensor] = {}
        # per block: the raw query / key projections (for methods that read the attention), and the
        # reduced post-attention tokens waiting for the module that adds the MLP's output to them
        self._projections: dict[tuple[str, int], torch.Tensor] = {}
        self._rejoin_tokens: dict[int, torch.Tensor] = {}
        self._ctx = ForwardContext()
        self._sample_key: torch.Tensor | None = None
        self._positions: torch.Tensor | None = None
        self._merged = False
        # per forward: the method's state before each stage ran, and each stage's attention bias
        self._ctx_before: dict[int, ForwardContext] = {}
        self._stage_bias: dict[int, torch.Tensor] = {}
        # block -> the last stage (with r > 0) before it, whose bias its attention adds
        self._bias_stage: list[int | None] = []
        last = None
        for block in range(self.layout.depth):
            self._bias_stage.append(last)
            last = next((i for i, s in enumerate(self.stages) if s.after_block == block and s.r), last)
        self._bias_stage.append(last)  # index depth: the head (e.g. an attentive pooler)
        # rotary-position models: (B, L) grid positions of the current tokens (kept or anchor
        # positions), and the ones each block got in this forward (a block recomputed by
        # gradient checkpointing gets the same again)
        self._rope_positions: torch.Tensor | None = None
        self._block_positions: dict[int, torch.Tensor] = {}

    def traced_macs(self) -> int:
        """MACs of one clip of the last forward: the plan is exact for this family (same as ``macs``)."""
        return self.macs

    def attention_bias(self, block: int) -> torch.Tensor | None:
        """(B, 1, 1, L) log-size bias that block ``block``'s attention adds in this forward (or ``None``).

        ``block == depth`` is the head: the bias after the last stage (for a head that attends over
        the tokens, e.g. V-JEPA 2's attentive pooler).
        """
        stage = self._bias_stage[block]
        return None if stage is None else self._stage_bias.get(stage)

    def _install(self) -> None:
        """The hooks (and, for size-tracking methods, the attention bias)."""
        lay = self.layout
        if self.method.tracks_size:
            # proportional attention: later blocks add log(size) of each key token to their logits
            # (first, so that a model whose attention cannot take a bias is refused before any hook)
            self._undo.append(self.adapter.install_attention_bias(self.attention_bias))
        self._handles.append(self.adapter.model.register_forward_pre_hook(self._begin, with_kwargs=True))
        self._handles.append(lay.layers[0].register_forward_pre_hook(self._start, with_kwargs=True))
        for i, s in enumerate(self.stages):
            if s.r == 0:
                continue  # a no-op stage: nothing to capture, tokens stay in place
            b = s.after_block
            self._handles.append(lay.key_modules[b].register_forward_hook(partial(self._capture_keys, b)))
            if self.method.uses_attention:
                for kind, mods in (("q", lay.query_modules), ("k", lay.key_modules)):
                    self._handles.append(
                        mods[b].register_forward_hook(partial(self._capture_projection, kind, b))
                    )
            if self.method.reduces_after_attention:
                mid = lay.mid_blocks[b]
                self._handles.append(
                    mid.norm.register_forward_pre_hook(partial(self._prune_mid, i), with_kwargs=True)
                )
                self._handles.append(
                    mid.rejoin.register_forward_pre_hook(partial(self._rejoin, b, mid), with_kwargs=True)
                )
            else:
                self._handles.append(lay.layers[b].register_forward_hook(partial(self._prune, i)))
        if self.method.tracks_size and self.adapter.mean_pooled:
            self._handles.append(lay.layers[-1].register_forward_hook(self._size_weighted_output))
        first = next((s.after_block for s in self.stages if s.r), None)
        if first is None:
            return  # nothing pruned: the model runs as it is
        if self.adapter.needs_positions:
            if self.method.tracks_size and not self.method.sets_anchor:
                raise UnsupportedModelError(
                    f"{type(self.adapter.model).__name__} rotates every token by its grid position, but "
                    f"method {self.method.name!r} merges tokens without saying where each merged token sits "
                    "(sets_anchor / ctx.anchor); use an index-pruning method such as 'sta'"
                )
            if lay.protected:
                raise UnsupportedModelError(
                    f"{type(self.adapter.model).__name__}: positions of protected tokens are not tracked"
                )
            for block in range(first + 1, lay.depth):
                self._handles.append(
                    lay.layers[block].register_forward_pre_hook(
                        partial(self._inject_positions, block), with_kwargs=True
                    )
                )
        self._handles.extend(self.adapter.pruning_guards())

    def _forget(self) -> None:
        self._keys.clear()
        self._projections.clear()
        self._rejoin_tokens.clear()
        self._ctx_before.clear()
        self._stage_bias.clear()
        self._sample_key = None
        self._rope_positions = None
        self._block_positions.clear()

    # hooks -----------------------------------------------------------------------------------

    def _begin(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        """Model pre-hook: check the input; key every clip by its content if the method asks."""
        self.adapter.check_inputs(args, kwargs)
        if getattr(self.method, "uses_sample_key", False):
            clip = self.adapter.clip_input(args, kwargs)
            self._sample_key = None if clip is None else content_keys(clip)

    def _start(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        hidden = args[0] if args else kwargs["hidden_states"]
        lay = self.layout
        expected = self.plan.tokens_per_block[0]
        if hidden.shape[1] != expected:
            grid = f"{plural(lay.num_slots, 'temporal slot')} x {plural(lay.tokens_per_slot, 'token')}"
            if lay.protected and not lay.protected_in_grid:
                grid += f" + {lay.protected} protected"
            raise InputError(
                f"the model received {hidden.shape[1]} tokens but was patched for {expected} ({grid}): "
                "the input's frame count or frame size does not match the model's config"
            )
        if torch.is_grad_enabled() and _in_backward():
            return  # block 0 recomputed by gradient checkpointing: this forward's state stays
        b = hidden.shape[0]
        self.trace = SequenceTrace(
            lay.depth, lay.protected, expected - lay.protected, batch_size=b, device=hidden.device
        )
        self._keys.clear()
        self._projections.clear()
        self._rejoin_tokens.clear()
        self._ctx = ForwardContext()
        if self._sample_key is not None:
            self._ctx.sample_key = self._sample_key
            self._sample_key = None  # one forward's: a later direct call of the blocks gets none
        self._positions = None
        self._merged = False
        self._ctx_before.clear()
        self._stage_bias.clear()
        self._rope_positions = None
        self._block_positions.clear()
        self.method.start_forward(self._ctx)

    def _capture_keys(self, block: int, module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        # keys only select tokens (no gradient flows through a selection): keep them detached
        b, length, width = output.shape
        self._keys[block] = (
            output.detach().view(b, length, self.layout.num_heads, width // self.layout.num_heads).mean(2)
        )

    def _capture_projection(
        self, kind: str, block: int, module: nn.Module, args: tuple, output: torch.Tensor
    ) -> None:
        # (B, L, H * d) as computed; only read by the selection: detached
        self._projections[kind, block] = output.detach()

    def _block_attention(self, block: int) -> BlockAttention:
        lay = self.layout
        q, k = self._projections.pop(("q", block), None), self._projections.pop(("k", block), None)
        if q is None or k is None:
            raise RuntimeError(
                f"block {block} produced no queries or keys through its projections: this model version "
                "computes them in a way the adapter does not support"
            )
        b, length, width = q.shape
        heads = lay.num_heads

        def per_head(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, length, heads, t.shape[-1] // heads).transpose(1, 2)

        return BlockAttention(per_head(q), per_head(k), lay.key_dim**-0.5, lay.protected)

    def _prune_mid(self, index: int, module: nn.Module, args: tuple, kwargs: dict) -> Any:
        """Pre-hook of a block's MLP norm: reduce the post-attention residual (the norm's input);
        the module that adds the MLP's output back gets the same reduced tokens (:meth:`_rejoin`)."""
        block = self.stages[index].after_block
        if args:
            out = self._reduce(index, args[0])
            args = (out, *args[1:])
        else:
            out = self._reduce(index, kwargs["input"])
            kwargs = {**kwargs, "input": out}
        self._rejoin_tokens[block] = out
        return args, kwargs

    def _rejoin(self, block: int, mid: Any, module: nn.Module, args: tuple, kwargs: dict) -> Any:
        """Pre-hook of the module adding the MLP's output to the residual: the reduced residual."""
        out = self._rejoin_tokens.pop(block, None)
        if out is None:
            raise RuntimeError(
                f"block {block}: the residual reached its MLP without passing the norm before it"
            )
        if len(args) > mid.rejoin_arg:
            args = (*args[: mid.rejoin_arg], out, *args[mid.rejoin_arg + 1 :])
        else:
            kwargs = {**kwargs, mid.rejoin_kwarg: out}
        return args, kwargs

    def _prune(self, index: int, module: nn.Module, args: tuple, output: Any) -> Any:
        hidden = output[0] if isinstance(output, tuple) else output
        out = self._reduce(index, hidden)
        if isinstance(output, tuple):
            return (out, *output[1:])
        return out

    def _reduce(self, index: int, hidden: torch.Tensor) -> torch.Tensor:
        """(B, P + L, C) tokens at stage ``index`` -> (B, P + L', C): the method's reduction, bookkept."""
        stage = self.stages[index]
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
            raise InputError(
                f"stage {index} (after block {stage.after_block}) received {n_in} prunable tokens; "
                f"the schedule planned {expected}"
            )
        replay = torch.is_grad_enabled() and _in_backward() and index in self._ctx_before
        if replay:
            # recomputed by gradient checkpointing: the same selection from the state this forward
            # had before the stage; the trace, the method's state and the bias stay as they are
            ctx = self._ctx_before[index].copy()
        else:
            self._ctx_before[index] = self._ctx.copy()
            ctx = self._ctx
        if self.method.uses_attention:
            ctx.attention = self._block_attention(stage.after_block)
        try:
            with profile_scope():
                reduced, kept = self.method.reduce(x, k, stage, ctx)
        finally:
            ctx.attention = None
        out = torch.cat([hidden[:, :p], reduced], dim=1) if p else reduced
        if not replay:
            sizes = ctx.size.squeeze(-1) if self.method.tracks_size else None
            self._record(index, stage, n_in, reduced.shape[1], kept, sizes)
            if self.method.tracks_size:
                log_size = ctx.size.squeeze(-1).log()  # (B, L')
                if p:
                    log_size = torch.cat([log_size.new_zeros(log_size.shape[0], p), log_size], dim=1)
                self._stage_bias[index] = log_size[:, None, None, :]
        return out

    def _size_weighted_output(self, module: nn.Module, args: tuple, output: Any) -> Any:
        """Scale the last block's tokens so that the head's plain mean is the size-weighted mean."""
        size = self._ctx.size
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

    def _record(
        self,
        index: int,
        stage: Stage,
        n_in: int,
        n_out: int,
        kept: torch.Tensor | None,
        sizes: torch.Tensor | None = None,
    ) -> None:
        if kept is None:
            self._merged = True
            self._positions = None
        elif not self._merged:
            self._positions = kept if self._positions is None else self._positions.gather(1, kept)
        if self.trace is not None:
            pos = None if self._merged else self._positions
            offset = self.layout.grid_offset
            if pos is not None and offset:
                pos = pos + offset  # grid positions: the protected grid tokens come first
            self.trace.stages.append(StageTrace(index, stage, n_in, n_out, kept, pos, sizes=sizes))
        if self.adapter.needs_positions:
            step = kept
            if step is None:
                step, self._ctx.anchor = self._ctx.anchor, None
            if step is None:
                raise UnsupportedModelError(
                    f"{type(self.adapter.model).__name__} rotates every token by its grid position, but "
                    f"method {self.method.name!r} merged tokens without saying where each merged token "
                    "sits (ctx.anchor); use an index-pruning method such as 'sta'"
                )
            prev = self._rope_positions
            self._rope_positions = step if prev is None else prev.gather(1, step)

    def _inject_positions(self, block: int, module: nn.Module, args: tuple, kwargs: dict) -> Any:
        """Pre-hook of a block after the first pruning point: pass it its tokens' grid positions."""
        if torch.is_grad_enabled() and _in_backward() and block in self._block_positions:
            pos = self._block_positions[block]  # recomputed by gradient checkpointing
        else:
            pos = self._rope_positions
            if pos is None:
                return None  # no stage ran before this block in this forward
            self._block_positions[block] = pos
        hidden = args[0] if args else kwargs["hidden_states"]
        if pos.shape != hidden.shape[:2]:
            raise InputError(
                f"block {block} received {tuple(hidden.shape[:2])} (batch, tokens) but the pruner tracked "
                f"positions for {tuple(pos.shape)}: call the patched model itself, not its blocks"
            )
        return self.adapter.with_positions(args, kwargs, pos)


class SequencePlanner:
    """What :func:`stprune.pruning.resolve.resolve_stages` needs to know of a ViT-family model."""

    def __init__(self, adapter: SequenceAdapter, method: Method) -> None:
        self.adapter = adapter
        self.method = method
        self.layout = adapter.layout()
        full = self.layout.input_tokens
        self.base = adapter.planned_macs([full] * self.layout.depth, full)

    def read_schedule(self, schedule: Any, r: int | Sequence[int] | None) -> list[Stage]:
        lay = self.layout
        stages = normalize_schedule(
            self.method.default_schedule if schedule is None else schedule, lay.depth, lay.num_slots, r
        )
        if lay.protected_in_grid and lay.protected:
            bad = next(((i, s) for i, s in enumerate(stages) if s.groups != 1), None)
            if bad is not None:
                raise SettingError(
                    f"{type(self.adapter.model).__name__}: {self.adapter.protected_reason}, so token 0 is "
                    f"protected (never pruned, stays first) and the other {lay.prunable_tokens} tokens do "
                    f"not fill whole temporal slots; got groups={bad[1].groups} at stage {bad[0]}, but every "
                    "stage needs groups=1 here: use schedule='every' (ToMe's default) or stages "
                    "(after_block, 1, r), or a mean-pooled model for the paper schedule"
                )
        return stages

    def validate(self, stages: Sequence[Stage]) -> None:
        _plan(self.layout, stages, self.method.max_r)

    def ratio(self, stages: Sequence[Stage]) -> float:
        return estimate_macs(self.adapter, self.method, stages)[0] / self.base

    def r_upper(self, stages: Sequence[Stage]) -> int:
        return self.layout.prunable_tokens // stages[0].groups


def build_sequence_pruner(
    adapter: SequenceAdapter,
    method: Method,
    schedule: Any,
    r: int | Sequence[int] | None,
    flops_target: float | None,
    **options: Any,
) -> SequencePruner:
    """Resolve schedule, r and flops_target for a ViT-family model and build its (uninstalled) pruner.

    Raises SettingError / SettingTypeError (ValueError / TypeError) for every bad combination
    before anything is installed. ``options`` are the family's (``adapter.with_options``, e.g.
    V-JEPA 2's ``num_frames``); a family without options rejects any.
    """
    adapter = adapter.with_options(**options)
    check_method_fits(adapter, method)
    stages = resolve_stages(SequencePlanner(adapter, method), schedule, r, flops_target)
    return SequencePruner(adapter, method, stages)
