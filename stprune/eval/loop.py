"""The evaluation of one rank's videos: decode each video once, run every setting it still needs
on its views, append one durable row per finished video to each of those settings' files.

:func:`evaluate_shard` is the loop: a DataLoader (:func:`video_loader`) decodes each video with
all its views in worker processes; the :class:`~stprune.eval.sweep.SweepEngine` packs views into
batches of ``--batch-size`` across video boundaries and runs every setting on each batch; a
finished video's mean view softmax becomes a row (:func:`prediction_row`), written through each
setting's :class:`~stprune.eval.results.PredictionWriter`. :class:`Progress` shows the running
top-1 of every setting.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from stprune.architectures.loading import ResolvedModel
from stprune.eval import results as res
from stprune.eval.dataset import VideoItem, VideoViewsDataset, worker_init
from stprune.eval.distributed import DistContext
from stprune.eval.lists import VideoEntry
from stprune.eval.options import RunOptions
from stprune.eval.plan import Target
from stprune.eval.sampling import ViewSpec
from stprune.eval.sweep import SweepEngine, running_top1, short_label
from stprune.eval.transforms import normalize

__all__ = ["TOPK", "autocast", "prediction_row", "video_loader", "Progress", "evaluate_shard"]

#: the classes a row lists in ``top5``
TOPK = 5


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast for a resolved precision (see :func:`stprune.eval.options.resolve_precision`)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)


def prediction_row(
    item: VideoItem, probs: torch.Tensor | None, gflops: float | None, adaptive: bool
) -> dict[str, Any]:
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


def video_loader(
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


class Progress:
    """One bar over videos with the running top-1 of every setting (this run's rows)."""

    def __init__(self, ctx: DistContext, targets: list[Target], total: int, enabled: bool) -> None:
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


def evaluate_shard(
    todo: list[tuple[VideoEntry, tuple[int, ...]]],
    resolved: ResolvedModel,
    targets: list[Target],
    ctx: DistContext,
    writers: list[res.PredictionWriter],
    opts: RunOptions,
    rate: int,
    progress: bool,
) -> SweepEngine:
    """Evaluate this rank's videos for the targets each needs; append their rows. Returns the
    engine (its timings)."""
    pre = resolved.preprocessing
    needs = {e.path: needed for e, needed in todo}
    loader = video_loader([e for e, _ in todo], resolved, opts.protocol, opts.views, rate, opts.workers)
    engine = SweepEngine(
        resolved.model,
        resolved.logits,
        [t.resolved for t in targets],
        opts.batch_size,
        prepare=lambda x: normalize(x.to(ctx.device, non_blocking=True), pre.mean, pre.std),
        autocast=lambda: autocast(opts.precision, ctx.device),
        device=ctx.device,
    )
    bar = Progress(ctx, targets, len(todo), progress)

    def write(item: VideoItem, probs: dict[int, torch.Tensor], gflops: dict[int, float]) -> None:
        rows = {}
        for i in needs[item.path]:
            rows[i] = prediction_row(item, probs.get(i), gflops.get(i), targets[i].resolved.adaptive)
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
