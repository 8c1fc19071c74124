"""Adapter: Hugging Face ``transformers`` VideoMAE (mean pooling, no CLS token)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from stprune.core.flops import vit_block_macs
from stprune.models.base import EncoderLayout, SequenceAdapter
from stprune.models.hf_attention import install_attention_bias

__all__ = ["HFVideoMAEAdapter"]


def _pair(v: Any) -> tuple[int, int]:
    return (int(v[0]), int(v[1])) if isinstance(v, (list, tuple)) else (int(v), int(v))


class HFVideoMAEAdapter(SequenceAdapter):
    """``VideoMAEForVideoClassification`` and ``VideoMAEModel``.

    Token order from the tubelet embedding is (T0, H/p, W/p) flattened, temporal-major, so
    group g of a T0-group stage is exactly temporal slot g.
    """

    model_classes = ("VideoMAEForVideoClassification", "VideoMAEModel")

    @property
    def backbone(self) -> nn.Module:
        return getattr(self.model, "videomae", self.model)

    def layout(self) -> EncoderLayout:
        cfg = self.model.config
        layers = list(self.backbone.encoder.layer)
        keys = []
        for i, layer in enumerate(layers):
            key = getattr(getattr(layer.attention, "attention", None), "key", None)
            if not isinstance(key, nn.Module):
                raise NotImplementedError(
                    f"VideoMAE block {i} has no 'attention.attention.key' module; this transformers "
                    "version's VideoMAE layout is not supported (transformers>=5 is)"
                )
            keys.append(key)
        ph, pw = _pair(cfg.patch_size)
        h, w = _pair(cfg.image_size)
        return EncoderLayout(
            layers=layers,
            key_modules=keys,
            num_heads=int(cfg.num_attention_heads),
            protected=0,
            num_slots=int(cfg.num_frames) // int(cfg.tubelet_size),
            tokens_per_slot=(h // ph) * (w // pw),
            key_dim=int(cfg.hidden_size) // int(cfg.num_attention_heads),
        )

    @property
    def mean_pooled(self) -> bool:
        return getattr(self.model, "fc_norm", None) is not None

    def install_attention_bias(self, bias_fn: Callable[[], torch.Tensor | None]) -> Callable[[], None]:
        mods = [layer.attention.attention for layer in self.backbone.encoder.layer]
        return install_attention_bias(self.model.config, mods, bias_fn)

    def macs(self, tokens_per_block: Sequence[int]) -> int:
        cfg = self.model.config
        ph, pw = _pair(cfg.patch_size)
        lay = self.layout()
        n0 = lay.num_slots * lay.tokens_per_slot
        total = n0 * cfg.hidden_size * cfg.num_channels * int(cfg.tubelet_size) * ph * pw
        total += sum(vit_block_macs(t, cfg.hidden_size, cfg.intermediate_size) for t in tokens_per_block)
        head = getattr(self.model, "classifier", None)
        if isinstance(head, nn.Linear):
            total += head.in_features * head.out_features
        return total

    def example_inputs(
        self, batch_size: int = 1, device: Any = "cpu", dtype: torch.dtype = torch.float32
    ) -> dict:
        cfg = self.model.config
        h, w = _pair(cfg.image_size)
        shape = (batch_size, int(cfg.num_frames), int(cfg.num_channels), h, w)
        return {"pixel_values": torch.randn(shape, device=device, dtype=dtype)}
