"""What an adapter tells the pruning engine about a model family.

An adapter knows *where* things are in one model family (blocks, key projections, protected
tokens, the token grid, the cost model); it never knows which method prunes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

__all__ = ["EncoderLayout", "SequenceAdapter", "class_names"]


def class_names(model: nn.Module) -> list[str]:
    """Names of the model's class and its bases (matching by name needs no imports)."""
    return [c.__name__ for c in type(model).__mro__]


@dataclass
class EncoderLayout:
    """A plain token-sequence encoder (ViT family) as the engine sees it.

    Attributes:
        layers: the transformer blocks in order; each returns (B, L, C) (or a tuple starting with it).
        key_modules: per block, the module whose output is that block's keys, (B, L, heads * head_dim).
        num_heads: attention heads (keys are averaged over heads).
        protected: leading tokens that are never pruned and stay first (e.g. CLS).
        num_slots: T0, temporal slots (frames / tubelet size).
        tokens_per_slot: N, spatial tokens per slot.
        key_dim: d, the width of the head-averaged keys (head dim).
    """

    layers: Sequence[nn.Module]
    key_modules: Sequence[nn.Module]
    num_heads: int
    protected: int
    num_slots: int
    tokens_per_slot: int
    key_dim: int

    @property
    def depth(self) -> int:
        return len(self.layers)


class SequenceAdapter(ABC):
    """Adapter for encoders that process a flat token sequence: the engine prunes between blocks."""

    #: class names (or base-class names) this adapter handles
    model_classes: ClassVar[tuple[str, ...]]

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    @classmethod
    def supports(cls, model: nn.Module) -> bool:
        return any(name in cls.model_classes for name in class_names(model))

    @abstractmethod
    def layout(self) -> EncoderLayout:
        """Blocks, key modules and token grid of the wrapped model."""

    @property
    def mean_pooled(self) -> bool:
        """Whether the head averages the encoder's output tokens (size-weighting matters then)."""
        return False

    def install_attention_bias(self, bias_fn: Callable[[], torch.Tensor | None]) -> Callable[[], None]:
        """Make every block's attention add ``bias_fn()`` (B, 1, 1, L) to its logits; returns an undo.

        Needed only by methods with proportional attention (ToMe).
        """
        raise NotImplementedError(f"{type(self).__name__} cannot add an attention bias")

    @abstractmethod
    def macs(self, tokens_per_block: Sequence[int]) -> int:
        """Analytic matrix-product MACs of one sample's forward with these tokens per block."""

    @abstractmethod
    def example_inputs(
        self, batch_size: int = 1, device: Any = "cpu", dtype: torch.dtype = torch.float32
    ) -> dict:
        """Keyword arguments of a random input the model accepts (for FLOPs and speed)."""

    def check_inputs(self, args: tuple, kwargs: dict) -> None:
        """Raise ValueError if a forward input does not fit the configured geometry.

        Default: HF video layout ``pixel_values`` (B, T, C, H, W) against the config's
        ``num_frames`` and ``image_size``.
        """
        x = kwargs.get("pixel_values", args[0] if args else None)
        if not isinstance(x, torch.Tensor):
            return
        cfg = self.model.config
        size = cfg.image_size
        h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        if x.dim() != 5:
            raise ValueError(f"pixel_values must be (B, T, C, H, W); got shape {tuple(x.shape)}")
        if x.shape[1] != cfg.num_frames:
            raise ValueError(
                f"pixel_values has {x.shape[1]} frames but the model and its pruning schedule are set up "
                f"for num_frames={cfg.num_frames}; sample {cfg.num_frames} frames per clip"
            )
        if tuple(x.shape[3:]) != (h, w):
            raise ValueError(f"pixel_values frames are {tuple(x.shape[3:])}; the model expects {(h, w)}")

    def describe(self) -> str:
        """One line: model class and geometry."""
        lay = self.layout()
        return (
            f"{type(self.model).__name__}: depth {lay.depth}, {lay.num_slots} temporal slots x "
            f"{lay.tokens_per_slot} tokens" + (f" + {lay.protected} protected" if lay.protected else "")
        )
