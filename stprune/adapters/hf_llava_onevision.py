"""LLaVA-OneVision (``transformers``' ``LlavaOnevisionForConditionalGeneration``), video path.

A video of F frames (``pixel_values_videos`` (V, F, C, H, W), ``H = W = image_size``) goes frame by
frame through the SigLIP vision tower (``(H / p)^2`` patches), the projector, then a bilinear
2x downsampling of the patch grid (``ceil(H / p / 2)`` a side); the LLM receives the frames'
tokens in raster order, frame after frame, then one ``image_newline`` token: ``F * h'^2 + 1``
placeholders (``config.video_token_id``) per video. The grid is ``F x h' x h'`` (one frame per
temporal slot); the newline token is protected (never pruned, stays last).

Positions are 1-D. Kept tokens keep their original positions by default; ``positions="repacked"``
numbers the pruned sequence 0, 1, 2, ... as if the prompt had only the kept tokens (see
docs/video_llm.md for the measurement behind the default).

Pixel-level methods (RLT) are refused: a merged token is a bilinear resampling of the patch grid
(27 -> 14 a side at 384 px), not a block of pixels; EVS applies the same rule to the embeddings.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from stprune.adapters.base import register_adapter
from stprune.adapters.video_llm import (
    LLMShape,
    VideoLLMAdapter,
    VideoSpan,
    VisionCalls,
    check_video_count,
    text_around,
)
from stprune.errors import InputError, SettingError

__all__ = ["HFLlavaOnevisionAdapter"]


@register_adapter
class HFLlavaOnevisionAdapter(VideoLLMAdapter):
    """``LlavaOnevisionForConditionalGeneration`` / ``LlavaOnevisionModel`` (video path)."""

    model_classes = ("LlavaOnevisionForConditionalGeneration", "LlavaOnevisionModel")
    repackable = True

    @property
    def _inner(self) -> nn.Module:
        return getattr(self.model, "model", self.model)

    @property
    def multimodal_model(self) -> nn.Module:
        return self._inner

    @property
    def language_model(self) -> nn.Module:
        return self._inner.language_model

    @property
    def vision_tower(self) -> nn.Module:
        return self._inner.vision_tower

    @property
    def vision_config(self) -> Any:
        return self.model.config.vision_config

    @property
    def text_config(self) -> Any:
        return self.model.config.text_config

    @property
    def llm_shape(self) -> LLMShape:
        cfg = self.text_config
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        return LLMShape(
            layers=int(cfg.num_hidden_layers),
            hidden=int(cfg.hidden_size),
            heads=int(cfg.num_attention_heads),
            kv_heads=int(cfg.num_key_value_heads),
            head_dim=int(head_dim),
            intermediate=int(cfg.intermediate_size),
            vocab=int(cfg.vocab_size),
        )

    @property
    def patches_per_side(self) -> int:
        return int(self.vision_config.image_size) // int(self.vision_config.patch_size)

    @property
    def pooled_side(self) -> int:
        """h' = ceil(patches a side / 2): the bilinear downsampling of the video path."""
        return math.ceil(self.patches_per_side / 2)

    # --- the videos of a call -----------------------------------------------------------------

    def _video_features(self, call: Mapping[str, Any]) -> tuple[int, int] | None:
        """(videos, frames) of a call's video input, or ``None`` without video."""
        pixels = call.get("pixel_values_videos")
        if pixels is not None:
            return int(pixels.shape[0]), int(pixels.shape[1])
        output = (call.get("mm_encoder_outputs") or {}).get("video")
        if output is None:
            return None
        features = output.pooler_output  # (V, F * h'^2 + 1, C)
        per_frame = self.pooled_side**2
        tokens = int(features.shape[1]) - 1
        if tokens % per_frame:
            raise InputError(
                f"video features of {tokens + 1} tokens per video do not fit frames of {per_frame} "
                "tokens + a newline"
            )
        return int(features.shape[0]), tokens // per_frame

    def check_call(self, call: Mapping[str, Any]) -> None:
        pixels = call.get("pixel_values_videos")
        if pixels is not None and (pixels.dim() != 5 or pixels.shape[1] < 1):
            raise InputError(
                f"pixel_values_videos must be (videos, frames >= 1, C, H, W); got {tuple(pixels.shape)}"
            )

    def video_spans(self, call: Mapping[str, Any], vision: VisionCalls | None = None) -> list[VideoSpan]:
        shape = self._video_features(call)
        if shape is None:
            return []
        videos, frames = shape
        input_ids = call.get("input_ids")
        if input_ids is None:
            raise InputError(
                "stprune finds a prompt's video tokens by their placeholder ids: pass input_ids, not "
                "inputs_embeds"
            )
        side = self.pooled_side
        grid = (frames, side, side)
        n = frames * side * side
        placeholder = input_ids == int(self.model.config.video_token_id)
        check_video_count(
            int(placeholder.sum()),
            videos * (n + 1),
            f"{videos} videos of {n} + 1 tokens need {videos * (n + 1)}",
        )
        spans: list[VideoSpan] = []
        index = 0
        for row in range(input_ids.shape[0]):
            columns = placeholder[row].nonzero().squeeze(1)
            if columns.numel() % (n + 1):
                raise InputError(
                    f"row {row} has {columns.numel()} video placeholders, not a multiple of {n + 1} "
                    "(frames of "
                    f"{side}x{side} tokens and a newline per video)"
                )
            for start in range(0, columns.numel(), n + 1):
                spans.append(
                    VideoSpan(
                        row, index, grid, columns[start : start + n], columns[start + n : start + n + 1]
                    )
                )
                index += 1
        return spans

    def pixel_tokens_reason(self) -> str:
        return (
            "its video tokens are a bilinear 2x downsampling of the patch grid "
            f"({self.patches_per_side} -> {self.pooled_side} a side), not blocks of pixels"
        )

    # --- keys -----------------------------------------------------------------------------------

    def video_keys(self, tokens: torch.Tensor) -> torch.Tensor:
        layer = self.language_model.layers[0]
        k = layer.self_attn.k_proj(layer.input_layernorm(tokens))
        return k.view(tokens.shape[0], -1, self.llm_shape.head_dim).mean(1)

    # --- costs ----------------------------------------------------------------------------------

    def prompt_grids(self, call: Mapping[str, Any]) -> list[tuple[int, int, int]]:
        shape = self._video_features(call)
        if shape is None:
            return []
        videos, frames = shape
        return [(frames, self.pooled_side, self.pooled_side)] * videos

    def vision_macs(self, grids: Sequence[tuple[int, int, int]]) -> int:
        cfg = self.vision_config
        p, hid, inter = int(cfg.patch_size), int(cfg.hidden_size), int(cfg.intermediate_size)
        text = int(self.text_config.hidden_size)
        patches = self.patches_per_side**2
        per_frame = patches * int(cfg.num_channels) * p * p * hid  # patch embedding
        per_frame += int(cfg.num_hidden_layers) * (
            patches * (4 * hid * hid + 2 * hid * inter) + 2 * patches**2 * hid
        )
        if getattr(cfg, "vision_use_head", False):  # SigLIP's attention-pooling head (unused, still computed)
            per_frame += (
                3 * hid * hid + hid * hid * patches * 2 + 2 * patches * hid + hid * hid + 2 * hid * inter
            )
        per_frame += patches * (hid * text + text * text)  # projector
        return sum(t * per_frame for t, _, _ in grids)

    # --- example ------------------------------------------------------------------------------

    default_frames = 4

    def _frames(self, num_frames: int | None, size: tuple[int, int] | None) -> int:
        frames = self.default_frames if num_frames is None else num_frames
        if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
            raise SettingError(f"frames must be an int >= 1; got {frames!r}")
        side = int(self.vision_config.image_size)
        if size is not None and tuple(size) != (side, side):
            raise SettingError(
                f"{type(self.model).__name__} takes frames of {side}x{side} pixels (its processor resizes "
                f"every frame to that); got {size[0]}x{size[1]}"
            )
        return frames

    def prompt_layout(
        self, num_frames: int | None = None, size: tuple[int, int] | None = None, text_tokens: int = 16
    ) -> tuple[list[tuple[int, int, int]], int]:
        frames = self._frames(num_frames, size)
        before, after = text_around(text_tokens)
        side = self.pooled_side
        return [(frames, side, side)], before + len(self.video_placeholders(frames)) + after

    def video_placeholders(self, frames: int) -> list[int]:
        n = frames * self.pooled_side**2 + 1
        return [int(self.model.config.video_token_id)] * n

    def example_prompt(
        self,
        batch_size: int = 1,
        num_frames: int | None = None,
        size: tuple[int, int] | None = None,
        text_tokens: int = 16,
        device: Any = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> dict:
        cfg = self.vision_config
        frames = self._frames(num_frames, size)
        side = int(cfg.image_size)
        before, after = text_around(text_tokens)
        ids = [1] * before + self.video_placeholders(frames) + [2] * after
        input_ids = torch.tensor([ids] * batch_size, device=device)
        pixels = torch.randn(
            batch_size, frames, int(cfg.num_channels), side, side, device=device, dtype=dtype
        )
        call = {
            "input_ids": input_ids,
            "attention_mask": torch.ones_like(input_ids),
            "pixel_values_videos": pixels,
        }
        return {**call, "logits_to_keep": 1} if self.has_head else call

    def describe(self) -> str:
        shape = self.llm_shape
        side = self.pooled_side
        return (
            f"{type(self.model).__name__}: LLM {shape.layers} layers x {shape.hidden}, {side}x{side} "
            "video tokens "
            "per frame + a newline per video"
        )

    @classmethod
    def example_model(cls, seed: int = 0) -> nn.Module:
        from transformers import LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration

        cfg = LlavaOnevisionConfig(
            text_config=dict(
                model_type="qwen2",
                vocab_size=96,
                hidden_size=64,
                intermediate_size=96,
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=2,
                max_position_embeddings=2048,
                bos_token_id=0,
                eos_token_id=3,
                pad_token_id=0,
            ),
            vision_config=dict(
                model_type="siglip_vision_model",
                hidden_size=32,
                intermediate_size=48,
                num_hidden_layers=2,
                num_attention_heads=2,
                image_size=70,
                patch_size=14,
                vision_use_head=False,
            ),
            image_token_index=90,
            video_token_index=91,
            vision_aspect_ratio="anyres_max_9",
            image_grid_pinpoints=[[70, 70], [70, 140], [140, 70]],
            attn_implementation="sdpa",
        )
        torch.manual_seed(seed)
        return LlavaOnevisionForConditionalGeneration(cfg).eval()
