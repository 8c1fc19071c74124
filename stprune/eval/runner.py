"""The evaluation loop behind ``stprune eval``: resumable, fault-tolerant, distributed.

Flow of :func:`run_eval` on every rank (one process is simply rank 0 of 1):

1. read the list (first ``limit`` entries), load the model, prune it if asked;
2. rank 0 checks ``--out`` against the recorded settings (or records them), all ranks agree;
3. each rank repairs its own predictions file (a torn last line from a kill is cut off);
   everyone learns which videos already have a row (in any rank's file) and skips them;
4. the remaining videos are dealt round-robin to the ranks; each rank decodes its videos with a
   DataLoader, runs ``batch_size`` views per forward pass, averages each video's view softmax
   scores (as VideoMAE's ``merge`` does), and appends one durable row per finished video;
5. barrier; rank 0 gathers every row, merges by video path (so the result does not depend on
   the number of ranks) and writes ``predictions.jsonl`` and ``summary.json``.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import inspect
import os
import warnings
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from stprune.api import check_setting
from stprune.architectures.loading import ResolvedModel, model_input_name, resolve_model
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


def _method_names() -> tuple[str, ...]:
    from stprune.methods import METHODS as registry

    return tuple(sorted(registry))


def prune_model(
    model: torch.nn.Module, method: str, r: int | None, flops_target: float | None
) -> dict[str, Any] | None:
    """``stprune.patch(model, method=..., r=... | flops_target=...)`` in place.

    Returns what was installed (method, stages with their r, the core's estimated FLOPs ratio)
    for the summary, or None when both ``r`` and ``flops_target`` are None (no pruning).
    """
    if r is None and flops_target is None:
        return None
    import stprune

    kwargs: dict[str, Any] = {"r": r} if r is not None else {"flops_target": flops_target}
    stprune.patch(model, method=method, **kwargs)
    info = stprune.patch_info(model)
    return {
        "method": info.method,
        "stages": [
            {"after_block": s.after_block, "groups": s.groups, "r": s.r, "reverse": s.reverse}
            for s in info.stages
        ],
        "estimated_flops_ratio": info.flops_ratio,
    }


def _gflops_per_view(resolved: ResolvedModel, device: torch.device) -> float:
    """GFLOPs (1 MAC = 1 FLOP, the field's convention) of one view through the model as evaluated.

    Counted by ``stprune.bench.flops.count_macs`` (FlopCounterMode) on one random view.
    """
    from stprune.bench.flops import count_macs

    pre = resolved.preprocessing
    g = torch.Generator().manual_seed(0)
    view = torch.randn(1, pre.num_frames, 3, pre.image_size, pre.image_size, generator=g).to(device)
    if pre.layout == "BTCHW" and hasattr(resolved.model, "config"):
        inputs = {model_input_name(resolved.model): view}
    else:
        first = next(iter(inspect.signature(resolved.model.forward).parameters))
        inputs = {first: view.transpose(1, 2)}
    return count_macs(resolved.model, inputs) / 1e9


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


@dataclass
class _Video:
    item: VideoItem
    prob_sum: torch.Tensor | None = None
    views_done: int = 0


class _ViewBatcher:
    """Packs the views of consecutive videos into batches of exactly ``batch_size`` views."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.queue: deque[tuple[_Video, torch.Tensor]] = deque()
        self.queued = 0

    def add(self, video: _Video) -> None:
        assert video.item.views is not None
        self.queue.append((video, video.item.views))
        self.queued += video.item.views.shape[0]

    def ready(self) -> bool:
        return self.queued >= self.batch_size

    def take(self) -> tuple[torch.Tensor, list[tuple[_Video, int]]]:
        """Up to ``batch_size`` views and, per contributing video, how many of them are its."""
        parts, owners, need = [], [], self.batch_size
        while need and self.queue:
            video, views = self.queue[0]
            k = min(need, views.shape[0])
            parts.append(views[:k])
            owners.append((video, k))
            need -= k
            if k == views.shape[0]:
                self.queue.popleft()
            else:
                self.queue[0] = (video, views[k:])
        taken = self.batch_size - need
        self.queued -= taken
        return torch.cat(parts), owners


def _row(video: _Video, num_views: int) -> dict[str, Any]:
    item = video.item
    if item.error is not None:
        return {
            "video": item.path,
            "label": item.label,
            "pred": None,
            "top5": None,
            "frames": None,
            "error": item.error,
        }
    assert video.prob_sum is not None
    mean = video.prob_sum / num_views
    top = torch.topk(mean, k=min(TOPK, mean.numel())).indices.tolist()
    return {
        "video": item.path,
        "label": item.label,
        "pred": int(top[0]),
        "top5": top,
        "frames": item.frames,
        "error": None,
    }


def _evaluate_shard(
    entries: list[VideoEntry],
    resolved: ResolvedModel,
    ctx: DistContext,
    writer: res.PredictionWriter,
    protocol: str,
    views: ViewSpec,
    sampling_rate: int,
    batch_size: int,
    workers: int,
    precision: str,
    progress: bool,
) -> int:
    """Evaluate ``entries`` and append their rows; returns the number of rows written."""
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
    loader = DataLoader(
        dataset,
        batch_size=None,
        shuffle=False,
        num_workers=workers,
        prefetch_factor=2 if workers > 0 else None,
        worker_init_fn=worker_init if workers > 0 else None,
    )
    batcher = _ViewBatcher(batch_size)
    autocast = _autocast(precision, ctx.device)
    bar = tqdm(
        total=len(entries),
        unit="video",
        disable=not (progress and ctx.is_main),
        desc=f"eval rank {ctx.rank}/{ctx.world_size}" if ctx.world_size > 1 else "eval",
        dynamic_ncols=True,
    )
    written = correct = ok = failed = 0

    def finish(video: _Video) -> None:
        nonlocal written, correct, ok, failed
        row = _row(video, views.num_views)
        writer.write(row)
        written += 1
        if row["error"] is None:
            ok += 1
            correct += int(row["pred"] == row["label"])
        else:
            failed += 1
        bar.update(1)
        postfix = {"top1": f"{100.0 * correct / ok:.2f}%" if ok else "-"}
        if failed:
            postfix["failed"] = failed
        bar.set_postfix(postfix, refresh=False)

    def run_batch() -> None:
        x, owners = batcher.take()
        x = normalize(x.to(ctx.device, non_blocking=True), pre.mean, pre.std)
        with torch.inference_mode(), autocast:
            logits = resolved.logits(x)
        probs = logits.float().softmax(dim=-1).cpu()
        start = 0
        for video, k in owners:
            part = probs[start : start + k].sum(dim=0)
            video.prob_sum = part if video.prob_sum is None else video.prob_sum + part
            video.views_done += k
            start += k
            if video.views_done == views.num_views:
                finish(video)

    try:
        for item in loader:
            video = _Video(item)
            if item.error is not None:
                finish(video)
                continue
            if item.views.shape[0] != views.num_views:  # pragma: no cover - dataset invariant
                raise RuntimeError(
                    f"{item.path}: got {item.views.shape[0]} views, expected {views.num_views}"
                )
            batcher.add(video)
            while batcher.ready():
                run_batch()
        while batcher.queued:
            run_batch()
    finally:
        bar.close()
    return written


def _repair_files(out: Path, ctx: DistContext) -> None:
    """Each rank cuts a torn tail off its own file; rank 0 also does it for files of absent ranks."""
    res.repair_jsonl(res.rank_file(out, ctx.rank))
    if ctx.is_main:
        for rank, path in res.rank_files(out).items():
            if rank >= ctx.world_size:
                res.repair_jsonl(path)


def _visible_rows(out: Path) -> dict[str, dict[str, Any]]:
    return res.read_rows(res.rank_files(out).values())


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SettingTypeError(f"{name} {value!r} must be an integer >= {low}")
    if value < low:
        raise SettingError(f"{name} {value} must be >= {low}")
    return value


def run_eval(
    model: str,
    data: str | os.PathLike,
    out: str | os.PathLike,
    root: str | os.PathLike | None = None,
    protocol: str = "kinetics",
    views: str | ViewSpec | None = None,
    sampling_rate: int | None = None,
    r: int | None = None,
    flops_target: float | None = None,
    method: str = "sta",
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
) -> dict[str, Any] | None:
    """Evaluate ``model`` on the videos of ``data``; write rows and a summary under ``out``.

    ``sampling_rate``: the Kinetics frame stride; None uses the model's own when its checkpoint
    records one (the demo model: 1), else VideoMAE's 4. ``workers``: None is
    :func:`default_workers`. ``precision``: ``auto`` resolves to fp16 on CUDA, fp32 on CPU; the
    resolved precision is recorded and a resume with another is refused.

    Returns the summary dict on rank 0 and None on other ranks. See ``docs/eval.md`` for the
    protocol and the files written. Raises a StpruneError (SettingError, InputError,
    MissingFileError: all ValueError or FileNotFoundError) for bad settings (before any work) and
    for an ``out`` directory that holds results of different settings (unless ``overwrite``).
    Warns (UserWarning) about labels outside the model's classes and videos shorter than the
    sampling window (their clips repeat frames).
    """
    if protocol not in PROTOCOLS:
        raise SettingError(f"--protocol {protocol!r} must be one of {PROTOCOLS}")
    view_spec = default_views(protocol) if views is None else views
    if isinstance(view_spec, str):
        view_spec = parse_views(view_spec)
    if not isinstance(view_spec, ViewSpec):
        raise SettingTypeError(f"--views {view_spec!r} must be 'TxS' text or a ViewSpec")
    if method not in _method_names():
        raise SettingError(f"--method {method!r} must be one of {_method_names()}")
    check_setting(r, flops_target)
    if r is not None:
        _check_int("--r", r, 0)
    _check_int("--batch-size", batch_size, 1)
    if workers is None:
        workers = default_workers()
    _check_int("--workers", workers, 0)
    if sampling_rate is not None:
        _check_int("--sampling-rate", sampling_rate, 1)
        if protocol == "ssv2":
            warnings.warn(
                f"--sampling-rate {sampling_rate} is ignored with --protocol ssv2 (one frame per segment)",
                stacklevel=2,
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

    list_file = Path(data)
    entries = read_video_list(list_file, root)
    if limit is not None:
        entries = entries[:limit]

    ctx = init_distributed(device)
    stack = contextlib.ExitStack()
    try:
        resolved = resolve_model(model, num_heads=num_heads, num_frames=num_frames, image_size=image_size)
        resolved.model.to(ctx.device)
        pruning = prune_model(resolved.model, method, r, flops_target)
        pre = resolved.preprocessing
        # the model's own sampling when it records one; an explicit --sampling-rate overrides it
        rate = sampling_rate if sampling_rate is not None else (pre.sampling_rate or DEFAULT_SAMPLING_RATE)
        window = sampling_window(protocol, pre.num_frames, rate)
        if ctx.is_main:
            _warn_labels(entries, _num_classes(resolved.model), list_file)

        settings = {
            "model": resolved.source.get("path", model),
            "model_kind": resolved.source.get("kind"),
            "num_heads": num_heads,
            "method": method if (r is not None or flops_target is not None) else None,
            "r": r,
            "flops_target": flops_target,
            "protocol": protocol,
            "views": str(view_spec),
            "sampling_rate": rate if protocol == "kinetics" else None,
            "num_frames": pre.num_frames,
            "image_size": pre.image_size,
            "mean": list(pre.mean),
            "std": list(pre.std),
            "resize": pre.resize,  # None: VideoMAE's (short side = image_size, no antialiasing)
            "precision": precision_used,
            "list_file": str(list_file.resolve()),
            "list_sha256": _sha256(list_file),
            "root": str(Path(root).resolve()) if root is not None else None,
        }
        lock = res.RankLock(out_dir, ctx.rank).acquire()
        stack.callback(lock.release)
        error: Exception | None = None
        if ctx.is_main:
            try:
                state = res.check_or_record_settings(out_dir, settings, overwrite)
            except (ValueError, OSError) as e:  # StpruneErrors, or a file system refusing the write
                error, state = e, None
        else:
            state = None
        error, state = ctx.broadcast((error, state))
        if error is not None:
            raise error
        out_dir.mkdir(parents=True, exist_ok=True)

        _repair_files(out_dir, ctx)
        ctx.barrier()
        done: set[str] = set()
        for part in ctx.all_gather(set(_visible_rows(out_dir))):
            done |= part
        wanted = {e.path for e in entries}
        remaining = [e for e in entries if e.path not in done]
        mine = shard(remaining, ctx.rank, ctx.world_size)
        if ctx.is_main and progress and state == "resume":
            tqdm.write(
                f"resuming {out_dir}: {len(done & wanted)} of {len(entries)} videos already done, "
                f"{len(remaining)} to go"
            )

        with res.PredictionWriter(res.rank_file(out_dir, ctx.rank)) as writer:
            resolved.model.eval()
            _evaluate_shard(
                mine,
                resolved,
                ctx,
                writer,
                protocol,
                view_spec,
                rate,
                batch_size,
                workers,
                precision_used,
                progress,
            )

        ctx.barrier()
        # all_gather rather than gather: supported the same way by NCCL and gloo; rows are small.
        gathered = ctx.all_gather(_visible_rows(out_dir))
        if not ctx.is_main:
            # Leave together with rank 0: a rank that tears its gloo group down while rank 0 still
            # holds the connection can abort at exit ("terminate called without an active exception").
            ctx.barrier()
            return None
        rows: dict[str, dict[str, Any]] = {}
        for part in gathered or []:
            for video, row in part.items():
                rows.setdefault(video, row)
        order = [e.path for e in entries]
        summary = res.summarize(rows, order, window)
        if summary["num_short"]:
            if protocol == "kinetics":
                what = f"{pre.num_frames} frames at stride {rate} span {window}"
                hint = "If the model was trained with another sampling, pass its --sampling-rate"
            else:
                what, hint = f"one frame for each of {pre.num_frames} segments", "Check the videos"
            warnings.warn(
                f"{summary['num_short']} of {summary['num_evaluated']} videos have fewer than {window} "
                f"frames, the sampling window ({what}): their clips repeat frames. {hint}",
                stacklevel=2,
            )
        try:
            gflops = _gflops_per_view(resolved, ctx.device)
        except Exception as e:  # noqa: BLE001 - a FLOP count must not cost the summary of a long run
            gflops = None
            tqdm.write(f"warning: could not count GFLOPs per view ({type(e).__name__}: {e})")
        import stprune

        summary.update(
            {
                "gflops_per_view": gflops,
                "pruning": pruning,
                "settings": settings,
                "model_description": resolved.description,
                "num_views": view_spec.num_views,
                "limit": limit,
                "run": {
                    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                    "device": str(ctx.device),
                    "precision": precision_used,
                    "world_size": ctx.world_size,
                    "workers": workers,
                    "stprune_version": stprune.__version__,
                    "torch_version": torch.__version__,
                },
            }
        )
        res.write_merged(out_dir, rows, order)
        res.write_json_atomic(out_dir / res.SUMMARY_FILE, summary)
        ctx.barrier()  # the other ranks wait here for the summary (see above)
        return summary
    finally:
        stack.close()
        ctx.close()
