"""The evaluation loop behind ``stprune eval``: resumable, fault-tolerant, distributed, and a
sweep of many settings on the same decoded views.

Flow of :func:`run_eval` on every rank (one process is simply rank 0 of 1):

1. check every option, read the list (first ``limit`` entries), load the model and resolve each
   pruning setting once (:mod:`stprune.eval.sweep`);
2. rank 0 checks ``--out`` against the recorded settings (or records them), all ranks agree.
   One setting writes its files in ``--out`` itself; a sweep (several settings, or ``sweep=True``)
   writes them in a folder per setting, plus ``sweep.json`` and ``sweep.png``;
3. each rank repairs its own predictions files (a torn last line from a kill is cut off);
   everyone learns which videos already have a row for which setting, and skips what is done;
4. the remaining videos are dealt round-robin to the ranks; each rank decodes its videos once with
   a DataLoader, and for every batch of ``batch_size`` views runs each setting the batch's videos
   still need, averages each video's view softmax scores per setting (as VideoMAE's ``merge``
   does), and appends one durable row per finished video to each of those settings' files;
5. barrier; rank 0 gathers every row, merges by video path (so the result does not depend on
   the number of ranks) and writes each setting's ``predictions.jsonl`` and ``summary.json``
   (and a sweep's ``sweep.json`` / ``sweep.png``).
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import inspect
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from stprune.architectures.loading import (
    Preprocessing,
    ResolvedModel,
    model_input_name,
    resolve_model,
    resolve_module,
)
from stprune.bench.compare import Setting
from stprune.core.schedule import plural
from stprune.errors import SettingError, SettingTypeError
from stprune.eval import results as res
from stprune.eval.dataset import VideoItem, VideoViewsDataset, worker_init
from stprune.eval.distributed import DistContext, init_distributed, resolve_device, shard
from stprune.eval.lists import VideoEntry, read_video_list
from stprune.eval.sampling import (
    DEFAULT_SAMPLING_RATE,
    PROTOCOLS,
    ViewSpec,
    default_views,
    parse_views,
    sampling_window,
)
from stprune.eval.sweep import (
    CurvePoint,
    ResolvedSetting,
    SweepEngine,
    resolve_settings,
    running_top1,
    setting_dir,
    setting_gflops,
    short_label,
    sweep_figure,
    sweep_settings,
)
from stprune.eval.transforms import normalize

__all__ = ["PRECISIONS", "run_eval", "prune_model", "default_workers", "resolve_precision"]

PRECISIONS: tuple[str, ...] = ("auto", "fp32", "fp16", "bf16")
TOPK = 5
MAX_DEFAULT_WORKERS = 4


def default_workers() -> int:
    """Decoding workers when ``--workers`` is not given: at most 4, and no more than the CPUs this
    process may use (``os.sched_getaffinity``) shared by the ranks on this node (``LOCAL_WORLD_SIZE``,
    set by torchrun); 0 (decode in the main process) when there are fewer CPUs than ranks."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cpus = os.cpu_count() or 1
    try:
        ranks = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        ranks = 1
    return min(MAX_DEFAULT_WORKERS, cpus // ranks)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def prune_model(
    model: torch.nn.Module, method: str, r: int | None, flops_target: float | None
) -> dict[str, Any] | None:
    """``stprune.patch(model, method=..., r=... | flops_target=...)`` in place.

    Returns what was installed (method, stages with their r, the core's estimated FLOPs ratio)
    for the summary, or None when both ``r`` and ``flops_target`` are None (no pruning).
    """
    if r is None and flops_target is None:
        return None
    (resolved,), _ = resolve_settings(model, [Setting(method, r=r, flops_target=flops_target)], strict=True)
    import stprune

    stprune.patch(model, **resolved.patch_kwargs)
    return dict(resolved.pruning)


def _view_inputs(resolved: ResolvedModel, device: torch.device) -> dict[str, torch.Tensor]:
    """One random view, as the model's keyword input, for counting FLOPs."""
    pre = resolved.preprocessing
    g = torch.Generator().manual_seed(0)
    view = torch.randn(1, pre.num_frames, 3, pre.image_size, pre.image_size, generator=g).to(device)
    if pre.layout == "BTCHW" and hasattr(resolved.model, "config"):
        return {model_input_name(resolved.model): view}
    first = next(iter(inspect.signature(resolved.model.forward).parameters))
    return {first: view.transpose(1, 2)}


def _resolved(
    model: str | os.PathLike | torch.nn.Module | ResolvedModel,
    preprocessing: Preprocessing | None,
    num_heads: int | None,
    num_frames: int | None,
    image_size: int | None,
) -> ResolvedModel:
    """``run_eval``'s ``model`` as a model with its preprocessing (see :func:`run_eval`)."""
    import dataclasses

    import stprune

    if isinstance(model, str | os.PathLike):
        resolved = resolve_model(
            os.fspath(model), num_heads=num_heads, num_frames=num_frames, image_size=image_size
        )
        return (
            resolved if preprocessing is None else dataclasses.replace(resolved, preprocessing=preprocessing)
        )
    given = {"num_heads": num_heads, "num_frames": num_frames, "image_size": image_size}
    if any(v is not None for v in given.values()):
        flags = ", ".join(f"{k}={v}" for k, v in given.items() if v is not None)
        raise SettingError(
            f"{flags}: for a checkpoint file given by path; a model in memory has its config: pass "
            "preprocessing=Preprocessing(...) for another clip size"
        )
    module = model.model if isinstance(model, ResolvedModel) else model
    if isinstance(module, torch.nn.Module):
        patched = next((n for n, m in module.named_modules() if stprune.is_patched(m)), None)
        if patched is not None:
            where = f"its submodule {patched!r}" if patched else "it"
            raise SettingError(
                f"{type(module).__name__}: {where} is patched by stprune; run_eval patches the model for "
                "every setting itself (method=, r=, flops_target=): pass it unpatched (stprune.unpatch)"
            )
    if isinstance(model, ResolvedModel):
        if preprocessing is not None:
            model = dataclasses.replace(model, preprocessing=preprocessing)
        if "path" not in model.source:  # built by hand: recorded as an in-memory model
            model = dataclasses.replace(model, source=resolve_module(model.model, model.preprocessing).source)
        return model
    return resolve_module(model, preprocessing)


def resolve_precision(precision: str, device: torch.device) -> str:
    """The precision ``precision`` means on ``device``: ``auto`` is fp16 on CUDA (as VideoMAE's
    test loop), fp32 elsewhere. Returns ``"fp32"``, ``"fp16"`` or ``"bf16"``."""
    if precision not in PRECISIONS:
        raise SettingError(f"--precision {precision!r} must be one of {PRECISIONS}")
    if precision == "auto":
        return "fp16" if device.type == "cuda" else "fp32"
    if precision == "fp16" and device.type == "cpu":
        raise SettingError("--precision fp16 needs --device cuda; on CPU use fp32 or bf16")
    return precision


def _autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast for a resolved precision (see :func:`resolve_precision`)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)


def _num_classes(model: torch.nn.Module) -> int | None:
    """The classifier's class count from its config (HF ``num_labels``, Video Swin ``num_classes``)."""
    config = getattr(model, "config", None)
    for name in ("num_labels", "num_classes"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _warn_labels(entries: list[VideoEntry], num_classes: int | None, list_file: Path) -> None:
    if num_classes is None:
        return
    outside = [e for e in entries if e.label >= num_classes]
    if outside:
        first = outside[0]
        warnings.warn(
            f"{len(outside)} of {len(entries)} labels in {list_file} are outside the model's "
            f"{num_classes} classes (0..{num_classes - 1}), e.g. line {first.line}: label {first.label}; "
            "those videos can only count as wrong (is this the model's class order?)",
            stacklevel=3,
        )


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SettingTypeError(f"{name} {value!r} must be an integer >= {low}")
    if value < low:
        raise SettingError(f"{name} {value} must be >= {low}")
    return value


# --------------------------------------------------------------------------------------------
# 1. options
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Options:
    """The checked options of one run."""

    protocol: str
    views: ViewSpec
    settings: tuple[Setting, ...]  # what to evaluate, the unpruned model first in a sweep
    sweep: bool
    batch_size: int
    workers: int
    sampling_rate: int | None
    limit: int | None
    precision: str  # as resolved for the device
    out: Path


def _check_options(
    protocol: str,
    views: str | ViewSpec | None,
    method: str | Sequence[str],
    r: int | Sequence[int] | None,
    flops_target: float | Sequence[float] | None,
    rlt_threshold: float | Sequence[float] | None,
    sweep: bool | None,
    batch_size: int,
    workers: int | None,
    device: str | None,
    sampling_rate: int | None,
    limit: int | None,
    precision: str,
    out: str | os.PathLike,
) -> _Options:
    """Every option checked before anything is read or loaded (StpruneErrors naming the value)."""
    if protocol not in PROTOCOLS:
        raise SettingError(f"--protocol {protocol!r} must be one of {PROTOCOLS}")
    view_spec = default_views(protocol) if views is None else views
    if isinstance(view_spec, str):
        view_spec = parse_views(view_spec)
    if not isinstance(view_spec, ViewSpec):
        raise SettingTypeError(f"--views {view_spec!r} must be 'TxS' text or a ViewSpec")
    methods = [method] if isinstance(method, str) else list(method)
    if not methods:
        raise SettingError("--method needs at least one method name")
    settings = sweep_settings(methods, r, flops_target, rlt_threshold, include_unpruned=True)
    pruned = settings[1:]
    if len(methods) > 1 and not pruned and not sweep:
        raise SettingError(
            f"--method {' '.join(methods)}: several methods need --r, --flops-target or --rlt-threshold "
            "values to run them at"
        )
    if sweep is None:
        sweep = len(pruned) > 1
    if not sweep:
        if len(pruned) > 1:
            raise SettingError(
                f"{len(pruned)} settings ({', '.join(f'{s.method} {s.label}' for s in pruned)}) "
                "need the sweep layout (sweep=True), one folder per setting"
            )
        settings = pruned or settings[:1]
    _check_int("--batch-size", batch_size, 1)
    workers = default_workers() if workers is None else workers
    _check_int("--workers", workers, 0)
    if sampling_rate is not None:
        _check_int("--sampling-rate", sampling_rate, 1)
        if protocol == "ssv2":
            warnings.warn(
                f"--sampling-rate {sampling_rate} is ignored with --protocol ssv2 (one frame per segment)",
                stacklevel=3,
            )
    if limit is not None:
        _check_int("--limit", limit, 1)
    if precision not in PRECISIONS:
        raise SettingError(f"--precision {precision!r} must be one of {PRECISIONS}")
    out_dir = Path(out)
    if out_dir.exists() and not out_dir.is_dir():
        raise SettingError(f"--out {str(out_dir)!r} is a file; it must be a directory (or not exist yet)")
    # the device and its precision before reading or loading anything
    precision_used = resolve_precision(precision, resolve_device(device))
    return _Options(
        protocol,
        view_spec,
        tuple(settings),
        bool(sweep),
        batch_size,
        workers,
        sampling_rate,
        limit,
        precision_used,
        out_dir,
    )


# --------------------------------------------------------------------------------------------
# 2. the settings each folder records
# --------------------------------------------------------------------------------------------


def _settings(
    model: str,
    resolved: ResolvedModel,
    num_heads: int | None,
    protocol: str,
    view_spec: ViewSpec,
    rate: int,
    precision_used: str,
    list_file: Path,
    root: str | os.PathLike | None,
) -> dict[str, Any]:
    """What every setting of the run shares (recorded, and checked on resume)."""
    pre = resolved.preprocessing
    settings = {
        "model": resolved.source.get("path", model),
        "model_kind": resolved.source.get("kind"),
        "num_heads": num_heads,
        "protocol": protocol,
        "views": str(view_spec),
        "sampling_rate": rate if protocol == "kinetics" else None,
        "num_frames": pre.num_frames,
        "image_size": pre.image_size,
        "resize": pre.resize,  # None: VideoMAE's (short side = image_size, no antialiasing)
        "mean": list(pre.mean),
        "std": list(pre.std),
        "precision": precision_used,
        "list_file": str(list_file.resolve()),
        "list_sha256": _sha256(list_file),
        "root": str(Path(root).resolve()) if root is not None else None,
    }
    return settings


def _setting_record(common: dict[str, Any], setting: Setting) -> dict[str, Any]:
    """One setting's ``run.json``: the common settings with its method, r, flops_target (and
    threshold, for a threshold setting), in the order a single-setting run has always recorded."""
    pruned = setting.method != "none"
    own: dict[str, Any] = {
        "method": setting.method if pruned else None,
        "r": setting.r if pruned else None,
        "flops_target": setting.flops_target if pruned else None,
    }
    if pruned and setting.threshold is not None:
        own["threshold"] = setting.threshold
    head = ("model", "model_kind", "num_heads")
    record = {k: common[k] for k in head if k in common}
    record.update(own)
    record.update({k: v for k, v in common.items() if k not in head})
    return record


@dataclass
class _Target:
    """One setting of the run and the folder its results go to."""

    resolved: ResolvedSetting
    dir: Path
    record: dict[str, Any]
    state: str = "new"

    @property
    def name(self) -> str:
        return self.dir.name


def _targets(
    model: torch.nn.Module, opts: _Options, common: dict[str, Any], ctx: DistContext
) -> tuple[list[_Target], list[str]]:
    """Resolve every setting once; a single setting the model cannot take raises, a sweep's is
    skipped with a note (a warning on rank 0), unless none of its pruned settings can run."""
    resolved, skipped = resolve_settings(model, opts.settings, strict=not opts.sweep)
    notes = [s.note for s in skipped]
    if opts.sweep and skipped and not any(t.method != "none" for t in resolved):
        raise SettingError(f"no setting of this sweep can run on the model; {notes[0][len('skipped ') :]}")
    if ctx.is_main:
        for note in notes:
            warnings.warn(note, stacklevel=3)
    targets = []
    for t in resolved:
        folder = opts.out / setting_dir(t.setting) if opts.sweep else opts.out
        targets.append(_Target(t, folder, _setting_record(common, t.setting)))
    return targets, notes


def _check_folders(
    ctx: DistContext, opts: _Options, common: dict[str, Any], targets: list[_Target], overwrite: bool
) -> str:
    """Rank 0 checks (or records) what every folder holds; all ranks get its verdict or its error."""
    error: Exception | None = None
    state = None
    if ctx.is_main:
        try:
            if opts.sweep:
                per = {t.name: t.record for t in targets}
                state, states = res.check_or_record_sweep(opts.out, common, per, overwrite)
            else:
                state = res.check_or_record_settings(opts.out, targets[0].record, overwrite)
                states = {targets[0].name: state}
        except (ValueError, OSError) as e:  # StpruneErrors, or a file system refusing the write
            error, states = e, {}
    else:
        states = {}
    error, state, states = ctx.broadcast((error, state, states))
    if error is not None:
        raise error
    for t in targets:
        t.state = states.get(t.name, "new")
        t.dir.mkdir(parents=True, exist_ok=True)
    return state


# --------------------------------------------------------------------------------------------
# 3. what is left to do
# --------------------------------------------------------------------------------------------


def _repair_files(out: Path, ctx: DistContext) -> None:
    """Each rank cuts a torn tail off its own file; rank 0 also does it for files of absent ranks."""
    res.repair_jsonl(res.rank_file(out, ctx.rank))
    if ctx.is_main:
        for rank, path in res.rank_files(out).items():
            if rank >= ctx.world_size:
                res.repair_jsonl(path)


def _visible_rows(out: Path) -> dict[str, dict[str, Any]]:
    return res.read_rows(res.rank_files(out).values())


def _needs(
    ctx: DistContext, entries: list[VideoEntry], targets: list[_Target]
) -> tuple[list[tuple[VideoEntry, tuple[int, ...]]], int]:
    """Per video still to do, the indices of the targets that have no row for it (over every
    rank's files), and how many videos every target already has."""
    for t in targets:
        _repair_files(t.dir, ctx)
    ctx.barrier()
    done: list[set[str]] = [set() for _ in targets]
    for part in ctx.all_gather([set(_visible_rows(t.dir)) for t in targets]):
        for i, videos in enumerate(part):
            done[i] |= videos
    todo = []
    for e in entries:
        needed = tuple(i for i in range(len(targets)) if e.path not in done[i])
        if needed:
            todo.append((e, needed))
    complete = sum(all(e.path in d for d in done) for e in entries)
    return todo, complete


def _say_resuming(
    opts: _Options, state: str, targets: list[_Target], total: int, complete: int, left: int
) -> None:
    if state != "resume":
        return
    if not opts.sweep:
        tqdm.write(f"resuming {opts.out}: {complete} of {total} videos already done, {left} to go")
        return
    new = [t.name for t in targets if t.state == "new"]
    extra = f"; new settings (run on every video): {', '.join(new)}" if new else ""
    tqdm.write(
        f"resuming sweep {opts.out}: {complete} of {total} videos done for every setting, {left} to go{extra}"
    )


# --------------------------------------------------------------------------------------------
# 4. the evaluation of one rank's videos
# --------------------------------------------------------------------------------------------


def _row(item: VideoItem, probs: torch.Tensor | None, gflops: float | None, adaptive: bool) -> dict[str, Any]:
    """A prediction row from a video's mean view softmax ``probs`` (num_classes,), or its error."""
    if item.error is not None or probs is None:
        row = {"video": item.path, "label": item.label, "pred": None, "top5": None, "frames": None}
        row["error"] = item.error
    else:
        top = torch.topk(probs, k=min(TOPK, probs.numel())).indices.tolist()
        row = {
            "video": item.path,
            "label": item.label,
            "pred": int(top[0]),
            "top5": top,
            "frames": item.frames,
            "error": None,
        }
    if adaptive:
        row["gflops"] = None if gflops is None else round(gflops, 6)
    return row


def _loader(
    entries: list[VideoEntry],
    resolved: ResolvedModel,
    protocol: str,
    views: ViewSpec,
    sampling_rate: int,
    workers: int,
) -> DataLoader:
    """Decodes each video once, with all its views (uint8 (V, T, 3, S, S)), in ``workers`` processes."""
    pre = resolved.preprocessing
    dataset = VideoViewsDataset(
        entries,
        protocol,
        views,
        pre.num_frames,
        pre.image_size,
        sampling_rate,
        short_side=pre.short_side,
        antialias=pre.antialias,
    )
    return DataLoader(
        dataset,
        batch_size=None,
        shuffle=False,
        num_workers=workers,
        prefetch_factor=2 if workers > 0 else None,
        worker_init_fn=worker_init if workers > 0 else None,
    )


class _Progress:
    """One bar over videos with the running top-1 of every setting (this run's rows)."""

    def __init__(self, ctx: DistContext, targets: list[_Target], total: int, enabled: bool) -> None:
        self.single = len(targets) == 1
        self.labels = [short_label(t.resolved.setting) for t in targets]
        self.correct = [0] * len(targets)
        self.counted = [0] * len(targets)
        self.failed = 0
        self.bar = tqdm(
            total=total,
            unit="video",
            disable=not (enabled and ctx.is_main),
            desc=f"eval rank {ctx.rank}/{ctx.world_size}" if ctx.world_size > 1 else "eval",
            dynamic_ncols=True,
        )

    def video_done(self, rows: dict[int, dict[str, Any]]) -> None:
        if any(row["error"] is not None for row in rows.values()):
            self.failed += 1
        for i, row in rows.items():
            if row["error"] is None:
                self.counted[i] += 1
                self.correct[i] += int(row["pred"] == row["label"])
        self.bar.update(1)
        if self.single:
            ok, correct = self.counted[0], self.correct[0]
            postfix = {"top1": f"{100.0 * correct / ok:.2f}%" if ok else "-"}
            if self.failed:
                postfix["failed"] = self.failed
            self.bar.set_postfix(postfix, refresh=False)
        else:
            text = running_top1(self.labels, self.correct, self.counted)
            self.bar.set_postfix_str(text + (f" failed {self.failed}" if self.failed else ""), refresh=False)

    def close(self) -> None:
        self.bar.close()


def _evaluate_shard(
    todo: list[tuple[VideoEntry, tuple[int, ...]]],
    resolved: ResolvedModel,
    targets: list[_Target],
    ctx: DistContext,
    writers: list[res.PredictionWriter],
    opts: _Options,
    rate: int,
    progress: bool,
) -> SweepEngine:
    """Evaluate this rank's videos for the targets each needs; append their rows. Returns the
    engine (its timings)."""
    pre = resolved.preprocessing
    needs = {e.path: needed for e, needed in todo}
    loader = _loader([e for e, _ in todo], resolved, opts.protocol, opts.views, rate, opts.workers)
    engine = SweepEngine(
        resolved.model,
        resolved.logits,
        [t.resolved for t in targets],
        opts.batch_size,
        prepare=lambda x: normalize(x.to(ctx.device, non_blocking=True), pre.mean, pre.std),
        autocast=lambda: _autocast(opts.precision, ctx.device),
        device=ctx.device,
    )
    bar = _Progress(ctx, targets, len(todo), progress)

    def write(item: VideoItem, probs: dict[int, torch.Tensor], gflops: dict[int, float]) -> None:
        rows = {}
        for i in needs[item.path]:
            rows[i] = _row(item, probs.get(i), gflops.get(i), targets[i].resolved.adaptive)
            writers[i].write(rows[i])
        bar.video_done(rows)

    try:
        for item in loader:
            if item.error is not None:
                write(item, {}, {})
                continue
            if item.views.shape[0] != opts.views.num_views:  # pragma: no cover - dataset invariant
                raise RuntimeError(
                    f"{item.path}: got {item.views.shape[0]} views, expected {opts.views.num_views}"
                )
            for done in engine.add(item, item.views, needs[item.path]):
                write(done.owner, done.probs, done.gflops)
        for done in engine.flush():
            write(done.owner, done.probs, done.gflops)
    finally:
        bar.close()
    return engine


# --------------------------------------------------------------------------------------------
# 5. merging and summaries (rank 0)
# --------------------------------------------------------------------------------------------


def _gflops(
    resolved: ResolvedModel, target: _Target, rows: dict[str, dict[str, Any]], device: torch.device
) -> float | None:
    """GFLOPs per view: counted with FlopCounterMode for a fixed-cost setting; for a threshold
    setting the mean over its evaluated videos of each row's ``gflops`` (each the mean over views)."""
    if target.resolved.adaptive:
        values = [
            r["gflops"] for r in rows.values() if r.get("error") is None and r.get("gflops") is not None
        ]
        return sum(values) / len(values) if values else None
    try:
        return setting_gflops(resolved.model, target.resolved, _view_inputs(resolved, device))
    except Exception as e:  # noqa: BLE001 - a FLOP count must not cost the summary of a long run
        tqdm.write(f"warning: could not count GFLOPs per view ({type(e).__name__}: {e})")
        return None


def _warn_short(summary: dict[str, Any], protocol: str, num_frames: int, rate: int, window: int) -> None:
    if not summary["num_short"]:
        return
    if protocol == "kinetics":
        what = f"{num_frames} frames at stride {rate} span {window}"
        hint = "If the model was trained with another sampling, pass its --sampling-rate"
    else:
        what, hint = f"one frame for each of {num_frames} segments", "Check the videos"
    warnings.warn(
        f"{summary['num_short']} of {summary['num_evaluated']} videos have fewer than {window} "
        f"frames, the sampling window ({what}): their clips repeat frames. {hint}",
        stacklevel=3,
    )


def _sweep_rows(
    targets: list[_Target], summaries: list[dict[str, Any]], skipped: list[Setting], notes: list[str]
) -> list[dict[str, Any]]:
    """``sweep.json``: a row per setting (the unpruned model has method "none"), then one per
    setting that could not run, with the reason in ``skipped``."""
    base = next(
        (
            s["gflops_per_view"]
            for t, s in zip(targets, summaries, strict=True)
            if t.resolved.method == "none"
        ),
        None,
    )
    rows = []
    for t, s in zip(targets, summaries, strict=True):
        g = s["gflops_per_view"]
        rows.append(
            {
                "method": t.resolved.method,
                "setting": t.resolved.label,
                "gflops_per_view": g,
                "flops_ratio": None if g is None or not base else g / base,
                "top1": s["top1"],
                "top5": s["top5"],
                "num_evaluated": s["num_evaluated"],
                "num_failed": s["num_failed"],
                "r_per_stage": list(t.resolved.r_per_stage),
                "dir": t.name,
                "skipped": None,
            }
        )
    for setting, note in zip(skipped, notes, strict=True):
        rows.append(
            {
                "method": setting.method,
                "setting": setting.label,
                "gflops_per_view": None,
                "flops_ratio": None,
                "top1": None,
                "top5": None,
                "num_evaluated": 0,
                "num_failed": 0,
                "r_per_stage": [],
                "dir": None,
                "skipped": note,
            }
        )
    return rows


def _plot_sweep(
    out: Path, targets: list[_Target], summaries: list[dict[str, Any]], title: str
) -> Path | None:
    """``sweep.png``: top-1 vs GFLOPs per view of every setting that evaluated a video."""
    from stprune.bench.report import save_figure

    points = [
        CurvePoint(t.resolved.method, t.resolved.label, s["gflops_per_view"], s["top1"], t.resolved.adaptive)
        for t, s in zip(targets, summaries, strict=True)
        if s["gflops_per_view"] is not None and s["top1"] is not None
    ]
    try:
        return save_figure(sweep_figure(points, title), out / res.SWEEP_PLOT)
    except Exception as e:  # noqa: BLE001 - a plot must not cost the results of a long run
        tqdm.write(f"warning: could not draw {out / res.SWEEP_PLOT} ({type(e).__name__}: {e})")
        return None


# --------------------------------------------------------------------------------------------
# the entry point
# --------------------------------------------------------------------------------------------


def run_eval(
    model: str | os.PathLike | torch.nn.Module | ResolvedModel,
    data: str | os.PathLike,
    out: str | os.PathLike,
    root: str | os.PathLike | None = None,
    protocol: str = "kinetics",
    views: str | ViewSpec | None = None,
    sampling_rate: int | None = None,
    r: int | Sequence[int] | None = None,
    flops_target: float | Sequence[float] | None = None,
    method: str | Sequence[str] = "sta",
    batch_size: int = 8,
    workers: int | None = None,
    device: str | None = None,
    limit: int | None = None,
    overwrite: bool = False,
    num_heads: int | None = None,
    num_frames: int | None = None,
    image_size: int | None = None,
    precision: str = "auto",
    progress: bool = True,
    rlt_threshold: float | Sequence[float] | None = None,
    sweep: bool | None = None,
    preprocessing: Preprocessing | None = None,
) -> dict[str, Any] | None:
    """Evaluate ``model`` on the videos of ``data``; write rows and a summary under ``out``.

    ``model``: a ``--model`` spec (preset, ``"demo"``, checkpoint file, directory, hub id; with
    ``num_heads`` / ``num_frames`` / ``image_size`` for what a checkpoint file does not record), a
    model in memory (an ``nn.Module``, e.g. what ``from_pretrained`` returned, unpatched: every
    setting patches and unpatches it; it is moved to the device and put in eval mode), or a
    :class:`~stprune.architectures.loading.ResolvedModel`. ``preprocessing``: the clip size,
    layout and mean / std of the model's input; ``None``: the spec's, or read from an in-memory
    model's config and processor config (:func:`~stprune.architectures.loading.resolve_module`).

    ``r`` / ``flops_target``: one value or several; with ``method`` one name or several, every
    method runs at every value, and ``rlt_threshold`` adds RLT's threshold settings. One setting
    (or none: the unpruned model) writes its files in ``out``; several make a sweep (``sweep``
    None: as many settings say; True: a sweep even of one), which adds the unpruned model and
    writes a folder per setting plus ``sweep.json`` and ``sweep.png`` (see ``docs/eval.md``).
    ``sampling_rate``: the Kinetics frame stride; None uses the model's own when its checkpoint
    records one (the demo model: 1), else VideoMAE's 4. ``workers``: None is
    :func:`default_workers`. ``precision``: ``auto`` resolves to fp16 on CUDA, fp32 on CPU; the
    resolved precision is recorded and a resume with another is refused.

    Returns, on rank 0, the summary dict of a single setting, or for a sweep ``{"sweep": rows of
    sweep.json, "summaries": {folder: summary}, "skipped": [notes], "num_videos", "num_views",
    "settings", "run"}``; None on other ranks. Raises a StpruneError (SettingError, InputError,
    MissingFileError: all ValueError or FileNotFoundError) for bad settings (before any work) and
    for an ``out`` directory that holds results of different settings (unless ``overwrite``).
    Warns (UserWarning) about labels outside the model's classes, videos shorter than the
    sampling window (their clips repeat frames) and sweep settings the model cannot take.
    """
    opts = _check_options(
        protocol,
        views,
        method,
        r,
        flops_target,
        rlt_threshold,
        sweep,
        batch_size,
        workers,
        device,
        sampling_rate,
        limit,
        precision,
        out,
    )
    list_file = Path(data)
    entries = read_video_list(list_file, root)
    if opts.limit is not None:
        entries = entries[: opts.limit]

    ctx = init_distributed(device)
    stack = contextlib.ExitStack()
    try:
        resolved = _resolved(model, preprocessing, num_heads, num_frames, image_size)
        resolved.model.to(ctx.device)
        pre = resolved.preprocessing
        # the model's own sampling when it records one; an explicit --sampling-rate overrides it
        rate = sampling_rate if sampling_rate is not None else (pre.sampling_rate or DEFAULT_SAMPLING_RATE)
        window = sampling_window(protocol, pre.num_frames, rate)
        common = _settings(
            model, resolved, num_heads, protocol, opts.views, rate, opts.precision, list_file, root
        )
        targets, notes = _targets(resolved.model, opts, common, ctx)
        skipped = [s for s in opts.settings if all(t.resolved.setting != s for t in targets)]
        if ctx.is_main:
            _warn_labels(entries, _num_classes(resolved.model), list_file)

        lock = res.RankLock(opts.out, ctx.rank).acquire()
        stack.callback(lock.release)
        state = _check_folders(ctx, opts, common, targets, overwrite)
        todo, complete = _needs(ctx, entries, targets)
        mine = shard(todo, ctx.rank, ctx.world_size)
        if ctx.is_main and progress:
            _say_resuming(opts, state, targets, len(entries), complete, len(todo))

        with contextlib.ExitStack() as files:
            writers = [
                files.enter_context(res.PredictionWriter(res.rank_file(t.dir, ctx.rank))) for t in targets
            ]
            resolved.model.eval()
            engine = _evaluate_shard(mine, resolved, targets, ctx, writers, opts, rate, progress)

        ctx.barrier()
        # all_gather rather than gather: supported the same way by NCCL and gloo; rows are small.
        gathered = ctx.all_gather([_visible_rows(t.dir) for t in targets])
        if not ctx.is_main:
            # Leave together with rank 0: a rank that tears its gloo group down while rank 0 still
            # holds the connection can abort at exit ("terminate called without an active exception").
            ctx.barrier()
            return None
        import stprune

        order = [e.path for e in entries]
        run_info = {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "device": str(ctx.device),
            "precision": opts.precision,
            "world_size": ctx.world_size,
            "workers": opts.workers,
            "stprune_version": stprune.__version__,
            "torch_version": torch.__version__,
        }
        speeds = engine.clips_per_s()
        summaries = []
        for i, t in enumerate(targets):
            rows: dict[str, dict[str, Any]] = {}
            for part in gathered or []:
                for video, row in part[i].items():
                    rows.setdefault(video, row)
            summary = res.summarize(rows, order, window)
            if i == 0:
                _warn_short(summary, protocol, pre.num_frames, rate, window)
            summary.update(
                {
                    "gflops_per_view": _gflops(resolved, t, rows, ctx.device),
                    "pruning": None if t.resolved.pruning is None else dict(t.resolved.pruning),
                    "settings": t.record,
                    "model_description": resolved.description,
                    "num_views": opts.views.num_views,
                    "limit": opts.limit,
                    # views per second of rank 0's forwards in this run (median over batches)
                    "run": {**run_info, "views_per_s": speeds[i]},
                }
            )
            res.write_merged(t.dir, rows, order)
            res.write_json_atomic(t.dir / res.SUMMARY_FILE, summary)
            summaries.append(summary)
        if not opts.sweep:
            ctx.barrier()  # the other ranks wait here for the summary (see above)
            return summaries[0]

        table = _sweep_rows(targets, summaries, skipped, notes)
        res.write_sweep(opts.out, table)
        counts = f"{plural(len(entries), 'video')} x {plural(opts.views.num_views, 'view')}"
        title = f"{resolved.description}: {counts}"
        _plot_sweep(opts.out, targets, summaries, title)
        ctx.barrier()
        return {
            "sweep": table,
            "summaries": {t.name: s for t, s in zip(targets, summaries, strict=True)},
            "skipped": notes,
            "num_videos": len(entries),
            "num_views": opts.views.num_views,
            "settings": common,
            "run": run_info,
        }
    finally:
        stack.close()
        ctx.close()
