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

__all__ = [
    "PRESETS",
    "VIDEO_LLM_CLIPS",
    "VIDEO_LLM_FAMILIES",
    "build_preset",
    "is_video_llm_preset",
    "preset_names",
]

# the vision tower of Qwen2.5-VL-3B / 7B (the config class's defaults are not these)
_QWEN2_5_VL_TOWER = dict(
    depth=32,
    hidden_size=1280,
    intermediate_size=3420,
    num_heads=16,
    patch_size=14,
    spatial_merge_size=2,
    temporal_patch_size=2,
    window_size=112,
    fullatt_block_indexes=[7, 15, 23, 31],
    tokens_per_second=2,
)

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
    # Video LLMs, with the shapes of the released checkpoints (config.json of each; random weights):
    # the Qwen2.5-VL vision tower (32 blocks x 1280, windows of 112 px, full attention in blocks
    # 7/15/23/31) with Qwen2.5-3B/7B; the Qwen3-VL towers (24 x 1024 / 27 x 1152, deepstack) with
    # Qwen3-4B/8B; LLaVA-OneVision's SigLIP-so400m (26 blocks at 384 px) with Qwen2-0.5B/7B.
    "qwen2.5-vl-3b": (
        "qwen2_5_vl",
        dict(
            text=dict(
                hidden_size=2048,
                intermediate_size=11008,
                num_hidden_layers=36,
                num_attention_heads=16,
                num_key_value_heads=2,
                vocab_size=151936,
            ),
            vision=dict(**_QWEN2_5_VL_TOWER, out_hidden_size=2048),
        ),
    ),
    "qwen2.5-vl-7b": (
        "qwen2_5_vl",
        dict(
            text=dict(
                hidden_size=3584,
                intermediate_size=18944,
                num_hidden_layers=28,
                num_attention_heads=28,
                num_key_value_heads=4,
                vocab_size=152064,
            ),
            vision=dict(**_QWEN2_5_VL_TOWER, out_hidden_size=3584),
        ),
    ),
    # scaled down for the CPU benchmark (stprune bench --model qwen2.5-vl-mini): the 7B's layout at
    # 1/3.5 of its width and 8 LLM layers, a 4-block vision tower; not a released model
    "qwen2.5-vl-mini": (
        "qwen2_5_vl",
        dict(
            text=dict(
                hidden_size=1024,
                intermediate_size=5376,
                num_hidden_layers=8,
                num_attention_heads=8,
                num_key_value_heads=2,
                vocab_size=32000,
                bos_token_id=31993,  # inside the smaller vocabulary (the 7B's ids are not)
                eos_token_id=31994,
            ),
            vision=dict(
                depth=4,
                hidden_size=320,
                intermediate_size=864,
                num_heads=5,
                out_hidden_size=1024,
                fullatt_block_indexes=[3],
            ),
            top=dict(
                image_token_id=31995,
                video_token_id=31996,
                vision_start_token_id=31997,
                vision_end_token_id=31998,
            ),
        ),
    ),
    "qwen3-vl-4b": (
        "qwen3_vl",
        dict(
            text=dict(
                hidden_size=2560,
                intermediate_size=9728,
                num_hidden_layers=36,
                num_attention_heads=32,
                num_key_value_heads=8,
                head_dim=128,
                vocab_size=151936,
            ),
            vision=dict(
                depth=24,
                hidden_size=1024,
                intermediate_size=4096,
                num_heads=16,
                out_hidden_size=2560,
                deepstack_visual_indexes=[5, 11, 17],
            ),
        ),
    ),
    "qwen3-vl-8b": (
        "qwen3_vl",
        dict(
            text=dict(
                hidden_size=4096,
                intermediate_size=12288,
                num_hidden_layers=36,
                num_attention_heads=32,
                num_key_value_heads=8,
                head_dim=128,
                vocab_size=151936,
            ),
            vision=dict(
                depth=27,
                hidden_size=1152,
                intermediate_size=4304,
                num_heads=16,
                out_hidden_size=4096,
                deepstack_visual_indexes=[8, 16, 24],
            ),
        ),
    ),
    "llava-onevision-0.5b": (
        "llava_onevision",
        dict(
            text=dict(
                hidden_size=896,
                intermediate_size=4864,
                num_hidden_layers=24,
                num_attention_heads=14,
                num_key_value_heads=2,
                vocab_size=151936,
            ),
        ),
    ),
    "llava-onevision-7b": (
        "llava_onevision",
        dict(
            text=dict(
                hidden_size=3584,
                intermediate_size=18944,
                num_hidden_layers=28,
                num_attention_heads=28,
                num_key_value_heads=4,
                vocab_size=152128,
            ),
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


#: families of the video-LLM presets (``build_preset`` returns their ``*ForConditionalGeneration``)
VIDEO_LLM_FAMILIES = ("qwen2_5_vl", "qwen3_vl", "llava_onevision")


#: The video a video-LLM preset's costs are counted at when no --num-frames / --image-size is given
#: (frames, side in pixels; None: the family's fixed size): the README's cost table's clip (64 frames
#: at 448 px for Qwen; LLaVA-OneVision's 32 frames at its fixed 384 px) and the CPU benchmark's.
VIDEO_LLM_CLIPS: dict[str, tuple[int, int | None]] = {
    "qwen2.5-vl-3b": (64, 448),
    "qwen2.5-vl-7b": (64, 448),
    "qwen2.5-vl-mini": (32, 224),
    "qwen3-vl-4b": (64, 448),
    "qwen3-vl-8b": (64, 448),
    "llava-onevision-0.5b": (32, None),
    "llava-onevision-7b": (32, None),
}


def preset_names() -> list[str]:
    """Names accepted by :func:`build_preset` (and ``--model`` in the CLI)."""
    return sorted(PRESETS)


def is_video_llm_preset(name: str) -> bool:
    """Whether ``name`` is a video-LLM preset (no classification head, no clip preprocessing)."""
    return name in PRESETS and PRESETS[name][0] in VIDEO_LLM_FAMILIES


def _build_video_llm(family: str, kwargs: dict[str, Any]) -> nn.Module:
    """A video LLM of a preset's shapes, random weights, SDPA attention."""
    text, vision, top = (
        dict(kwargs.get("text", {})),
        dict(kwargs.get("vision", {})),
        dict(kwargs.get("top", {})),
    )
    if family == "qwen2_5_vl":
        from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

        text.setdefault(
            "rope_parameters", {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]}
        )
        cfg = Qwen2_5_VLConfig(text_config=text, vision_config=vision, attn_implementation="sdpa", **top)
        return Qwen2_5_VLForConditionalGeneration(cfg).eval()
    if family == "qwen3_vl":
        from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

        text.setdefault(
            "rope_parameters",
            {
                "rope_type": "default",
                "rope_theta": 5e6,
                "mrope_section": [24, 20, 20],
                "mrope_interleaved": True,
            },
        )
        cfg = Qwen3VLConfig(text_config=text, vision_config=vision, attn_implementation="sdpa")
        return Qwen3VLForConditionalGeneration(cfg).eval()
    from transformers import LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration

    cfg = LlavaOnevisionConfig(text_config={"model_type": "qwen2", **text}, attn_implementation="sdpa")
    return LlavaOnevisionForConditionalGeneration(cfg).eval()


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
    if family in VIDEO_LLM_FAMILIES:
        return _build_video_llm(family, kwargs)
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
