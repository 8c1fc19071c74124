"""Adapter and pruner for our Video Swin (:mod:`stprune.architectures.video_swin.model`).

Window attention needs the whole token grid (windows, shifted windows, patch merging), so
pruned tokens cannot simply be removed as in a ViT. The design (``docs/video_swin.md``):

* A pruning point is "after block b" (global block index over all stages). There the method
  runs once per 3D window of the stage's *unshifted* partition, on that window's active tokens
  with the stage's ``groups`` contiguous temporal groups per window (by default one group per
  temporal slice of the window), using the block output as X and the keys that block computed
  (head-averaged), captured from its qkv projection without recomputation.
* Pruned tokens stay in the grid with the features they had at the point, but the rest of the
  stage skips them: no query, no key/value, no MLP. The active tokens are kept packed, (B, A, C)
  in unshifted window order, and every later block of the stage runs
  the block on them only (:func:`~stprune.pruning.window_attention.block_forward_tokens`). At
  the end of the stage they are scattered back into the grid; patch merging sees the whole grid and every
  token of the next stage is active again (it prunes at its own points).
* Every unshifted window keeps the same number of active tokens (``groups * (n - r)``), so
  plain blocks need no padding. Shifted windows hold uneven counts: ``shifted_windows="pad"``
  (default) pads each to the largest count (one host synchronisation per pruning point, shared
  by all the stage's shifted blocks after it); ``"static"`` keeps all N slots of every shifted
  window and masks the empty ones (static shapes, no synchronisation, more attention FLOPs).

Planned FLOPs (``macs``, ``flops_target``) count shifted windows at their full size N: exact for
``"static"``, an upper bound for ``"pad"``, whose exact count for one forward
:meth:`VideoSwinPruner.traced_macs` gives from the trace.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from stprune.adapters.video_swin import (
    BlockCost,
    VideoSwinAdapter,
    block_shift,
    dense_block_cost,
    video_swin_macs,
)
from stprune.architectures.video_swin.model import (
    VideoSwin,
    VideoSwinBlock,
    VideoSwinConfig,
    effective_window,
    window_layout,
)
from stprune.core.hashrand import content_keys
from stprune.core.schedule import (
    Stage,
    TokenPlan,
    check_group_r,
    normalize_schedule,
    plural,
    with_schedule_r_bound,
)
from stprune.core.windows import grid_positions_by_window, locate_in_windows, pack_windows
from stprune.errors import SettingError, SettingTypeError, UnsupportedModelError
from stprune.methods.base import ForwardContext, IndexPruningMethod, Method
from stprune.pruning.resolve import resolve_stages
from stprune.pruning.trace import GridStageTrace, GridTrace
from stprune.pruning.window_attention import (
    TokenWindows,
    block_forward_tokens,
    shift_region_labels,
    window_bias_index,
)

__all__ = [
    "SHIFTED_WINDOW_MODES",
    "GridStageTrace",
    "GridTrace",
    "SwinPoint",
    "SwinPlan",
    "VideoSwinPruner",
    "WindowGridPlanner",
    "build_window_grid_pruner",
    "default_swin_schedule",
    "plan_video_swin",
    "token_windows",
]

Triple = tuple[int, int, int]

#: how shifted windows with uneven active counts are laid out
SHIFTED_WINDOW_MODES = ("pad", "static")

#: ``"pad"`` runs every shifted window at the largest active count in the batch, which depends on
#: the data. A shifted window holds the unshifted windows' kept count on average; the largest
#: was 1.04-1.08 x that in every measurement (docs/video_swin.md), so the plan, ``patch_info``
#: and ``flops_target`` count padded windows at 1.1 x the mean (at most the full window): the
#: ratio a forward really runs at is then just below the planned one.
PAD_MARGIN = 1.1


# --------------------------------------------------------------------------------------------
# planning: pure Python over the config and a token grid
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SwinPoint:
    """One pruning point resolved against a token grid.

    Attributes:
        index: position in the schedule.
        stage: the schedule's stage (``after_block`` global; ``groups`` per window).
        swin_stage: the Swin stage (0-based) holding the block.
        local_block: the block's index inside its Swin stage.
        grid: the Swin stage's token grid (T, H, W).
        window: the effective (unshifted) window (Wt, Wh, Ww).
        num_windows: nW, windows per clip.
        tokens_in: active tokens per window entering the point.
        group_size: n, active tokens per group entering the point.
        tokens_out: active tokens per window leaving, ``groups * (n - r)``.
    """

    index: int
    stage: Stage
    swin_stage: int
    local_block: int
    grid: Triple
    window: Triple
    num_windows: int
    tokens_in: int
    group_size: int
    tokens_out: int


@dataclass(frozen=True)
class SwinPlan:
    """A schedule resolved against one clip geometry.

    ``blocks`` counts shifted windows after a pruning point at their full size (``"static"``) or
    at their expected padded size (``"pad"``, see :data:`PAD_MARGIN`).
    """

    grids: tuple[Triple, ...]
    points: tuple[SwinPoint, ...]
    blocks: tuple[BlockCost, ...]

    def stage_points(self, swin_stage: int) -> list[SwinPoint]:
        """The points with r > 0 inside one Swin stage, in order."""
        return [p for p in self.points if p.swin_stage == swin_stage and p.stage.r]


def _grids_from_first(config: VideoSwinConfig, grid0: Sequence[int]) -> tuple[Triple, ...]:
    grid = (int(grid0[0]), int(grid0[1]), int(grid0[2]))
    grids = [grid]
    for _ in range(1, config.num_stages):
        grid = (grid[0], -(-grid[1] // 2), -(-grid[2] // 2))
        grids.append(grid)
    return tuple(grids)


def _locate_block(config: VideoSwinConfig, block: int) -> tuple[int, int]:
    start = 0
    for s, depth in enumerate(config.depths):
        if block < start + depth:
            return s, block - start
        start += depth
    raise SettingError(f"after_block={block} outside [0, {start - 1}] (depth {start})")


def _divides_message(groups: int, of: int, what: str) -> str:
    divisors = [d for d in range(1, of + 1) if of % d == 0]
    return f"groups={groups} must divide {what} ({of}); allowed: {divisors}"


def plan_video_swin(
    config: VideoSwinConfig,
    stages: Sequence[Stage],
    grid0: Sequence[int],
    max_r: Callable[[int], int] | None = None,
    shifted_windows: str = "static",
) -> SwinPlan:
    """Validate a schedule against the token grid of a clip and count tokens per block.

    Args:
        config: the model's config.
        stages: normalised stages with r set; ``groups`` is per window: it must divide the
            stage's temporal window at the first point of a Swin stage and the previous point's
            groups at later points of the same Swin stage.
        grid0: the token grid (T, H, W) after the patch embedding.
        max_r: the method's largest r for a group of n tokens (default ceil(n / 2)).
        shifted_windows: the layout the costs are planned for: ``"static"`` counts every shifted
            window after a point at its full size (exact for that layout), ``"pad"`` at the padded
            size it is expected to run at (see :data:`PAD_MARGIN`).

    Raises:
        SettingError (a ValueError) naming the point, the value and what is allowed; for an r too
        large with the same r at every point, the largest r the whole schedule accepts.
    """
    if shifted_windows not in SHIFTED_WINDOW_MODES:
        raise SettingError(f"shifted_windows must be one of {SHIFTED_WINDOW_MODES}; got {shifted_windows!r}")
    return with_schedule_r_bound(
        lambda st: _plan_video_swin(config, st, grid0, max_r, shifted_windows), stages
    )


def _plan_video_swin(
    config: VideoSwinConfig,
    stages: Sequence[Stage],
    grid0: Sequence[int],
    max_r: Callable[[int], int] | None,
    shifted_windows: str,
) -> SwinPlan:
    max_r = max_r or (lambda n: (n + 1) // 2)
    grids = _grids_from_first(config, grid0)
    points: list[SwinPoint] = []
    state: dict[int, tuple[int, int]] = {}  # swin stage -> (tokens per window, groups) so far
    for i, st in enumerate(stages):
        if st.r is None:
            raise SettingError(f"stage {i} has no r; give r= or flops_target=")
        s, j = _locate_block(config, st.after_block)
        where = f"stage {i} (after block {st.after_block}, block {j} of Swin stage {s + 1})"
        if j == config.depths[s] - 1:
            raise SettingError(
                f"{where}: it is the last block of its Swin stage, whose output patch merging turns into "
                "a new grid of all-active tokens, so pruning there has no effect; allowed after_block: "
                + ", ".join(str(b) for b in _prunable_blocks(config))
            )
        grid = grids[s]
        window, _ = effective_window(grid, config.window_size, config.shift_size)
        bad = [a for a in range(3) if grid[a] % window[a]]
        if bad:
            raise SettingError(
                f"{where}: the token grid {grid} of Swin stage {s + 1} is not a whole number of "
                f"{window} windows along {', '.join('THW'[a] for a in bad)}; pruning inside windows needs "
                f"whole windows. Grid = (ceil(frames / {config.patch_size[0]}), ceil(height / "
                f"{config.patch_size[1] * 2**s}), ceil(width / {config.patch_size[2] * 2**s})) here: use a "
                f"clip whose grid is a multiple of the window {config.window_size} (or not larger than it) "
                f"along every axis, e.g. {config.window_size[0] * config.patch_size[0]} frames of "
                f"{_whole_window_size(config, 1)}x{_whole_window_size(config, 2)}, or move the point "
                "to another stage"
            )
        size = window[0] * window[1] * window[2]
        num_windows = (grid[0] // window[0]) * (grid[1] // window[1]) * (grid[2] // window[2])
        tokens, prev_groups = state.get(s, (size, window[0]))
        if prev_groups % st.groups:
            what = (
                f"the temporal window size Wt of Swin stage {s + 1}"
                if s not in state
                else "the previous point's groups in this Swin stage"
            )
            raise SettingError(f"{where}: " + _divides_message(st.groups, prev_groups, what))
        n = check_group_r(
            st.r,
            tokens,
            st.groups,
            max_r,
            where,
            f"the {plural(tokens, 'active token')} of each {window} window in {plural(st.groups, 'group')}",
        )
        out = st.groups * (n - st.r)
        points.append(SwinPoint(i, st, s, j, grid, window, num_windows, tokens, n, out))
        state[s] = (out, st.groups)
    return SwinPlan(grids, tuple(points), tuple(_planned_costs(config, grids, points, shifted_windows)))


def _whole_window_size(config: VideoSwinConfig, axis: int) -> int:
    """A frame height (axis 1) or width (axis 2) whose grid is whole windows at every stage."""
    return config.window_size[axis] * config.patch_size[axis] * 2 ** (config.num_stages - 1)


def _prunable_blocks(config: VideoSwinConfig) -> list[int]:
    out, start = [], 0
    for depth in config.depths:
        out += list(range(start, start + depth - 1))
        start += depth
    return out


def _planned_costs(
    config: VideoSwinConfig, grids: Sequence[Triple], points: Sequence[SwinPoint], shifted_windows: str
) -> list[BlockCost]:
    costs = []
    for s, depth in enumerate(config.depths):
        grid = grids[s]
        live = [p for p in points if p.swin_stage == s and p.stage.r]
        for j in range(depth):
            layout = window_layout(grid, config.window_size, block_shift(config, j))
            if not live or j < live[0].local_block:
                costs.append(dense_block_cost(config, grid, j))
                continue
            before = [p for p in live if p.local_block < j]
            per_window = before[-1].tokens_out if before else live[0].tokens_in
            active = layout.num_windows * per_window
            if not layout.is_shifted:
                slots = per_window
            elif shifted_windows == "static":
                slots = layout.window_tokens
            else:  # "pad": a shifted window holds per_window active tokens on average; padded to the most
                slots = min(layout.window_tokens, math.ceil(per_window * PAD_MARGIN))
            costs.append(BlockCost(active, active, layout.num_windows, slots))
    return costs


def _scoring_macs(config: VideoSwinConfig, method: Method, points: Sequence[SwinPoint]) -> int:
    total = 0
    for p in points:
        if p.stage.r:
            key_dim = config.stage_dim(p.swin_stage) // config.num_heads[p.swin_stage]
            total += p.num_windows * method.scoring_macs(p.group_size, p.stage.groups, p.stage.r, key_dim)
    return total


def _next_groups(groups: int) -> int:
    """The largest divisor of ``groups`` that is at most half of it (1 for 1)."""
    return max((d for d in range(1, groups // 2 + 1) if groups % d == 0), default=1)


def default_swin_schedule(
    config: VideoSwinConfig, r: int | Sequence[int] | None, grid0: Sequence[int] | None = None
) -> list[Stage]:
    """The paper's three-point schedule inside every Swin stage.

    A Swin stage of depth d prunes after its blocks 0, d // 3 and 2d // 3 (those that are not its
    last block, duplicates once), with one group per temporal slice of the window at the first
    point, then half and a quarter as many groups, the middle point visited in reverse (as the
    paper's ViT schedule). Swin-T (2, 2, 6, 2): after blocks 0, 2, 4, 6, 8, 10.

    Args:
        config: the model's config.
        r: one int for every point, or one value per point, or None (chosen later).
        grid0: the token grid after the patch embedding (default: the config's clip size); the
            temporal window, hence the first groups, shrinks with short clips.
    """
    grids = _grids_from_first(config, grid0 if grid0 is not None else config.stage_grids()[0])
    stages: list[tuple[int, int, bool]] = []
    start = 0
    for s, depth in enumerate(config.depths):
        window, _ = effective_window(grids[s], config.window_size, config.shift_size)
        locals_ = sorted({j for j in (0, depth // 3, 2 * depth // 3) if j < depth - 1})
        groups = window[0]
        for k, j in enumerate(locals_):
            stages.append((start + j, groups, k == 1))
            groups = _next_groups(groups)
        start += depth
    count = len(stages)
    if r is None or isinstance(r, (str, bytes)) or not isinstance(r, Sequence):
        rs = [r] * count  # normalize_schedule checks the type
    else:
        rs = list(r)
        if len(rs) != count:
            raise SettingError(
                f"per-stage r needs one value per pruning point ({count}); "
                f"got {plural(len(rs), 'value')}: {rs}"
            )
    return [Stage(b, g, rr, rev) for (b, g, rev), rr in zip(stages, rs, strict=True)]


def token_windows(
    block: VideoSwinBlock, grid: Sequence[int], positions: Tensor, per_window: int, compact: bool = True
) -> TokenWindows:
    """Attention windows of a packed token subset for one block (plain or shifted partition).

    Args:
        block: the block (its window, shift and relative position index).
        grid: the stage's token grid (T, H, W), a whole number of the block's windows.
        positions: (1 | B, A) flat grid positions of the packed tokens, in unshifted window order
            with the same number ``per_window`` of tokens in every window, raster order inside.
        per_window: tokens per unshifted window.
        compact: for shifted windows, pad to the largest count (True) or keep all N slots (False).
    """
    layout = block.layout(grid)
    rpi = block.attn.relative_position_index
    rows = block.attn.relative_position_bias_table.shape[0]
    full = layout.window_tokens
    num_windows = layout.num_windows
    every = per_window == full
    if not layout.is_shifted:
        if every:  # one index for all windows of all clips
            index = rpi[:full, :full].to(torch.int32).view(1, 1, full, full)
            return TokenWindows(num_windows, full, None, None, index)
        _, slot, _ = locate_in_windows(positions, layout.grid, layout.window, (0, 0, 0))
        index = window_bias_index(slot.view(slot.shape[0], num_windows, per_window), rpi, rows)
        return TokenWindows(num_windows, per_window, None, None, index)
    window_id, slot, rolled = locate_in_windows(positions, layout.grid, layout.window, layout.shift)
    expected = min(full, math.ceil(per_window * PAD_MARGIN))  # what the plan counts (meta device)
    packing = pack_windows(
        window_id, slot, num_windows, full, compact=compact and not every, meta_size=expected
    )
    region = shift_region_labels(rolled, layout.grid, layout.window, layout.shift)
    region = region.gather(1, packing.gather).view_as(packing.slot)
    index = window_bias_index(packing.slot, rpi, rows, region, None if every else packing.valid)
    return TokenWindows(num_windows, packing.size, packing.gather, packing.scatter, index)


# --------------------------------------------------------------------------------------------
# traces
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# the pruner
# --------------------------------------------------------------------------------------------


class VideoSwinPruner:
    """Runs the blocks of every Swin stage that has pruning points on its active tokens only.

    ``install`` replaces the ``forward`` of those stages (an instance attribute, removed by
    ``remove``, so the class's dense forward is untouched) and hooks the patch embedding to start
    a trace and check the clip geometry before any block runs.

    Args:
        adapter: the model's adapter.
        method: an index-pruning method.
        stages: normalised stages with r set.
        shifted_windows: ``"pad"`` or ``"static"`` (see the module docstring).
    """

    def __init__(
        self, adapter: VideoSwinAdapter, method: Method, stages: Sequence[Stage], shifted_windows: str = "pad"
    ) -> None:
        if shifted_windows not in SHIFTED_WINDOW_MODES:
            raise SettingError(
                f"shifted_windows must be one of {SHIFTED_WINDOW_MODES}; got {shifted_windows!r}"
            )
        self.adapter = adapter
        self.model: VideoSwin = adapter.model
        self.config: VideoSwinConfig = self.model.config
        self.method = method
        self.stages = list(stages)
        self.shifted_windows = shifted_windows
        self._plans: dict[Triple, SwinPlan] = {}
        grid0 = self.config.stage_grids()[0]
        nominal = self.plan_for(grid0)
        self.swin_plan = nominal
        self.plan = TokenPlan(
            tokens_per_block=[b.active for b in nominal.blocks],
            stage_group_sizes=[p.group_size for p in nominal.points],
            final_tokens=_volume(nominal.grids[-1]),
        )
        self.macs = video_swin_macs(
            self.config, nominal.grids, nominal.blocks, _scoring_macs(self.config, method, nominal.points)
        )
        self.macs_unpruned = adapter.macs_unpruned()
        self.trace: GridTrace | None = None
        self._current: SwinPlan | None = None
        self._ctx = ForwardContext()
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._replaced: list[nn.Module] = []

    def plan_for(self, grid0: Sequence[int]) -> SwinPlan:
        """The schedule resolved for a clip whose embedded grid is ``grid0`` (cached); raises ValueError."""
        key = (int(grid0[0]), int(grid0[1]), int(grid0[2]))
        if key not in self._plans:
            self._plans[key] = plan_video_swin(
                self.config, self.stages, key, self.method.max_r, self.shifted_windows
            )
        return self._plans[key]

    def traced_macs(self, trace: GridTrace | None = None) -> int:
        """Exact MACs of one clip of the traced forward (what FlopCounterMode counts for it)."""
        trace = trace or self.trace
        if trace is None or self._current is None:
            raise ValueError("the patched model has not run a forward pass yet")
        plan = self._current
        return video_swin_macs(
            self.config, plan.grids, trace.blocks, _scoring_macs(self.config, self.method, plan.points)
        )

    def install(self) -> None:
        self._handles.append(self.model.patch_embed.register_forward_hook(self._start))
        nominal = self.swin_plan
        for s, stage in enumerate(self.model.stages):
            if any(p.swin_stage == s and p.stage.r for p in nominal.points):
                stage.forward = partial(self._run_stage, s)
                self._replaced.append(stage)
            else:  # runs dense: only its blocks' costs go into the trace
                self._handles.append(stage.register_forward_pre_hook(partial(self._dense_stage, s)))

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        for stage in self._replaced:
            del stage.forward
        self._handles.clear()
        self._replaced.clear()
        self._ctx = ForwardContext()

    # forward -----------------------------------------------------------------------------------

    def _start(self, module: nn.Module, args: tuple, output: Tensor) -> None:
        self._current = self.plan_for(output.shape[1:4])  # raises before any block runs
        self.trace = GridTrace(batch_size=output.shape[0])
        self._ctx = ForwardContext()
        if getattr(self.method, "uses_sample_key", False):
            self._ctx.sample_key = content_keys(args[0])  # per clip, whatever its batch
        self.method.start_forward(self._ctx)

    def _dense_stage(self, s: int, module: nn.Module, args: tuple) -> None:
        if self._current is not None:
            start = self._global(s, 0)
            for cost in self._current.blocks[start : start + self.config.depths[s]]:
                self._record_block(cost)

    def _run_stage(self, s: int, x: Tensor) -> Tensor:
        stage = self.model.stages[s]
        plan = self._current
        if plan is None or plan.grids[s] != tuple(x.shape[1:4]):
            raise RuntimeError(
                f"Swin stage {s + 1} received a {tuple(x.shape[1:4])} grid without the patch embedding "
                "having run on this clip; call the model (or forward_features) on whole clips"
            )
        points = plan.stage_points(s)
        blocks: list[VideoSwinBlock] = list(stage.blocks)
        first = points[0].local_block
        for j in range(first):
            x = blocks[j](x)
            self._record_block(plan.blocks[self._global(s, j)])
        x = self._run_token_blocks(s, x, blocks[first:], first, points)
        return stage.downsample(x) if stage.downsample is not None else x

    def _global(self, s: int, j: int) -> int:
        return sum(self.config.depths[:s]) + j

    def _record_block(self, cost: BlockCost) -> None:
        if self.trace is not None:
            self.trace.blocks.append(cost)

    def _run_token_blocks(
        self, s: int, x: Tensor, blocks: list[VideoSwinBlock], first: int, points: list[SwinPoint]
    ) -> Tensor:
        """Blocks ``first..`` of Swin stage ``s`` on the active tokens; returns the stage's grid."""
        b, t, h, w, c = x.shape
        grid = (t, h, w)
        window = points[0].window
        num_windows = points[0].num_windows
        full = window[0] * window[1] * window[2]
        flat = x.reshape(b, t * h * w, c)
        # every token, in unshifted window order: (1, A) positions shared by the batch
        positions = grid_positions_by_window(grid, window, x.device).view(1, -1)
        tokens = flat.index_select(1, positions[0])
        per_window = full
        at = {p.local_block: p for p in points}
        cache: dict[bool, TokenWindows] = {}
        for j, block in enumerate(blocks, start=first):
            layout = block.layout(grid)
            if layout.is_shifted not in cache:
                cache[layout.is_shifted] = token_windows(
                    block, grid, positions, per_window, self.shifted_windows == "pad"
                )
            tw = cache[layout.is_shifted]
            point = at.get(j)
            if point is None:
                tokens = block_forward_tokens(block, tokens, tw)
            else:
                tokens, keys = block_forward_tokens(block, tokens, tw, return_keys=True)
            self._record_block(BlockCost(tokens.shape[1], tokens.shape[1], tw.num_windows, tw.size))
            if point is None:
                continue
            # the point: keep the current features of every active token in the grid, then prune
            flat = flat.scatter(1, positions.expand(b, -1).unsqueeze(-1).expand(-1, -1, c), tokens)
            m = b * num_windows
            keep = self.method.keep_indices(
                tokens.reshape(m, per_window, c), keys.reshape(m, per_window, -1), point.stage, self._ctx
            )
            keep = keep.sort(dim=1).values  # raster order inside each window
            kept = (
                keep.view(b, num_windows, -1)
                + per_window * torch.arange(num_windows, device=x.device).view(1, -1, 1)
            ).view(b, -1)
            tokens = tokens.gather(1, kept.unsqueeze(-1).expand(-1, -1, c))
            positions = positions.expand(b, -1).gather(1, kept)
            self._record_point(point, per_window * num_windows, kept, positions, grid)
            per_window = point.tokens_out
            cache.clear()
        flat = flat.scatter(1, positions.expand(b, -1).unsqueeze(-1).expand(-1, -1, c), tokens)
        return flat.view(b, t, h, w, c)

    def _record_point(
        self, point: SwinPoint, tokens_in: int, kept: Tensor, positions: Tensor, grid: Triple
    ) -> None:
        if self.trace is None:
            return
        b = positions.shape[0]
        mask = torch.zeros(b, _volume(grid), dtype=torch.bool, device=positions.device)
        mask = mask.scatter(1, positions, True).view(b, *grid)
        self.trace.stages.append(
            GridStageTrace(
                point.index,
                point.stage,
                tokens_in,
                kept.shape[1],
                kept,
                positions,
                swin_stage=point.swin_stage,
                grid=grid,
                mask=mask,
            )
        )


def _volume(grid: Sequence[int]) -> int:
    return int(grid[0]) * int(grid[1]) * int(grid[2])


# --------------------------------------------------------------------------------------------
# resolving a setting
# --------------------------------------------------------------------------------------------


class WindowGridPlanner:
    """What :func:`stprune.pruning.resolve.resolve_stages` needs to know of a Video Swin model."""

    def __init__(self, adapter: VideoSwinAdapter, method: Method, shifted_windows: str) -> None:
        self.config = adapter.config
        self.method = method
        self.shifted_windows = shifted_windows
        self.grid0 = self.config.stage_grids()[0]
        self.base = adapter.macs_unpruned()

    def read_schedule(self, schedule: Any, r: int | Sequence[int] | None) -> list[Stage]:
        depth = sum(self.config.depths)
        if schedule is None or schedule == "paper":
            stages = default_swin_schedule(self.config, r)
            normalize_schedule(stages, depth, 1, None)  # type and range checks
            return stages
        if isinstance(schedule, str):
            raise SettingError(
                f"unknown schedule {schedule!r} for Video Swin; use 'paper' (the paper's three points inside "
                "every Swin stage) or a list of stages (after_block, groups per window, r[, reverse])"
            )
        return normalize_schedule(schedule, depth, 1, r)

    def _plan(self, stages: Sequence[Stage]) -> SwinPlan:
        return plan_video_swin(self.config, stages, self.grid0, self.method.max_r, self.shifted_windows)

    def validate(self, stages: Sequence[Stage]) -> None:
        self._plan(stages)

    def ratio(self, stages: Sequence[Stage]) -> float:
        plan = self._plan(stages)
        scoring = _scoring_macs(self.config, self.method, plan.points)
        return video_swin_macs(self.config, plan.grids, plan.blocks, scoring) / self.base

    def r_upper(self, stages: Sequence[Stage]) -> int:
        return _volume(self.config.window_size)


def build_window_grid_pruner(
    adapter: VideoSwinAdapter,
    method: Method,
    schedule: Any,
    r: int | Sequence[int] | None,
    flops_target: float | None,
    shifted_windows: str = "pad",
    **options: Any,
) -> VideoSwinPruner:
    """Resolve the schedule (r or flops_target) for Video Swin and build its (uninstalled) pruner.

    ``flops_target`` plans with the cost of the chosen ``shifted_windows`` layout. Raises before
    anything is installed.
    """
    if options:
        raise SettingTypeError(
            f"Video Swin takes one pruning option, shifted_windows {SHIFTED_WINDOW_MODES}; "
            f"got {sorted(options)}"
        )
    if not isinstance(method, IndexPruningMethod):
        raise UnsupportedModelError(
            f"method {method.name!r} is not supported on Video Swin: it "
            + (
                "merges tokens, and a merged token has no place in the window grid (windows, shifted "
                "windows and patch merging need every token at its own position)"
                if method.tracks_size
                else "does not select tokens by index"
            )
            + "; use an index-pruning method such as 'sta' or 'random'"
        )
    if shifted_windows not in SHIFTED_WINDOW_MODES:
        raise SettingError(f"shifted_windows must be one of {SHIFTED_WINDOW_MODES}; got {shifted_windows!r}")
    stages = resolve_stages(WindowGridPlanner(adapter, method, shifted_windows), schedule, r, flops_target)
    return VideoSwinPruner(adapter, method, stages, shifted_windows)
