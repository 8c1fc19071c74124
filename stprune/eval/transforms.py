"""Pixels of a test view: short-side resize, square crop, normalisation.

As in the VideoMAE test code: frames are resized so the short side equals the crop size with
bilinear interpolation (no antialiasing, like OpenCV ``INTER_LINEAR`` that the reference uses,
rounded back to 8 bits as the reference's uint8 frames are), the long side truncated to an integer;
square crops are then cut along the long side (positions from :mod:`stprune.eval.sampling`);
finally values are scaled to [0, 1] and normalised with the model's mean / std.
Normalisation runs on the model's device, so the data loader ships compact uint8 tensors.

As HF's processors (V-JEPA 2's ``VJEPA2VideoProcessor``): ``short_side`` larger than the crop
(V-JEPA 2: ``int(crop * 256 / 224)``) and ``antialias=True``, antialiased bilinear computed on
the uint8 frames by torch's kernel, the one torchvision's ``resize`` (which HF calls) runs for
uint8 on CPU; a single crop is then HF's centre crop.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from stprune.architectures.loading import IMAGENET_MEAN, IMAGENET_STD  # VideoMAE's own code's normalisation
from stprune.eval.sampling import crop_boxes, resized_hw

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "resize_short_side", "make_views", "normalize"]


def resize_short_side(clip: np.ndarray | torch.Tensor, size: int, antialias: bool = False) -> torch.Tensor:
    """Resize a uint8 clip (T, H, W, 3) so its short side is ``size``; returns uint8 (T, 3, H', W').

    ``antialias=False``: bilinear in float32, rounded to 8 bits (the VideoMAE test code's
    ``INTER_LINEAR``); ``True``: antialiased bilinear on the uint8 frames (HF's processors).
    """
    x = torch.as_tensor(clip)
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected a uint8 clip of shape (T, H, W, 3), got {tuple(x.shape)} {x.dtype}")
    x = x.permute(0, 3, 1, 2)
    h, w = x.shape[-2:]
    new_h, new_w = resized_hw(h, w, size)
    if (new_h, new_w) == (h, w):
        return x.contiguous()
    if antialias and x.device.type == "cpu":  # torch resizes uint8 natively on CPU, as torchvision does
        return F.interpolate(
            x.contiguous(), size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=True
        )
    y = F.interpolate(
        x.float(), size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=antialias
    )
    return y.round_().clamp_(0, 255).to(torch.uint8)


def make_views(
    frames: np.ndarray | torch.Tensor,
    positions: Sequence[Sequence[int]],
    size: int,
    num_crops: int,
    short_side: int | None = None,
    antialias: bool = False,
) -> torch.Tensor:
    """All views of a video from its decoded frames.

    ``frames``: uint8 (U, H, W, 3), each frame once; clip ``k`` is ``frames[positions[k]]``. Every
    frame is resized once (short side to ``short_side``, default ``size``; see
    :func:`resize_short_side` for ``antialias``), then each clip gives ``num_crops`` square crops
    of ``size`` (centred across the short side when it is longer). Returns uint8
    (len(positions) * num_crops, T, 3, size, size), clip-major (view ``k * num_crops + j`` is clip
    ``k``, crop ``j``).
    """
    short = size if short_side is None else short_side
    if short < size:
        raise ValueError(f"short_side {short} is smaller than the crop size {size}")
    resized = resize_short_side(frames, short, antialias)
    h, w = resized.shape[-2:]
    boxes = crop_boxes(h, w, size, num_crops)
    views = []
    for pos in positions:
        clip = resized[torch.as_tensor(list(pos), dtype=torch.long)]
        for y, x in boxes:
            views.append(clip[:, :, y : y + size, x : x + size])
    return torch.stack(views)


def normalize(views: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 views (..., 3, H, W) -> float32 ``(x / 255 - mean) / std`` per channel, same shape."""
    if views.shape[-3] != 3:
        raise ValueError(f"expected 3 colour channels at dim -3, got shape {tuple(views.shape)}")
    m = torch.tensor(mean, dtype=torch.float32, device=views.device).view(3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=views.device).view(3, 1, 1)
    return (views.float() / 255.0 - m) / s
