"""Adapter: Hugging Face ``transformers`` VideoMAE (no CLS token; mean pooling, or a head that reads
token 0, which is then protected)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from stprune.adapters.base import EncoderLayout, InputGrid, MidBlock, register_adapter
from stprune.adapters.hf_attention import install_attention_bias
from stprune.adapters.hf_base import HFVideoAdapter, image_hw
from stprune.core.flops import vit_block_macs
from stprune.errors import UnsupportedModelError

__all__ = ["HFVideoMAEAdapter"]


@register_adapter
class HFVideoMAEAdapter(HFVideoAdapter):
    """``VideoMAEForVideoClassification`` and ``VideoMAEModel``.

    Token order from the tubelet embedding is (T0, H/p, W/p) flattened, temporal-major, so
    group g of a T0-group stage is exactly temporal slot g.
    """

    model_classes = ("VideoMAEForVideoClassification", "VideoMAEModel")

    @classmethod
    def example_model(cls, seed: int = 0) -> nn.Module:
        """VideoMAE classifier, 6 blocks, 16 frames of 64 x 64 (8 slots x 16 tokens), random weights."""
        from transformers import VideoMAEConfig, VideoMAEForVideoClassification

        torch.manual_seed(seed)
        cfg = VideoMAEConfig(
            image_size=64, patch_size=16, num_frames=16, tubelet_size=2, hidden_size=32,
            num_hidden_layers=6, num_attention_heads=2, intermediate_size=64, num_labels=5,
        )  # fmt: skip
        return VideoMAEForVideoClassification(cfg).eval()

    @property
    def backbone(self) -> nn.Module:
        return getattr(self.model, "videomae", self.model)

    def layout(self) -> EncoderLayout:
        cfg = self.model.config
        layers = list(self.backbone.encoder.layer)
        keys, queries = [], []
        for i, layer in enumerate(layers):
            key = getattr(getattr(layer.attention, "attention", None), "key", None)
            if not isinstance(key, nn.Module):
                raise UnsupportedModelError(
                    f"VideoMAE block {i} has no 'attention.attention.key' module; this transformers "
                    "version's VideoMAE layout is not supported (transformers>=5 is)"
                )
            keys.append(key)
            queries.append(layer.attention.attention.query)
        # VideoMAELayer: h = x + attention; layer_output = output(intermediate(layernorm_after(h)), h)
        mlp = 2 * int(cfg.hidden_size) * int(cfg.intermediate_size)
        mids = [MidBlock(layer.layernorm_after, layer.output, 1, "input_tensor", mlp) for layer in layers]
        ph, pw = image_hw(cfg.patch_size)
        h, w = image_hw(cfg.image_size)
        first = self.head_reads_first_token
        return EncoderLayout(
            layers=layers,
            key_modules=keys,
            num_heads=int(cfg.num_attention_heads),
            protected=1 if first else 0,
            num_slots=int(cfg.num_frames) // int(cfg.tubelet_size),
            tokens_per_slot=(h // ph) * (w // pw),
            key_dim=int(cfg.hidden_size) // int(cfg.num_attention_heads),
            protected_in_grid=first,
            query_modules=queries,
            width=int(cfg.hidden_size),
            mid_blocks=mids,
        )

    @property
    def head_reads_first_token(self) -> bool:
        """Whether the classifier reads token 0 (``use_mean_pooling=False``): that token is then
        protected (never pruned, stays first), so every clip's head reads the same token."""
        return hasattr(self.model, "classifier") and getattr(self.model, "fc_norm", None) is None

    @property
    def protected_reason(self) -> str:
        return "its head reads token 0 (use_mean_pooling=False)"

    def input_grid(self) -> InputGrid:
        """``pixel_values`` (B, T, C, H, W); tubelet ``tubelet_size`` frames x ``patch_size`` pixels."""
        cfg = self.model.config
        ph, pw = image_hw(cfg.patch_size)
        h, w = image_hw(cfg.image_size)
        tubelet = int(cfg.tubelet_size)
        return InputGrid(
            input_name="pixel_values",
            input_layout="BTCHW",
            num_frames=int(cfg.num_frames),
            image_size=(h, w),
            num_slots=int(cfg.num_frames) // tubelet,
            grid=(h // ph, w // pw),
            tubelet=tubelet,
            patch=(ph, pw),
            protected=0,
        )

    @property
    def outputs_tokens(self) -> bool:
        return not hasattr(self.model, "classifier")

    @property
    def mean_pooled(self) -> bool:
        return getattr(self.model, "fc_norm", None) is not None

    def install_attention_bias(self, bias_fn: Callable[[int], torch.Tensor | None]) -> Callable[[], None]:
        mods = [layer.attention.attention for layer in self.backbone.encoder.layer]
        return install_attention_bias(self.model.config, mods, bias_fn)

    def macs(self, tokens_per_block: Sequence[int]) -> int:
        cfg = self.model.config
        ph, pw = image_hw(cfg.patch_size)
        lay = self.layout()
        n0 = lay.num_slots * lay.tokens_per_slot
        total = n0 * cfg.hidden_size * cfg.num_channels * int(cfg.tubelet_size) * ph * pw
        total += sum(vit_block_macs(t, cfg.hidden_size, cfg.intermediate_size) for t in tokens_per_block)
        return total + self.head_macs()
