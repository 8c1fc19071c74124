"""Model families: one adapter per family, registered by decorating it with ``register_adapter``.

``get_adapter(model)`` finds the adapter of a model; ``supported_models()`` lists the classes.
"""

from __future__ import annotations

from torch import nn

# importing a family's file registers its adapter (the order is the order they are tried in)
from stprune.adapters import (  # noqa: F401
    hf_llava_onevision,
    hf_qwen2_5_vl,
    hf_qwen3_vl,
    hf_videomae,
    hf_vivit,
    hf_vjepa2,
    video_swin,
)
from stprune.adapters.base import ADAPTERS, Adapter, EncoderLayout, InputGrid, SequenceAdapter, class_names
from stprune.adapters.hf_videomae import HFVideoMAEAdapter
from stprune.adapters.hf_vivit import HFVivitAdapter
from stprune.adapters.hf_vjepa2 import HFVJEPA2Adapter
from stprune.adapters.video_swin import VideoSwinAdapter
from stprune.errors import SettingTypeError, UnsupportedModelError

__all__ = [
    "ADAPTERS",
    "Adapter",
    "EncoderLayout",
    "HFVideoMAEAdapter",
    "HFVJEPA2Adapter",
    "HFVivitAdapter",
    "InputGrid",
    "SequenceAdapter",
    "VideoSwinAdapter",
    "get_adapter",
    "supported_models",
]

_WHY_NOT = {
    "TimesformerForVideoClassification": "divided space-time attention needs every frame to keep the same "
    "spatial positions, so tokens cannot be pruned per frame",
    "TimesformerModel": "divided space-time attention needs every frame to keep the same spatial positions, "
    "so tokens cannot be pruned per frame",
    "VideoMAEForPreTraining": "pre-training masks tokens itself; patch VideoMAEForVideoClassification or "
    "VideoMAEModel",
    "VJEPA2Predictor": "the predictor needs every encoder token; patch VJEPA2ForVideoClassification or "
    "VJEPA2Model (as an encoder, skip_predictor=True)",
}


def supported_models() -> list[str]:
    """Class names stprune can patch: the video encoders, then the video LLMs."""
    from stprune.adapters.video_llm import VideoLLMAdapter

    ordered = sorted(ADAPTERS, key=lambda a: issubclass(a, VideoLLMAdapter))  # stable: registration order
    return [name for a in ordered for name in a.model_classes]


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
