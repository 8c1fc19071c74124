"""Adapter: Hugging Face ``transformers`` ViViT (joint space-time attention, CLS token protected)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from stprune.core.flops import vit_block_macs
from stprune.models.base import EncoderLayout, SequenceAdapter
from stprune.models.hf_attention import install_attention_bias

__all__ = ["HFVivitAdapter"]


class HFVivitAdapter(SequenceAdapter):
    """``VivitForVideoClassification`` and ``VivitModel`` (model 1 of ViViT: joint attention).

    The CLS token is token 0: protected, never pruned, stays first.
    """

    model_classes = ("VivitForVideoClassification", "VivitModel")

    @property
    def backbone(self) -> nn.Module:
        return getattr(self.model, "vivit", self.model)

    def _layers(self) -> list[nn.Module]:
        bb = self.backbone
        if hasattr(bb, "layers"):
            return list(bb.layers)
        if hasattr(bb, "encoder") and hasattr(bb.encoder, "layer"):
            return list(bb.encoder.layer)
        raise NotImplementedError("cannot find the ViViT blocks (expected 'layers' or 'encoder.layer')")

    def layout(self) -> EncoderLayout:
        cfg = self.model.config
        layers = self._layers()
        keys = []
        for i, layer in enumerate(layers):
            key = getattr(layer.attention, "k_proj", None)
            if not isinstance(key, nn.Module):
                raise NotImplementedError(
                    f"ViViT block {i} has no 'attention.k_proj' module; this transformers version's "
                    "ViViT layout is not supported (transformers>=5 is)"
                )
            keys.append(key)
        t, ph, pw = (int(v) for v in cfg.tubelet_size)
        size = cfg.image_size
        h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        return EncoderLayout(
            layers=layers,
            key_modules=keys,
            num_heads=int(cfg.num_attention_heads),
            protected=1,
            num_slots=int(cfg.num_frames) // t,
            tokens_per_slot=(h // ph) * (w // pw),
            key_dim=int(getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads),
        )

    def install_attention_bias(self, bias_fn: Callable[[], torch.Tensor | None]) -> Callable[[], None]:
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
        head = getattr(self.model, "classifier", None)
        if isinstance(head, nn.Linear):
            total += head.in_features * head.out_features
        return total

    def example_inputs(
        self, batch_size: int = 1, device: Any = "cpu", dtype: torch.dtype = torch.float32
    ) -> dict:
        cfg = self.model.config
        size = cfg.image_size
        h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        shape = (batch_size, int(cfg.num_frames), int(cfg.num_channels), h, w)
        return {"pixel_values": torch.randn(shape, device=device, dtype=dtype)}
