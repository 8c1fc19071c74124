"""Our Video Swin: the model (torchvision-compatible) and its checkpoint loader."""

from __future__ import annotations

from stprune.architectures.video_swin.model import (
    VideoSwin,
    VideoSwinConfig,
    video_swin_b,
    video_swin_s,
    video_swin_t,
)
from stprune.architectures.video_swin.weights import load_video_swin

__all__ = ["VideoSwin", "VideoSwinConfig", "load_video_swin", "video_swin_b", "video_swin_s", "video_swin_t"]
