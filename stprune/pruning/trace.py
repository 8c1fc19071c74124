"""The trace types: what a patched model's last forward did, for every family.

:class:`Trace` is what ``stprune.last_trace`` returns: a :class:`SequenceTrace` for the ViT
family (tokens removed between blocks), a :class:`GridTrace` for window-attention models (pruned
tokens stay in the grid, skipped). Each pruning point that ran is a :class:`StageTrace`
(:class:`GridStageTrace` adds the grid and the active mask).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import torch

from stprune.core.schedule import Stage, TokenPlan
from stprune.methods.base import Method

if TYPE_CHECKING:
    from stprune.adapters.video_swin import BlockCost

__all__ = [
    "GridStageTrace",
    "GridTrace",
    "HookedPruner",
    "Pruner",
    "SequenceTrace",
    "StageTrace",
    "Trace",
    "VideoLLMTrace",
    "VideoTrace",
]


@dataclass
class StageTrace:
    """What one pruning point did in the last forward.

    Attributes:
        index: position of the stage in the schedule.
        stage: the stage.
        tokens_in: prunable tokens entering (protected excluded).
        tokens_out: prunable tokens leaving.
        kept: (B, tokens_out) indices into the stage's input tokens (protected excluded), in
            output order (``None`` for merging methods).
        positions: (B, tokens_out) index of each kept token in the original T0 x N grid
            (slot * N + spatial index); ``None`` once a merging method ran. Protected tokens are
            not in it (a protected grid token, e.g. VideoMAE's token 0 without mean pooling,
            keeps its own position, first).
        counts: for a stage whose clips keep different numbers of tokens (RLT's threshold mode,
            before block 0: ``stage.after_block == -1``), (B,) int64 tokens each clip kept;
            ``kept`` and ``positions`` are then padded with -1 after a clip's last token and
            ``tokens_out`` is the longest clip's count. ``None`` elsewhere (every clip keeps
            ``tokens_out``).
        sizes: for a merging method (``tracks_size``, ToMe), (B, tokens_out) how many input tokens
            each token leaving the stage stands for; ``None`` for index-pruning methods (every
            kept token stands for itself).
    """

    index: int
    stage: Stage
    tokens_in: int
    tokens_out: int
    kept: torch.Tensor | None
    positions: torch.Tensor | None
    counts: torch.Tensor | None = None
    sizes: torch.Tensor | None = None


class Trace:
    """Token bookkeeping of the last forward of a patched model (every family's trace is one).

    ``stages`` are the pruning points that ran, in order; ``tokens_per_block`` the tokens each
    block processed (per clip); ``batch_size`` the clips of that forward.
    """

    stages: list[StageTrace]
    batch_size: int

    @property
    def tokens_per_block(self) -> list[int]:
        raise NotImplementedError

    @property
    def sizes(self) -> torch.Tensor | None:
        """How many input tokens each output token stands for (see :attr:`SequenceTrace.sizes`);
        ``None`` where tokens are not removed from the sequence (window models keep their grid)."""
        return None


@dataclass
class SequenceTrace(Trace):
    """The trace of a token-sequence encoder (ViT family)."""

    depth: int
    protected: int
    input_tokens: int
    stages: list[StageTrace] = field(default_factory=list)
    batch_size: int = 0
    device: torch.device | None = None

    @property
    def sizes(self) -> torch.Tensor:
        """(B, P + L) float: how many input tokens each token of the encoder's output stands for, in
        the order the encoder returns them (the P protected tokens first, then the L tokens left
        after the last pruning point): 1 for a kept token, the merged count for ToMe, 0 for the
        padding of RLT's threshold mode. A caller who pools the output of a pruned encoder
        (``VideoMAEModel``'s ``last_hidden_state``) weights by it:
        ``(hidden * s[..., None]).sum(1) / s.sum(1, keepdim=True)`` is the unpruned model's mean.
        """
        b, p = self.batch_size, self.protected
        last = self.stages[-1] if self.stages else None
        if last is None:
            tokens = torch.ones(b, self.input_tokens, device=self.device)
        elif last.sizes is not None:
            tokens = last.sizes
        elif last.counts is not None and last.kept is not None:
            tokens = (last.kept >= 0).float()
        else:
            tokens = torch.ones(b, last.tokens_out, device=self.device)
        return torch.cat([tokens.new_ones(b, p), tokens], dim=1) if p else tokens

    @property
    def tokens_per_block(self) -> list[int]:
        """Tokens (protected included) each block processed in the last forward (a padded batch:
        the longest clip's)."""
        out, length, it = [], self.input_tokens, iter(self.stages)
        nxt = next(it, None)
        while nxt is not None and nxt.stage.after_block < 0:  # an input stage, before block 0
            length = nxt.tokens_out
            nxt = next(it, None)
        for block in range(self.depth):
            out.append(length + self.protected)
            if nxt is not None and nxt.stage.after_block == block:
                length = nxt.tokens_out
                nxt = next(it, None)
        return out


@dataclass(kw_only=True)
class GridStageTrace(StageTrace):
    """A pruning point of a grid model in the last forward.

    Besides :class:`~stprune.pruning.sequence.StageTrace` (``tokens_in`` / ``tokens_out`` are active
    tokens per clip; ``kept`` (B, tokens_out) indexes the point's packed input tokens;
    ``positions`` (B, tokens_out) are flat ``(t * H + h) * W + w`` positions in the Swin stage's
    grid):

    Attributes:
        swin_stage: the Swin stage (0-based).
        grid: its token grid (T, H, W).
        mask: (B, T, H, W) bool, the tokens still active after the point.
    """

    swin_stage: int
    grid: tuple[int, int, int]
    mask: torch.Tensor


@dataclass
class GridTrace(Trace):
    """Token bookkeeping of the last forward of a patched grid model.

    Attributes:
        blocks: per block, what it computed for one clip (active tokens, window slots).
        stages: the pruning points with r > 0, in order.
    """

    blocks: list[BlockCost] = field(default_factory=list)
    stages: list[GridStageTrace] = field(default_factory=list)  # type: ignore[assignment]
    batch_size: int = 0

    @property
    def tokens_per_block(self) -> list[int]:
        """Active tokens (query, MLP) of each block, per clip."""
        return [b.active for b in self.blocks]

    @property
    def computed_per_block(self) -> list[int]:
        """Attention slots (windows x slots, padding included) of each block, per clip."""
        return [b.windows * b.slots for b in self.blocks]


@dataclass
class VideoTrace:
    """What pruning did to one video of a video LLM's last prefill.

    Attributes:
        sample: the batch row the video is in.
        index: the video's index in that call (batch order, then prompt order).
        grid: (T', H', W') its merged-token grid.
        kept: (L,) int64 flat indices ``(t * H' + y) * W' + x`` into the grid of the tokens the LLM
            received, in the order it received them (ascending: kept tokens keep their order).
        columns: (L,) int64 the kept tokens' columns in the row of the *unpruned* sequence.
        protected: (p,) int64 columns of the video's tokens outside the grid, never pruned
            (LLaVA-OneVision's newline after the frames); empty if none.
    """

    sample: int
    index: int
    grid: tuple[int, int, int]
    kept: torch.Tensor
    columns: torch.Tensor
    protected: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.int64))

    @property
    def tokens_in(self) -> int:
        """Grid tokens of the video, T' * H' * W'."""
        t, h, w = self.grid
        return t * h * w

    @property
    def tokens_out(self) -> int:
        """Tokens of the video the LLM received."""
        return int(self.kept.numel())

    @property
    def keep_ratio(self) -> float:
        return self.tokens_out / self.tokens_in


@dataclass
class VideoLLMTrace(Trace):
    """The last prefill of a patched video LLM (a decoding step with the KV cache leaves it as it is).

    Attributes:
        videos: one entry per video, batch order then prompt order (empty: no video in the call,
            the model ran unpruned).
        depth: decoder layers of the language model.
        length_in: sequence length the language model would have received (padding included).
        length_out: sequence length it received (the longest row; shorter rows are left-padded).
        row_lengths: (B,) int64 tokens of every row before pruning (its padding excluded).
        row_kept: (B,) int64 tokens of every row the LLM received (padding excluded).
        batch_size: rows of the call.
    """

    videos: list[VideoTrace] = field(default_factory=list)
    depth: int = 0
    length_in: int = 0
    length_out: int = 0
    row_lengths: torch.Tensor | None = None
    row_kept: torch.Tensor | None = None
    batch_size: int = 0
    stages: list[StageTrace] = field(default_factory=list)

    @property
    def tokens_per_block(self) -> list[int]:
        """Sequence length every decoder layer processed in the last prefill."""
        return [self.length_out] * self.depth


class Pruner(Protocol):
    """What ``stprune.patch`` installs; every adapter family provides one."""

    method: Method
    stages: list[Stage]
    plan: TokenPlan
    macs: int
    macs_unpruned: int
    trace: Trace | None

    def traced_macs(self) -> int:
        """MACs of one clip of the last forward, as computed (what FlopCounterMode counts / batch)."""
        ...

    def install(self) -> None: ...

    def remove(self) -> None: ...


class HookedPruner:
    """Install / remove for pruners made of hooks: what :meth:`_install` registers goes into
    ``_handles`` (removable hooks) and ``_undo`` (functions that restore a change); a failed
    install removes what it had installed; :meth:`remove` undoes everything and :meth:`_forget`s
    the per-forward state."""

    def __init__(self) -> None:
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._undo: list[Callable[[], None]] = []

    def _install(self) -> None:
        raise NotImplementedError

    def _forget(self) -> None:
        """Drop per-forward state (default: none)."""

    def install(self) -> None:
        """Install the hooks; on failure none stay."""
        try:
            self._install()
        except BaseException:
            self.remove()
            raise

    def remove(self) -> None:
        """Remove every hook, undo every change, forget the per-forward state."""
        for h in self._handles:
            h.remove()
        for undo in self._undo:
            undo()
        self._handles.clear()
        self._undo.clear()
        self._forget()
