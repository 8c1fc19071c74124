"""Shared parts of the Hugging Face video adapters: input geometry, example inputs, head cost."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from stprune.adapters.base import SequenceAdapter
from stprune.errors import InputError

__all__ = ["HFVideoAdapter", "image_hw"]


def image_hw(size: Any) -> tuple[int, int]:
    """A config's ``image_size`` (int or pair) as (H, W)."""
    return (int(size[0]), int(size[1])) if isinstance(size, (list, tuple)) else (int(size), int(size))


class HFVideoAdapter(SequenceAdapter):
    """HF video classifiers taking ``pixel_values`` (B, T, C, H, W) with ``config.num_frames``."""

    def example_inputs(
        self, batch_size: int = 1, device: Any = "cpu", dtype: torch.dtype = torch.float32
    ) -> dict:
        cfg = self.model.config
        h, w = image_hw(cfg.image_size)
        shape = (batch_size, int(cfg.num_frames), int(cfg.num_channels), h, w)
        return {"pixel_values": torch.randn(shape, device=device, dtype=dtype)}

    def head_macs(self) -> int:
        """MACs of the linear classifier, if the model has one."""
        head = getattr(self.model, "classifier", None)
        return head.in_features * head.out_features if isinstance(head, nn.Linear) else 0

    def clip_input(self, args: tuple, kwargs: dict) -> torch.Tensor | None:
        """``pixel_values`` (B, T, C, H, W) of a forward call (keyword or first argument)."""
        x = kwargs.get("pixel_values", args[0] if args else None)
        return x if isinstance(x, torch.Tensor) else None

    def check_inputs(self, args: tuple, kwargs: dict) -> None:
        """Raise ``InputError`` if a forward input does not fit the configured geometry.

        Default: HF video layout ``pixel_values`` (B, T, C, H, W) against the config's
        ``num_frames`` and ``image_size``.
        """
        x = self.clip_input(args, kwargs)
        if x is None:
            return
        cfg = self.model.config
        h, w = image_hw(cfg.image_size)
        if x.dim() != 5:
            raise InputError(f"pixel_values must be (B, T, C, H, W); got shape {tuple(x.shape)}")
        if x.shape[1] != cfg.num_frames:
            raise InputError(
                f"pixel_values has {x.shape[1]} frames but the model and its pruning schedule are set up "
                f"for num_frames={cfg.num_frames}; sample {cfg.num_frames} frames per clip"
            )
        if tuple(x.shape[3:]) != (h, w):
            raise InputError(f"pixel_values frames are {tuple(x.shape[3:])}; the model expects {(h, w)}")
