"""Attention inside windows over a *subset* of a Video Swin stage's tokens (token pruning).

The window-grid pruner (:mod:`stprune.pruning.window_grid`) keeps a stage's active tokens
packed, (B, A, C); :class:`TokenWindows` says how they fall into the attention windows of one
block's partition (plain or shifted, padded or not), and :func:`block_forward_tokens` runs a
block on them only: qkv, the output projection and the MLP on the A tokens, attention per window
among them with the relative position bias and the shift mask of exactly those pairs. The model
(:mod:`stprune.architectures.video_swin.model`) knows nothing of this.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from stprune.architectures.video_swin.model import (
    VideoSwinBlock,
    biased_window_sdpa,
    drop_path,
    shift_regions,
)

__all__ = ["TokenWindows", "block_forward_tokens", "shift_region_labels", "take_tokens", "window_bias_index"]


@dataclass(frozen=True)
class TokenWindows:
    """How a packed subset of a stage's tokens, (B, A, C), is grouped into attention windows.

    Each of the ``num_windows`` windows of a clip has ``size`` slots (K). Slots may be empty
    (padding): they are never attended to and their results are dropped.

    Attributes:
        num_windows: nW, windows per clip.
        size: K, slots per window.
        gather: ``None`` when the packed order already is window-major with every slot filled
            (A = nW * K); else (1 | B, nW * K) index into A of the token in every slot
            (any valid index for an empty slot).
        scatter: (1 | B, A) index into the nW * K slots of every token; ``None`` iff ``gather`` is.
        bias_index: (1 | B, 1 | nW, K, K) int32/int64 row of :meth:`WindowAttention3d.extended_bias_table`
            added to the logit of every (query slot, key slot) pair; not (B, 1, ...).
    """

    num_windows: int
    size: int
    gather: Tensor | None
    scatter: Tensor | None
    bias_index: Tensor


def shift_region_labels(
    rolled: Tensor, grid: Sequence[int], window: Sequence[int], shift: Sequence[int]
) -> Tensor:
    """Shift-mask region label (0..26) of tokens at rolled coordinates ``rolled`` (..., 3).

    Two tokens of one shifted window get the ``SHIFT_MASK_VALUE`` penalty iff their labels differ
    (the labels of :func:`shift_attention_mask`; grid without padding).
    """
    labels = [
        shift_regions(int(grid[a]), int(window[a]), int(shift[a]), rolled.device)[rolled[..., a]]
        for a in range(3)
    ]
    return labels[0] * 9 + labels[1] * 3 + labels[2]


def window_bias_index(
    slot: Tensor,
    relative_index: Tensor,
    table_rows: int,
    region: Tensor | None = None,
    valid: Tensor | None = None,
) -> Tensor:
    """Rows of the extended bias table (:meth:`WindowAttention3d.extended_bias_table`) for slot pairs.

    Args:
        slot: (..., K) position (0..N-1, raster order) inside the window of the token in every slot.
        relative_index: (N_full, N_full) the block's ``relative_position_index``; indexing it with
            positions of a shrunk window reproduces the references' top-left-corner rule.
        table_rows: R, rows of the block's relative position bias table.
        region: (..., K) shift-region labels (:func:`shift_region_labels`) or None (no shift).
        valid: (..., K) False for empty slots, or None (all filled).

    Returns:
        (..., K, K) int32 (half the memory traffic of int64; these tables are the largest
        tensors of a pruned block): ``R``-offset rows for pairs of different regions and row
        ``2R`` (a huge negative bias) for empty key slots.
    """
    index = relative_index.to(torch.int32)[slot.unsqueeze(-1), slot.unsqueeze(-2)]
    if region is not None:
        index.add_(region.unsqueeze(-1) != region.unsqueeze(-2), alpha=table_rows)
    if valid is not None:
        index.masked_fill_(~valid.unsqueeze(-2), 2 * table_rows)
    return index


def block_forward_tokens(
    block: VideoSwinBlock, x: Tensor, windows: TokenWindows, return_keys: bool = False
) -> Tensor | tuple[Tensor, Tensor]:
    """``block`` on a packed subset of a stage's tokens; the other tokens do not take part.

    qkv, the output projection and the MLP run on the A given tokens only; attention runs per
    window over the tokens ``windows`` puts in it (empty slots are never attended to).
    With every token of the grid given in window order this computes :meth:`VideoSwinBlock.forward`.

    Args:
        x: (B, A, C) tokens.
        windows: their attention windows for this block's partition (plain or shifted).
        return_keys: also return every token's keys averaged over heads.

    Returns:
        (B, A, C), and with ``return_keys`` the keys (B, A, head_dim).
    """
    b, a, c = x.shape
    heads = block.attn.num_heads
    head_dim = c // heads
    qkv = block.attn.qkv(block.norm1(x))  # (B, A, 3C)
    keys = qkv[..., c : 2 * c].view(b, a, heads, head_dim).mean(2) if return_keys else None
    if windows.gather is not None:
        qkv = take_tokens(qkv, windows.gather)
    m, k = b * windows.num_windows, windows.size
    q, key, v = qkv.view(m, k, 3, heads, head_dim).permute(2, 0, 3, 1, 4).unbind(0)
    bias = block.attn.token_bias(windows.bias_index, q.dtype)
    dropout_p = block.attn.attention_dropout if block.training else 0.0
    out = biased_window_sdpa(q, key, v, bias, dropout_p).transpose(1, 2).reshape(b, -1, c)
    if windows.scatter is not None:
        out = take_tokens(out, windows.scatter)
    out = block.attn.proj_drop(block.attn.proj(out))
    x = block.mlp_residual(x + drop_path(out, block.drop_path_rate, block.training))
    return (x, keys) if return_keys else x


def take_tokens(x: Tensor, index: Tensor) -> Tensor:
    """x (B, L, D), index (1 | B, J) -> (B, J, D) with ``out[b, j] = x[b, index[b or 0, j]]``."""
    if index.shape[0] == 1:
        return x.index_select(1, index[0])
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
