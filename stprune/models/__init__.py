"""Model families: one adapter per family, and our own model implementations."""

from __future__ import annotations

from torch import nn

from stprune.errors import SettingTypeError, UnsupportedModelError
from stprune.models.base import Adapter, EncoderLayout, SequenceAdapter, class_names
from stprune.models.hf_videomae import HFVideoMAEAdapter
from stprune.models.hf_vivit import HFVivitAdapter
from stprune.models.video_swin import VideoSwin, VideoSwinConfig, video_swin_b, video_swin_s, video_swin_t
from stprune.models.video_swin_prune import VideoSwinAdapter
from stprune.models.video_swin_weights import load_video_swin

__all__ = [
    "Adapter",
    "EncoderLayout",
    "SequenceAdapter",
    "ADAPTERS",
    "get_adapter",
    "supported_models",
    "VideoSwin",
    "VideoSwinConfig",
    "video_swin_t",
    "video_swin_s",
    "video_swin_b",
    "load_video_swin",
]

#: every adapter, tried in order
ADAPTERS: list[type[Adapter]] = [HFVideoMAEAdapter, HFVivitAdapter, VideoSwinAdapter]

_WHY_NOT = {
    "TimesformerForVideoClassification": "divided space-time attention needs every frame to keep the same "
    "spatial positions, so tokens cannot be pruned per frame",
    "TimesformerModel": "divided space-time attention needs every frame to keep the same spatial positions, "
    "so tokens cannot be pruned per frame",
    "VideoMAEForPreTraining": "pre-training masks tokens itself; patch VideoMAEForVideoClassification or "
    "VideoMAEModel",
}


def supported_models() -> list[str]:
    """Class names stprune can patch."""
    return [name for a in ADAPTERS for name in a.model_classes]


def get_adapter(model: nn.Module) -> Adapter:
    """The adapter for ``model``.

    Raises:
        UnsupportedModelError (a NotImplementedError) naming the class and listing the supported ones.
    """
    if not isinstance(model, nn.Module):
        raise SettingTypeError(f"expected a torch.nn.Module, got {type(model).__name__}")
    for adapter in ADAPTERS:
        if adapter.supports(model):
            return adapter(model)
    name = type(model).__name__
    reason = next((why for n, why in _WHY_NOT.items() if n in class_names(model)), None)
    raise UnsupportedModelError(
        f"{name} is not supported"
        + (f" ({reason})" if reason else "")
        + f"; supported: {', '.join(supported_models())}"
    )
