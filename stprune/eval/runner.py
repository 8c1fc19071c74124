"""The evaluation loop behind ``stprune eval``: resumable, fault-tolerant, distributed, and a
sweep of many settings on the same decoded views.

:func:`run_eval` runs these steps on every rank (one process is simply rank 0 of 1); each lives in
its own module:

1. :mod:`stprune.eval.options`: check every option before anything is read or loaded; then read
   the list (first ``limit`` entries);
2. :mod:`stprune.eval.plan`: load the model and resolve each pruning setting once
   (:mod:`stprune.eval.sweep`); rank 0 checks ``--out`` against the recorded settings (or records
   them), all ranks agree. One setting writes its files in ``--out`` itself; a sweep (several
   settings, or ``sweep=True``) writes them in a folder per setting, plus ``sweep.json`` and
   ``sweep.png``. Each rank repairs its own predictions files (a torn last line from a kill is cut
   off); everyone learns which videos already have a row for which setting, and skips what is done;
3. :mod:`stprune.eval.loop`: the remaining videos are dealt round-robin to the ranks; each rank
   decodes its videos once with a DataLoader, and for every batch of ``batch_size`` views runs each
   setting the batch's videos still need, averages each video's view softmax scores per setting
   (as VideoMAE's ``merge`` does), and appends one durable row per finished video to each of those
   settings' files;
4. :mod:`stprune.eval.report`: barrier; rank 0 gathers every row, merges by video path (so the
   result does not depend on the number of ranks) and writes each setting's ``predictions.jsonl``
   and ``summary.json`` (and a sweep's ``sweep.json`` / ``sweep.png``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from stprune.architectures.loading import Preprocessing, ResolvedModel
from stprune.core.schedule import plural
from stprune.eval import results as res
from stprune.eval.distributed import init_distributed, shard
from stprune.eval.lists import read_video_list
from stprune.eval.loop import evaluate_shard
from stprune.eval.options import PRECISIONS, check_options, default_workers, resolve_precision
from stprune.eval.plan import (
    check_folders,
    common_settings,
    num_classes,
    prune_model,
    resolve_eval_model,
    resolve_targets,
    say_resuming,
    videos_left,
    visible_rows,
    warn_labels,
)
from stprune.eval.report import correctness, run_info, write_summaries, write_sweep_files
from stprune.eval.sampling import DEFAULT_SAMPLING_RATE, ViewSpec, sampling_window

__all__ = ["PRECISIONS", "run_eval", "prune_model", "default_workers", "resolve_precision"]


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
    on_start: Callable[[dict[str, Any]], None] | None = None,
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
    ``on_start``: called on rank 0 with the run's shared settings (what ``summary["settings"]``
    records; :func:`~stprune.eval.plan.clip_description` words its clip) once they are checked,
    before the first video.
    Warns (UserWarning) about labels outside the model's classes, videos shorter than the
    sampling window (their clips repeat frames) and sweep settings the model cannot take.
    """
    opts = check_options(
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
        resolved = resolve_eval_model(model, preprocessing, num_heads, num_frames, image_size)
        resolved.model.to(ctx.device)
        pre = resolved.preprocessing
        # the model's own sampling when it records one; an explicit --sampling-rate overrides it
        rate = sampling_rate if sampling_rate is not None else (pre.sampling_rate or DEFAULT_SAMPLING_RATE)
        window = sampling_window(protocol, pre.num_frames, rate)
        common = common_settings(
            model, resolved, num_heads, protocol, opts.views, rate, opts.precision, list_file, root
        )
        targets, notes = resolve_targets(resolved.model, opts, common, ctx)
        skipped = [s for s in opts.settings if all(t.resolved.setting != s for t in targets)]
        if ctx.is_main:
            warn_labels(entries, num_classes(resolved.model), list_file)

        lock = res.RankLock(opts.out, ctx.rank).acquire()
        stack.callback(lock.release)
        state = check_folders(ctx, opts, common, targets, overwrite)
        todo, complete = videos_left(ctx, entries, targets)
        mine = shard(todo, ctx.rank, ctx.world_size)
        if ctx.is_main and on_start is not None:
            on_start(common)
        if ctx.is_main and progress:
            say_resuming(opts, state, targets, len(entries), complete, len(todo))

        with contextlib.ExitStack() as files:
            writers = [
                files.enter_context(res.PredictionWriter(res.rank_file(t.dir, ctx.rank))) for t in targets
            ]
            resolved.model.eval()
            engine = evaluate_shard(mine, resolved, targets, ctx, writers, opts, rate, progress)

        ctx.barrier()
        # all_gather rather than gather: supported the same way by NCCL and gloo; rows are small.
        gathered = ctx.all_gather([visible_rows(t.dir) for t in targets])
        if not ctx.is_main:
            # Leave together with rank 0: a rank that tears its gloo group down while rank 0 still
            # holds the connection can abort at exit ("terminate called without an active exception").
            ctx.barrier()
            return None

        run = run_info(ctx, opts)
        order = [e.path for e in entries]
        summaries, merged = write_summaries(
            targets, gathered, order, resolved, opts, ctx.device, rate, window, engine.clips_per_s(), run
        )
        if not opts.sweep:
            ctx.barrier()  # the other ranks wait here for the summary (see above)
            return summaries[0]

        counts = f"{plural(len(entries), 'video')} x {plural(opts.views.num_views, 'view')}"
        title = f"{resolved.description}: {counts}"
        # the statistics pair the settings video by video, from the rows on disk: a resumed sweep
        # gives the same figures as an uninterrupted one
        correct = [correctness(rows, order) for rows in merged]
        table = write_sweep_files(opts.out, targets, summaries, skipped, notes, title, correct)
        ctx.barrier()
        return {
            "sweep": table,
            "summaries": {t.name: s for t, s in zip(targets, summaries, strict=True)},
            "skipped": notes,
            "num_videos": len(entries),
            "num_views": opts.views.num_views,
            "settings": common,
            "run": run,
        }
    finally:
        stack.close()
        ctx.close()
