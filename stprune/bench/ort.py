"""Speed in ONNX Runtime: every setting exported (:func:`stprune.export`) and timed, interleaved.

Each setting (the unpruned model first) is patched, exported to ONNX with a static batch, checked
(output within 1e-4 of the patched PyTorch model, planned tokens entering every block in ONNX
Runtime) and unpatched; then the ONNX Runtime sessions are timed in turn over ``rounds`` rounds,
so that load drift on a shared machine hits every setting alike. A setting's latency is the median
of its per-round medians, as :func:`stprune.bench.compare.measure_speed_rows` does for PyTorch.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

import stprune
from stprune.bench.compare import Row
from stprune.bench.speed import SpeedResult
from stprune.errors import SettingError, UnsupportedModelError

__all__ = ["check_ort_rows", "measure_ort_rows"]


def check_ort_rows(model: nn.Module, rows: Sequence[Row]) -> None:
    """Raise ``UnsupportedModelError`` naming the first setting of ``rows`` that cannot be exported to
    ONNX (patches and unpatches ``model`` for each; nothing is traced)."""
    from stprune.deploy import export_refusal

    for row in rows:
        row.setting.patch(model)
        try:
            why = export_refusal(model, "onnx")
        finally:
            if stprune.is_patched(model):
                stprune.unpatch(model)
        if why is not None:
            raise UnsupportedModelError(
                f"{row.setting.method} {row.setting.label} cannot run in ONNX Runtime: {why}"
            )


def measure_ort_rows(
    model: nn.Module,
    rows: Sequence[Row],
    batch_size: int = 1,
    warmup: int = 2,
    iters: int = 5,
    rounds: int = 3,
    threads: int | None = None,
    progress: Callable[[str], Any] | None = None,
    workdir: str | Path | None = None,
) -> list[Row]:
    """Time every setting of ``rows`` exported to ONNX, in ONNX Runtime on the CPU.

    Args:
        model: an unpatched supported model (CPU, float32).
        rows: the settings (e.g. from :func:`~stprune.bench.compare.measure_flops_rows`); speed-ups
            are relative to ``rows[0]``.
        batch_size / warmup / iters / rounds: as :func:`~stprune.bench.compare.measure_speed_rows`.
        threads: ONNX Runtime intra-op threads (default: torch's thread count, so that both
            runtimes get the same cores).
        workdir: where the .onnx files go (default: a temporary folder, removed afterwards).

    Returns:
        the rows with ``speed`` / ``speedup`` set, and ``extra`` ``max |diff|`` (ONNX Runtime vs
        PyTorch, largest absolute difference of the outputs on the timing clip).

    Raises:
        UnsupportedModelError: a setting that cannot be exported (before any export).
    """
    from stprune.deploy import export, onnx_session
    from stprune.models import get_adapter

    for name, value, low in (("batch_size", batch_size, 1), ("warmup", warmup, 0), ("iters", iters, 1)):
        if value < low:
            raise SettingError(f"{name} must be >= {low}; got {value}")
    if rounds < 1:
        raise SettingError(f"rounds must be >= 1; got {rounds}")
    if not rows:
        raise SettingError("no settings to time")
    check_ort_rows(model, rows)  # every refusal before the first (slow) export
    threads = torch.get_num_threads() if threads is None else threads
    clip = next(iter(get_adapter(model).example_inputs(batch_size).values()))
    with tempfile.TemporaryDirectory(prefix="stprune-ort-") as tmp:
        folder = Path(workdir) if workdir is not None else Path(tmp)
        sessions, diffs = [], []
        for i, row in enumerate(rows):
            if progress:
                progress(f"exporting {row.setting.method} {row.setting.label}")
            row.setting.patch(model)
            try:
                result = export(model, clip, folder / f"setting{i}.onnx", dynamic_batch=False)
            finally:
                if stprune.is_patched(model):
                    stprune.unpatch(model)
            diffs.append(result.max_abs_diff)
            sessions.append(onnx_session(result.path, threads))
        feed = clip.numpy()
        times: dict[int, list[float]] = {i: [] for i in range(len(rows))}
        for rnd in range(rounds):
            for i, (row, session) in enumerate(zip(rows, sessions, strict=True)):
                if progress:
                    progress(f"round {rnd + 1}/{rounds}: {row.setting.method} {row.setting.label}")
                inputs = {session.get_inputs()[0].name: feed}
                for _ in range(warmup):
                    session.run(None, inputs)
                per_iter = []
                for _ in range(iters):
                    t0 = time.perf_counter()
                    session.run(None, inputs)
                    per_iter.append(time.perf_counter() - t0)
                times[i].append(statistics.median(per_iter))
    out = []
    for i, row in enumerate(rows):
        per_round = sorted(times[i])
        med = per_round[len(per_round) // 2]
        speed = SpeedResult(
            batch_size=batch_size,
            iters=iters * rounds,
            latency_ms=med * 1e3,
            latency_ms_min=per_round[0] * 1e3,
            latency_ms_mean=statistics.fmean(per_round) * 1e3,
            latency_ms_std=(statistics.stdev(per_round) * 1e3) if len(per_round) > 1 else 0.0,
            clips_per_s=batch_size / med,
            peak_memory_mb=None,
            device=f"onnxruntime cpu, {threads} threads",
        )
        out.append(replace(row, speed=speed, extra={**row.extra, "max |diff|": f"{diffs[i]:.1e}"}))
    for row in out:
        row.speedup = out[0].speed.latency_ms / row.speed.latency_ms
    return out
