"""What a video-language model (video LLM) tells the video-token pruner, and nothing of pruning.

A video LLM turns every video of a prompt into a grid of *merged* tokens (``T' x H' x W'``: the
LLM's temporal grid times the spatial grid after the vision tower's merger / pooling), writes them
into the prompt's embedding sequence at the video placeholder tokens, and runs the language model
(LLM) over the whole sequence. stprune prunes video tokens there: after the vision tower, before
the first LLM layer, independent of the question. An adapter for such a family says:

* which module receives the multimodal call (``input_ids``, ``pixel_values_videos``, grids) and
  which module is the language model (receives ``inputs_embeds``, ``attention_mask``,
  ``position_ids``, the KV cache);
* where every video of a call lies in the sequence (:class:`VideoSpan`: its row, its grid, the
  sequence column of each grid token in raster order, the tokens never pruned);
* the video's pixels on the same grid (for pixel-difference methods: RLT);
* what plays the role of *keys* for key-based methods (STA): the first LLM layer's key
  projection of the video tokens, before rotation;
* how the language model receives positions (3-row M-RoPE ids or 1-D ids) and what it uses when
  given none; any other per-token input the language model takes (Qwen3-VL's deepstack features);
* the exact cost model (vision tower, LLM prefill, head) and a small example model.

It never knows which method prunes. A new family is one file with a :class:`VideoLLMAdapter`
subclass decorated with ``register_adapter``.
"""

from __future__ import annotations

import inspect
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from stprune.adapters.base import Adapter
from stprune.errors import InputError, SettingTypeError

__all__ = [
    "LLMShape",
    "PixelGrid",
    "VisionCalls",
    "VideoLLMAdapter",
    "VideoSpan",
    "bind_call",
    "llm_layer_macs",
    "text_around",
]


@dataclass(frozen=True)
class VideoSpan:
    """One video of a multimodal call, as the language model receives it.

    Attributes:
        sample: the batch row the video is in.
        index: the video's index in the call (batch order, then prompt order).
        grid: (T', H', W') its merged-token grid: temporal slots x rows x columns.
        columns: (T' * H' * W',) int64 sequence column (in its row) of each grid token, in grid
            (raster) order ``(t * H' + y) * W' + x``.
        protected: (p,) int64 columns of this video's tokens that are not grid tokens and are never
            pruned (LLaVA-OneVision's newline token after the frames); empty if none.
        source: what the adapter needs to find the video's pixels again (opaque to the pruner).
    """

    sample: int
    index: int
    grid: tuple[int, int, int]
    columns: torch.Tensor
    protected: torch.Tensor
    source: Any = None

    @property
    def num_tokens(self) -> int:
        """Grid tokens T' * H' * W'."""
        t, h, w = self.grid
        return t * h * w


@dataclass(frozen=True)
class PixelGrid:
    """A video's pixels laid out so that grid token ``(t, y, x)`` covers frames
    ``t * tubelet .. (t + 1) * tubelet - 1`` and the ``patch`` pixel block at ``(y, x)``.

    Attributes:
        pixels: (T, C, H, W) the frames as the vision tower receives them (normalised).
        tubelet: frames per temporal slot.
        patch: (ph, pw) pixels per merged token.
    """

    pixels: torch.Tensor
    tubelet: int
    patch: tuple[int, int]


@dataclass(frozen=True)
class LLMShape:
    """The language model's shape, for costs (one decoder layer x ``layers``, then the head).

    Attributes:
        layers: decoder layers.
        hidden: model width C.
        heads: query heads; ``kv_heads``: key/value heads (grouped-query attention); ``head_dim``.
        intermediate: MLP width (gated: gate, up, down projections).
        vocab: output vocabulary (the LM head).
    """

    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    def kv_cache_bytes(self, tokens: int, bytes_per_value: int) -> int:
        """Bytes of the KV cache holding ``tokens`` positions (keys and values of every layer)."""
        return 2 * self.layers * self.kv_dim * tokens * bytes_per_value


def llm_layer_macs(shape: LLMShape, queries: int, keys: int) -> int:
    """MACs of one gated-MLP decoder layer on ``queries`` new tokens attending over ``keys`` tokens
    (the cache included): q, k, v, o projections, attention scores and weighted sum (as
    ``FlopCounterMode`` counts scaled dot-product attention: every query against every key), MLP."""
    c, q_dim, kv_dim = shape.hidden, shape.heads * shape.head_dim, shape.kv_dim
    proj = queries * (c * q_dim + 2 * c * kv_dim + q_dim * c)
    attention = 2 * shape.heads * queries * keys * shape.head_dim
    mlp = 3 * queries * c * shape.intermediate
    return proj + attention + mlp


class VisionCalls:
    """The last few calls of a vision tower, for calls of the multimodal model that carry video
    features encoded earlier (``generate`` encodes pixels before the prefill and passes only the
    features, ``mm_encoder_outputs``, without the grids). Filled by the hooks of
    :meth:`VideoLLMAdapter.vision_hooks`; an entry is ``{"args": call by name, "outputs": storage
    pointers of the tensors it returned}``."""

    def __init__(self, keep: int = 2, keep_pixels: bool = True) -> None:
        self.keep = keep
        #: whether entries hold the pixels the tower received (else the adapter's hooks drop them)
        self.keep_pixels = keep_pixels
        self.entries: list[dict[str, Any]] = []

    def add(self, call: dict[str, Any]) -> dict[str, Any]:
        entry = {"args": call, "outputs": set()}
        self.entries = [*self.entries[-(self.keep - 1) :], entry] if self.keep > 1 else [entry]
        return entry

    def clear(self) -> None:
        self.entries = []


def storage_pointer(t: torch.Tensor) -> int:
    """Address of the storage a tensor views (equal for a tensor and its splits / views)."""
    return t.untyped_storage().data_ptr()


def bind_call(module: nn.Module, args: tuple, kwargs: dict) -> dict[str, Any]:
    """The arguments of a call to ``module`` by name (positional ones named by its ``forward``)."""
    if not args:
        return dict(kwargs)
    params = list(inspect.signature(module.forward).parameters)
    return {**dict(zip(params, args, strict=False)), **kwargs}


class VideoLLMAdapter(Adapter):
    """A video-language model family: where the video tokens are and how its LLM takes positions.

    Subclasses describe one family (see the module docstring); the pruner
    (``stprune.pruning.video_llm``) does the rest.
    """

    #: whether the language model takes 3-row M-RoPE position ids (t, h, w) (else 1-D ids)
    mrope: bool = False

    # --- modules ---------------------------------------------------------------------------

    @property
    @abstractmethod
    def multimodal_model(self) -> nn.Module:
        """The module whose forward receives ``input_ids``, pixels and grids and calls the LLM."""

    @property
    @abstractmethod
    def language_model(self) -> nn.Module:
        """The decoder that receives ``inputs_embeds`` (B, S, C): the pruning point (its pre-hook)."""

    @property
    @abstractmethod
    def vision_tower(self) -> nn.Module:
        """The vision encoder the video's pixels go through first (for timing its share)."""

    @property
    @abstractmethod
    def llm_shape(self) -> LLMShape:
        """The language model's shape (for costs and keys)."""

    # --- the videos of a call ----------------------------------------------------------------

    @abstractmethod
    def video_spans(self, call: Mapping[str, Any], vision: VisionCalls | None = None) -> list[VideoSpan]:
        """Every video of a call of :attr:`multimodal_model` (its arguments by name), batch order
        then prompt order; empty when the call carries no video features (text or images only,
        or a decoding step). ``vision``: the vision tower's recent calls (for features encoded
        before the call). Raises ``InputError`` if the placeholders do not match the videos."""

    def check_call(self, call: Mapping[str, Any]) -> None:
        """Raise ``InputError`` for video inputs the model cannot take, before its vision tower runs
        (default: none)."""

    def vision_hooks(self, vision: VisionCalls) -> list[torch.utils.hooks.RemovableHandle]:
        """Hooks on the vision tower that log its calls into ``vision`` (default: none)."""
        return []

    #: whether every merged token covers a whole block of pixels (then :meth:`video_pixels` works)
    pixel_tokens: bool = False

    def pixel_tokens_reason(self) -> str:
        """Why :meth:`video_pixels` is unavailable (for the error of a pixel-level method)."""
        return "it does not give its video pixels per token"

    def video_pixels(self, span: VideoSpan) -> PixelGrid:
        """The pixels of ``span``'s video on its token grid (for pixel-difference methods)."""
        from stprune.errors import UnsupportedModelError

        raise UnsupportedModelError(f"{type(self.model).__name__}: {self.pixel_tokens_reason()}")

    # --- keys -----------------------------------------------------------------------------

    @property
    def key_source(self) -> str:
        """Says in words what :meth:`video_keys` computes (for docs and messages)."""
        return "the first LLM layer's key projection, averaged over key/value heads"

    @abstractmethod
    def video_keys(self, tokens: torch.Tensor) -> torch.Tensor:
        """(n, C) video embeddings -> (n, d) keys: what the first LLM layer's attention computes as
        keys for them before rotary positions are applied, averaged over key/value heads."""

    def key_macs(self, tokens: int) -> int:
        """Matrix-product MACs of :meth:`video_keys` on ``tokens`` tokens."""
        shape = self.llm_shape
        return tokens * shape.hidden * shape.kv_dim

    # --- positions ------------------------------------------------------------------------

    def default_positions(self, batch: int, length: int, past: int, device: torch.device) -> torch.Tensor:
        """The position ids the language model computes itself when given none: (B, S) for 1-D
        models, (3, B, S) for M-RoPE ones; ``past`` tokens are already in the cache."""
        pos = (torch.arange(length, device=device) + past).expand(batch, length)
        return pos.expand(3, batch, length) if self.mrope else pos

    def prune_language_inputs(
        self, kwargs: dict[str, Any], keep: torch.Tensor, index: torch.Tensor, pad: torch.Tensor
    ) -> dict[str, Any]:
        """Other per-token inputs of the language model, cut to the kept tokens (default: none).

        Args:
            kwargs: the language model's call.
            keep: (B, S) bool, the columns kept.
            index: (B, S') int64, the column each new position takes (left-padded).
            pad: (B, S') bool, True at the new padding positions.
        """
        return kwargs

    # --- options --------------------------------------------------------------------------

    #: 1-D families may re-number the kept tokens' positions (``positions="repacked"``)
    repackable: bool = False

    def check_options(self, options: Mapping[str, Any]) -> None:
        """Raise ``SettingTypeError`` for family options it does not know (default: none)."""
        allowed = {"positions"} if self.repackable else set()
        unknown = sorted(set(options) - allowed)
        if unknown:
            takes = f"it takes {sorted(allowed)}" if allowed else "it takes none"
            raise SettingTypeError(
                f"{type(self.model).__name__} got unknown pruning options {unknown}; {takes}"
            )

    # --- costs ----------------------------------------------------------------------------

    @abstractmethod
    def prompt_grids(self, call: Mapping[str, Any]) -> list[tuple[int, int, int]]:
        """(T', H', W') of every video of a call that carries its pixels (e.g. :meth:`example_prompt`'s)."""

    @abstractmethod
    def vision_macs(self, grids: Sequence[tuple[int, int, int]]) -> int:
        """MACs of the vision tower (and merger / projector) on videos of these merged grids."""

    @property
    def has_head(self) -> bool:
        """Whether the model ends in the LM head (``*ForConditionalGeneration``, not the bare model)."""
        return isinstance(getattr(self.model, "lm_head", None), nn.Linear)

    def prefill_macs(self, length: int, logits: int = 1) -> int:
        """MACs of the LLM prefill over ``length`` tokens, and the LM head on ``logits`` positions
        (as ``generate`` does: the last one; none for a model without a head)."""
        shape = self.llm_shape
        head = logits * shape.hidden * shape.vocab if self.has_head else 0
        return shape.layers * llm_layer_macs(shape, length, length) + head

    def decode_macs(self, context: int) -> int:
        """MACs of one decoding step with ``context`` tokens in the cache (the head included)."""
        shape = self.llm_shape
        head = shape.hidden * shape.vocab if self.has_head else 0
        return shape.layers * llm_layer_macs(shape, 1, context + 1) + head

    # --- example -------------------------------------------------------------------------

    @abstractmethod
    def prompt_layout(
        self, num_frames: int | None = None, size: tuple[int, int] | None = None, text_tokens: int = 16
    ) -> tuple[list[tuple[int, int, int]], int]:
        """The merged grid of the video and the sequence length of :meth:`example_prompt`'s row for
        these arguments, without building it (for costs). Raises ``SettingError`` naming a frame
        count or size the family cannot take."""

    @abstractmethod
    def example_prompt(
        self,
        batch_size: int = 1,
        num_frames: int | None = None,
        size: tuple[int, int] | None = None,
        text_tokens: int = 16,
        device: Any = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> dict:
        """Keyword arguments of a call with one random video per row (``num_frames`` frames of
        ``size`` pixels, the family's defaults if ``None``) between ``text_tokens`` text tokens;
        a model with an LM head computes the logits of the last position only
        (``logits_to_keep=1``, as ``generate``'s prefill)."""

    def example_inputs(
        self, batch_size: int = 1, device: Any = "cpu", dtype: torch.dtype = torch.float32
    ) -> dict:
        return self.example_prompt(batch_size, device=device, dtype=dtype)

    def unpruned_tokens_per_block(self) -> list[int]:
        inputs = self.example_prompt(1, device="meta")
        return [int(inputs["input_ids"].shape[1])] * self.llm_shape.layers

    def check_attention(self) -> None:
        """Raise ``UnsupportedModelError`` if the language model's attention cannot take a pruned,
        re-padded sequence (default: eager and SDPA only)."""
        from stprune.errors import UnsupportedModelError

        impl = getattr(self.language_model.config, "_attn_implementation", None) or "eager"
        if impl not in ("eager", "sdpa"):
            raise UnsupportedModelError(
                f"{type(self.model).__name__}'s language model uses attn_implementation={impl!r}; stprune "
                "prunes video tokens under 'sdpa' and 'eager' only (the others are untested here): load with "
                "attn_implementation='sdpa'"
            )


def text_around(text_tokens: int) -> tuple[int, int]:
    """Text tokens before and after the video of an example prompt (at least one each)."""
    before = max(1, text_tokens // 2)
    return before, max(1, text_tokens - before)


def check_video_count(found: int, expected: int, what: str) -> None:
    """Raise ``InputError`` when a call's placeholders and videos disagree."""
    if found != expected:
        raise InputError(f"the prompt has {found} video placeholder tokens but {what}")
