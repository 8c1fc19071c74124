"""Offline model presets: configs of the standard sizes, random weights, no download.

Hugging Face VideoMAE / ViViT configs, and our Video Swin T/S/B (16 frames x 224^2, Kinetics-400
head: the clip of the README's Swin benchmarks; the released checkpoints are tested at 32 frames,
which ``--model FILE.pth`` assumes unless the file records its clip, and says so). VideoMAE V2
(OpenGVLab/VideoMAEv2): ViT-g/14 (``videomae-v2-g``: width 1408, 40 blocks, 16 heads, MLP 6144,
patch 14, Kinetics-400 head as the K400 fine-tuned giant) and the distilled ViT-S/16 and ViT-B/16
(``videomae-v2-s`` / ``-b``: the sizes of ``videomae-s`` / ``-b`` with the Kinetics-710 head of the
released distilled models). V-JEPA 2 (``VJEPA2ForVideoClassification``): ViT-L/H/g at 64 frames x
256^2 (``vjepa2-l`` / ``-h`` / ``-g``, Kinetics-400 head) and the 16-frame SSv2 ViT-L classifier
(``vjepa2-l-fpc16``).

For FLOPs, token counts and speed, weights do not matter; presets make every CLI command work
on a machine without hub access.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from stprune.errors import SettingError

__all__ = ["PRESETS", "build_preset", "preset_names"]

# name -> (family, config kwargs). VideoMAE sizes as the VideoMAE model zoo (16 frames, 224,
# tubelet 2, patch 16, mean pooling, Kinetics-400 head; V2 as its registry functions
# vit_giant_patch14_224 / vit_small_patch16_224 / vit_base_patch16_224, num_labels = the released
# head); ViViT-B as google/vivit-b-16x2-kinetics400.
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
    "videomae-v2-s": (
        "videomae",
        dict(
            hidden_size=384,
            num_hidden_layers=12,
            num_attention_heads=6,
            intermediate_size=1536,
            num_labels=710,
        ),
    ),
    "videomae-v2-b": (
        "videomae",
        dict(
            hidden_size=768,
            num_hidden_layers=12,
            num_attention_heads=12,
            intermediate_size=3072,
            num_labels=710,
        ),
    ),
    "videomae-v2-g": (
        "videomae",
        dict(
            hidden_size=1408,
            num_hidden_layers=40,
            num_attention_heads=16,
            intermediate_size=6144,
            patch_size=14,
            num_labels=400,
        ),
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
    # V-JEPA 2 (facebook/vjepa2-vit{l,h,g}-fpc64-256: 64 frames x 256^2, tubelet 2, patch 16 = 32 x 256
    # tokens; these encoders were released without a classifier, so the presets' Kinetics-400 head
    # on HF's attentive pooler), and the 16-frame Something-Something v2 classifier
    # facebook/vjepa2-vitl-fpc16-256-ssv2 (8 x 256 tokens, 174 classes). ViT-g's MLP: 1408 * 48/11 = 6144.
    "vjepa2-l": ("vjepa2", dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16)),
    "vjepa2-h": ("vjepa2", dict(hidden_size=1280, num_hidden_layers=32, num_attention_heads=16)),
    "vjepa2-g": (
        "vjepa2",
        dict(hidden_size=1408, num_hidden_layers=40, num_attention_heads=22, mlp_ratio=48 / 11),
    ),
    "vjepa2-l-fpc16": (
        "vjepa2",
        dict(
            hidden_size=1024,
            num_hidden_layers=24,
            num_attention_heads=16,
            frames_per_clip=16,
            num_labels=174,
        ),
    ),
    "video-swin-t": ("video_swin", dict(arch="t")),
    "video-swin-s": ("video_swin", dict(arch="s")),
    "video-swin-b": ("video_swin", dict(arch="b")),
}


def sinusoid_table(n_position: int, d_hid: int) -> torch.Tensor:
    """(1, n_position, d_hid) float32: ``transformers``' VideoMAE ``get_sinusoid_encoding_table``,
    bitwise, without its Python loop over every entry (3 s for ViT-g's 2048 x 1408 table).

    The exponents are computed as there, one ``np.power`` per channel; positions are divided by
    them in one array operation (IEEE division: the same float64 values), then sin / cos.
    """
    denominators = np.array([np.power(10000, 2 * (j // 2) / d_hid) for j in range(d_hid)])
    table = np.arange(n_position)[:, None] / denominators[None, :]
    table[:, 0::2] = np.sin(table[:, 0::2])
    table[:, 1::2] = np.cos(table[:, 1::2])
    return torch.FloatTensor(table).unsqueeze(0)


@contextlib.contextmanager
def _fast_sinusoid_table() -> Iterator[None]:
    """While building a VideoMAE, its position table comes from :func:`sinusoid_table` (the same
    values: another thread building one meanwhile gets what it would have got)."""
    from transformers.models.videomae import modeling_videomae

    original = modeling_videomae.get_sinusoid_encoding_table
    modeling_videomae.get_sinusoid_encoding_table = sinusoid_table
    try:
        yield
    finally:
        modeling_videomae.get_sinusoid_encoding_table = original


def preset_names() -> list[str]:
    """Names accepted by :func:`build_preset` (and ``--model`` in the CLI)."""
    return sorted(PRESETS)


def build_preset(name: str, num_labels: int | None = None) -> nn.Module:
    """A classification model of a standard size with random weights, in eval mode.

    ``num_labels``: classes of the head; default the preset's (400, Kinetics-400, except the
    distilled VideoMAE V2 ``videomae-v2-s`` / ``-b``: 710, Kinetics-710, and ``vjepa2-l-fpc16``:
    174, Something-Something v2).

    Raises:
        SettingError (a ValueError) for an unknown name, listing the presets.
    """
    if name not in PRESETS:
        raise SettingError(f"unknown preset {name!r}; presets: {', '.join(preset_names())}")
    family, kwargs = PRESETS[name]
    kwargs = dict(kwargs)
    preset_labels = kwargs.pop("num_labels", 400)
    if num_labels is None:
        num_labels = preset_labels
    if family == "video_swin":
        from stprune.architectures.video_swin.model import video_swin_b, video_swin_s, video_swin_t

        build = {"t": video_swin_t, "s": video_swin_s, "b": video_swin_b}[kwargs["arch"]]
        return build(num_classes=num_labels).eval()
    if family == "videomae":
        from transformers import VideoMAEConfig, VideoMAEForVideoClassification

        settings: dict[str, Any] = dict(
            image_size=224,
            patch_size=16,
            num_frames=16,
            tubelet_size=2,
            layer_norm_eps=1e-6,
            use_mean_pooling=True,
        )
        cfg = VideoMAEConfig(num_labels=num_labels, **{**settings, **kwargs})
        with _fast_sinusoid_table():
            return VideoMAEForVideoClassification(cfg).eval()
    if family == "vjepa2":
        from transformers import VJEPA2Config, VJEPA2ForVideoClassification

        settings = dict(crop_size=256, frames_per_clip=64, patch_size=16, tubelet_size=2, mlp_ratio=4.0)
        cfg = VJEPA2Config(num_labels=num_labels, **{**settings, **kwargs})
        return VJEPA2ForVideoClassification(cfg).eval()
    from transformers import VivitConfig, VivitForVideoClassification

    cfg = VivitConfig(image_size=224, num_labels=num_labels, **kwargs)
    return VivitForVideoClassification(cfg).eval()
