"""The sweep engine: every pruning setting runs on the same batches of views.

Used by ``stprune eval`` (views of decoded videos, :mod:`stprune.eval.runner`) and ``stprune demo``
(synthetic clips, :mod:`stprune.demo.benchmark`), so both evaluate settings the same way:

1. :func:`sweep_settings` lists the settings: the unpruned model, then every method x every
   ``r`` / ``flops_target`` value, then RLT's threshold settings;
2. :func:`resolve_settings` resolves each setting ONCE, up front: it patches the model, keeps the
   stages ``stprune.patch_info`` reports (the ``r`` a ``flops_target`` search chose) and later
   re-patches with that explicit schedule, so no search is repeated per batch. A setting the model
   cannot take (e.g. a target ToMe's constant r cannot reach) is returned as a :class:`Skipped`
   note instead of failing the sweep;
3. :class:`SweepEngine` packs the views of consecutive videos into batches of ``batch_size``
   views, and for every batch patches, runs and unpatches each setting in turn (hooks only:
   cheap), accumulating every video's softmax scores per setting; a video is finished when all
   its views went through every setting it needs. Each setting's forwards are timed
   (:meth:`SweepEngine.clips_per_s`, the median over batches);
4. :func:`setting_gflops` counts a fixed-cost setting's GFLOPs per view with ``FlopCounterMode``;
   a threshold setting (a different token count per clip) is costed per clip by
   ``stprune.last_macs`` during the sweep instead;
5. :func:`sweep_figure` draws top-1 vs GFLOPs, a curve per method, the unpruned model as a star.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import statistics
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

import stprune
from stprune.bench.compare import Setting
from stprune.errors import SettingError, SettingTypeError, StpruneError

__all__ = [
    "RLT_METHOD",
    "ResolvedSetting",
    "Skipped",
    "VideoResult",
    "ViewBatcher",
    "SweepEngine",
    "CurvePoint",
    "method_names",
    "sweep_settings",
    "resolve_settings",
    "setting_dir",
    "short_label",
    "setting_gflops",
    "running_top1",
    "sweep_figure",
]

#: the method whose threshold settings ``--rlt-threshold`` adds
RLT_METHOD = "rlt"


def method_names() -> tuple[str, ...]:
    """The registered encoder methods (``stprune.methods.encoder_methods``), in registration order."""
    from stprune.methods import encoder_methods

    return encoder_methods()


def _as_list(values: Any) -> list[Any]:
    if values is None:
        return []
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        return [values]
    return list(values)


def _check_r(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise SettingTypeError(f"--r {value!r} must be an integer >= 0")
    if value < 0:
        raise SettingError(f"--r {value} must be >= 0")
    return int(value)


def _check_threshold(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise SettingTypeError(f"--rlt-threshold {value!r} must be a finite number")
    if not math.isfinite(float(value)) or value < 0:
        raise SettingError(f"--rlt-threshold {value!r} must be a finite number >= 0")
    return float(value)


def sweep_settings(
    methods: str | Sequence[str],
    r: int | Sequence[int] | None = None,
    flops_target: float | Sequence[float] | None = None,
    threshold: float | Sequence[float] | None = None,
    include_unpruned: bool = True,
) -> list[Setting]:
    """The unpruned model (first, when ``include_unpruned``), then every method x every ``r`` and
    every method x every ``flops_target``, then RLT at every ``threshold``; duplicates dropped.

    Every value is checked here, before any model is loaded: methods against the registry,
    ``r`` >= 0, ``flops_target`` in (0, 1], thresholds finite and >= 0 (SettingError / SettingTypeError,
    naming the value and the allowed range). RLT must be registered for ``threshold``.
    """
    from stprune.core.flops import check_flops_target

    names = method_names()
    methods = _as_list(methods)
    for m in methods:
        if m not in names:
            raise SettingError(f"--method {m!r} must be one of {', '.join(names)}")
    rs = [_check_r(v) for v in _as_list(r)]
    targets = [check_flops_target(v) for v in _as_list(flops_target)]
    taus = [_check_threshold(v) for v in _as_list(threshold)]
    if taus and RLT_METHOD not in names:
        raise SettingError(
            f"--rlt-threshold needs the {RLT_METHOD!r} method, which this stprune does not have "
            f"(methods: {', '.join(names)})"
        )
    out = [Setting()] if include_unpruned else []
    for m in dict.fromkeys(methods):
        out += [Setting(m, r=v) for v in rs]
        out += [Setting(m, flops_target=v) for v in targets]
    out += [Setting(RLT_METHOD, threshold=v) for v in taus]
    return list(dict.fromkeys(out))


def setting_dir(setting: Setting) -> str:
    """The folder name of a setting's results in a sweep: ``none``, ``sta_flops_target=0.7``,
    ``tome_r=8``, ``rlt_threshold=0.1`` (characters other than letters, digits and ``._=,-``
    become ``_``)."""
    if setting.method == "none":
        return "none"
    text = f"{setting.method}_{setting.label}"
    return "".join(c if c.isalnum() or c in "._=,-" else "_" for c in text)


def short_label(setting: Setting) -> str:
    """A compact name for progress lines: ``none``, ``sta@0.7``, ``tome:r8``, ``rlt:t0.1``."""
    if setting.method == "none":
        return "none"
    if setting.flops_target is not None:
        return f"{setting.method}@{setting.flops_target:g}"
    if setting.threshold is not None:
        return f"{setting.method}:t{setting.threshold:g}"
    r = setting.r if isinstance(setting.r, int) else ",".join(map(str, setting.r or ()))
    return f"{setting.method}:r{r}"


@dataclass(frozen=True)
class ResolvedSetting:
    """A setting resolved for one model.

    Attributes:
        setting: what was asked for.
        patch_kwargs: the :func:`stprune.patch` keywords that install it without any search (an
            explicit schedule with the chosen r), or None for the unpruned model.
        pruning: what is installed, for summaries: ``{"method", "stages": [{"after_block",
            "groups", "r", "reverse"}, ...], "estimated_flops_ratio"}``; None when unpruned.
        r_per_stage: the r of every stage (empty when unpruned or when stages have no r).
    """

    setting: Setting
    patch_kwargs: Mapping[str, Any] | None = None
    pruning: Mapping[str, Any] | None = None
    r_per_stage: tuple[int, ...] = ()

    @property
    def method(self) -> str:
        return self.setting.method

    @property
    def label(self) -> str:
        return self.setting.label

    @property
    def adaptive(self) -> bool:
        """A different token count (and cost) per clip: costed per clip with ``stprune.last_macs``."""
        return self.setting.adaptive

    @contextlib.contextmanager
    def applied(self, model: nn.Module) -> Iterator[nn.Module]:
        """``model`` patched with this setting inside the block, unpatched after it."""
        if self.patch_kwargs is None:
            yield model
            return
        stprune.patch(model, **self.patch_kwargs)
        try:
            yield model
        finally:
            stprune.unpatch(model)


@dataclass(frozen=True)
class Skipped:
    """A setting the model cannot take, and why (the library's one-line message)."""

    setting: Setting
    reason: str

    @property
    def note(self) -> str:
        return f"skipped {self.setting.method} {self.setting.label}: {self.reason}"


def _pruning_summary(info: Any) -> dict[str, Any]:
    return {
        "method": info.method,
        "stages": [
            {"after_block": s.after_block, "groups": s.groups, "r": s.r, "reverse": s.reverse}
            for s in info.stages
        ],
        # a method that decides per clip (RLT's threshold) has no planned ratio: the summary's
        # gflops_per_view is the mean of what each view used
        "estimated_flops_ratio": None if any(s.r is None for s in info.stages) else info.flops_ratio,
    }


def _same_plan(model: nn.Module, kwargs: Mapping[str, Any], info: Any) -> bool:
    """Whether ``stprune.patch(model, **kwargs)`` installs exactly ``info``'s stages and cost."""
    try:
        stprune.patch(model, **kwargs)
    except StpruneError:
        return False
    try:
        again = stprune.patch_info(model)
    finally:
        stprune.unpatch(model)
    return again.stages == info.stages and again.macs == info.macs


def _resolve_one(model: nn.Module, setting: Setting) -> ResolvedSetting:
    kwargs = setting.patch_kwargs()
    if kwargs is None:
        return ResolvedSetting(setting)
    stprune.patch(model, **kwargs)
    try:
        info = stprune.patch_info(model)
    finally:
        stprune.unpatch(model)
    rs = tuple(s.r for s in info.stages if s.r is not None)
    replay = dict(kwargs)
    if not setting.adaptive and len(rs) == len(info.stages):
        # the stages carry the chosen r: re-patching with them needs no search. An explicit
        # schedule first; a method that takes none (RLT drops input tokens once) takes the r.
        rest = {k: v for k, v in kwargs.items() if k not in ("r", "flops_target", "schedule")}
        candidates = [
            {**rest, "schedule": list(info.stages)},
            {**rest, "schedule": kwargs.get("schedule"), "r": rs[0] if len(rs) == 1 else list(rs)},
        ]
        replay = next((c for c in candidates if _same_plan(model, c, info)), replay)
    return ResolvedSetting(setting, replay, _pruning_summary(info), rs)


def resolve_settings(
    model: nn.Module, settings: Sequence[Setting], strict: bool = False
) -> tuple[list[ResolvedSetting], list[Skipped]]:
    """Resolve every setting once for ``model`` (unpatched; left unpatched).

    Returns the settings the model can take, in order, and a :class:`Skipped` note for each one
    it cannot (a :class:`stprune.errors.StpruneError` from ``stprune.patch``: a target out of
    reach, too large an r, a method the model's attention cannot take). ``strict``: raise that
    error instead.
    """
    resolved, skipped = [], []
    for s in settings:
        try:
            resolved.append(_resolve_one(model, s))
        except StpruneError as err:
            if strict:
                raise
            skipped.append(Skipped(s, " ".join(str(err).split("\n"))))
    return resolved, skipped


def setting_gflops(model: nn.Module, setting: ResolvedSetting, inputs: Mapping[str, torch.Tensor]) -> float:
    """GFLOPs (1 MAC = 1 FLOP) of ``model(**inputs)`` under ``setting``, divided by the batch of
    ``inputs`` (give one view): counted with ``FlopCounterMode`` under the math SDPA kernel
    (:func:`stprune.bench.flops.count_macs`)."""
    from stprune.bench.flops import count_macs

    batch = next(iter(inputs.values())).shape[0]
    with setting.applied(model):
        return count_macs(model, inputs) / 1e9 / batch


class ViewBatcher:
    """Packs the views of consecutive videos into batches of exactly ``batch_size`` views
    (the last batch may be smaller); a video's views may span two batches."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.queue: deque[tuple[Any, torch.Tensor]] = deque()
        self.queued = 0

    def add(self, owner: Any, views: torch.Tensor) -> None:
        """Queue ``views`` (V, ...) of ``owner``."""
        self.queue.append((owner, views))
        self.queued += views.shape[0]

    def ready(self) -> bool:
        return self.queued >= self.batch_size

    def take(self) -> tuple[torch.Tensor, list[tuple[Any, int]]]:
        """Up to ``batch_size`` views (B, ...) and, per contributing owner, how many of them are its."""
        parts, owners, need = [], [], self.batch_size
        while need and self.queue:
            owner, views = self.queue[0]
            k = min(need, views.shape[0])
            parts.append(views[:k])
            owners.append((owner, k))
            need -= k
            if k == views.shape[0]:
                self.queue.popleft()
            else:
                self.queue[0] = (owner, views[k:])
        self.queued -= self.batch_size - need
        return torch.cat(parts), owners


@dataclass(frozen=True)
class VideoResult:
    """A finished video: per setting index it needed, the mean softmax scores over its views
    ``(num_classes,)`` float32 and, for adaptive settings, its mean GFLOPs per view."""

    owner: Any
    probs: dict[int, torch.Tensor]
    gflops: dict[int, float]


@dataclass
class _Pending:
    owner: Any
    num_views: int
    needed: frozenset[int]
    prob_sum: dict[int, torch.Tensor] = field(default_factory=dict)
    macs_sum: dict[int, int] = field(default_factory=dict)
    views_done: int = 0


class SweepEngine:
    """Runs every setting on the same batches of views and collects each video's results.

    Args:
        model: the model, unpatched (it is patched and unpatched around every forward).
        logits: ``logits(x)``: (B, ...) prepared views -> (B, num_classes) logits.
        settings: the resolved settings.
        batch_size: views per forward pass, >= 1.
        prepare: turns a packed batch (B, ...) into the model's input (normalise, move to the
            device); identity by default.
        autocast: context manager factory entered around every forward (e.g. fp16 autocast).
        device: where the model runs; on CUDA the forwards are synchronised for timing.
    """

    def __init__(
        self,
        model: nn.Module,
        logits: Callable[[torch.Tensor], torch.Tensor],
        settings: Sequence[ResolvedSetting],
        batch_size: int,
        prepare: Callable[[torch.Tensor], torch.Tensor] | None = None,
        autocast: Callable[[], contextlib.AbstractContextManager] | None = None,
        device: torch.device | None = None,
    ) -> None:
        if batch_size < 1:
            raise SettingError(f"--batch-size {batch_size} must be >= 1")
        self.model = model
        self.logits = logits
        self.settings = list(settings)
        self.prepare = prepare or (lambda x: x)
        self.autocast = autocast or contextlib.nullcontext
        self.sync = device is not None and device.type == "cuda"
        self.batcher = ViewBatcher(batch_size)
        self.rates: list[list[float]] = [[] for _ in self.settings]  # clips/s per timed batch
        self._pending: list[_Pending] = []

    def add(self, owner: Any, views: torch.Tensor, needed: Sequence[int] | None = None) -> list[VideoResult]:
        """Queue one video's ``views`` (V, ...) for the settings ``needed`` (indices; default all);
        runs every batch that is full and returns the videos finished by them."""
        if views.shape[0] < 1:
            raise ValueError(f"{owner!r}: no views")
        todo = frozenset(range(len(self.settings)) if needed is None else needed)
        pending = _Pending(owner, views.shape[0], todo)
        if not todo:
            return [VideoResult(owner, {}, {})]
        self.batcher.add(pending, views)
        finished = []
        while self.batcher.ready():
            finished += self._run_batch()
        return finished

    def flush(self) -> list[VideoResult]:
        """Run what is still queued; returns the videos it finishes."""
        finished = []
        while self.batcher.queued:
            finished += self._run_batch()
        return finished

    def clips_per_s(self) -> list[float | None]:
        """Per setting, the median over batches of (views in the batch / its forward's seconds);
        a setting's first batch (warm-up) is left out when it ran more than one; None if none ran."""
        out: list[float | None] = []
        for rates in self.rates:
            timed = rates[1:] if len(rates) > 1 else rates
            out.append(float(statistics.median(timed)) if timed else None)
        return out

    def _forward(self, i: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        setting = self.settings[i]
        with setting.applied(self.model):
            if self.sync:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            with torch.inference_mode(), self.autocast():
                logits = self.logits(x)
            if self.sync:
                torch.cuda.synchronize()
            self.rates[i].append(x.shape[0] / max(time.perf_counter() - t0, 1e-9))
            macs = stprune.last_macs(self.model).cpu() if setting.adaptive else None
        return logits.float().softmax(dim=-1).cpu(), macs

    def _run_batch(self) -> list[VideoResult]:
        views, owners = self.batcher.take()
        x = self.prepare(views)
        needed = sorted(set().union(*(p.needed for p, _ in owners)))
        for i in needed:
            probs, macs = self._forward(i, x)
            start = 0
            for pending, k in owners:
                if i in pending.needed:
                    part = probs[start : start + k].sum(dim=0)
                    old = pending.prob_sum.get(i)
                    pending.prob_sum[i] = part if old is None else old + part
                    if macs is not None:
                        pending.macs_sum[i] = pending.macs_sum.get(i, 0) + int(macs[start : start + k].sum())
                start += k
        finished = []
        for pending, k in owners:
            pending.views_done += k
            if pending.views_done == pending.num_views:
                n = pending.num_views
                probs = {i: pending.prob_sum[i] / n for i in sorted(pending.needed)}
                gflops = {i: pending.macs_sum[i] / n / 1e9 for i in sorted(pending.macs_sum)}
                finished.append(VideoResult(pending.owner, probs, gflops))
        return finished


def running_top1(labels: Sequence[str], correct: Sequence[int], counted: Sequence[int]) -> str:
    """``"none 98.0 sta@0.7 97.5 ..."``: the running top-1 (%) of every setting, for a progress bar."""
    return " ".join(
        f"{name} {100.0 * c / n:.1f}" if n else f"{name} -"
        for name, c, n in zip(labels, correct, counted, strict=True)
    )


@dataclass(frozen=True)
class CurvePoint:
    """One setting on the accuracy-vs-GFLOPs plot (``top1`` in percent). ``adaptive``: a threshold
    setting (drawn as an open marker at its mean GFLOPs, not on the method's curve). ``ci95``:
    top-1's 95% interval ``(lo, hi)`` in percent, drawn as an error bar (None: no bar)."""

    method: str
    setting: str
    gflops: float
    top1: float
    adaptive: bool = False
    ci95: tuple[float, float] | None = None


def _error_bar(ax: Any, p: CurvePoint, color: str) -> None:
    """``p``'s 95% interval as a vertical bar (nothing when it has none)."""
    if p.ci95 is None:
        return
    lo, hi = p.ci95
    ax.errorbar(
        [p.gflops],
        [p.top1],
        yerr=[[max(0.0, p.top1 - lo)], [max(0.0, hi - p.top1)]],
        fmt="none",
        ecolor=color,
        elinewidth=1.0,
        capsize=3,
        alpha=0.7,
        clip_on=False,
    )


_STYLES = {
    "sta": ("o-", "tab:red", "STA"),
    "tome": ("s--", "tab:blue", "ToMe"),
    "random": ("^:", "tab:gray", "random"),
    "rlt": ("D-.", "tab:green", "RLT"),
}
_OTHER_STYLES = [("v-", "tab:purple"), ("P--", "tab:brown"), ("X:", "tab:olive"), ("h-.", "tab:cyan")]


def sweep_figure(points: Sequence[CurvePoint], title: str, xlabel: str = "GFLOPs per view") -> Any:
    """Top-1 vs GFLOPs (a matplotlib Figure, Agg backend): a curve per method through its fixed-cost
    settings and the unpruned model, each threshold setting as an open marker labelled with its
    setting, the unpruned model as a black star. The accuracy axis ends at 100%."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.6, 4.4), dpi=120)
    base = next((p for p in points if p.method == "none"), None)
    methods = list(dict.fromkeys(p.method for p in points if p.method != "none"))
    for n, method in enumerate(methods):
        fmt, color = _STYLES.get(method, _OTHER_STYLES[n % len(_OTHER_STYLES)])[:2]
        name = _STYLES.get(method, (None, None, method))[2]
        fixed = sorted((p.gflops, p.top1) for p in points if p.method == method and not p.adaptive)
        if fixed:
            if base is not None:
                fixed.append((base.gflops, base.top1))
            ax.plot(*zip(*fixed, strict=True), fmt, color=color, label=name, clip_on=False)
        for p in points:
            if p.method == method:
                _error_bar(ax, p, color)
        adaptive = [p for p in points if p.method == method and p.adaptive]
        for k, p in enumerate(adaptive):
            ax.plot(
                [p.gflops],
                [p.top1],
                fmt[0],
                color=color,
                markerfacecolor="none",
                markersize=9,
                markeredgewidth=1.5,
                label=f"{name}, threshold" if k == 0 else None,
                clip_on=False,
            )
            ax.annotate(
                p.setting, (p.gflops, p.top1), textcoords="offset points", xytext=(6, -12), fontsize=7
            )
    if base is not None:
        ax.plot(
            [base.gflops], [base.top1], "*", color="black", markersize=14, label="unpruned", clip_on=False
        )
        _error_bar(ax, base, "black")
    low = min((p.top1 if p.ci95 is None else min(p.top1, p.ci95[0]) for p in points), default=0.0)
    ax.set_ylim(max(0.0, low - max(1.0, 0.05 * (100.0 - low))), 100.0)  # accuracy cannot exceed 100%
    ax.set_xlabel(xlabel)
    bars = any(p.ci95 is not None for p in points)
    ax.set_ylabel("top-1 (%), bars: 95% interval" if bars else "top-1 (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if points:  # beside the axes, where it hides no point or error bar
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize=8)
    return fig
