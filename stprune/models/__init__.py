"""stprune.models."""

from stprune.models.video_swin import VideoSwin as VideoSwin
from stprune.models.video_swin import VideoSwinConfig as VideoSwinConfig
from stprune.models.video_swin import video_swin_b as video_swin_b
from stprune.models.video_swin import video_swin_s as video_swin_s
from stprune.models.video_swin import video_swin_t as video_swin_t
from stprune.models.video_swin_weights import load_video_swin as load_video_swin
