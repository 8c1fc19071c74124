"""Side-by-side comparison of pruning settings: measured GFLOPs, tokens and speed.

Used by ``stprune flops``, ``stprune bench``, ``stprune demo`` and the scripts in
``benchmarks/``, so every printed table comes from the same code.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

import stprune
from stprune.bench.flops import count_macs
from stprune.bench.speed import SpeedResult, measure_speed
from stprune.errors import SettingError
from stprune.models import get_adapter

__all__ = ["Setting", "Row", "make_settings", "measure_flops_rows", "measure_speed_rows", "meta_twin"]


@dataclass(frozen=True)
class Setting:
    """One configuration to compare. ``method="none"`` is the unpruned model.

    ``threshold``: a method's per-clip threshold (RLT's tau: every clip keeps its own number of
    tokens) instead of ``r`` / ``flops_target``. ``options``: model-family options of
    :func:`stprune.patch` as (name, value) pairs, e.g. ``(("shifted_windows", "static"),)`` for
    Video Swin.
    """

    method: str = "none"
    r: int | tuple[int, ...] | None = None
    flops_target: float | None = None
    schedule: Any = None
    options: tuple[tuple[str, Any], ...] = ()
    threshold: float | None = None

    @property
    def label(self) -> str:
        """``unpruned``, ``flops_target=0.7``, ``r=16`` (``r=8,8,4`` per stage) or ``threshold=0.1``,
        then the options as ``name=value``."""
        if self.method == "none":
            return "unpruned"
        if self.flops_target is not None:
            label = f"flops_target={self.flops_target:g}"
        elif self.threshold is not None:
            label = f"threshold={self.threshold:g}"
        else:
            r = self.r if isinstance(self.r, int) else ",".join(map(str, self.r or ()))
            label = f"r={r}"
        return " ".join([label] + [f"{k}={v}" for k, v in self.options])

    @property
    def adaptive(self) -> bool:
        """Whether every clip gets its own token count (and cost): a threshold setting."""
        return self.method != "none" and self.threshold is not None

    def patch_kwargs(self) -> dict[str, Any] | None:
        """The keyword arguments of :func:`stprune.patch` for this setting (None when unpruned)."""
        if self.method == "none":
            return None
        kwargs: dict[str, Any] = {"method": self.method, "schedule": self.schedule, **dict(self.options)}
        if self.threshold is not None:
            kwargs["threshold"] = self.threshold
        else:
            kwargs["r"] = list(self.r) if isinstance(self.r, tuple) else self.r
            kwargs["flops_target"] = self.flops_target
        return kwargs

    def patch(self, model: nn.Module) -> None:
        """Patch ``model`` with this setting (no-op for the unpruned setting)."""
        kwargs = self.patch_kwargs()
        if kwargs is not None:
            stprune.patch(model, **kwargs)


def make_settings(
    rs: Sequence[int] | None = None,
    flops_targets: Sequence[float] | None = None,
    methods: Sequence[str] = ("sta",),
    schedule: Any = None,
    include_unpruned: bool = True,
) -> list[Setting]:
    """The unpruned setting, then every (method, r) and (method, flops_target)."""
    out = [Setting()] if include_unpruned else []
    for m in methods:
        out += [Setting(m, r=r, schedule=schedule) for r in rs or ()]
        out += [Setting(m, flops_target=x, schedule=schedule) for x in flops_targets or ()]
    return out


@dataclass
class Row:
    """Results of one setting. GFLOPs are per clip, 1 MAC = 1 FLOP."""

    setting: Setting
    gflops: float
    ratio: float
    tokens_per_block: list[int]
    r_per_stage: list[int] = field(default_factory=list)
    speed: SpeedResult | None = None
    speedup: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        d = {
            "method": self.setting.method,
            "setting": self.setting.label,
            "r_per_stage": self.r_per_stage,
            "gflops": round(self.gflops, 4),
            "ratio": round(self.ratio, 4),
            "tokens_per_block": self.tokens_per_block,
        }
        if self.speed is not None:
            d.update(
                clips_per_s=round(self.speed.clips_per_s, 3),
                latency_ms=round(self.speed.latency_ms, 2),
                peak_memory_mb=None
                if self.speed.peak_memory_mb is None
                else round(self.speed.peak_memory_mb, 1),
                forward_memory_mb=None
                if self.speed.forward_memory_mb is None
                else round(self.speed.forward_memory_mb, 1),
                speedup=None if self.speedup is None else round(self.speedup, 3),
            )
        d.update(self.extra)
        return d


def meta_twin(model: nn.Module) -> nn.Module | None:
    """A weightless copy of ``model`` on the meta device (exact FLOP counts, no compute), or None.

    Works for models built from their config alone, ``type(model)(config)``: Hugging Face models
    and our own (Video Swin). Anything else is counted on the real model.
    """
    config = getattr(model, "config", None)
    if config is None:
        return None
    try:
        with torch.device("meta"):
            twin = type(model)(copy.deepcopy(config))
    except (TypeError, ValueError):
        return None
    return twin.eval()


def measure_flops_rows(
    model: nn.Module,
    settings: Sequence[Setting],
    use_meta: bool = True,
    on_skip: Callable[[str], Any] | None = None,
) -> list[Row]:
    """Measure GFLOPs of one clip for every setting (FlopCounterMode, math SDPA).

    Args:
        model: an unpatched supported model.
        settings: what to compare; the first one is the reference for ratios.
        use_meta: count on a meta-device twin (exact and instant) when the model allows it.
        on_skip: called with a one-line note for every setting the model cannot take (e.g. a
            flops_target below what the method reaches), which is then left out; without it such a
            setting raises its SettingError.
    """
    device = next(model.parameters()).device
    target = model if device.type == "meta" else ((meta_twin(model) if use_meta else None) or model)
    if target is not model:
        device = torch.device("meta")
    adapter = get_adapter(target)
    inputs = adapter.example_inputs(1, device=device)
    rows: list[Row] = []
    for s in settings:
        try:
            s.patch(target)
        except SettingError as err:
            if on_skip is None:
                raise
            on_skip(f"skipped {s.method} {s.label}: {err}")
            continue
        try:
            macs = count_macs(target, inputs)
            if stprune.is_patched(target):
                tokens = stprune.last_trace(target).tokens_per_block
                rs = [st.r for st in stprune.patch_info(target).stages]
            else:
                tokens, rs = adapter.unpruned_tokens_per_block(), []
        finally:
            if stprune.is_patched(target):
                stprune.unpatch(target)
        rows.append(Row(s, macs / 1e9, 0.0, tokens, rs))
    for row in rows:
        row.ratio = row.gflops / rows[0].gflops
    return rows


def measure_speed_rows(
    model: nn.Module,
    rows: Sequence[Row],
    batch_size: int = 1,
    warmup: int = 2,
    iters: int = 5,
    rounds: int = 3,
    autocast_dtype: torch.dtype | None = None,
    progress: Callable[[str], Any] | None = None,
) -> list[Row]:
    """Time every setting, interleaved over ``rounds`` so that load drift hits all settings alike.

    Each round patches, warms up and times every setting in turn; a setting's latency is the
    median of its per-round median latencies. Speed-ups are relative to ``rows[0]``. Forward
    memory (:func:`stprune.bench.speed.measure_speed`) is measured in the first round.
    """
    from stprune.errors import SettingError

    for name, value, low in (("batch_size", batch_size, 1), ("warmup", warmup, 0), ("iters", iters, 1)):
        if value < low:
            raise SettingError(f"{name} must be >= {low}; got {value}")
    if rounds < 1:
        raise SettingError(f"rounds must be >= 1; got {rounds}")
    if not rows:
        raise SettingError("no settings to time")
    device = next(model.parameters()).device
    inputs = get_adapter(model).example_inputs(batch_size, device=device)
    times: dict[int, list[SpeedResult]] = {i: [] for i in range(len(rows))}
    for rnd in range(rounds):
        for i, row in enumerate(rows):
            if progress:
                progress(f"round {rnd + 1}/{rounds}: {row.setting.method} {row.setting.label}")
            row.setting.patch(model)
            try:
                times[i].append(
                    measure_speed(
                        model,
                        inputs,
                        warmup=warmup,
                        iters=iters,
                        autocast_dtype=autocast_dtype,
                        memory=rnd == 0,
                    )
                )
            finally:
                if stprune.is_patched(model):
                    stprune.unpatch(model)
    out = []
    for i, row in enumerate(rows):
        res = times[i]
        lat = sorted(r.latency_ms for r in res)[len(res) // 2]
        peaks = [r.peak_memory_mb for r in res if r.peak_memory_mb is not None]
        fwd = [r.forward_memory_mb for r in res if r.forward_memory_mb is not None]
        merged = replace(
            res[0],
            iters=sum(r.iters for r in res),
            latency_ms=lat,
            latency_ms_min=min(r.latency_ms_min for r in res),
            latency_ms_mean=sum(r.latency_ms_mean for r in res) / len(res),
            clips_per_s=batch_size / (lat / 1e3),
            peak_memory_mb=max(peaks) if peaks else None,
            forward_memory_mb=max(fwd) if fwd else None,
        )
        out.append(replace(row, speed=merged))
    for row in out:
        row.speedup = out[0].speed.latency_ms / row.speed.latency_ms
    return out
