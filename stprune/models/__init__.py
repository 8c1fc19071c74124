"""The public face of the models stprune knows: our own Video Swin, loaders, and the adapters.

``stprune.models.video_swin_t/s/b`` and ``load_video_swin`` build and load Video Swin
(:mod:`stprune.architectures.video_swin`); ``get_adapter`` / ``supported_models`` come from
:mod:`stprune.adapters`.
"""

from __future__ import annotations

from stprune.adapters import ADAPTERS, Adapter, EncoderLayout, SequenceAdapter, get_adapter, supported_models
from stprune.architectures.video_swin import (
    VideoSwin,
    VideoSwinConfig,
    load_video_swin,
    video_swin_b,
    video_swin_s,
    video_swin_t,
)

__all__ = [
    "ADAPTERS",
    "Adapter",
    "EncoderLayout",
    "SequenceAdapter",
    "get_adapter",
    "supported_models",
    "VideoSwin",
    "VideoSwinConfig",
    "video_swin_t",
    "video_swin_s",
    "video_swin_b",
    "load_video_swin",
]
