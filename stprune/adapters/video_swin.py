"""Adapter: our Video Swin (:mod:`stprune.architectures.video_swin`), a window-attention family.

It describes the family: the token grids of its stages, its input, and its exact cost model
(:func:`video_swin_macs`, what ``FlopCounterMode`` counts under the math SDPA kernel, for any
per-block token counts). How tokens are pruned inside windows is the window-grid pruner's
(:mod:`stprune.pruning.window_grid`); this file imports nothing of pruning.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from stprune.adapters.base import Adapter, InputGrid, register_adapter
from stprune.architectures.video_swin.model import VideoSwinConfig, window_layout
from stprune.core.flops import window_block_macs

__all__ = ["BlockCost", "VideoSwinAdapter", "block_shift", "dense_block_costs", "video_swin_macs"]

Triple = tuple[int, int, int]


@dataclass(frozen=True)
class BlockCost:
    """What one block computes for one clip.

    Attributes:
        active: tokens that get a query and an MLP (the rest of the grid is skipped).
        linear: tokens through the qkv and output projections (padded windows for dense blocks).
        windows: attention windows.
        slots: K, slots per window (attention is ``windows x K x K``).
    """

    active: int
    linear: int
    windows: int
    slots: int


def video_swin_macs(
    config: VideoSwinConfig, grids: Sequence[Triple], blocks: Sequence[BlockCost], scoring: int = 0
) -> int:
    """Matrix-product MACs of one clip: patch embedding, blocks, patch merging, head, scoring.

    What ``torch.utils.flop_counter.FlopCounterMode`` counts (halved) under the math SDPA kernel.
    """
    total = math.prod(grids[0]) * config.embed_dim * config.in_channels * math.prod(config.patch_size)
    it = iter(blocks)
    for s, depth in enumerate(config.depths):
        dim = config.stage_dim(s)
        hidden = int(dim * config.mlp_ratio)
        for _ in range(depth):
            b = next(it)
            total += window_block_macs(b.linear, b.windows, b.slots, b.active, dim, hidden)
        if s < config.num_stages - 1:
            nt, nh, nw = grids[s + 1]
            total += nt * nh * nw * 4 * dim * 2 * dim
    return total + config.num_features * config.num_classes + scoring


def block_shift(config: VideoSwinConfig, local_block: int) -> Triple:
    """The window shift of block ``local_block`` of a Swin stage (every second block shifts)."""
    return (0, 0, 0) if local_block % 2 == 0 else config.shift_size


def dense_block_cost(config: VideoSwinConfig, grid: Sequence[int], local_block: int) -> BlockCost:
    """What an unpruned block computes on ``grid``: padded windows through the projections."""
    layout = window_layout(grid, config.window_size, block_shift(config, local_block))
    return BlockCost(
        math.prod(grid), layout.num_windows * layout.window_tokens, layout.num_windows, layout.window_tokens
    )


def dense_block_costs(config: VideoSwinConfig, grids: Sequence[Sequence[int]]) -> list[BlockCost]:
    """Every block of the unpruned model on the stage grids ``grids``."""
    return [dense_block_cost(config, grids[s], j) for s, d in enumerate(config.depths) for j in range(d)]


@register_adapter
class VideoSwinAdapter(Adapter):
    """Our :class:`~stprune.architectures.video_swin.model.VideoSwin` (torchvision / official weights)."""

    model_classes = ("VideoSwin",)

    @classmethod
    def example_model(cls, seed: int = 0) -> nn.Module:
        """A 4-stage Video Swin, 8 frames of 32 x 32 (grids 4x16x16 ... 4x2x2), window 4 x 4 x 4.

        Its last stage has one block, so no pruning point (its 4x2x2 grid is smaller than a window)."""
        from stprune.architectures.video_swin.model import VideoSwin

        torch.manual_seed(seed)
        cfg = VideoSwinConfig(
            embed_dim=8, depths=[2, 2, 4, 1], num_heads=[1, 2, 2, 4], window_size=[4, 4, 4],
            patch_size=[2, 2, 2], num_classes=5, num_frames=8, image_size=32,
        )  # fmt: skip
        return VideoSwin(cfg).eval()

    @property
    def config(self) -> VideoSwinConfig:
        return self.model.config

    def macs_unpruned(self) -> int:
        """MACs of one unpruned clip of the config's size."""
        grids = self.config.stage_grids()
        return video_swin_macs(self.config, grids, dense_block_costs(self.config, grids))

    def example_inputs(
        self, batch_size: int = 1, device: Any = "cpu", dtype: torch.dtype = torch.float32
    ) -> dict:
        t, h, w = self.config.clip_size
        return {"x": torch.randn(batch_size, self.config.in_channels, t, h, w, device=device, dtype=dtype)}

    def unpruned_tokens_per_block(self) -> list[int]:
        return [
            math.prod(g)
            for g, d in zip(self.config.stage_grids(), self.config.depths, strict=True)
            for _ in range(d)
        ]

    def input_grid(self) -> InputGrid:
        """``x`` (B, C, T, H, W); the first stage's grid: ``patch_size`` (frames, pixels, pixels) per token.

        Later Swin stages merge 2 x 2 tokens (their grids are in the trace's ``grid``)."""
        cfg = self.config
        t, h, w = cfg.clip_size
        pt, ph, pw = cfg.patch_size
        g = cfg.stage_grids()[0]
        return InputGrid(
            input_name="x",
            input_layout="BCTHW",
            num_frames=t,
            image_size=(h, w),
            num_slots=g[0],
            grid=(g[1], g[2]),
            tubelet=pt,
            patch=(ph, pw),
            protected=0,
        )

    def describe(self) -> str:
        cfg = self.config
        t, h, w = cfg.clip_size
        grids = " -> ".join("x".join(map(str, g)) for g in cfg.stage_grids())
        return (
            f"VideoSwin: depths {cfg.depths}, {t} frames x {h}x{w}, token grids {grids}, "
            f"window {'x'.join(map(str, cfg.window_size))}"
        )
