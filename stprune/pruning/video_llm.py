"""The pruner of video LLMs: video tokens dropped once, after the vision tower, before the LLM.

Installed with two forward pre-hooks, nothing else (so ``unpatch`` gives back the stock model):

* on the adapter's *multimodal model* (it receives ``input_ids``, the video pixels, the grids):
  remember the call, so that the next hook knows where the videos are;
* on the *language model* (it receives ``inputs_embeds`` with the video embeddings written in,
  ``attention_mask``, ``position_ids``, the KV cache):

  - **prefill** (no cache, or an empty one, and the call carries video features): for every video
    the method chooses the tokens to keep (:meth:`VideoLLMPruner.select`); the sequence is cut
    to the kept columns, every row left-padded to the longest (padding masked), and every input
    that is per token is cut alike: embeddings, the attention mask, the position ids and the
    family's own (Qwen3-VL's deepstack features). Kept tokens keep their **original positions**
    (the M-RoPE ids ``get_rope_index`` gave the whole prompt, or the 1-D ids), so the text after a
    video and every generated token sit where they would have sat unpruned. A 1-D family may
    re-number instead (``positions="repacked"``).
  - **decoding** with a cache filled by a pruned prefill: the attention mask ``generate`` keeps
    for the unpruned prompt is cut the same way (the prefill's part replaced by the pruned one)
    and positions stay the unpruned ones (a 1-D model given none gets them; with
    ``positions="repacked"`` they are shifted by the tokens the row dropped).
  - a call without video features (text or images only) runs **untouched** (bitwise stock).

The selection is independent of the question (it sees only the video's tokens, keys or pixels),
so a pruned video could serve many questions. Budgets: ``keep_ratio`` (fraction of every video's
tokens kept: ``m = round(keep_ratio * N)`` per temporal slot of N tokens, ``T' * m`` per video)
or ``r`` (tokens dropped per temporal slot, ``m = N - r``); methods that do not keep the same
count in every slot keep ``T' * m`` in all (or their published floor, e.g. a whole first frame).

Index-pruning methods (STA, random) drop ``N - m`` tokens per slot in passes over the T' slots
(groups), each pass at most what the method allows (STA: half a group, the even positions of its
first group), alternating the visiting order like the paper's middle stage; STA reads keys: by
default the first LLM layer's key projection of the video tokens (``keys="llm"``), or the
embeddings themselves (``keys="embeddings"``).
"""

from __future__ import annotations

import math
import numbers
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from stprune.adapters.video_llm import VisionCalls, bind_call
from stprune.core.hashrand import content_keys
from stprune.core.schedule import Stage, TokenPlan
from stprune.errors import InputError, SettingError, SettingTypeError, UnsupportedModelError
from stprune.methods.base import (
    ForwardContext,
    IndexPruningMethod,
    InputSelectionMethod,
    Method,
    VideoTokenMethod,
)
from stprune.pruning.sequence import PROFILE_LABEL
from stprune.pruning.trace import HookedPruner, VideoLLMTrace, VideoTrace

if TYPE_CHECKING:
    from stprune.adapters.video_llm import VideoLLMAdapter, VideoSpan

__all__ = [
    "PromptCost",
    "VideoBudget",
    "VideoLLMPruner",
    "build_video_llm_pruner",
    "index_passes",
    "prompt_cost",
]

#: what plays the role of STA's keys: the first LLM layer's key projection, or the embeddings
KEY_SOURCES = ("llm", "embeddings")
#: position ids of the kept tokens: as in the unpruned prompt, or re-numbered (1-D families)
POSITION_MODES = ("original", "repacked")


def _check_keep_ratio(keep_ratio: object) -> float:
    if isinstance(keep_ratio, bool) or not isinstance(keep_ratio, numbers.Real):
        raise SettingTypeError(
            f"keep_ratio must be a number in (0, 1]; got {keep_ratio!r} ({type(keep_ratio).__name__})"
        )
    value = float(keep_ratio)
    if not (0.0 < value <= 1.0):
        raise SettingError(
            f"keep_ratio must be in (0, 1] (the fraction of each video's tokens kept); got {keep_ratio!r}"
        )
    return value


def _check_r(r: object) -> int:
    if isinstance(r, bool) or not isinstance(r, numbers.Integral):
        if isinstance(r, Sequence) and not isinstance(r, (str, bytes)):
            raise SettingTypeError(
                f"a video LLM is pruned at one point (before the LLM): give one r (tokens dropped per "
                f"temporal slot), not {list(r)!r}"
            )
        raise SettingTypeError(
            f"r must be an int (tokens dropped per temporal slot); got {r!r} ({type(r).__name__})"
        )
    if r < 0:
        raise SettingError(f"r must be >= 0 (tokens dropped per temporal slot); got {r}")
    return int(r)


@dataclass(frozen=True)
class VideoBudget:
    """How many tokens of a video to keep: ``keep_ratio`` or ``r`` (exactly one), or ``None`` for a
    method that chooses itself (RLT's threshold, DyCoke's or EVS's own knob)."""

    keep_ratio: float | None = None
    r: int | None = None

    @property
    def adaptive(self) -> bool:
        return self.keep_ratio is None and self.r is None

    def per_slot(self, tokens_per_slot: int, video: str = "the video") -> int:
        """m, tokens kept per temporal slot of ``tokens_per_slot`` tokens (at least 1)."""
        n = tokens_per_slot
        if self.keep_ratio is not None:
            return max(1, min(n, math.floor(self.keep_ratio * n + 0.5)))
        if self.r is None:
            raise ValueError("an adaptive budget has no per-slot count")
        if self.r >= n:
            raise InputError(
                f"r={self.r} drops every token of a temporal slot of {n} tokens ({video}); r must be "
                f"< {n} for this video (or give keep_ratio, which fits every video)"
            )
        return n - self.r

    def describe(self) -> str:
        if self.keep_ratio is not None:
            return f"keep_ratio={self.keep_ratio:g}"
        return f"r={self.r}" if self.r is not None else "the method's own"


def index_passes(method: Method, slots: int, per_slot: int, keep: int) -> list[Stage]:
    """The passes of an index-pruning method that take every slot from ``per_slot`` to ``keep``
    tokens: each drops as many as the method allows in one pass (``method.max_r``), the visiting
    order alternates (forward, reversed, ...). ``Stage.after_block`` numbers the passes."""
    stages: list[Stage] = []
    n = per_slot
    while n > keep:
        r = min(n - keep, method.max_r(n))
        if r <= 0:
            raise SettingError(f"method {method.name!r} cannot drop tokens from groups of {n}")
        stages.append(Stage(len(stages), slots, r, reverse=len(stages) % 2 == 1))
        n -= r
    return stages


@dataclass
class _Prefill:
    """What a pruned prefill leaves for the decoding steps that use its cache."""

    length_in: int  # S, the unpruned sequence length
    length_out: int  # S', the pruned one
    mask: torch.Tensor  # (B, S') the pruned attention mask
    dropped: torch.Tensor  # (B,) tokens every row dropped
    padded: bool  # whether the pruned mask has zeros (then decoding needs a mask)


class VideoLLMPruner(HookedPruner):
    """Prunes the video tokens of a video LLM before its language model (see the module docstring).

    Args:
        adapter: the family's adapter.
        method: an index-pruning (STA, random), input-level (RLT) or video-token (DyCoke, EVS) method.
        budget: ``keep_ratio`` / ``r``, or adaptive.
        keys: ``"llm"`` or ``"embeddings"`` (for methods that read keys).
        positions: ``"original"`` or ``"repacked"`` (1-D families only).
    """

    def __init__(
        self,
        adapter: VideoLLMAdapter,
        method: Method,
        budget: VideoBudget,
        keys: str = "llm",
        positions: str = "original",
    ) -> None:
        super().__init__()
        self.adapter = adapter
        self.method = method
        self.budget = budget
        self.keys = keys
        self.positions = positions
        self.stages: list[Stage] = []
        shape = adapter.llm_shape
        self.trace: VideoLLMTrace | None = None
        self._call: dict[str, Any] | None = None
        self._prefills: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        # the vision tower's recent calls; their pixels only for a method that reads pixels (RLT)
        self._vision = VisionCalls(keep_pixels=isinstance(method, InputSelectionMethod))
        self._pending: _Prefill | None = None  # a prefill whose cache the language model creates itself
        self._layers = shape.layers
        self._cost: tuple[int, int, int, int] | None = None

    # --- the plan: costs of the adapter's example prompt (computed when first asked) --------------

    def _example(self) -> tuple[int, int, int, int]:
        if self._cost is None:
            self._cost = _example_costs(self)
        return self._cost

    @property
    def plan(self) -> TokenPlan:
        """Sequence length every decoder layer processes for one row of the adapter's example prompt."""
        length = self._example()[1]
        return TokenPlan([length] * self._layers, [], length)

    @property
    def macs(self) -> int:
        """MACs of one row of the adapter's example prompt, pruned (vision + selection + prefill + head)."""
        return self._example()[2]

    @property
    def macs_unpruned(self) -> int:
        """The same, unpruned."""
        return self._example()[3]

    # --- bookkeeping ----------------------------------------------------------------------

    def traced_macs(self) -> int:
        """MACs per row of the last prefill: vision tower + scoring + LLM prefill + head (last position)."""
        trace = self.trace
        if trace is None:
            raise ValueError("the patched model has not run a forward pass yet")
        grids = [v.grid for v in trace.videos]
        total = (
            self.adapter.vision_macs(grids)
            + self.adapter.prefill_macs(trace.length_out, 1) * trace.batch_size
        )
        total += sum(self.scoring_macs(v.grid) for v in trace.videos)
        return total // max(1, trace.batch_size)

    def macs_per_clip(self) -> torch.Tensor:
        """(B,) int64 MACs each row of the last prefill needs on its own: its videos' vision tower
        and selection, and the prefill over its kept tokens (its padding excluded)."""
        trace = self.trace
        if trace is None:
            raise ValueError("the patched model has not run a forward pass yet")
        out = []
        for b in range(trace.batch_size):
            videos = [v for v in trace.videos if v.sample == b]
            total = self.adapter.vision_macs([v.grid for v in videos])
            total += sum(self.scoring_macs(v.grid) for v in videos)
            out.append(total + self.adapter.prefill_macs(int(trace.row_kept[b]), 1))
        return torch.tensor(out, dtype=torch.int64)

    def planned_kept(self, grid: tuple[int, int, int]) -> int | None:
        """Tokens a video of ``grid`` keeps, known without its data (``None``: decided from the data,
        RLT's threshold mode)."""
        t, h, w = grid
        n = h * w
        method = self.method
        keep = None if self.budget.adaptive else self.budget.per_slot(n) * t
        if isinstance(method, VideoTokenMethod):
            return method.kept_count(t, n, keep)
        if keep is None:
            return None
        if isinstance(method, InputSelectionMethod):
            return min(t * n, max(keep, n))
        return keep

    def scoring_macs(self, grid: tuple[int, int, int]) -> int:
        """Matrix-product MACs the selection of one video of ``grid`` spends (keys and STA's products)."""
        t, h, w = grid
        n = h * w
        if not isinstance(self.method, IndexPruningMethod) or self.budget.adaptive:
            return 0
        keep = self.budget.per_slot(n)
        passes = index_passes(self.method, t, n, keep)
        total = 0
        if self.method.uses_keys and passes:
            total += self.adapter.key_macs(t * n) if self.keys == "llm" else 0
        width = self.adapter.llm_shape.head_dim if self.keys == "llm" else self.adapter.llm_shape.hidden
        for stage in passes:
            total += self.method.scoring_macs(n, t, stage.r, width)
            n -= stage.r
        return total

    # --- install / remove -----------------------------------------------------------------

    def _install(self) -> None:
        self.adapter.check_attention()
        self._handles.extend(self.adapter.vision_hooks(self._vision))
        mm = self.adapter.multimodal_model
        self._handles.append(mm.register_forward_pre_hook(self._remember_call, with_kwargs=True))
        lm = self.adapter.language_model
        self._handles.append(lm.register_forward_pre_hook(self._prune_sequence, with_kwargs=True))
        self._handles.append(lm.register_forward_hook(self._keep_prefill_state))
        if mm is not self.adapter.model:
            self._handles.append(
                self.adapter.model.register_forward_pre_hook(self._refuse_labels, with_kwargs=True)
            )

    def _forget(self) -> None:
        self._call = None
        self._pending = None
        self._vision.clear()

    # --- hooks --------------------------------------------------------------------------------

    def _refuse_labels(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        if kwargs.get("labels") is not None and kwargs.get("pixel_values_videos") is not None:
            raise InputError(
                "labels with a pruned video: the logits cover the pruned sequence, so the labels would not "
                "line up; compute the loss on the unpatched model (stprune.unpatch) or prune for "
                "inference only"
            )

    def _remember_call(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        self._call = bind_call(module, args, kwargs)
        self.adapter.check_call(self._call)

    def _prune_sequence(self, module: nn.Module, args: tuple, kwargs: dict) -> Any:
        call, self._call = self._call, None
        lm_call = bind_call(module, args, kwargs)
        embeds = lm_call.get("inputs_embeds")
        if embeds is None:
            return None  # the language model embeds input_ids itself: no video in this call
        cache = _cache_of(lm_call)
        past = cache.get_seq_length() if cache is not None else 0
        spans = self.adapter.video_spans(call, self._vision) if call is not None else []
        if past > 0:
            if spans:
                raise InputError(
                    "the call adds video tokens to a non-empty KV cache; stprune prunes a video in the "
                    "prefill only: start from an empty cache (e.g. a new generate call) for a new video"
                )
            prefill = self._prefills.get(cache)
            if prefill is None:
                return None
            return (), self._continue(lm_call, prefill, past, call)
        b, s, _ = embeds.shape
        if not spans:
            mask = lm_call.get("attention_mask")
            lengths = _row_lengths(mask, b, s)
            self.trace = VideoLLMTrace([], self.adapter.llm_shape.layers, s, s, lengths, lengths, b)
            return None
        with torch.profiler.record_function(PROFILE_LABEL), torch.no_grad():
            keep, videos = self._keep_columns(spans, embeds, call)
        new_call, prefill = self._cut(lm_call, keep)
        lengths = _row_lengths(lm_call.get("attention_mask"), b, s)
        self.trace = VideoLLMTrace(
            videos,
            self.adapter.llm_shape.layers,
            s,
            prefill.length_out,
            lengths,
            lengths - prefill.dropped.cpu(),
            b,
        )
        if cache is not None:
            self._prefills[cache] = prefill
        else:
            self._pending = prefill  # the language model makes the cache: see _keep_prefill_state
        return (), new_call

    def _keep_prefill_state(self, module: nn.Module, args: tuple, output: Any) -> None:
        """Forward hook of the language model: a cache it created in a pruned prefill gets the state
        that later decoding steps on it need."""
        prefill, self._pending = self._pending, None
        if prefill is None:
            return
        cache = getattr(output, "cache", None)
        cache = getattr(output, "past_key_values", None) if cache is None else cache
        if cache is not None:
            self._prefills[cache] = prefill

    # --- selection ------------------------------------------------------------------------------

    def _keep_columns(
        self, spans: Sequence[VideoSpan], embeds: torch.Tensor, call: Mapping[str, Any]
    ) -> tuple[torch.Tensor, list[VideoTrace]]:
        """(B, S) bool: the columns kept, and the trace of every video."""
        b, s, _ = embeds.shape
        keep = torch.ones(b, s, dtype=torch.bool, device=embeds.device)
        videos = []
        for span in spans:
            tokens = embeds[span.sample, span.columns.to(embeds.device)]
            kept = self.select(span, tokens, call).to(embeds.device)
            dropped = torch.ones(span.num_tokens, dtype=torch.bool, device=embeds.device)
            dropped[kept] = False
            keep[span.sample, span.columns.to(embeds.device)[dropped]] = False
            columns = span.columns.cpu()
            videos.append(
                VideoTrace(
                    span.sample, span.index, span.grid, kept.cpu(), columns[kept.cpu()], span.protected.cpu()
                )
            )
        return keep, videos

    def select(self, span: VideoSpan, tokens: torch.Tensor, call: Mapping[str, Any]) -> torch.Tensor:
        """(L,) int64 ascending indices into ``span``'s grid of the tokens to keep.

        Args:
            span: where the video is.
            tokens: (T' * H' * W', C) its embeddings in grid order.
            call: the multimodal call (for pixel-level methods).
        """
        t, h, w = span.grid
        n = h * w
        label = f"video {span.index} ({t}x{h}x{w} tokens)"
        method = self.method
        keep = None if self.budget.adaptive else self.budget.per_slot(n, label) * t
        if isinstance(method, InputSelectionMethod):
            grid = self.adapter.video_pixels(span)
            budget = None if keep is None else max(keep, n)  # the first slot is always kept
            sel = method.select(grid.pixels[None], grid.tubelet, grid.patch, budget)
            kept = sel.indices[0, : int(sel.counts[0])]
        elif isinstance(method, VideoTokenMethod):
            kept = method.keep_video(tokens.view(t, n, -1), keep)
        elif isinstance(method, IndexPruningMethod):
            kept = self._index_passes(tokens, t, n, keep // t)
        else:  # refused at patch time
            raise UnsupportedModelError(f"method {method.name!r} cannot prune a video LLM's tokens")
        return kept.to(torch.int64).sort().values

    def _index_passes(self, tokens: torch.Tensor, slots: int, per_slot: int, keep: int) -> torch.Tensor:
        method = self.method
        passes = index_passes(method, slots, per_slot, keep)
        current = torch.arange(slots * per_slot, device=tokens.device)
        if not passes:
            return current
        x = tokens[None]
        if method.uses_keys:
            k = self.adapter.video_keys(tokens)[None] if self.keys == "llm" else x
        else:
            k = x[..., :1]  # not read
        ctx = ForwardContext()
        if method.uses_sample_key:
            ctx.sample_key = content_keys(x)
        method.start_forward(ctx)
        for stage in passes:
            local = method.keep_indices(x, k, stage, ctx)[0]
            current, x, k = current[local], x[:, local], k[:, local]
        return current

    # --- the sequence -----------------------------------------------------------------------------

    def _cut(self, call: dict[str, Any], keep: torch.Tensor) -> tuple[dict[str, Any], _Prefill]:
        """The language model's call with only the kept columns (left-padded), and the decode state."""
        embeds = call["inputs_embeds"]
        b, s, c = embeds.shape
        counts = keep.sum(1)
        length = int(counts.max())
        pad_count = length - counts  # (B,)
        dest = pad_count[:, None] + keep.cumsum(1) - 1  # new column of every kept column
        index = torch.zeros(b, length, dtype=torch.long, device=keep.device)
        rows, cols = keep.nonzero(as_tuple=True)
        index[rows, dest[rows, cols]] = cols
        pad = torch.arange(length, device=keep.device)[None, :] < pad_count[:, None]
        out = dict(call)
        out["inputs_embeds"] = embeds.gather(1, index[..., None].expand(-1, -1, c))
        mask = call.get("attention_mask")
        if mask is not None and mask.dim() != 2:
            raise UnsupportedModelError(
                f"the language model got a {mask.dim()}-D attention mask; stprune re-pads the pruned "
                "sequence "
                "and needs the 2-D padding mask (a static or compiled cache builds 4-D masks: use "
                "the default cache)"
            )
        if mask is None:
            new_mask = (~pad).to(torch.long)
        else:
            new_mask = mask.gather(1, index.to(mask.device)).masked_fill(pad.to(mask.device), 0)
        out["attention_mask"] = new_mask
        positions = call.get("position_ids")
        if positions is None:
            positions = self.adapter.default_positions(b, s, 0, embeds.device)
        positions = positions.expand(*positions.shape[:-2], b, s) if positions.shape[-2] == 1 else positions
        gathered = positions.gather(-1, index.to(positions.device).expand(*positions.shape[:-2], b, length))
        gathered = gathered.masked_fill(pad.to(positions.device), 0)
        if self.positions == "repacked":
            gathered = (new_mask.long().cumsum(1) - 1).masked_fill(new_mask == 0, 0).to(positions.device)
        out["position_ids"] = gathered
        out = self.adapter.prune_language_inputs(out, keep, index, pad)
        prefill = _Prefill(s, length, new_mask, s - counts, bool(pad.any()))
        return out, prefill

    def _continue(
        self, call: dict[str, Any], prefill: _Prefill, past: int, outer: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        """A decoding step on a pruned cache: the mask cut like the prefill's, unpruned positions.

        ``outer`` is the multimodal model's call: when it had neither position ids nor a mask, an
        M-RoPE model numbers the step from the (pruned) cache length, so the rows' dropped counts
        are added back.
        """
        embeds = call["inputs_embeds"]
        b, q, _ = embeds.shape
        extra = past - prefill.length_out  # tokens added since the prefill (already in the cache)
        out = dict(call)
        mask = call.get("attention_mask")
        if mask is not None:
            if mask.dim() != 2:
                raise UnsupportedModelError(
                    f"a decoding step got a {mask.dim()}-D attention mask; stprune needs the 2-D padding mask"
                )
            expected = prefill.length_in + extra + q
            if mask.shape[1] != expected:
                raise InputError(
                    f"the attention mask has {mask.shape[1]} columns; continuing a pruned prefill of "
                    f"{prefill.length_in} tokens with {extra} cached and {q} new ones needs {expected}"
                )
            out["attention_mask"] = torch.cat(
                [prefill.mask.to(mask.device, mask.dtype), mask[:, prefill.length_in :]], 1
            )
        elif prefill.padded:
            ones = torch.ones(b, extra + q, dtype=prefill.mask.dtype, device=prefill.mask.device)
            out["attention_mask"] = torch.cat([prefill.mask, ones], 1)
        positions = call.get("position_ids")
        if positions is None:
            positions = self.adapter.default_positions(b, q, prefill.length_in + extra, embeds.device)
        elif (
            self.adapter.mrope
            and outer is not None
            and outer.get("position_ids") is None
            and outer.get("attention_mask") is None
        ):
            positions = positions + prefill.dropped.to(positions.device)[:, None]
        if self.positions == "repacked":
            positions = positions - prefill.dropped.to(positions.device)[:, None]
        out["position_ids"] = positions
        return out


def _cache_of(call: Mapping[str, Any]) -> Any:
    cache = call.get("cache")
    return call.get("past_key_values") if cache is None else cache


def _query_length(call: Mapping[str, Any]) -> int:
    for name in ("input_ids", "inputs_embeds"):
        value = call.get(name)
        if value is not None:
            return int(value.shape[1])
    raise InputError("the call has neither input_ids nor inputs_embeds")


def _row_lengths(mask: torch.Tensor | None, b: int, s: int) -> torch.Tensor:
    if mask is None or mask.dim() != 2:
        return torch.full((b,), s, dtype=torch.int64)
    return mask.sum(1).to(torch.int64).cpu()


@dataclass(frozen=True)
class PromptCost:
    """What one row of a prompt costs, pruned and unpruned (MACs; 1 MAC = 1 FLOP in the tables).

    Attributes:
        grids: (T', H', W') of each video.
        video_tokens: video tokens before pruning; ``video_kept``: after (``None``: decided per
            video from the data, RLT's threshold mode: the pruned figures are then upper bounds).
        length / length_out: sequence length the LLM receives, unpruned / pruned.
        vision: vision tower (and merger / projector); ``selection``: the method's own products
            (STA's key projection and similarities); ``prefill`` / ``prefill_out``: the LLM layers and
            the head on the last position, unpruned / pruned.
    """

    grids: list[tuple[int, int, int]]
    video_tokens: int
    video_kept: int | None
    length: int
    length_out: int
    vision: int
    selection: int
    prefill: int
    prefill_out: int

    @property
    def macs_unpruned(self) -> int:
        return self.vision + self.prefill

    @property
    def macs(self) -> int:
        return self.vision + self.selection + self.prefill_out

    @property
    def ratio(self) -> float:
        """Pruned / unpruned MACs of the whole call (vision tower included)."""
        return self.macs / self.macs_unpruned

    @property
    def prefill_ratio(self) -> float:
        """Pruned / unpruned MACs of the LLM prefill alone (the selection counted on the pruned side)."""
        return (self.selection + self.prefill_out) / self.prefill


def prompt_cost(
    pruner: VideoLLMPruner,
    num_frames: int | None = None,
    size: tuple[int, int] | None = None,
    text_tokens: int = 16,
) -> PromptCost:
    """The cost of one row of the adapter's example prompt with these arguments (see
    :meth:`~stprune.adapters.video_llm.VideoLLMAdapter.prompt_layout`), from the plan: no forward runs."""
    adapter = pruner.adapter
    grids, length = adapter.prompt_layout(num_frames, size, text_tokens)
    tokens = sum(t * h * w for t, h, w in grids)
    planned = [pruner.planned_kept(g) for g in grids]
    kept = None if any(k is None for k in planned) else sum(planned)
    dropped = 0 if kept is None else tokens - kept
    return PromptCost(
        grids=grids,
        video_tokens=tokens,
        video_kept=kept,
        length=length,
        length_out=length - dropped,
        vision=adapter.vision_macs(grids),
        selection=sum(pruner.scoring_macs(g) for g in grids),
        prefill=adapter.prefill_macs(length, 1),
        prefill_out=adapter.prefill_macs(length - dropped, 1),
    )


def _example_costs(pruner: VideoLLMPruner) -> tuple[int, int, int, int]:
    """(unpruned length, pruned length, MACs pruned, MACs unpruned) of one row of the adapter's
    example prompt (its default frame count and size), the head on the last position."""
    cost = prompt_cost(pruner)
    return cost.length, cost.length_out, cost.macs, cost.macs_unpruned


def build_video_llm_pruner(
    adapter: VideoLLMAdapter,
    method: Method,
    schedule: Any,
    r: Any,
    flops_target: float | None,
    keep_ratio: float | None = None,
    **options: Any,
) -> VideoLLMPruner:
    """Check a setting for a video LLM and return its (uninstalled) pruner.

    ``options``: ``keys`` (``"llm"`` / ``"embeddings"``) and the family's (``positions`` for 1-D
    families). Raises SettingError / SettingTypeError / UnsupportedModelError before anything is
    installed.
    """
    name = type(adapter.model).__name__
    if schedule is not None:
        raise SettingError(
            f"{name} is pruned at one point (after the vision tower, before the LLM); it takes no "
            f"schedule (got schedule={schedule!r}): give keep_ratio or r"
        )
    if flops_target is not None:
        raise SettingError(
            f"flops_target is not defined for {name}: a prefill's FLOPs depend on the prompt; give "
            "keep_ratio "
            "(fraction of every video's tokens kept) or r (tokens dropped per temporal slot), and read the "
            "FLOPs of a given prompt with `stprune flops`"
        )
    if method.tracks_size:
        raise UnsupportedModelError(
            f"method {method.name!r} merges tokens; {name}'s video tokens are pruned before the LLM by "
            "index-pruning or selection methods only: sta, random, rlt, dycoke, evs"
        )
    keys = options.pop("keys", "llm")
    if keys not in KEY_SOURCES:
        raise SettingError(f"keys must be one of {', '.join(KEY_SOURCES)}; got {keys!r}")
    positions = options.get("positions", "original")
    adapter.check_options(options)
    if positions not in POSITION_MODES:
        raise SettingError(f"positions must be one of {', '.join(POSITION_MODES)}; got {positions!r}")
    if r is not None and keep_ratio is not None:
        raise SettingError(f"give either keep_ratio or r, not both (got keep_ratio={keep_ratio!r}, r={r!r})")
    budget = VideoBudget(
        None if keep_ratio is None else _check_keep_ratio(keep_ratio), None if r is None else _check_r(r)
    )
    own = isinstance(method, VideoTokenMethod) and method.has_own_budget()
    if isinstance(method, InputSelectionMethod):
        if not adapter.pixel_tokens:
            raise UnsupportedModelError(
                f"method {method.name!r} compares pixels per token, but {name}: "
                f"{adapter.pixel_tokens_reason()}; "
                "use 'evs' (the same rule on the embeddings) or 'sta'"
            )
        own = budget.adaptive and method.adaptive
        if not budget.adaptive:
            method.check_budget()
    if budget.adaptive and not own:
        raise SettingError(
            f"method {method.name!r} on {name} needs keep_ratio (fraction of every video's tokens kept, in "
            "(0, 1]) or r (tokens dropped per temporal slot)"
        )
    if own and not budget.adaptive:
        raise SettingError(
            f"method {method.name!r} was given its own budget; give keep_ratio / r or the method's option, "
            "not both"
        )
    return VideoLLMPruner(adapter, method, budget, keys=keys, positions=positions)
