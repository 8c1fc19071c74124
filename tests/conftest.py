"""Shared fixtures: tiny models built from configs with random weights (no downloads)."""

from __future__ import annotations

import pytest
import torch
from transformers import (
    VideoMAEConfig,
    VideoMAEForVideoClassification,
    VideoMAEModel,
    VivitConfig,
    VivitForVideoClassification,
)


def _swin_config(**kwargs: object):
    from stprune.models import VideoSwinConfig

    return VideoSwinConfig(**kwargs)


def tiny_videomae(
    depth: int = 6,
    frames: int = 16,
    image: int = 64,
    hidden: int = 32,
    heads: int = 2,
    labels: int = 5,
    seed: int = 0,
    base: bool = False,
) -> torch.nn.Module:
    torch.manual_seed(seed)
    cfg = VideoMAEConfig(
        image_size=image,
        patch_size=16,
        num_frames=frames,
        tubelet_size=2,
        hidden_size=hidden,
        num_hidden_layers=depth,
        num_attention_heads=heads,
        intermediate_size=2 * hidden,
        num_labels=labels,
        layer_norm_eps=1e-6,
    )
    model = VideoMAEModel(cfg) if base else VideoMAEForVideoClassification(cfg)
    return model.eval()


def tiny_vivit(
    depth: int = 6,
    frames: int = 16,
    image: int = 64,
    hidden: int = 32,
    heads: int = 2,
    labels: int = 5,
    seed: int = 0,
) -> torch.nn.Module:
    torch.manual_seed(seed)
    cfg = VivitConfig(
        image_size=image,
        num_frames=frames,
        tubelet_size=[2, 16, 16],
        hidden_size=hidden,
        num_hidden_layers=depth,
        num_attention_heads=heads,
        intermediate_size=2 * hidden,
        num_labels=labels,
    )
    return VivitForVideoClassification(cfg).eval()


#: a small Video Swin, 8 x 64 x 64 clips: grids (4, 16, 16) -> (4, 8, 8) -> (4, 4, 4) -> (4, 2, 2);
#: stages 1-2 shift on every axis, stage 3 keeps a (2, 4, 4) window that fills H and W (shift along
#: T only), stage 4 shrinks it to (2, 2, 2) (the references' top-left bias-index corner case)
TINY_SWIN = _swin_config(
    embed_dim=16,
    depths=(2, 2, 4, 2),
    num_heads=(1, 2, 2, 4),
    num_classes=5,
    patch_size=(2, 4, 4),
    window_size=(2, 4, 4),
    num_frames=8,
    image_size=64,
)


def enable_checkpointing(model: torch.nn.Module, reentrant: bool = False) -> None:
    """Gradient checkpointing in an HF model, by the name its transformers version prefers
    (``activation_checkpointing_enable`` since 5.x deprecates ``gradient_checkpointing_enable``)."""
    kwargs = {"use_reentrant": reentrant}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def clip(
    batch: int = 2, frames: int = 16, image: int = 64, seed: int = 0, dtype=torch.float32
) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, frames, 3, image, image, generator=g).to(dtype)


@pytest.fixture
def videomae():
    return tiny_videomae()


@pytest.fixture
def vivit():
    return tiny_vivit()
