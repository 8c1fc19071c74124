"""Measured speed: latency, throughput and peak memory of a forward pass, CPU or CUDA."""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

__all__ = ["SpeedResult", "measure_speed", "peak_rss_reset", "peak_rss_mb"]


@dataclass(frozen=True)
class SpeedResult:
    """Timing of ``iters`` forward passes on a batch.

    Attributes:
        batch_size: clips per forward.
        latency_ms: median wall time of one forward (the whole batch).
        latency_ms_min / latency_ms_mean / latency_ms_std: spread over the timed iterations.
        clips_per_s: batch_size / median latency.
        peak_memory_mb: CUDA: peak allocated by torch during the timed runs; CPU: the process's
            peak resident set (VmHWM) during the timed runs, or None where it cannot be read.
        device: where it ran.
    """

    batch_size: int
    iters: int
    latency_ms: float
    latency_ms_min: float
    latency_ms_mean: float
    latency_ms_std: float
    clips_per_s: float
    peak_memory_mb: float | None
    device: str


def peak_rss_reset() -> bool:
    """Reset the process's peak-RSS counter (Linux ``/proc/self/clear_refs``); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float | None:
    """The process's peak resident set size since the last reset, in MiB (Linux), else None."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_speed(
    model: nn.Module,
    inputs: Mapping[str, torch.Tensor],
    warmup: int = 3,
    iters: int = 10,
    autocast_dtype: torch.dtype | None = None,
    progress: bool = False,
    desc: str = "timing",
) -> SpeedResult:
    """Time ``model(**inputs)`` under ``torch.inference_mode``.

    Args:
        model: the model, already on the inputs' device.
        inputs: forward kwargs; the batch size is the first dim of the first tensor.
        warmup: untimed iterations first (>= 0).
        iters: timed iterations (>= 1).
        autocast_dtype: e.g. ``torch.bfloat16`` to run under autocast.
        progress: show a tqdm bar.
    """
    if warmup < 0 or iters < 1:
        raise ValueError(f"need warmup >= 0 and iters >= 1; got warmup={warmup}, iters={iters}")
    first = next(iter(inputs.values()))
    device = first.device
    batch = int(first.shape[0])
    amp = (
        torch.autocast(device_type=device.type, dtype=autocast_dtype)
        if autocast_dtype is not None
        else contextlib.nullcontext()
    )
    times: list[float] = []
    bar = tqdm(total=warmup + iters, desc=desc, disable=not progress, leave=False)
    with torch.inference_mode(), amp:
        for _ in range(warmup):
            model(**inputs)
            bar.update()
        _sync(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        rss_ok = device.type == "cpu" and peak_rss_reset()
        for _ in range(iters):
            t0 = time.perf_counter()
            model(**inputs)
            _sync(device)
            times.append(time.perf_counter() - t0)
            bar.update()
    bar.close()
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak = peak_rss_mb() if rss_ok else None
    med = statistics.median(times)
    return SpeedResult(
        batch_size=batch,
        iters=iters,
        latency_ms=med * 1e3,
        latency_ms_min=min(times) * 1e3,
        latency_ms_mean=statistics.fmean(times) * 1e3,
        latency_ms_std=(statistics.stdev(times) * 1e3) if len(times) > 1 else 0.0,
        clips_per_s=batch / med,
        peak_memory_mb=peak,
        device=str(device),
    )
