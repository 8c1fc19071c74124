"""The interface every token-reduction method implements.

A method sees tokens, keys and a :class:`~stprune.core.schedule.Stage`; it never knows which
model it runs in. The engine (``stprune.pruning.sequence``) calls :meth:`Method.reduce` at every pruning
point and keeps the bookkeeping (traces, token positions).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from typing import ClassVar

import torch

from stprune.core.schedule import Stage
from stprune.core.tokens import gather_tokens

__all__ = [
    "BlockAttention",
    "ForwardContext",
    "StageShape",
    "Method",
    "IndexPruningMethod",
    "InputSelection",
    "InputSelectionMethod",
    "VideoTokenMethod",
]


@dataclass(frozen=True)
class BlockAttention:
    """What a block's self-attention computed its logits from (for methods with ``uses_attention``).

    Attributes:
        queries: (B, H, P + L, d) the block's queries per head, the P protected tokens first.
        keys: (B, H, P + L, d) its keys per head, in the same order.
        scale: the logit scale, ``d ** -0.5``: the attention probabilities are
            ``softmax(q * scale @ k^T)`` (without any bias the pruner adds, e.g. proportional attention).
        protected: P.
    """

    queries: torch.Tensor
    keys: torch.Tensor
    scale: float
    protected: int


@dataclass(frozen=True)
class StageShape:
    """The geometry one stage works on, per sample (what :meth:`Method.stage_macs` needs).

    Attributes:
        n: tokens per group entering the stage (protected excluded).
        groups: G.
        r: tokens removed per group.
        key_dim: d, the head dim.
        heads: H, attention heads.
        width: C, the token width.
        protected: P, protected tokens next to the G * n (the attention reads them too).
    """

    n: int
    groups: int
    r: int
    key_dim: int
    heads: int
    width: int
    protected: int


@dataclass
class ForwardContext:
    """What the pruning points of one forward share: the typed contract between methods and pruners.

    Attributes:
        sample_key: (B,) int64 key of every clip, from its content (set by the pruner for methods
            with ``uses_sample_key``: a clip's random draw then does not depend on its batch).
        size: (B, L, 1) how many input tokens each current token stands for (kept by merging
            methods, ``tracks_size``; the pruner turns it into proportional attention).
        anchor: (B, L') int64, set by a merging method's :meth:`Method.reduce`: for each output
            token, the index into that stage's input tokens of the token it sits at (models that
            rotate tokens by their grid position, V-JEPA 2's RoPE, rotate a merged token there;
            such models refuse a merging method that leaves it ``None``).
        attention: set by the pruner just before :meth:`Method.reduce` of a method with
            ``uses_attention`` (and cleared after it): the queries and keys of the block that
            stage reduces in (:class:`BlockAttention`).
    """

    sample_key: torch.Tensor | None = None
    size: torch.Tensor | None = None
    anchor: torch.Tensor | None = None
    attention: BlockAttention | None = None

    def copy(self) -> ForwardContext:
        """A shallow copy (tensors shared): the state before a stage, for a checkpointed replay."""
        return replace(self)


class Method(ABC):
    """A training-free token-reduction method applied at the stages of a schedule."""

    name: ClassVar[str]
    #: keeps ``ctx.size`` (B, L, 1): how many input tokens each token stands for (merging)
    tracks_size: ClassVar[bool] = False
    #: the schedule used when ``patch(..., schedule=None)``: a name, or stages ``(after_block, groups, None)``
    default_schedule: ClassVar[str | tuple[tuple[int, int, None], ...]] = "paper"
    #: wants ``ctx.sample_key`` (B,) int64: a key per clip computed from the clip's own values
    #: (``stprune.core.hashrand.content_keys``), so per-clip draws do not depend on the batch
    uses_sample_key: ClassVar[bool] = False
    #: selects input tokens once, before block 0, from the input pixels (see
    #: :class:`InputSelectionMethod`) instead of reducing tokens between blocks
    input_level: ClassVar[bool] = False
    #: a merging method (``tracks_size``) that sets ``ctx.anchor`` in :meth:`reduce`: where each
    #: merged token sits, needed by models that rotate tokens by their grid position (V-JEPA 2)
    sets_anchor: ClassVar[bool] = False
    #: keyword arguments of ``stprune.patch`` that configure the method (passed to its constructor)
    option_names: ClassVar[tuple[str, ...]] = ()
    #: reads the keys it is given (video LLMs compute keys only for methods that read them)
    uses_keys: ClassVar[bool] = True
    #: selects among one video's tokens of a video LLM only (see :class:`VideoTokenMethod`)
    video_only: ClassVar[bool] = False
    #: reads the attention of the block it reduces in (``ctx.attention``: that block's queries and
    #: keys per head), e.g. vid-TLDR's saliency; models whose adapter cannot give them refuse it
    uses_attention: ClassVar[bool] = False
    #: reduces inside the stage's block, between its attention (with its residual) and its MLP,
    #: which then runs on the reduced tokens (vid-TLDR, as published); ``x`` is then the
    #: post-attention residual stream. Models whose blocks hooks cannot split there refuse it
    reduces_after_attention: ClassVar[bool] = False

    def max_r(self, n: int) -> int:
        """Largest r allowed for a group of ``n`` tokens (default: ceil(n / 2))."""
        return (n + 1) // 2

    def scoring_macs(self, n: int, groups: int, r: int, key_dim: int) -> int:
        """Matrix-product MACs the method itself spends at one stage, per sample."""
        return 0

    def stage_macs(self, shape: StageShape) -> int:
        """:meth:`scoring_macs` given the stage's whole geometry (a method whose cost depends on
        more than the key dim, e.g. on the heads or the token width, overrides this one)."""
        return self.scoring_macs(shape.n, shape.groups, shape.r, shape.key_dim)

    def start_forward(self, ctx: ForwardContext) -> None:  # noqa: B027 - optional hook
        """Called once per model forward before the first stage; ``ctx`` is per-forward scratch.

        The engine may have put ``"sample_key"`` in it (see :attr:`uses_sample_key`). Under
        gradient checkpointing a stage may be replayed in backward with a copy of the ``ctx`` it
        saw in the forward, so :meth:`reduce` must be a function of (inputs, stage, ctx).
        """

    @abstractmethod
    def reduce(
        self, x: torch.Tensor, keys: torch.Tensor, stage: Stage, ctx: ForwardContext
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Reduce the prunable tokens of one stage.

        Args:
            x: (B, L, C) block output, protected tokens excluded.
            keys: (B, L, d) head-averaged keys of the same block.
            stage: the stage (groups, r, reverse); ``r > 0``.
            ctx: per-forward scratch shared by the stages of one forward.

        Returns:
            (B, L', C) reduced tokens and, for pruning methods, (B, L') int64 indices into L
            of the tokens kept (``None`` for methods that merge tokens). A merging method also
            sets ``ctx.anchor`` (B, L'): the index into L of the token each output token sits at.
        """


class IndexPruningMethod(Method):
    """A method that keeps a subset of tokens (no merging): implement :meth:`keep_indices`."""

    @abstractmethod
    def keep_indices(
        self, x: torch.Tensor, keys: torch.Tensor, stage: Stage, ctx: ForwardContext
    ) -> torch.Tensor:
        """(B, L') int64 indices into L of the kept tokens, in output order."""

    def reduce(
        self, x: torch.Tensor, keys: torch.Tensor, stage: Stage, ctx: ForwardContext
    ) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self.keep_indices(x, keys, stage, ctx)
        return gather_tokens(x, idx), idx


@dataclass(frozen=True)
class InputSelection:
    """The input tokens an :class:`InputSelectionMethod` keeps, per clip.

    Attributes:
        indices: (B, L) int64 indices into the T0 * N token grid (slot-major, ``t * N + n``), in
            ascending order; ``-1`` pads a clip that keeps fewer than L tokens.
        valid: (B, L) bool, ``indices >= 0``; ``None`` when every clip keeps all L (no padding).
        counts: (B,) int64 tokens kept per clip.
    """

    indices: torch.Tensor
    valid: torch.Tensor | None
    counts: torch.Tensor


class InputSelectionMethod(Method):
    """A method that drops input tokens before the first block, from the input pixels (e.g. RLT).

    It sees the clip the model receives (after its normalisation) as (B, T, C, H, W) and the
    geometry of the tubelet embedding (frames per slot, pixels per token) that the adapter
    describes; it never knows which model it runs in. The pruner gathers the kept tokens after
    the embedding (their position embeddings included) and, for rotary-position models, passes
    their grid positions to every block.
    """

    input_level: ClassVar[bool] = True
    default_schedule: ClassVar[str] = "input"

    #: whether :meth:`select` can decide per clip how many tokens to keep (``keep=None``)
    adaptive: ClassVar[bool] = False

    def check_budget(self) -> None:  # noqa: B027 - optional hook
        """Raise ``SettingError`` if the method was configured in a way that a fixed budget
        (``r`` / ``flops_target``) contradicts (e.g. RLT given a threshold as well)."""

    @abstractmethod
    def select(
        self, pixels: torch.Tensor, tubelet: int, patch: tuple[int, int], keep: int | None
    ) -> InputSelection:
        """The tokens to keep.

        Args:
            pixels: (B, T, C, H, W) the model's input clip.
            tubelet: frames per temporal slot.
            patch: (ph, pw) pixels per token.
            keep: tokens of the T0 x N grid every clip keeps (a fixed budget), or ``None``: the
                method decides per clip (only asked of :attr:`adaptive` methods).
        """

    def reduce(
        self, x: torch.Tensor, keys: torch.Tensor, stage: Stage, ctx: ForwardContext
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise TypeError(f"{type(self).__name__} selects input tokens before block 0; it has no reduce()")


class VideoTokenMethod(Method):
    """A method that selects among the merged tokens of one video of a video LLM, from the tokens
    and their temporal grid alone (e.g. DyCoke's temporal merging stage, EVS).

    It never knows which model it runs in: the pruner (``stprune.pruning.video_llm``) gives it one
    video's tokens as (T', N, C), T' temporal slots of N tokens (raster order), and a budget.
    """

    video_only: ClassVar[bool] = True
    uses_keys: ClassVar[bool] = False
    default_schedule: ClassVar[str] = "video"

    def has_own_budget(self) -> bool:
        """Whether the method was configured with its own published knob (then ``keep_ratio`` / ``r``
        are refused and :meth:`keep_video` gets ``keep=None``)."""
        return False

    @abstractmethod
    def kept_count(self, slots: int, per_slot: int, keep: int | None) -> int:
        """How many tokens :meth:`keep_video` keeps of a video of ``slots`` x ``per_slot`` tokens for
        the budget ``keep`` (or its own knob when ``None``), known without the data (for costs)."""

    @abstractmethod
    def keep_video(self, tokens: torch.Tensor, keep: int | None) -> torch.Tensor:
        """The tokens to keep.

        Args:
            tokens: (T', N, C) one video's tokens.
            keep: how many of the T' * N tokens to keep (the budget), or ``None`` when the method
                uses its own knob (:meth:`has_own_budget`). A method that cannot keep fewer than
                some floor (e.g. a whole first frame) keeps the floor; the trace records the count.

        Returns:
            (L,) int64 indices into T' * N (slot-major ``t * N + n``), in the method's own order.
        """

    def reduce(
        self, x: torch.Tensor, keys: torch.Tensor, stage: Stage, ctx: ForwardContext
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise TypeError(f"{type(self).__name__} selects among a video LLM's video tokens; it has no reduce()")
