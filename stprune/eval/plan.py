"""What a run will do, decided before any video is decoded: the model, the settings and their
folders, and which videos each setting still needs.

- :func:`resolve_eval_model`: ``run_eval``'s ``model`` (a ``--model`` spec, a model in memory or a
  :class:`~stprune.architectures.loading.ResolvedModel`) as a model with its preprocessing;
- :func:`common_settings` / :func:`setting_record`: what every folder's ``run.json`` records;
- :func:`resolve_targets`: each pruning setting resolved once (a ``flops_target``'s search runs
  here) with the folder its results go to (:class:`Target`); a sweep's setting the model cannot
  take is a note, a single setting's an error;
- :func:`check_folders`: rank 0 records or checks every folder (resume), all ranks get the verdict;
- :func:`videos_left`: per video, the settings without a row for it in any rank's file.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from stprune.architectures.loading import Preprocessing, ResolvedModel, resolve_model, resolve_module
from stprune.bench.compare import Setting
from stprune.errors import SettingError, UnsupportedModelError
from stprune.eval import results as res
from stprune.eval.distributed import DistContext
from stprune.eval.lists import VideoEntry
from stprune.eval.options import RunOptions
from stprune.eval.sampling import ViewSpec
from stprune.eval.sweep import ResolvedSetting, resolve_settings, setting_dir

__all__ = [
    "Target",
    "prune_model",
    "resolve_eval_model",
    "num_classes",
    "warn_labels",
    "common_settings",
    "setting_record",
    "resolve_targets",
    "check_folders",
    "visible_rows",
    "videos_left",
    "say_resuming",
]


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


def resolve_eval_model(
    model: str | os.PathLike | torch.nn.Module | ResolvedModel,
    preprocessing: Preprocessing | None,
    num_heads: int | None,
    num_frames: int | None,
    image_size: int | None,
) -> ResolvedModel:
    """``run_eval``'s ``model`` as a model with its preprocessing (see
    :func:`~stprune.eval.runner.run_eval`); a video LLM is refused (eval scores classifiers)."""
    return _refuse_video_llm(_resolve_eval_model(model, preprocessing, num_heads, num_frames, image_size))


def _refuse_video_llm(resolved: ResolvedModel) -> ResolvedModel:
    from stprune.adapters.video_llm import VideoLLMAdapter
    from stprune.models import get_adapter

    try:
        adapter = get_adapter(resolved.model)
    except UnsupportedModelError:  # fails later, with its own message
        return resolved
    if isinstance(adapter, VideoLLMAdapter):
        raise SettingError(
            f"eval scores video classifiers on clips; {type(resolved.model).__name__} is a video LLM: "
            "measure it with its own processor and benchmark (docs/video_llm.md gives the code)"
        )
    return resolved


def _resolve_eval_model(
    model: str | os.PathLike | torch.nn.Module | ResolvedModel,
    preprocessing: Preprocessing | None,
    num_heads: int | None,
    num_frames: int | None,
    image_size: int | None,
) -> ResolvedModel:
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


def num_classes(model: torch.nn.Module) -> int | None:
    """The classifier's class count from its config (HF ``num_labels``, Video Swin ``num_classes``)."""
    config = getattr(model, "config", None)
    for name in ("num_labels", "num_classes"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def warn_labels(entries: list[VideoEntry], classes: int | None, list_file: Path) -> None:
    """Warn when labels lie outside the model's ``classes`` (called by ``run_eval`` itself: the
    warning points at its caller)."""
    if classes is None:
        return
    outside = [e for e in entries if e.label >= classes]
    if outside:
        first = outside[0]
        warnings.warn(
            f"{len(outside)} of {len(entries)} labels in {list_file} are outside the model's "
            f"{classes} classes (0..{classes - 1}), e.g. line {first.line}: label {first.label}; "
            "those videos can only count as wrong (is this the model's class order?)",
            stacklevel=3,
        )


# --------------------------------------------------------------------------------------------
# the settings each folder records
# --------------------------------------------------------------------------------------------


def clip_description(settings: dict[str, Any]) -> str:
    """The clip every view of a run is, from its :func:`common_settings`: e.g. ``16 frames x 224x224
    (every 4th frame of the video)``, ``... (consecutive frames ...)``, or for ``--protocol ssv2``
    ``... (one frame from each of 16 equal segments of the video)``."""
    frames, size, rate = settings["num_frames"], settings["image_size"], settings["sampling_rate"]
    if settings["protocol"] == "ssv2" or rate is None:
        taken = f"one frame from each of {frames} equal segments"
    elif rate == 1:
        taken = "consecutive frames"
    else:
        suffix = "th" if 10 <= rate % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(rate % 10, "th")
        taken = f"every {rate}{suffix} frame"
    return f"{frames} frames x {size}x{size} ({taken} of the video)"


def common_settings(
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


def setting_record(common: dict[str, Any], setting: Setting) -> dict[str, Any]:
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
class Target:
    """One setting of the run and the folder its results go to."""

    resolved: ResolvedSetting
    dir: Path
    record: dict[str, Any]
    state: str = "new"

    @property
    def name(self) -> str:
        return self.dir.name


def resolve_targets(
    model: torch.nn.Module, opts: RunOptions, common: dict[str, Any], ctx: DistContext
) -> tuple[list[Target], list[str]]:
    """Resolve every setting once; a single setting the model cannot take raises, a sweep's is
    skipped with a note (a warning on rank 0, pointing at ``run_eval``'s caller: called by
    run_eval itself), unless none of its pruned settings can run."""
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
        targets.append(Target(t, folder, setting_record(common, t.setting)))
    return targets, notes


def check_folders(
    ctx: DistContext, opts: RunOptions, common: dict[str, Any], targets: list[Target], overwrite: bool
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
# what is left to do
# --------------------------------------------------------------------------------------------


def _repair_files(out: Path, ctx: DistContext) -> None:
    """Each rank cuts a torn tail off its own file; rank 0 also does it for files of absent ranks."""
    res.repair_jsonl(res.rank_file(out, ctx.rank))
    if ctx.is_main:
        for rank, path in res.rank_files(out).items():
            if rank >= ctx.world_size:
                res.repair_jsonl(path)


def visible_rows(out: Path) -> dict[str, dict[str, Any]]:
    """The rows of every rank's predictions file in folder ``out``, keyed by video."""
    return res.read_rows(res.rank_files(out).values())


def videos_left(
    ctx: DistContext, entries: list[VideoEntry], targets: list[Target]
) -> tuple[list[tuple[VideoEntry, tuple[int, ...]]], int]:
    """Per video still to do, the indices of the targets that have no row for it (over every
    rank's files), and how many videos every target already has."""
    for t in targets:
        _repair_files(t.dir, ctx)
    ctx.barrier()
    done: list[set[str]] = [set() for _ in targets]
    for part in ctx.all_gather([set(visible_rows(t.dir)) for t in targets]):
        for i, videos in enumerate(part):
            done[i] |= videos
    todo = []
    for e in entries:
        needed = tuple(i for i in range(len(targets)) if e.path not in done[i])
        if needed:
            todo.append((e, needed))
    complete = sum(all(e.path in d for d in done) for e in entries)
    return todo, complete


def say_resuming(
    opts: RunOptions, state: str, targets: list[Target], total: int, complete: int, left: int
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
