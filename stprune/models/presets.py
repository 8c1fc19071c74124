"""Offline model presets: Hugging Face configs of the standard sizes, random weights, no download.

For FLOPs, token counts and speed, weights do not matter; presets make every CLI command work
on a machine without hub access.
"""

from __future__ import annotations

from typing import Any

from torch import nn

__all__ = ["PRESETS", "build_preset", "preset_names"]

# name -> (family, config kwargs). VideoMAE sizes as the VideoMAE model zoo (16 frames, 224,
# tubelet 2, patch 16, mean pooling, Kinetics-400 head); ViViT-B as google/vivit-b-16x2-kinetics400.
PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "videomae-s": (
        "videomae",
        dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536),
    ),
    "videomae-b": (
        "videomae",
        dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    ),
    "videomae-l": (
        "videomae",
        dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096),
    ),
    "videomae-h": (
        "videomae",
        dict(hidden_size=1280, num_hidden_layers=32, num_attention_heads=16, intermediate_size=5120),
    ),
    "vivit-b": (
        "vivit",
        dict(
            hidden_size=768,
            num_hidden_layers=12,
            num_attention_heads=12,
            intermediate_size=3072,
            num_frames=32,
            tubelet_size=[2, 16, 16],
        ),
    ),
}


def preset_names() -> list[str]:
    """Names accepted by :func:`build_preset` (and ``--model`` in the CLI)."""
    return sorted(PRESETS)


def build_preset(name: str, num_labels: int = 400) -> nn.Module:
    """A classification model of a standard size with random weights, in eval mode.

    Raises:
        ValueError for an unknown name, listing the presets.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; presets: {', '.join(preset_names())}")
    family, kwargs = PRESETS[name]
    if family == "videomae":
        from transformers import VideoMAEConfig, VideoMAEForVideoClassification

        cfg = VideoMAEConfig(
            image_size=224,
            patch_size=16,
            num_frames=16,
            tubelet_size=2,
            num_labels=num_labels,
            layer_norm_eps=1e-6,
            use_mean_pooling=True,
            **kwargs,
        )
        return VideoMAEForVideoClassification(cfg).eval()
    from transformers import VivitConfig, VivitForVideoClassification

    cfg = VivitConfig(image_size=224, num_labels=num_labels, **kwargs)
    return VivitForVideoClassification(cfg).eval()
