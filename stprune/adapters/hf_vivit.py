"""Adapter: Hugging Face ``transformers`` ViViT (joint space-time attention, CLS token protected)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from stprune.adapters.base import EncoderLayout, InputGrid, register_adapter
from stprune.adapters.hf_attention import install_attention_bias
from stprune.adapters.hf_base import HFVideoAdapter, image_hw
from stprune.core.flops import vit_block_macs
from stprune.errors import UnsupportedModelError

__all__ = ["HFVivitAdapter"]


@register_adapter
class HFVivitAdapter(HFVideoAdapter):
    """``VivitForVideoClassification`` and ``VivitModel`` (model 1 of ViViT: joint attention).

    The CLS token is token 0: protected, never pruned, stays first.
    """

    model_classes = ("VivitForVideoClassification", "VivitModel")

    @classmethod
    def example_model(cls, seed: int = 0) -> nn.Module:
        """ViViT classifier, 6 blocks, 16 frames of 64 x 64 (8 slots x 16 tokens + CLS), random weights."""
        from transformers import VivitConfig, VivitForVideoClassification

        torch.manual_seed(seed)
        cfg = VivitConfig(
            image_size=64, num_frames=16, tubelet_size=[2, 16, 16], hidden_size=32, num_hidden_layers=6,
            num_attention_heads=2, intermediate_size=64, num_labels=5,
        )  # fmt: skip
        return VivitForVideoClassification(cfg).eval()

    @property
    def backbone(self) -> nn.Module:
        return getattr(self.model, "vivit", self.model)

    def _layers(self) -> list[nn.Module]:
        bb = self.backbone
        if hasattr(bb, "layers"):
            return list(bb.layers)
        if hasattr(bb, "encoder") and hasattr(bb.encoder, "layer"):
            return list(bb.encoder.layer)
        raise UnsupportedModelError("cannot find the ViViT blocks (expected 'layers' or 'encoder.layer')")

    def layout(self) -> EncoderLayout:
        cfg = self.model.config
        layers = self._layers()
        keys = []
        for i, layer in enumerate(layers):
            key = getattr(layer.attention, "k_proj", None)
            if not isinstance(key, nn.Module):
                raise UnsupportedModelError(
                    f"ViViT block {i} has no 'attention.k_proj' module; this transformers version's "
                    "ViViT layout is not supported (transformers>=5 is)"
                )
            keys.append(key)
        # no mid_blocks: VivitLayer adds both residuals inside its own forward, out of a hook's reach
        t, ph, pw = (int(v) for v in cfg.tubelet_size)
        h, w = image_hw(cfg.image_size)
        return EncoderLayout(
            layers=layers,
            key_modules=keys,
            num_heads=int(cfg.num_attention_heads),
            protected=1,
            num_slots=int(cfg.num_frames) // t,
            tokens_per_slot=(h // ph) * (w // pw),
            key_dim=int(getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads),
            query_modules=[layer.attention.q_proj for layer in layers],
            width=int(cfg.hidden_size),
        )

    def input_grid(self) -> InputGrid:
        """``pixel_values`` (B, T, C, H, W); ``tubelet_size`` is (frames, pixels, pixels); CLS first."""
        cfg = self.model.config
        t, ph, pw = (int(v) for v in cfg.tubelet_size)
        h, w = image_hw(cfg.image_size)
        return InputGrid(
            input_name="pixel_values",
            input_layout="BTCHW",
            num_frames=int(cfg.num_frames),
            image_size=(h, w),
            num_slots=int(cfg.num_frames) // t,
            grid=(h // ph, w // pw),
            tubelet=t,
            patch=(ph, pw),
            protected=1,
        )

    @property
    def outputs_tokens(self) -> bool:
        return not hasattr(self.model, "classifier")

    @property
    def protected_reason(self) -> str:
        return "the CLS token, which the head reads"

    def install_attention_bias(self, bias_fn: Callable[[int], torch.Tensor | None]) -> Callable[[], None]:
        return install_attention_bias(
            self.model.config, [layer.attention for layer in self._layers()], bias_fn
        )

    def macs(self, tokens_per_block: Sequence[int]) -> int:
        cfg = self.model.config
        lay = self.layout()
        t, ph, pw = (int(v) for v in cfg.tubelet_size)
        n0 = lay.num_slots * lay.tokens_per_slot
        total = n0 * cfg.hidden_size * cfg.num_channels * t * ph * pw
        total += sum(vit_block_macs(n, cfg.hidden_size, cfg.intermediate_size) for n in tokens_per_block)
        pooler = getattr(self.backbone, "pooler", None)
        if pooler is not None:
            total += pooler.dense.in_features * pooler.dense.out_features
        return total + self.head_macs()
