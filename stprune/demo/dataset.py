"""Torch view of the synthetic task: clips as normalised ``pixel_values`` in the Hugging Face VideoMAE
layout (T, C, H, W)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from stprune.demo.synthetic import DECOY_PROB, DEFAULT_VAL_SEED, SPLITS, generate_clip

#: Normalisation used by the bundled demo model (the ImageNet statistics VideoMAE uses).
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def frames_to_pixel_values(
    frames: np.ndarray | torch.Tensor,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> torch.Tensor:
    """uint8 frames (..., T, H, W, 3) -> float32 ``pixel_values`` (..., T, 3, H, W), scaled to [0, 1]
    and then normalised per channel as ``(x - mean) / std``."""
    x = torch.as_tensor(frames)
    if x.dtype != torch.uint8:
        raise TypeError(f"frames must be uint8, got {x.dtype}")
    if x.dim() < 4 or x.shape[-1] != 3:
        raise ValueError(f"frames must have shape (..., T, H, W, 3), got {tuple(x.shape)}")
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ValueError(f"mean and std need 3 values each with std > 0, got mean={mean}, std={std}")
    m = torch.tensor(mean, dtype=torch.float32)
    s = torch.tensor(std, dtype=torch.float32)
    x = (x.to(torch.float32) / 255.0 - m) / s
    return x.movedim(-1, -3).contiguous()


class SyntheticVideoDataset(Dataset):
    """Clips ``0 .. num-1`` of a split of the synthetic task.

    Item ``i`` is ``{"pixel_values": float32 (T, 3, H, W), "labels": int64 scalar}``; it depends only
    on ``(split, seed, i)``, so any batch size, sampler or worker count sees identical clips.
    ``decoy_prob`` is the share of clips with a decoy, or a function of the clip index giving it (a
    training curriculum); leave the default for the validation task. ``task``: ``"easy"`` (the
    default, :mod:`stprune.demo.synthetic`) or ``"hard"`` (:mod:`stprune.demo.synthetic_hard`), whose
    curriculum is ``ease`` instead (larger, longer flashes; a number in [0, 1] or a function of the
    clip index; 0, the task itself, by default). Each task refuses the other's knob.
    """

    def __init__(
        self,
        num: int,
        split: str = "val",
        seed: int = DEFAULT_VAL_SEED,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        decoy_prob: float | Callable[[int], float] = DECOY_PROB,
        task: str = "easy",
        ease: float | Callable[[int], float] = 0.0,
    ) -> None:
        from stprune.demo.tasks import check_task

        check_task(task)
        if task != "easy" and decoy_prob is not DECOY_PROB:
            raise ValueError(f"decoy_prob applies to the easy task only; the {task} task has its own")
        if task != "hard" and ease != 0.0:
            raise ValueError(f"ease applies to the hard task only, not the {task} task")
        if not isinstance(num, int) or num < 1:
            raise ValueError(f"num must be an integer >= 1, got {num!r}")
        if split not in SPLITS:
            raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
        self.num = num
        self.split = split
        self.seed = seed
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        self.decoy_prob = decoy_prob
        self.task = task
        self.ease = ease

    def __len__(self) -> int:
        return self.num

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not -self.num <= index < self.num:
            raise IndexError(f"index {index} out of range for a dataset of {self.num} clips")
        index = index % self.num
        if self.task == "easy":
            p = self.decoy_prob(index) if callable(self.decoy_prob) else self.decoy_prob
            frames, label = generate_clip(index, self.split, self.seed, decoy_prob=p)
        else:
            from stprune.demo.tasks import generate_clip as generate_task_clip

            e = self.ease(index) if callable(self.ease) else self.ease
            frames, label = generate_task_clip(self.task, index, self.split, self.seed, ease=e)
        return {
            "pixel_values": frames_to_pixel_values(frames, self.mean, self.std),
            "labels": torch.tensor(label, dtype=torch.long),
        }
