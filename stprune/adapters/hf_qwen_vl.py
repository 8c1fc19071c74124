"""What the Qwen video LLMs (Qwen2.5-VL, Qwen3-VL) share: placeholders, grids, pixels, positions.

The processor turns a video of ``T`` frames of ``H x W`` pixels into ``T / ts`` temporal patches
of ``(H / p) x (W / p)`` patches (``ts = temporal_patch_size``, ``p = patch_size``), flattened to
``pixel_values_videos`` rows in the merge-block-major order of its ``patchify`` and listed in
``video_grid_thw`` as ``(T / ts, H / p, W / p)``; the vision tower's merger joins ``m x m`` patches
(``m = spatial_merge_size``), so the LLM receives a ``T' x H' x W'`` grid, ``T' = T / ts``,
``H' = H / (p m)``, ``W' = W / (p m)``, in raster order, one placeholder token
(``config.video_token_id``) each. Qwen2.5-VL writes a video's tokens as one run; Qwen3-VL writes a
timestamp and vision start/end tokens around every temporal slot's tokens, so a video's tokens
are ``T'`` runs; both are found the same way (the row's placeholders, in order, by grid size).
Positions: 3-row M-RoPE ids (t, h, w) from the model's own ``get_rope_index`` over the whole
prompt (generation passes a fourth, text-position row first).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from stprune.adapters.video_llm import (
    LLMShape,
    PixelGrid,
    VideoLLMAdapter,
    VideoSpan,
    VisionCalls,
    bind_call,
    check_video_count,
    storage_pointer,
    text_around,
)
from stprune.errors import InputError, SettingError

__all__ = ["QwenVLAdapter", "pack_qwen_video", "unpack_qwen_video"]


def pack_qwen_video(frames: torch.Tensor, temporal_patch: int, patch: int, merge: int) -> torch.Tensor:
    """A clip in the layout of the Qwen video processors' ``patchify`` (their ``pixel_values_videos``).

    Args:
        frames: (T, C, H, W) normalised frames; T divisible by ``temporal_patch``, H and W by
            ``patch * merge``.

    Returns:
        (T' * Hp * Wp, C * ts * p * p) rows, ``Hp = H / p``: merge blocks in raster order, the
        ``m x m`` patches of a block consecutive.
    """
    t, c, h, w = frames.shape
    ts, p, m = temporal_patch, patch, merge
    if t % ts or h % (p * m) or w % (p * m):
        raise InputError(
            f"frames (T, C, H, W) = {tuple(frames.shape)}: T must be a multiple of {ts} and H, W of {p * m}"
        )
    x = frames.reshape(t // ts, ts, c, h // (p * m), m, p, w // (p * m), m, p)
    x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)  # (T', H'', W'', m, m, C, ts, p, p)
    return x.reshape(-1, c * ts * p * p)


def unpack_qwen_video(
    rows: torch.Tensor, grid_thw: Sequence[int], channels: int, temporal_patch: int, patch: int, merge: int
) -> torch.Tensor:
    """The inverse of :func:`pack_qwen_video`: (T'*Hp*Wp, C*ts*p*p) rows -> (T, C, H, W) frames."""
    gt, gh, gw = (int(v) for v in grid_thw)
    ts, p, m, c = temporal_patch, patch, merge, channels
    x = rows.reshape(gt, gh // m, gw // m, m, m, c, ts, p, p)
    x = x.permute(0, 6, 5, 1, 3, 7, 2, 4, 8)  # (T', ts, C, H'', m, p, W'', m, p)
    return x.reshape(gt * ts, c, gh * p, gw * p)


class QwenVLAdapter(VideoLLMAdapter):
    """Shared by the Qwen2.5-VL and Qwen3-VL adapters (see the module docstring)."""

    mrope = True

    @property
    def _inner(self) -> nn.Module:
        """The ``*VLModel`` (vision tower + language model)."""
        return getattr(self.model, "model", self.model)

    @property
    def multimodal_model(self) -> nn.Module:
        return self._inner

    @property
    def language_model(self) -> nn.Module:
        return self._inner.language_model

    @property
    def vision_config(self) -> Any:
        return self.model.config.vision_config

    @property
    def text_config(self) -> Any:
        return self.model.config.text_config

    @property
    def merge(self) -> int:
        return int(self.vision_config.spatial_merge_size)

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

    # --- the videos of a call -----------------------------------------------------------------

    @property
    def vision_tower(self) -> nn.Module:
        return self._inner.visual

    def vision_hooks(self, vision: VisionCalls) -> list[torch.utils.hooks.RemovableHandle]:
        """Log every call of the vision tower (pixel rows, ``grid_thw``) and the tensors it returned
        (storage, address and row stride of the merged features): ``generate`` encodes the video
        before the prefill and passes the features only, split per video (and repeated per row for
        beam search / several sequences)."""
        tower = self.vision_tower
        pending: list[dict[str, Any]] = []

        def before(module: nn.Module, args: tuple, kwargs: dict) -> None:
            call = bind_call(module, args, kwargs)
            if not vision.keep_pixels:
                call.pop("hidden_states", None)
            pending.append(vision.add(call))

        def after(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
            if not pending:
                return
            entry = pending.pop()
            for value in output.values() if hasattr(output, "values") else ():
                if isinstance(value, torch.Tensor):
                    entry["outputs"].add(storage_pointer(value))
            merged = getattr(output, "pooler_output", None)
            if isinstance(merged, torch.Tensor) and merged.dim() == 2:
                entry["merged"] = (merged.data_ptr(), merged.stride(0) * merged.element_size())

        return [
            tower.register_forward_pre_hook(before, with_kwargs=True),
            tower.register_forward_hook(after, with_kwargs=True),
        ]

    @staticmethod
    def _has_video(call: Mapping[str, Any]) -> bool:
        outputs = call.get("mm_encoder_outputs") or {}
        return call.get("pixel_values_videos") is not None or outputs.get("video") is not None

    def _video_sources(
        self, call: Mapping[str, Any], vision: VisionCalls | None
    ) -> list[tuple[list[int], torch.Tensor | None]]:
        """Per video of the call, in order: its ``video_grid_thw`` row and its pixel rows (``None``
        if they cannot be found)."""

        def split(grid_thw: torch.Tensor, rows: torch.Tensor | None) -> list[tuple[list[int], Any]]:
            sizes = grid_thw.prod(-1).tolist()
            offsets = [0, *itertools.accumulate(sizes)]
            return [
                (grid_thw[v].tolist(), None if rows is None else rows[offsets[v] : offsets[v + 1]])
                for v in range(len(sizes))
            ]

        grid_thw = call.get("video_grid_thw")
        features = (call.get("mm_encoder_outputs") or {}).get("video")
        if features is None or grid_thw is not None and call.get("pixel_values_videos") is not None:
            return split(grid_thw, call.get("pixel_values_videos"))
        chunks = features.pooler_output
        chunks = [chunks] if isinstance(chunks, torch.Tensor) else list(chunks)
        if grid_thw is not None and len(grid_thw) == len(chunks):
            return split(grid_thw, None)
        m2 = self.merge**2
        pointer = storage_pointer(chunks[0]) if chunks else None
        for entry in reversed(vision.entries if vision is not None else []):
            thw = entry["args"].get("grid_thw")
            if thw is None or pointer not in entry["outputs"] or "merged" not in entry:
                continue
            videos = split(thw, entry["args"].get("hidden_states"))
            starts = [0, *itertools.accumulate((thw.prod(-1) // m2).tolist())]
            base, stride = entry["merged"]
            out = []
            for chunk in chunks:  # each chunk is a view of the tower's output: its row says which video
                offset, rest = divmod(chunk.data_ptr() - base, stride)
                if rest or offset not in starts[:-1]:
                    break
                out.append(videos[starts.index(offset)])
            else:
                return out
        raise InputError(
            "the call carries video features (mm_encoder_outputs) but not their grids: pass video_grid_thw "
            "with them, or let the patched model encode the video (pixel_values_videos)"
        )

    def check_call(self, call: Mapping[str, Any]) -> None:
        grid_thw = call.get("video_grid_thw")
        if grid_thw is None or call.get("pixel_values_videos") is None:
            return
        m = self.merge
        for index, (t, h, w) in enumerate(grid_thw.tolist()):
            if t < 1 or h < m or w < m:
                raise InputError(
                    f"video {index} has video_grid_thw {[t, h, w]}: a video needs at least one temporal "
                    f"slot of {self.vision_config.temporal_patch_size} frames and {m}x{m} patches"
                )

    def merged_grids(self, grid_thw: torch.Tensor) -> list[tuple[int, int, int]]:
        """(T', H', W') of every video, from ``video_grid_thw`` (T', patch rows, patch columns)."""
        m = self.merge
        return [(int(t), int(h) // m, int(w) // m) for t, h, w in grid_thw.tolist()]

    def video_spans(self, call: Mapping[str, Any], vision: VisionCalls | None = None) -> list[VideoSpan]:
        if not self._has_video(call):
            return []
        input_ids = call.get("input_ids")
        if input_ids is None:
            raise InputError(
                "stprune finds a prompt's video tokens by their placeholder ids: pass input_ids (with "
                "mm_token_type_ids, as the processor returns them), not inputs_embeds"
            )
        sources = self._video_sources(call, vision)
        m = self.merge
        grids = [(t, h // m, w // m) for (t, h, w), _ in sources]
        placeholder = input_ids == int(self.model.config.video_token_id)
        total = sum(t * h * w for t, h, w in grids)
        check_video_count(int(placeholder.sum()), total, f"the videos have {total} tokens")
        spans: list[VideoSpan] = []
        queue = iter(enumerate(grids))
        empty = torch.zeros(0, dtype=torch.long, device=input_ids.device)
        for row in range(input_ids.shape[0]):
            columns = placeholder[row].nonzero().squeeze(1)
            start = 0
            while start < columns.numel():
                index, grid = next(queue)
                n = grid[0] * grid[1] * grid[2]
                if start + n > columns.numel():
                    raise InputError(
                        f"video {index} ({n} tokens) does not fit in row {row}'s remaining "
                        f"{columns.numel() - start} video placeholders: the grids are not in prompt order"
                    )
                source = sources[index] if sources[index][1] is not None else None
                spans.append(VideoSpan(row, index, grid, columns[start : start + n], empty, source))
                start += n
        return spans

    def prompt_grids(self, call: Mapping[str, Any]) -> list[tuple[int, int, int]]:
        grid_thw = call.get("video_grid_thw")
        return [] if grid_thw is None else self.merged_grids(grid_thw)

    pixel_tokens = True

    def video_pixels(self, span: VideoSpan) -> PixelGrid:
        cfg = self.vision_config
        ts, p, m = int(cfg.temporal_patch_size), int(cfg.patch_size), self.merge
        if span.source is None:
            raise InputError(
                f"the pixels of video {span.index} were not found (features given without pixels)"
            )
        grid_thw, rows = span.source
        frames = unpack_qwen_video(rows, grid_thw, int(cfg.in_channels), ts, p, m)
        return PixelGrid(frames, ts, (p * m, p * m))

    # --- keys ---------------------------------------------------------------------------------

    def _key_heads(self, tokens: torch.Tensor) -> torch.Tensor:
        """(n, C) -> (n, kv_heads, head_dim) keys of the first decoder layer, before rotation."""
        layer = self.language_model.layers[0]
        k = layer.self_attn.k_proj(layer.input_layernorm(tokens))
        return k.view(tokens.shape[0], -1, self.llm_shape.head_dim)

    def video_keys(self, tokens: torch.Tensor) -> torch.Tensor:
        return self._key_heads(tokens).mean(1)

    # --- example ------------------------------------------------------------------------------

    default_frames = 8
    default_size = (56, 84)

    def example_prompt(
        self,
        batch_size: int = 1,
        num_frames: int | None = None,
        size: tuple[int, int] | None = None,
        text_tokens: int = 16,
        device: Any = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> dict:
        cfg, vcfg = self.model.config, self.vision_config
        ts, p = int(vcfg.temporal_patch_size), int(vcfg.patch_size)
        grid = self._patch_grid(num_frames, size)
        before, after = text_around(text_tokens)
        ids = [1] * before + self.video_placeholders(grid) + [2] * after
        input_ids = torch.tensor([ids] * batch_size, device=device)
        mm = torch.where(input_ids == int(cfg.video_token_id), 2, 0).to(torch.int32)
        rows = grid[0] * grid[1] * grid[2]
        pixels = torch.randn(
            batch_size * rows, int(vcfg.in_channels) * ts * p * p, device=device, dtype=dtype
        )
        call = {
            "input_ids": input_ids,
            "attention_mask": torch.ones_like(input_ids),
            "mm_token_type_ids": mm,
            "pixel_values_videos": pixels,
            "video_grid_thw": torch.tensor([grid] * batch_size, device=device),
        }
        return {**call, "logits_to_keep": 1} if self.has_head else call

    def _patch_grid(self, num_frames: int | None, size: tuple[int, int] | None) -> tuple[int, int, int]:
        """(T', Hp, Wp) patch grid of a video of ``num_frames`` frames of ``size`` pixels (the
        processor repeats the last frame up to a multiple of the temporal patch)."""
        vcfg = self.vision_config
        ts, p = int(vcfg.temporal_patch_size), int(vcfg.patch_size)
        frames = self.default_frames if num_frames is None else num_frames
        h, w = self.default_size if size is None else size
        unit = p * self.merge
        for name, value, low in (("frames", frames, 1), ("height", h, unit), ("width", w, unit)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise SettingError(f"{name} must be an int >= {low}; got {value!r}")
        if h % unit or w % unit:
            raise SettingError(
                f"{type(self.model).__name__} takes frames whose sides are multiples of {unit} pixels (patch "
                f"{p} x merge {self.merge}), as its processor resizes them; got {h}x{w}"
            )
        return (-(-frames // ts), h // p, w // p)

    def prompt_layout(
        self, num_frames: int | None = None, size: tuple[int, int] | None = None, text_tokens: int = 16
    ) -> tuple[list[tuple[int, int, int]], int]:
        grid = self._patch_grid(num_frames, size)
        m = self.merge
        before, after = text_around(text_tokens)
        return [(grid[0], grid[1] // m, grid[2] // m)], before + len(self.video_placeholders(grid)) + after

    def video_placeholders(self, grid: tuple[int, int, int]) -> list[int]:
        """The token ids the processor writes for a video of ``grid`` (patches: T', Hp, Wp)."""
        cfg, m = self.model.config, self.merge
        n = grid[0] * (grid[1] // m) * (grid[2] // m)
        return (
            [int(cfg.vision_start_token_id)] + [int(cfg.video_token_id)] * n + [int(cfg.vision_end_token_id)]
        )

    def describe(self) -> str:
        shape = self.llm_shape
        vcfg = self.vision_config
        return (
            f"{type(self.model).__name__}: LLM {shape.layers} layers x {shape.hidden}, video tokens of "
            f"{vcfg.temporal_patch_size} frames x {vcfg.patch_size * self.merge}^2 pixels"
        )
