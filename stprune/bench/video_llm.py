"""Costs and speed of a video LLM's prefill, unpruned vs pruned (``stprune flops`` / ``bench``).

A *prompt* here is one video of ``num_frames`` frames of ``size`` pixels between text tokens
(the adapter's :meth:`~stprune.adapters.video_llm.VideoLLMAdapter.example_prompt`). For each
setting (method x ``keep_ratio`` / ``r``) a row gives the video tokens kept, the sequence length
the LLM receives, GFLOPs of the vision tower, of the selection and of the LLM prefill (layers and
the head on the last position, as ``generate``'s prefill computes it), the ratios pruned /
unpruned of the prefill alone and of the whole call, and the KV cache the prefill leaves (bf16).
All from the analytic cost model, which equals ``FlopCounterMode`` (tested on every family), so
checkpoint-sized presets are counted on the meta device at once. ``bench`` adds the latency of
the whole call (vision tower, selection, prefill), timed interleaved over rounds like the encoder
benchmark, its speed-up, and the memory one forward holds at its peak.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

import stprune
from stprune.adapters import get_adapter
from stprune.bench.speed import SpeedResult, forward_memory_mb, measure_speed
from stprune.core.schedule import plural
from stprune.errors import SettingError, StpruneError
from stprune.methods import get_method
from stprune.pruning.video_llm import PromptCost, build_video_llm_pruner, prompt_cost

__all__ = ["Prompt", "VideoLLMRow", "video_llm_rows", "time_video_llm_rows", "print_video_llm_rows"]

#: bytes per value of the KV-cache column (bf16, how these models are served)
KV_BYTES = 2


@dataclass(frozen=True)
class Prompt:
    """One video of ``num_frames`` frames of ``size`` (H, W) pixels between ``text_tokens`` text
    tokens; ``None`` takes the family's example defaults."""

    num_frames: int | None = None
    size: tuple[int, int] | None = None
    text_tokens: int = 64

    def describe(self, cost: PromptCost) -> str:
        """E.g. ``one video (64 frames of 448x448, 32 x 16 x 16 = 8192 tokens) between 64 text
        tokens: 8258 tokens in all``; the family's example clip when no frame count is set."""
        t, h, w = cost.grids[0]
        if self.num_frames is None:
            video = "the model family's example video"
        else:
            video = plural(self.num_frames, "frame")
        if self.size is not None:
            video += f" of {self.size[0]}x{self.size[1]}"
        return (
            f"one video ({video}, {t} x {h} x {w} = {cost.video_tokens} tokens) between {self.text_tokens} "
            f"text tokens: {cost.length} tokens in all"
        )


@dataclass
class VideoLLMRow:
    """One setting of a video-LLM comparison (see the module docstring)."""

    method: str
    setting: str
    options: dict[str, Any]
    cost: PromptCost
    speed: SpeedResult | None = None
    speedup: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        c = self.cost
        out = {
            "method": self.method,
            "setting": self.setting,
            "video_tokens": c.video_tokens,
            "video_kept": c.video_kept,
            "sequence_length": c.length_out,
            "gflops_vision": c.vision / 1e9,
            "gflops_selection": c.selection / 1e9,
            "gflops_prefill": c.prefill_out / 1e9,
            "gflops_total": c.macs / 1e9,
            "prefill_ratio": c.prefill_ratio,
            "ratio": c.ratio,
            "kv_cache_mib_bf16": kv_mib(self, c.length_out),
        }
        if self.speed is not None:
            out.update(
                prefill_ms=self.extra.get("prefill_ms"),
                prefill_speedup=self.extra.get("prefill_speedup"),
                latency_ms=self.speed.latency_ms,
                speedup=self.speedup,
                forward_memory_mb=self.speed.forward_memory_mb,
                peak_memory_mb=self.speed.peak_memory_mb,
            )
        return out


def kv_mib(row: VideoLLMRow, length: int) -> float:
    return row.extra["kv_bytes_per_token"] * length / 2**20


def _settings(
    methods: Sequence[str], keep_ratios: Sequence[float], rs: Sequence[int]
) -> list[tuple[str, str, dict]]:
    out: list[tuple[str, str, dict]] = [("none", "unpruned", {})]
    for method in methods:
        for k in keep_ratios:
            out.append((method, f"keep_ratio={k:g}", {"keep_ratio": k}))
        for r in rs:
            out.append((method, f"r={r}", {"r": r}))
    return out


def video_llm_rows(
    model: nn.Module,
    methods: Sequence[str],
    keep_ratios: Sequence[float] = (),
    rs: Sequence[int] = (),
    prompt: Prompt = Prompt(),
    on_skip: Callable[[str], Any] | None = None,
) -> list[VideoLLMRow]:
    """The rows of every setting (unpruned first), from the cost model (no forward runs).

    A setting the model refuses is skipped and reported through ``on_skip`` (one line); without
    ``on_skip`` it raises.
    """
    if not keep_ratios and not rs:
        raise SettingError("give keep ratios (--keep-ratio X ...) and/or r (--r R ...) to compare with")
    adapter = get_adapter(model)
    adapter.prompt_layout(
        prompt.num_frames, prompt.size, prompt.text_tokens
    )  # a bad prompt fails every setting
    per_token = adapter.llm_shape.kv_cache_bytes(1, KV_BYTES)
    rows: list[VideoLLMRow] = []
    for method, label, options in _settings(methods, keep_ratios, rs):
        try:
            if method == "none":
                pruner = build_video_llm_pruner(
                    adapter, get_method("random"), None, None, None, keep_ratio=1.0
                )
            else:
                options_ = dict(options)
                pruner = build_video_llm_pruner(
                    adapter, get_method(method), None, options_.pop("r", None), None, **options_
                )
            cost = prompt_cost(pruner, prompt.num_frames, prompt.size, prompt.text_tokens)
        except StpruneError as err:
            if on_skip is None:
                raise
            on_skip(f"skipped {method} {label}: {err}")
            continue
        rows.append(VideoLLMRow(method, label, options, cost, extra={"kv_bytes_per_token": per_token}))
    return rows


class PrefillTimer:
    """Times every forward's prefill: from the end of the vision tower to the end of the language
    model (the embedding scatter, positions, the selection and the LLM), with forward hooks."""

    def __init__(self, adapter: Any) -> None:
        self.adapter = adapter
        self.times: list[float] = []
        self._start: float | None = None
        self._handles: list[Any] = []

    def __enter__(self) -> PrefillTimer:
        self._handles = [
            self.adapter.vision_tower.register_forward_hook(self._vision_done),
            self.adapter.language_model.register_forward_hook(self._prefill_done),
        ]
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()

    def _vision_done(self, *args: object) -> None:
        _sync(self.adapter.model)
        self._start = time.perf_counter()

    def _prefill_done(self, *args: object) -> None:
        if self._start is not None:
            _sync(self.adapter.model)
            self.times.append((time.perf_counter() - self._start) * 1e3)
            self._start = None


def _sync(model: nn.Module) -> None:
    device = next(model.parameters()).device
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_video_llm_rows(
    model: nn.Module,
    rows: Sequence[VideoLLMRow],
    prompt: Prompt,
    batch_size: int = 1,
    warmup: int = 1,
    iters: int = 3,
    rounds: int = 3,
    dtype: torch.dtype = torch.float32,
    progress: Callable[[str], Any] | None = None,
) -> list[VideoLLMRow]:
    """Time every setting's whole call (vision tower, selection, LLM prefill, head on the last
    position), interleaved over ``rounds``; the latency is the median of the rounds' medians,
    the speed-up relative to ``rows[0]``, forward memory measured in the first round."""
    device = next(model.parameters()).device
    inputs = get_adapter(model).example_prompt(
        batch_size, prompt.num_frames, prompt.size, prompt.text_tokens, device=device, dtype=dtype
    )
    results: list[list[SpeedResult]] = [[] for _ in rows]
    prefill: list[list[float]] = [[] for _ in rows]
    adapter = get_adapter(model)
    for rnd in range(rounds):
        for i, row in enumerate(rows):
            if progress:
                progress(f"round {rnd + 1}/{rounds}: {row.method} {row.setting}")
            if row.method != "none":
                stprune.patch(model, row.method, **row.options)
            try:
                with PrefillTimer(adapter) as timer:
                    results[i].append(measure_speed(model, inputs, warmup=warmup, iters=iters))
                prefill[i].append(statistics.median(timer.times[warmup : warmup + iters]))
                if rnd == 0:  # memory: one extra, untimed forward
                    results[i][-1] = replace(
                        results[i][-1], forward_memory_mb=forward_memory_mb(model, inputs)
                    )
            finally:
                if stprune.is_patched(model):
                    stprune.unpatch(model)
    out = []
    for row, res in zip(rows, results, strict=True):
        latency = statistics.median(r.latency_ms for r in res)
        first = res[0]
        merged = SpeedResult(
            batch_size=batch_size,
            iters=sum(r.iters for r in res),
            latency_ms=latency,
            latency_ms_min=min(r.latency_ms_min for r in res),
            latency_ms_mean=statistics.fmean(r.latency_ms_mean for r in res),
            latency_ms_std=statistics.pstdev(r.latency_ms for r in res),
            clips_per_s=batch_size / (latency / 1e3),
            peak_memory_mb=max((r.peak_memory_mb for r in res if r.peak_memory_mb is not None), default=None),
            device=first.device,
            forward_memory_mb=first.forward_memory_mb,
        )
        extra = {**row.extra, "prefill_ms": statistics.median(prefill[len(out)])}
        out.append(VideoLLMRow(row.method, row.setting, row.options, row.cost, merged, extra=extra))
    for row in out:
        row.speedup = out[0].speed.latency_ms / row.speed.latency_ms
        row.extra["prefill_speedup"] = out[0].extra["prefill_ms"] / row.extra["prefill_ms"]
    return out


def print_video_llm_rows(rows: Sequence[VideoLLMRow], title: str) -> None:
    """One line per setting; the timed columns when the rows were timed."""
    from stprune.bench.report import MEMORY_NOTE, print_table

    timed = any(r.speed is not None for r in rows)
    columns = [
        ("method", "left"),
        ("setting", "left"),
        ("video tokens", "right"),
        ("sequence", "right"),
        ("GFLOPs vision", "right"),
        ("GFLOPs selection", "right"),
        ("GFLOPs LLM prefill", "right"),
        ("GFLOPs total", "right"),
        ("prefill ratio", "right"),
        ("total ratio", "right"),
        ("KV cache MiB (bf16)", "right"),
    ]
    if timed:
        columns += [
            ("prefill ms", "right"),
            ("prefill speed-up", "right"),
            ("1/prefill ratio", "right"),
            ("call ms", "right"),
            ("call speed-up", "right"),
            ("1/total ratio", "right"),
            ("fwd MiB", "right"),
        ]
    cells = []
    for r in rows:
        c = r.cost
        kept = "per video" if c.video_kept is None else str(c.video_kept)
        line = [
            r.method,
            r.setting,
            f"{kept}/{c.video_tokens}",
            str(c.length_out),
            f"{c.vision / 1e9:.1f}",
            f"{c.selection / 1e9:.2f}",
            f"{c.prefill_out / 1e9:.1f}",
            f"{c.macs / 1e9:.1f}",
            f"{c.prefill_ratio:.3f}",
            f"{c.ratio:.3f}",
            f"{kv_mib(r, c.length_out):.1f}",
        ]
        if timed:
            s = r.speed
            line += [
                f"{r.extra['prefill_ms']:.1f}",
                f"{r.extra['prefill_speedup']:.2f}x",
                f"{1 / c.prefill_ratio:.2f}x",
                f"{s.latency_ms:.1f}",
                f"{r.speedup:.2f}x",
                f"{1 / c.ratio:.2f}x",
                "-" if s.forward_memory_mb is None else f"{s.forward_memory_mb:.1f}",
            ]
        cells.append(line)
    notes = ["GFLOPs: 1 MAC = 1 FLOP; the LLM prefill includes the head on the last position (as generate)"]
    if timed:
        notes.append(
            "prefill ms: from the end of the vision tower to the end of the LLM (embedding scatter, "
            "positions, "
            "selection, LLM); call ms: the whole forward"
        )
    print_table(title, columns, cells, notes=notes + ([MEMORY_NOTE] if timed else []))
