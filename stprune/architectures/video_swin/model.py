"""Video Swin Transformer (Liu et al., "Video Swin Transformer", CVPR 2022), our own implementation.

It computes what torchvision's ``swin3d_t/s/b`` and the official Video Swin backbone
(SwinTransformer/Video-Swin-Transformer, mmaction ``SwinTransformer3D`` + ``I3DHead``) compute, so
their checkpoints load into it (see :mod:`stprune.architectures.video_swin.weights`):

* 3D patch embedding: zero-pad the clip to patch multiples, ``Conv3d`` with kernel = stride =
  patch size, channels-last, LayerNorm.
* Four stages of blocks. Every block is pre-norm: ``x + attn(norm1(x))`` then ``x + mlp(norm2(x))``.
  Attention runs inside 3D windows; odd blocks shift the windows by half a window (cyclic roll)
  and mask pairs of tokens that the roll brought together from opposite borders.
* Where the token grid is no larger than the window along an axis, the window shrinks to the grid
  and that axis is not shifted. Grids that are not window multiples are zero-padded at the end
  *after* ``norm1``; padded tokens take part in attention as keys/values (as in both references)
  and are cropped afterwards.
* Relative position bias: one learned table per block over all 3D offsets in a full window. For a
  shrunken window of ``n`` tokens both references use the top-left ``n x n`` corner of the full
  window's index matrix; so do we.
* Patch merging between stages: pad H and W to even, concatenate the four 2x2 neighbours in the
  order (h0,w0), (h1,w0), (h0,w1), (h1,w1), LayerNorm over 4C, linear 4C -> 2C without bias.
* Final LayerNorm, mean over all tokens, linear head.

Attention is :func:`torch.nn.functional.scaled_dot_product_attention` with the relative position
bias (plus the shift mask) passed as an additive float ``attn_mask``; no eager softmax.

The block forward is split into small steps (norm, :func:`window_partition` after padding and
shift, :func:`window_attention` over ``(windows, window_tokens, C)``, :func:`window_reverse`,
residual, MLP). For token pruning, :meth:`VideoSwinBlock.forward_tokens` computes a block on a
packed subset of the grid's tokens only (qkv, projection and MLP on those tokens, attention per
window among them, :class:`TokenWindows` saying which token sits in which window slot); the
dense path above does not use it.

Tensors are channels-last inside the network: a token grid is ``(B, T, H, W, C)``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "ARCH_CONFIGS",
    "PatchEmbed3d",
    "PatchMerging",
    "VideoSwin",
    "VideoSwinBlock",
    "VideoSwinConfig",
    "VideoSwinStage",
    "WindowAttention3d",
    "WindowLayout",
    "biased_window_sdpa",
    "drop_path",
    "shift_regions",
    "effective_window",
    "relative_position_index",
    "shift_attention_mask",
    "video_swin_b",
    "video_swin_s",
    "video_swin_t",
    "window_attention",
    "window_layout",
    "window_partition",
    "window_reverse",
]

# Value both references add to the logits of token pairs that a cyclic shift brought together.
# It is finite (not -inf), so such pairs keep a tiny weight; we keep it for exact equivalence.
SHIFT_MASK_VALUE = -100.0

Triple = tuple[int, int, int]


# --------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoSwinConfig:
    """Hyper-parameters of a Video Swin Transformer classifier.

    ``depths`` and ``num_heads`` give one entry per stage; stage ``i`` has ``embed_dim * 2**i``
    channels. ``window_size`` and ``patch_size`` are (T, H, W). Dropout and drop-path rates only
    act in training mode; ``drop_path_rate`` grows linearly from 0 at the first block to this value
    at the last one (as in both references).

    ``num_frames`` and ``image_size`` (H, W) are the clip size the model is meant for (the one
    its checkpoint was trained at). The forward accepts any clip size; these only set what
    pruning is planned for, what FLOPs are reported at and what example inputs look like. The
    default, 16 x 224, is the presets' (the README's benchmarks); the released Kinetics-400
    checkpoints are tested at 32 frames, which ``stprune.architectures.loading.resolve_model``
    (every ``--model FILE``) sets for a checkpoint that does not record its clip.
    """

    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (3, 6, 12, 24)
    num_classes: int = 400
    patch_size: Triple = (2, 4, 4)
    window_size: Triple = (8, 7, 7)
    in_channels: int = 3
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    patch_norm: bool = True
    dropout: float = 0.0
    attention_dropout: float = 0.0
    drop_path_rate: float = 0.0
    head_dropout: float = 0.0
    layer_norm_eps: float = 1e-5
    num_frames: int = 16
    image_size: int | tuple[int, int] = 224

    def __post_init__(self) -> None:
        object.__setattr__(self, "depths", tuple(int(d) for d in self.depths))
        object.__setattr__(self, "num_heads", tuple(int(h) for h in self.num_heads))
        object.__setattr__(self, "patch_size", _triple(self.patch_size, "patch_size"))
        object.__setattr__(self, "window_size", _triple(self.window_size, "window_size"))
        size = self.image_size
        size = (size, size) if isinstance(size, int) else tuple(int(v) for v in size)
        if len(size) != 2 or any(v < 1 for v in size) or self.num_frames < 1:
            raise ValueError(
                f"num_frames must be >= 1 and image_size one or two positive ints (H, W); got "
                f"num_frames={self.num_frames}, image_size={self.image_size}"
            )
        object.__setattr__(self, "image_size", size)
        if self.embed_dim < 1:
            raise ValueError(f"embed_dim must be >= 1, got {self.embed_dim}")
        if len(self.depths) == 0 or len(self.depths) != len(self.num_heads):
            raise ValueError(
                f"depths and num_heads need one entry per stage (same non-zero length), got "
                f"depths={self.depths}, num_heads={self.num_heads}"
            )
        if any(d < 1 for d in self.depths):
            raise ValueError(f"every stage depth must be >= 1, got depths={self.depths}")
        for i, heads in enumerate(self.num_heads):
            dim = self.stage_dim(i)
            if heads < 1 or dim % heads != 0:
                raise ValueError(
                    f"stage {i} has {dim} channels, which num_heads[{i}]={heads} must divide "
                    f"(num_heads={self.num_heads}, embed_dim={self.embed_dim})"
                )
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {self.num_classes}")
        if self.in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {self.in_channels}")
        if self.mlp_ratio <= 0:
            raise ValueError(f"mlp_ratio must be > 0, got {self.mlp_ratio}")
        for name in ("dropout", "attention_dropout", "drop_path_rate", "head_dropout"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value}")

    @property
    def num_stages(self) -> int:
        return len(self.depths)

    def stage_dim(self, stage: int) -> int:
        """Channels of stage ``stage`` (``embed_dim * 2**stage``)."""
        return self.embed_dim * 2**stage

    @property
    def num_features(self) -> int:
        """Channels of the last stage, i.e. the head's input size."""
        return self.stage_dim(self.num_stages - 1)

    @property
    def clip_size(self) -> Triple:
        """(T, H, W) of the clip the model is meant for: ``num_frames`` and ``image_size``."""
        return (self.num_frames, self.image_size[0], self.image_size[1])  # type: ignore[index]

    def stage_grids(self, clip_size: Sequence[int] | None = None) -> list[Triple]:
        """Token grid (T, H, W) entering every stage for a clip of ``clip_size`` (default: ``clip_size``).

        The patch embedding pads the clip to patch multiples; patch merging pads H and W to even.
        """
        t, h, w = self.clip_size if clip_size is None else (int(v) for v in clip_size)
        pt, ph, pw = self.patch_size
        grid = (-(-t // pt), -(-h // ph), -(-w // pw))
        grids = [grid]
        for _ in range(1, self.num_stages):
            grid = (grid[0], -(-grid[1] // 2), -(-grid[2] // 2))
            grids.append(grid)
        return grids

    @property
    def shift_size(self) -> Triple:
        """Shift of the odd (shifted-window) blocks: half the window, rounded down."""
        return (self.window_size[0] // 2, self.window_size[1] // 2, self.window_size[2] // 2)


# The three published sizes; S and B both have 18 blocks in stage 3.
ARCH_CONFIGS: dict[str, dict] = {
    "t": {"embed_dim": 96, "depths": (2, 2, 6, 2), "num_heads": (3, 6, 12, 24)},
    "s": {"embed_dim": 96, "depths": (2, 2, 18, 2), "num_heads": (3, 6, 12, 24)},
    "b": {"embed_dim": 128, "depths": (2, 2, 18, 2), "num_heads": (4, 8, 16, 32)},
}


def _triple(value: int | Sequence[int], name: str) -> Triple:
    if isinstance(value, int):
        value = (value, value, value)
    value = tuple(int(v) for v in value)
    if len(value) != 3 or any(v < 1 for v in value):
        raise ValueError(f"{name} must be three positive ints (T, H, W), got {value}")
    return value  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------
# pure window functions
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WindowLayout:
    """How one block tiles a token grid into (possibly shifted) windows.

    ``grid``: token grid (T, H, W) before padding; ``window``: effective window (shrunk to the grid
    where the grid is smaller); ``shift``: effective cyclic shift (0 on shrunk axes and for
    non-shifted blocks); ``padded``: grid padded up to window multiples.
    """

    grid: Triple
    window: Triple
    shift: Triple
    padded: Triple

    @property
    def window_tokens(self) -> int:
        """Tokens per window, ``N = Wt * Wh * Ww``."""
        return self.window[0] * self.window[1] * self.window[2]

    @property
    def num_windows(self) -> int:
        """Windows per clip, ``nW``."""
        p, w = self.padded, self.window
        return (p[0] // w[0]) * (p[1] // w[1]) * (p[2] // w[2])

    @property
    def is_shifted(self) -> bool:
        return any(s > 0 for s in self.shift)

    @property
    def is_padded(self) -> bool:
        return self.padded != self.grid


def effective_window(
    grid: Sequence[int], window_size: Sequence[int], shift_size: Sequence[int]
) -> tuple[Triple, Triple]:
    """Shrink the window to the grid where the grid is not larger, and drop the shift there.

    Both references apply this rule per axis: if ``grid[i] <= window_size[i]`` the window becomes
    ``grid[i]`` and the shift along ``i`` becomes 0. Returns ``(window, shift)``.
    """
    window = list(window_size)
    shift = list(shift_size)
    for i in range(3):
        if grid[i] <= window[i]:
            window[i] = int(grid[i])
            shift[i] = 0
    return (window[0], window[1], window[2]), (shift[0], shift[1], shift[2])


def window_layout(grid: Sequence[int], window_size: Sequence[int], shift_size: Sequence[int]) -> WindowLayout:
    """The :class:`WindowLayout` of a block with nominal ``window_size``/``shift_size`` on ``grid``."""
    grid_t: Triple = (int(grid[0]), int(grid[1]), int(grid[2]))
    if any(g < 1 for g in grid_t):
        raise ValueError(f"token grid must be at least 1x1x1, got {grid_t}")
    window, shift = effective_window(grid_t, window_size, shift_size)
    padded = tuple(-(-g // w) * w for g, w in zip(grid_t, window, strict=True))
    return WindowLayout(grid=grid_t, window=window, shift=shift, padded=padded)  # type: ignore[arg-type]


def pad_to_layout(x: Tensor, layout: WindowLayout) -> Tensor:
    """Zero-pad a token grid at the end of T, H and W up to ``layout.padded``.

    x: (B, T, H, W, C) -> (B, Tp, Hp, Wp, C).
    """
    pads = [p - g for p, g in zip(layout.padded, layout.grid, strict=True)]
    if not any(pads):
        return x
    return F.pad(x, (0, 0, 0, pads[2], 0, pads[1], 0, pads[0]))


def window_partition(x: Tensor, window: Sequence[int]) -> Tensor:
    """Cut a (padded) token grid into non-overlapping windows.

    x: (B, Tp, Hp, Wp, C), every Tp/Hp/Wp a multiple of the window -> (B * nW, N, C), windows in
    (t, h, w) raster order per clip, tokens in (t, h, w) raster order inside a window.
    """
    b, tp, hp, wp, c = x.shape
    wt, wh, ww = window
    x = x.view(b, tp // wt, wt, hp // wh, wh, wp // ww, ww, c)
    x = x.permute(0, 1, 3, 5, 2, 4, 6, 7)
    return x.reshape(-1, wt * wh * ww, c)


def window_reverse(windows: Tensor, window: Sequence[int], padded: Sequence[int]) -> Tensor:
    """Inverse of :func:`window_partition`.

    windows: (B * nW, N, C) -> (B, Tp, Hp, Wp, C) with ``padded = (Tp, Hp, Wp)``.
    """
    wt, wh, ww = window
    tp, hp, wp = padded
    c = windows.shape[-1]
    x = windows.view(-1, tp // wt, hp // wh, wp // ww, wt, wh, ww, c)
    x = x.permute(0, 1, 4, 2, 5, 3, 6, 7)
    return x.reshape(-1, tp, hp, wp, c)


def relative_position_index(window: Sequence[int]) -> Tensor:
    """Index into the relative position bias table for every pair of tokens in a full window.

    Token ``i`` sits at (t, h, w) in raster order. For a pair (i, j) the offset
    ``(t_i - t_j, h_i - h_j, w_i - w_j)`` is shifted to be non-negative and flattened in (t, h, w)
    order over a ``(2Wt-1, 2Wh-1, 2Ww-1)`` box. Returns a new (N, N) int64 CPU tensor,
    N = Wt*Wh*Ww.
    """
    return _relative_position_index((int(window[0]), int(window[1]), int(window[2]))).clone()


@functools.lru_cache(maxsize=8)
def _relative_position_index(window: Triple) -> Tensor:
    wt, wh, ww = window
    cpu = torch.device("cpu")  # explicit: a torch.device("meta") context must not leak into the cache
    axes = [torch.arange(n, device=cpu) for n in window]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)  # (N, 3)
    offset = grid[:, None, :] - grid[None, :, :]  # (N, N, 3)
    offset = offset + torch.tensor([wt - 1, wh - 1, ww - 1], device=cpu)
    span_h, span_w = 2 * wh - 1, 2 * ww - 1
    return offset[..., 0] * (span_h * span_w) + offset[..., 1] * span_w + offset[..., 2]


def shift_regions(size: int, window: int, shift: int, device: torch.device) -> Tensor:
    """Region label (0, 1, 2) of every position along one axis of the rolled, padded grid.

    After rolling by ``-shift`` the last window along the axis holds positions that were
    neighbours before the roll (label 1) and positions that wrapped around from the start
    (label 2); all other windows hold label 0 only. Without shift, one region.
    """
    pos = torch.arange(size, device=device)
    if shift == 0:
        return torch.zeros_like(pos)
    return (pos >= size - window).long() + (pos >= size - shift).long()


def shift_attention_mask(
    padded: Sequence[int],
    window: Sequence[int],
    shift: Sequence[int],
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Additive mask for shifted-window attention.

    Two tokens of the same window get 0 if they come from the same region of the rolled grid
    (along all three axes) and ``-100`` otherwise. Returns (nW, N, N) in ``dtype``; windows in
    :func:`window_partition` order.
    """
    device = torch.device("cpu") if device is None else torch.device(device)
    rt = shift_regions(padded[0], window[0], shift[0], device)
    rh = shift_regions(padded[1], window[1], shift[1], device)
    rw = shift_regions(padded[2], window[2], shift[2], device)
    labels = (rt[:, None, None] * 9 + rh[None, :, None] * 3 + rw[None, None, :]).to(dtype)
    labels = window_partition(labels[None, ..., None], window).squeeze(-1)  # (nW, N)
    differs = labels[:, :, None] != labels[:, None, :]
    return torch.zeros(differs.shape, device=device, dtype=dtype).masked_fill(differs, SHIFT_MASK_VALUE)


@functools.lru_cache(maxsize=16)
def _cached_shift_mask(
    padded: tuple[int, ...],
    window: tuple[int, ...],
    shift: tuple[int, ...],
    device: torch.device,
    dtype: torch.dtype,
) -> Tensor:
    """:func:`shift_attention_mask`, memoised (it depends on geometry only; never modified in place)."""
    return shift_attention_mask(padded, window, shift, device=device, dtype=dtype)


def window_attention(
    windows: Tensor,
    qkv_weight: Tensor,
    qkv_bias: Tensor | None,
    proj_weight: Tensor,
    proj_bias: Tensor | None,
    num_heads: int,
    attn_bias: Tensor,
    dropout_p: float = 0.0,
) -> Tensor:
    """Multi-head self-attention inside each window, with an additive bias, via SDPA.

    windows: (M, N, C), M = B * nW windows in :func:`window_partition` order.
    attn_bias: (Mb, heads or 1, N, N) added to the scaled logits, with Mb one of
    1 (same bias for every window), nW (one per window position, shared by the B clips:
    M must be a multiple of Mb) or M (one per window).
    Returns (M, N, C): the output projection of the attended values.

    The scale is ``head_dim ** -0.5``. With Mb = nW < M the windows are folded into the head
    axis so that the bias broadcasts over the batch without being copied B times.
    """
    m, n, c = windows.shape
    if c % num_heads != 0:
        raise ValueError(f"channels C={c} must be a multiple of num_heads={num_heads}")
    if attn_bias.dim() != 4 or attn_bias.shape[-2:] != (n, n) or attn_bias.shape[1] not in (1, num_heads):
        raise ValueError(
            f"attn_bias must have shape (1 | nW | M, 1 | {num_heads}, {n}, {n}), got {tuple(attn_bias.shape)}"
        )
    mb = attn_bias.shape[0]
    if m % mb != 0:
        raise ValueError(f"attn_bias has {mb} windows, which must divide the {m} windows of the input")
    head_dim = c // num_heads
    qkv = F.linear(windows, qkv_weight, qkv_bias).view(m, n, 3, num_heads, head_dim)
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (M, heads, N, head_dim)
    out = biased_window_sdpa(q, k, v, attn_bias, dropout_p)
    out = out.transpose(1, 2).reshape(m, n, c)
    return F.linear(out, proj_weight, proj_bias)


def biased_window_sdpa(q: Tensor, k: Tensor, v: Tensor, attn_bias: Tensor, dropout_p: float = 0.0) -> Tensor:
    """SDPA of M windows with an additive bias shared by 1, nW or all M windows.

    q, k, v: (M, heads, N, head_dim); attn_bias: (Mb, heads or 1, N, N), Mb in {1, nW, M} with
    M a multiple of Mb. Returns (M, heads, N, head_dim). With 1 < Mb < M (one bias per window
    position, shared by the M / Mb clips) the windows are folded into the head axis so that the
    bias broadcasts over the clips without being copied.
    """
    m, heads, n, head_dim = q.shape
    mb = attn_bias.shape[0]
    if mb in (1, m):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias, dropout_p=dropout_p)
    fold = (m // mb, mb * heads, n, head_dim)
    bias = attn_bias.expand(mb, heads, n, n).reshape(1, mb * heads, n, n)
    out = F.scaled_dot_product_attention(
        q.reshape(fold), k.reshape(fold), v.reshape(fold), attn_mask=bias, dropout_p=dropout_p
    )
    return out.view(m, heads, n, head_dim)


def drop_path(x: Tensor, rate: float, training: bool) -> Tensor:
    """Stochastic depth: zero a whole residual branch per sample with probability ``rate``.

    x: (B, ...) -> same shape, survivors scaled by 1 / (1 - rate). Identity when not training.
    """
    if rate == 0.0 or not training:
        return x
    keep = 1.0 - rate
    noise = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
    return x * noise / keep


# --------------------------------------------------------------------------------------------
# modules
# --------------------------------------------------------------------------------------------


class PatchEmbed3d(nn.Module):
    """Clip to token grid: pad to patch multiples, Conv3d(kernel = stride = patch), LayerNorm.

    (B, C_in, T, H, W) -> (B, ceil(T/pt), ceil(H/ph), ceil(W/pw), embed_dim).
    """

    def __init__(self, patch_size: Triple, in_channels: int, embed_dim: int, norm: bool, eps: float) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv3d(in_channels, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim, eps=eps) if norm else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        pads = [(-s) % p for s, p in zip(x.shape[2:], self.patch_size, strict=True)]
        if any(pads):
            x = F.pad(x, (0, pads[2], 0, pads[1], 0, pads[0]))
        x = self.proj(x).permute(0, 2, 3, 4, 1)
        return self.norm(x)


class PatchMerging(nn.Module):
    """Halve H and W, double the channels.

    (B, T, H, W, C) -> (B, T, ceil(H/2), ceil(W/2), 2C). Odd H/W are zero-padded at the end; the
    2x2 neighbours are concatenated as (h0,w0), (h1,w0), (h0,w1), (h1,w1), then LayerNorm(4C) and
    a bias-free linear 4C -> 2C.
    """

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim, eps=eps)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    @staticmethod
    def merge(x: Tensor) -> Tensor:
        """(B, T, H, W, C) -> (B, T, ceil(H/2), ceil(W/2), 4C), neighbours in reference order."""
        h, w = x.shape[2], x.shape[3]
        if h % 2 or w % 2:
            x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        parts = [x[:, :, dh::2, dw::2, :] for dw in (0, 1) for dh in (0, 1)]
        return torch.cat(parts, dim=-1)

    def forward(self, x: Tensor) -> Tensor:
        return self.reduction(self.norm(self.merge(x)))


class Mlp(nn.Module):
    """Linear -> GELU -> dropout -> linear -> dropout, on the last axis."""

    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class WindowAttention3d(nn.Module):
    """Window self-attention parameters (qkv, proj, relative position bias table).

    ``relative_position_index`` is a non-persistent buffer: it is derived from the window size,
    so it is not part of the state dict.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: Triple,
        qkv_bias: bool,
        attention_dropout: float,
        dropout: float,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.window_size = window_size
        self.attention_dropout = attention_dropout
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(dropout)
        table_rows = (2 * window_size[0] - 1) * (2 * window_size[1] - 1) * (2 * window_size[2] - 1)
        self.relative_position_bias_table = nn.Parameter(torch.zeros(table_rows, num_heads))
        index = relative_position_index(window_size).to(self.relative_position_bias_table.device)
        self.register_buffer("relative_position_index", index, persistent=False)

    def reset_buffers(self) -> None:
        """Recompute the derived ``relative_position_index`` on the bias table's device.

        Needed after ``Module.to_empty`` or after assigning parameters to a model built on meta.
        """
        device = self.relative_position_bias_table.device
        self.relative_position_index = relative_position_index(self.window_size).to(device)

    def relative_position_bias(self, window_tokens: int) -> Tensor:
        """Bias for a window of ``window_tokens`` tokens: (1, heads, N, N).

        Uses the top-left N x N corner of the full window's index, as both references do.
        """
        index = self.relative_position_index[:window_tokens, :window_tokens].reshape(-1)
        bias = self.relative_position_bias_table[index].view(window_tokens, window_tokens, self.num_heads)
        return bias.permute(2, 0, 1).unsqueeze(0)

    def extended_bias_table(self, dtype: torch.dtype) -> Tensor:
        """(2R + 1, heads): the bias table; the table plus ``SHIFT_MASK_VALUE`` (pairs from different
        shift regions); one row of ``dtype``'s lowest value (empty key slots). R = table rows."""
        table = self.relative_position_bias_table.to(dtype)
        low = torch.full((1, self.num_heads), torch.finfo(dtype).min, dtype=dtype, device=table.device)
        return torch.cat([table, table + SHIFT_MASK_VALUE, low])

    def token_bias(self, bias_index: Tensor, dtype: torch.dtype) -> Tensor:
        """Additive attention bias from :func:`window_bias_index` rows.

        bias_index: (Bb, Wb, K, K) -> (Bb * Wb, heads, K, K) in ``dtype``, a heads-major view
        (SDPA's CPU kernel runs about twice as fast with it as with a window-major copy).
        """
        bb, wb, k, _ = bias_index.shape
        table = self.extended_bias_table(dtype).t().contiguous()  # (heads, 2R + 1)
        bias = table.index_select(1, bias_index.reshape(-1)).view(self.num_heads, bb * wb, k, k)
        return bias.transpose(0, 1)

    def forward(self, windows: Tensor, attn_bias: Tensor) -> Tensor:
        """windows: (M, N, C), attn_bias: see :func:`window_attention` -> (M, N, C)."""
        out = window_attention(
            windows,
            self.qkv.weight,
            self.qkv.bias,
            self.proj.weight,
            self.proj.bias,
            self.num_heads,
            attn_bias,
            dropout_p=self.attention_dropout if self.training else 0.0,
        )
        return self.proj_drop(out)


class VideoSwinBlock(nn.Module):
    """One (shifted-)window transformer block on a (B, T, H, W, C) token grid.

    ``forward`` = :meth:`attention_residual` then :meth:`mlp_residual`; the attention path is
    :meth:`to_windows` (pad, roll, partition) -> :meth:`attn` with :meth:`attention_bias` ->
    :meth:`from_windows` (reverse, roll back, crop).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: Triple,
        shift_size: Triple,
        mlp_ratio: float,
        qkv_bias: bool,
        dropout: float,
        attention_dropout: float,
        drop_path_rate: float,
        eps: float,
    ) -> None:
        super().__init__()
        self.window_size = window_size
        self.shift_size = shift_size
        self.drop_path_rate = drop_path_rate
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = WindowAttention3d(dim, num_heads, window_size, qkv_bias, attention_dropout, dropout)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), dropout)

    def layout(self, grid: Sequence[int]) -> WindowLayout:
        """This block's windows on a token grid (T, H, W)."""
        return window_layout(grid, self.window_size, self.shift_size)

    def attention_bias(self, layout: WindowLayout, dtype: torch.dtype, device: torch.device) -> Tensor:
        """Relative position bias plus, for shifted windows, the shift mask.

        Returns (1, heads, N, N) without shift, (nW, heads, N, N) with shift. At inference (no
        gradient needed for the bias table) the shifted bias of the last layout is cached: it
        costs about a third of a stage-1 shifted block to rebuild. The cache key holds the
        table's version counter, so loading or editing weights invalidates it.
        """
        if not layout.is_shifted:
            return self.attn.relative_position_bias(layout.window_tokens).to(dtype)
        table = self.attn.relative_position_bias_table
        if torch.compiler.is_compiling():
            # traced (torch.compile, torch.export): no Python-side cache, which would keep a traced
            # (fake) tensor past the trace, and no data pointer, which a traced tensor does not have
            mask = shift_attention_mask(layout.padded, layout.window, layout.shift, device, dtype)
            return self.attn.relative_position_bias(layout.window_tokens).to(dtype) + mask.unsqueeze(1)
        cacheable = not (torch.is_grad_enabled() and table.requires_grad)
        key = (layout, dtype, torch.device(device), table._version, table.data_ptr())
        cached = self.__dict__.get("_bias_cache")
        if cacheable and cached is not None and cached[0] == key:
            return cached[1]
        bias = self.attn.relative_position_bias(layout.window_tokens).to(dtype)
        mask = _cached_shift_mask(layout.padded, layout.window, layout.shift, torch.device(device), dtype)
        bias = bias + mask.unsqueeze(1)
        if cacheable:
            self.__dict__["_bias_cache"] = (key, bias)
        return bias

    @staticmethod
    def to_windows(x: Tensor, layout: WindowLayout) -> Tensor:
        """(B, T, H, W, C) -> (B * nW, N, C): pad to window multiples, roll by -shift, partition."""
        x = pad_to_layout(x, layout)
        if layout.is_shifted:
            x = torch.roll(x, shifts=tuple(-s for s in layout.shift), dims=(1, 2, 3))
        return window_partition(x, layout.window)

    @staticmethod
    def from_windows(windows: Tensor, layout: WindowLayout) -> Tensor:
        """(B * nW, N, C) -> (B, T, H, W, C): reverse windows, roll back by +shift, crop padding."""
        x = window_reverse(windows, layout.window, layout.padded)
        if layout.is_shifted:
            x = torch.roll(x, shifts=layout.shift, dims=(1, 2, 3))
        if layout.is_padded:
            t, h, w = layout.grid
            x = x[:, :t, :h, :w, :].contiguous()
        return x

    def attention_branch(self, x: Tensor, layout: WindowLayout) -> Tensor:
        """The attention branch (before the residual add): (B, T, H, W, C) -> same shape."""
        windows = self.to_windows(self.norm1(x), layout)
        bias = self.attention_bias(layout, windows.dtype, windows.device)
        return self.from_windows(self.attn(windows, bias), layout)

    def attention_residual(self, x: Tensor, layout: WindowLayout) -> Tensor:
        """``x + drop_path(attention_branch(x))``; (B, T, H, W, C) -> same shape."""
        return x + drop_path(self.attention_branch(x, layout), self.drop_path_rate, self.training)

    def mlp_residual(self, x: Tensor) -> Tensor:
        """``x + drop_path(mlp(norm2(x)))``; any (..., C) -> same shape (token-wise)."""
        return x + drop_path(self.mlp(self.norm2(x)), self.drop_path_rate, self.training)

    def forward(self, x: Tensor) -> Tensor:
        """(B, T, H, W, C) -> (B, T, H, W, C)."""
        x = self.attention_residual(x, self.layout(x.shape[1:4]))
        return self.mlp_residual(x)


class VideoSwinStage(nn.Module):
    """Blocks of one stage (even ones plain, odd ones shifted), then optional patch merging.

    (B, T, H, W, C) -> (B, T, H, W, C), or (B, T, ceil(H/2), ceil(W/2), 2C) with merging.
    """

    def __init__(self, blocks: list[VideoSwinBlock], downsample: PatchMerging | None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        if self.downsample is not None:
            x = self.downsample(x)
        return x


class VideoSwin(nn.Module):
    """Video Swin Transformer classifier.

    Input: clip (B, C_in, T, H, W) like torchvision's ``swin3d_*``; output: logits
    (B, num_classes). Any T, H, W >= 1 work (inputs are padded as in the references).
    """

    def __init__(self, config: VideoSwinConfig) -> None:
        super().__init__()
        self.config = config
        eps = config.layer_norm_eps
        self.patch_embed = PatchEmbed3d(
            config.patch_size, config.in_channels, config.embed_dim, config.patch_norm, eps
        )
        self.pos_drop = nn.Dropout(config.dropout)
        total_blocks = sum(config.depths)
        block_id = 0
        stages = []
        for i, (depth, heads) in enumerate(zip(config.depths, config.num_heads, strict=True)):
            dim = config.stage_dim(i)
            blocks = []
            for j in range(depth):
                rate = config.drop_path_rate * block_id / max(total_blocks - 1, 1)
                blocks.append(
                    VideoSwinBlock(
                        dim,
                        heads,
                        window_size=config.window_size,
                        shift_size=(0, 0, 0) if j % 2 == 0 else config.shift_size,
                        mlp_ratio=config.mlp_ratio,
                        qkv_bias=config.qkv_bias,
                        dropout=config.dropout,
                        attention_dropout=config.attention_dropout,
                        drop_path_rate=rate,
                        eps=eps,
                    )
                )
                block_id += 1
            merge = PatchMerging(dim, eps) if i < config.num_stages - 1 else None
            stages.append(VideoSwinStage(blocks, merge))
        self.stages = nn.ModuleList(stages)
        self.norm = nn.LayerNorm(config.num_features, eps=eps)
        self.head_drop = nn.Dropout(config.head_dropout)
        self.head = nn.Linear(config.num_features, config.num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Random init as in the references: truncated normal (std 0.02) linears and tables."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, WindowAttention3d):
                nn.init.trunc_normal_(module.relative_position_bias_table, std=0.02)

    def reset_buffers(self) -> None:
        """Recompute all derived (non-persistent) buffers, e.g. after ``Module.to_empty``."""
        for block in self.blocks:
            block.attn.reset_buffers()

    @property
    def blocks(self) -> list[VideoSwinBlock]:
        """All blocks in execution order."""
        return [block for stage in self.stages for block in stage.blocks]

    def check_input(self, x: Tensor) -> None:
        """Raise ValueError unless x is a (B, C_in, T, H, W) clip this model accepts."""
        if not isinstance(x, Tensor):
            raise TypeError(f"expected a torch.Tensor clip, got {type(x).__name__}")
        if x.dim() != 5:
            raise ValueError(f"expected a clip of shape (B, C, T, H, W), got shape {tuple(x.shape)}")
        if x.shape[1] != self.config.in_channels:
            raise ValueError(
                f"expected {self.config.in_channels} input channels at dim 1 of (B, C, T, H, W), "
                f"got shape {tuple(x.shape)}"
            )
        if min(x.shape[2:]) < 1 or x.shape[0] < 1:
            raise ValueError(f"clip has an empty dimension: shape {tuple(x.shape)}")

    def embed(self, x: Tensor) -> Tensor:
        """(B, C_in, T, H, W) -> token grid (B, T', H', W', embed_dim)."""
        self.check_input(x)
        return self.pos_drop(self.patch_embed(x))

    def forward_features(self, x: Tensor) -> Tensor:
        """(B, C_in, T, H, W) -> final normalised token grid (B, T', H'', W'', num_features)."""
        x = self.embed(x)
        for stage in self.stages:
            x = stage(x)
        return self.norm(x)

    def forward_head(self, features: Tensor) -> Tensor:
        """(B, ..., num_features) -> logits (B, num_classes): mean over all tokens, linear."""
        pooled = features.flatten(1, -2).mean(dim=1)
        return self.head(self.head_drop(pooled))

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, T, H, W) -> logits (B, num_classes)."""
        return self.forward_head(self.forward_features(x))


def _build(arch: str, num_classes: int, overrides: dict) -> VideoSwin:
    unknown = set(overrides) - {
        f
        for f in VideoSwinConfig.__dataclass_fields__
        if f not in ("embed_dim", "depths", "num_heads", "num_classes")
    }
    if unknown:
        raise TypeError(f"video_swin_{arch}() got unexpected keyword arguments: {sorted(unknown)}")
    return VideoSwin(VideoSwinConfig(**ARCH_CONFIGS[arch], num_classes=num_classes, **overrides))


def video_swin_t(num_classes: int = 400, **kwargs: object) -> VideoSwin:
    """Swin-T: embed 96, depths (2, 2, 6, 2), heads (3, 6, 12, 24), patch (2, 4, 4), window (8, 7, 7).

    Keyword options (all :class:`VideoSwinConfig` fields except the size ones): ``patch_size``,
    ``window_size``, ``dropout``, ``attention_dropout``, ``drop_path_rate``, ``head_dropout``,
    ``mlp_ratio``, ``qkv_bias``, ``patch_norm``, ``in_channels``, ``layer_norm_eps``.
    """
    return _build("t", num_classes, kwargs)


def video_swin_s(num_classes: int = 400, **kwargs: object) -> VideoSwin:
    """Swin-S: embed 96, depths (2, 2, 18, 2), heads (3, 6, 12, 24); options as :func:`video_swin_t`."""
    return _build("s", num_classes, kwargs)


def video_swin_b(num_classes: int = 400, **kwargs: object) -> VideoSwin:
    """Swin-B: embed 128, depths (2, 2, 18, 2), heads (4, 8, 16, 32); options as :func:`video_swin_t`."""
    return _build("b", num_classes, kwargs)
