"""The options of one ``stprune eval`` run, checked before anything is read or loaded.

:func:`check_options` turns ``run_eval``'s keyword arguments into a :class:`RunOptions`: the
protocol and views, the settings to evaluate (the unpruned model first in a sweep), the layout
(one setting or a sweep), the batch, the decoding workers, the frame stride, the limit, the
precision the device will run at, and the output folder. A bad value raises a
:class:`~stprune.errors.StpruneError` naming it and the allowed range.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from stprune.bench.compare import Setting
from stprune.errors import SettingError, SettingTypeError
from stprune.eval.distributed import resolve_device
from stprune.eval.sampling import PROTOCOLS, ViewSpec, default_views, parse_views
from stprune.eval.sweep import sweep_settings

__all__ = [
    "PRECISIONS",
    "MAX_DEFAULT_WORKERS",
    "RunOptions",
    "check_options",
    "default_workers",
    "resolve_precision",
]

PRECISIONS: tuple[str, ...] = ("auto", "fp32", "fp16", "bf16")
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


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SettingTypeError(f"{name} {value!r} must be an integer >= {low}")
    if value < low:
        raise SettingError(f"{name} {value} must be >= {low}")
    return value


@dataclass(frozen=True)
class RunOptions:
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


def check_options(
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
) -> RunOptions:
    """Every option checked before anything is read or loaded (StpruneErrors naming the value).

    Called by :func:`~stprune.eval.runner.run_eval` itself: its warnings (``--sampling-rate`` with
    ``--protocol ssv2``) point at run_eval's caller."""
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
    return RunOptions(
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
