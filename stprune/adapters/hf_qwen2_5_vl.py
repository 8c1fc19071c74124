"""Qwen2.5-VL (``transformers``' ``Qwen2_5_VLForConditionalGeneration``): video tokens pruned before the LLM.

See :mod:`stprune.adapters.hf_qwen_vl` for the token layout and positions. Vision tower: a Conv3d
patch embedding, blocks with windowed attention (windows of ``window_size`` pixels, i.e.
``window_size / (patch * merge)`` merged tokens a side, per temporal slot) except the
``fullatt_block_indexes`` blocks, which attend over a whole temporal slot, gated MLPs, and the
merger (RMSNorm, two linears over ``m x m`` patches). Costs below count what ``FlopCounterMode``
counts (matrix products, convolutions, attention).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

from stprune.adapters.base import register_adapter
from stprune.adapters.hf_qwen_vl import QwenVLAdapter

__all__ = ["HFQwen2_5_VLAdapter", "qwen2_5_vl_window_sizes"]


def qwen2_5_vl_window_sizes(rows: int, cols: int, window: int) -> list[int]:
    """Merged tokens in each attention window of one temporal slot of ``rows x cols`` merged tokens,
    for windows of ``window x window`` merged tokens (the last row / column of windows is cut)."""
    sizes = []
    for wy in range(math.ceil(rows / window)):
        for wx in range(math.ceil(cols / window)):
            sizes.append(min(window, rows - wy * window) * min(window, cols - wx * window))
    return sizes


@register_adapter
class HFQwen2_5_VLAdapter(QwenVLAdapter):
    """``Qwen2_5_VLForConditionalGeneration`` / ``Qwen2_5_VLModel``."""

    model_classes = ("Qwen2_5_VLForConditionalGeneration", "Qwen2_5_VLModel")

    def vision_macs(self, grids: Sequence[tuple[int, int, int]]) -> int:
        cfg = self.vision_config
        m, p, ts = self.merge, int(cfg.patch_size), int(cfg.temporal_patch_size)
        hid, inter, out = int(cfg.hidden_size), int(cfg.intermediate_size), int(cfg.out_hidden_size)
        window = int(cfg.window_size) // m // p
        full = set(int(i) for i in cfg.fullatt_block_indexes)
        depth = int(cfg.depth)
        total = 0
        for t, rows, cols in grids:
            n = t * rows * cols * m * m  # patches
            slot = rows * cols * m * m
            total += n * int(cfg.in_channels) * ts * p * p * hid  # patch embedding
            per_block = n * (3 * hid * hid + hid * hid + 3 * hid * inter)
            full_attention = t * 2 * slot * slot * hid
            windowed = t * sum(
                2 * (s * m * m) ** 2 * hid for s in qwen2_5_vl_window_sizes(rows, cols, window)
            )
            for block in range(depth):
                total += per_block + (full_attention if block in full else windowed)
            merged, wide = n // (m * m), hid * m * m
            total += merged * (wide * wide + wide * out)  # merger
        return total

    @classmethod
    def example_model(cls, seed: int = 0) -> nn.Module:
        import torch
        from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

        cfg = Qwen2_5_VLConfig(
            text_config=dict(
                vocab_size=96,
                hidden_size=64,
                intermediate_size=96,
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=2,
                max_position_embeddings=2048,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
                bos_token_id=0,
                eos_token_id=3,
                pad_token_id=0,
            ),
            vision_config=dict(
                depth=2,
                hidden_size=32,
                intermediate_size=48,
                num_heads=2,
                patch_size=14,
                spatial_merge_size=2,
                temporal_patch_size=2,
                window_size=56,
                out_hidden_size=64,
                fullatt_block_indexes=[1],
                tokens_per_second=2,
            ),
            image_token_id=90,
            video_token_id=91,
            vision_start_token_id=92,
            vision_end_token_id=93,
            attn_implementation="sdpa",
        )
        torch.manual_seed(seed)
        return Qwen2_5_VLForConditionalGeneration(cfg).eval()
