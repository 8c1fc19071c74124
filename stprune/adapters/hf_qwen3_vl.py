"""Qwen3-VL (``transformers``' ``Qwen3VLForConditionalGeneration``): video tokens pruned before the LLM.

See :mod:`stprune.adapters.hf_qwen_vl` for the token layout and positions. What differs from
Qwen2.5-VL:

* the processor writes every temporal slot of a video as its own run of placeholders, after a
  timestamp (``<1.0 seconds>``) and between vision start / end tokens; the M-RoPE ids treat each
  slot as a one-frame grid at the running text position (interleaved M-RoPE);
* **deepstack**: features of early vision blocks are added to the hidden states of the first
  LLM layers at the visual positions (``visual_pos_masks``, ``deepstack_visual_embeds``); a pruned
  video token's deepstack rows are dropped with it;
* the first layer's keys are RMS-normalised per head (``k_norm``) before rotation, so the keys
  STA reads are too;
* vision tower: a learned position grid, blocks with full attention within a temporal slot and
  plain GELU MLPs, the merger and one merger per deepstack level.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from stprune.adapters.base import register_adapter
from stprune.adapters.hf_qwen_vl import QwenVLAdapter

__all__ = ["HFQwen3VLAdapter"]


@register_adapter
class HFQwen3VLAdapter(QwenVLAdapter):
    """``Qwen3VLForConditionalGeneration`` / ``Qwen3VLModel``."""

    model_classes = ("Qwen3VLForConditionalGeneration", "Qwen3VLModel")

    def video_keys(self, tokens: torch.Tensor) -> torch.Tensor:
        layer = self.language_model.layers[0]
        return layer.self_attn.k_norm(self._key_heads(tokens)).mean(1)

    @property
    def key_source(self) -> str:
        return (
            "the first LLM layer's key projection after its per-head RMSNorm, averaged over key/value heads"
        )

    def prune_language_inputs(
        self, kwargs: dict[str, Any], keep: torch.Tensor, index: torch.Tensor, pad: torch.Tensor
    ) -> dict[str, Any]:
        """Cut deepstack's visual mask and features to the kept tokens."""
        visual = kwargs.get("visual_pos_masks")
        if visual is None:
            return kwargs
        visual = visual.to(keep.device)
        kept_rows = keep[visual]  # the features are the visual positions' rows, row-major
        out = dict(kwargs)
        out["visual_pos_masks"] = visual.gather(1, index) & ~pad
        embeds = kwargs.get("deepstack_visual_embeds")
        if embeds is not None:
            out["deepstack_visual_embeds"] = [e[kept_rows.to(e.device)] for e in embeds]
        return out

    def vision_macs(self, grids: Sequence[tuple[int, int, int]]) -> int:
        cfg = self.vision_config
        m, p, ts = self.merge, int(cfg.patch_size), int(cfg.temporal_patch_size)
        hid, inter, out = int(cfg.hidden_size), int(cfg.intermediate_size), int(cfg.out_hidden_size)
        mergers = 1 + len(cfg.deepstack_visual_indexes)
        total = 0
        for t, rows, cols in grids:
            slot = rows * cols * m * m  # patches per temporal slot
            n = t * slot
            total += n * int(cfg.in_channels) * ts * p * p * hid  # patch embedding
            block = n * (4 * hid * hid + 2 * hid * inter) + t * 2 * slot * slot * hid
            total += int(cfg.depth) * block
            merged, wide = n // (m * m), hid * m * m
            total += mergers * merged * (wide * wide + wide * out)
        return total

    def video_placeholders(self, grid: tuple[int, int, int]) -> list[int]:
        """What the processor writes for a video: per temporal slot a timestamp (here two plain text
        tokens standing for ``<t seconds>``), vision start, the slot's placeholders, vision end."""
        cfg, m = self.model.config, self.merge
        per_slot = (grid[1] // m) * (grid[2] // m)
        ids: list[int] = []
        for _ in range(grid[0]):
            ids += [4, 5, int(cfg.vision_start_token_id)] + [int(cfg.video_token_id)] * per_slot
            ids.append(int(cfg.vision_end_token_id))
        return ids

    default_size = (64, 96)

    @classmethod
    def example_model(cls, seed: int = 0) -> nn.Module:
        from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

        cfg = Qwen3VLConfig(
            text_config=dict(
                vocab_size=96,
                hidden_size=64,
                intermediate_size=96,
                num_hidden_layers=3,
                num_attention_heads=4,
                num_key_value_heads=2,
                head_dim=16,
                max_position_embeddings=2048,
                rope_parameters={
                    "rope_type": "default",
                    "rope_theta": 10000.0,
                    "mrope_section": [4, 2, 2],
                    "mrope_interleaved": True,
                },
                bos_token_id=0,
                eos_token_id=3,
                pad_token_id=0,
            ),
            vision_config=dict(
                depth=3,
                hidden_size=32,
                intermediate_size=48,
                num_heads=2,
                patch_size=16,
                spatial_merge_size=2,
                temporal_patch_size=2,
                out_hidden_size=64,
                num_position_embeddings=16,
                deepstack_visual_indexes=[0, 1],
            ),
            image_token_id=90,
            video_token_id=91,
            vision_start_token_id=92,
            vision_end_token_id=93,
            attn_implementation="sdpa",
        )
        torch.manual_seed(seed)
        return Qwen3VLForConditionalGeneration(cfg).eval()
