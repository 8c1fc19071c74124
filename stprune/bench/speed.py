"""Measured speed: latency, throughput and memory of a forward pass, CPU or CUDA.

Memory is what one forward holds at its peak beyond what was allocated before it (the weights,
the input): on CUDA torch's allocator peak during the timed runs minus what was allocated before
them (activations and kernel workspaces); on CPU, where no allocator statistics exist, the peak
of the bytes held by tensors the forward's operators return, tracked operator by operator in one
extra untimed forward (activations; scratch memory inside a kernel is not seen). The process's
resident set is not used: it includes the weights, the interpreter and memory the allocator kept
from earlier settings, so it says little about one setting.
"""

from __future__ import annotations

import contextlib
import statistics
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from tqdm.auto import tqdm

from stprune.errors import SettingError

__all__ = ["SpeedResult", "measure_speed", "forward_memory_mb", "LiveTensorMemory"]


@dataclass(frozen=True)
class SpeedResult:
    """Timing of ``iters`` forward passes on a batch.

    Attributes:
        batch_size: clips per forward.
        latency_ms: median wall time of one forward (the whole batch).
        latency_ms_min / latency_ms_mean / latency_ms_std: spread over the timed iterations.
        clips_per_s: batch_size / median latency.
        peak_memory_mb: CUDA only (None on CPU): peak allocated by torch during the timed runs,
            weights and input included.
        device: where it ran.
        forward_memory_mb: MiB one forward holds at its peak beyond the weights and the input
            (see the module docstring for how each device measures it); None if not measured.
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
    forward_memory_mb: float | None = None


class LiveTensorMemory(TorchDispatchMode):
    """Tracks the bytes held by tensors that operators return while the mode is active.

    Each storage an operator returns that is not one of its inputs' (so not a view or an
    in-place result) counts from its creation until it is freed; ``peak`` is the largest total
    at any time. Tensors created before the mode (weights, inputs) never count.
    """

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._sizes: dict[int, int] = {}
        self._refs: dict[int, weakref.ref] = {}

    def _freed(self, key: int, _ref: weakref.ref) -> None:
        self.live -= self._sizes.pop(key, 0)
        self._refs.pop(key, None)

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        inputs = {
            t.untyped_storage().data_ptr()
            for t in tree_flatten((args, kwargs))[0]
            if isinstance(t, torch.Tensor) and t.layout == torch.strided
        }
        out = func(*args, **kwargs)
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor) or t.layout != torch.strided:
                continue
            st = t.untyped_storage()
            key, size = st.data_ptr(), st.nbytes()
            if size == 0 or key in inputs or key in self._sizes:
                continue
            self._sizes[key] = size
            self._refs[key] = weakref.ref(st, lambda ref, key=key: self._freed(key, ref))
            self.live += size
            self.peak = max(self.peak, self.live)
        return out


def forward_memory_mb(
    model: nn.Module, inputs: Mapping[str, torch.Tensor], autocast_dtype: torch.dtype | None = None
) -> float:
    """MiB the tensors of one ``model(**inputs)`` hold at their peak (weights and inputs excluded).

    Runs one forward under :class:`LiveTensorMemory` and ``torch.inference_mode``; on any device.
    """
    device = next(iter(inputs.values())).device
    amp = (
        torch.autocast(device_type=device.type, dtype=autocast_dtype)
        if autocast_dtype is not None
        else contextlib.nullcontext()
    )
    tracker = LiveTensorMemory()
    with torch.inference_mode(), amp, tracker:
        model(**inputs)
    return tracker.peak / 2**20


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
    memory: bool = False,
) -> SpeedResult:
    """Time ``model(**inputs)`` under ``torch.inference_mode``.

    Args:
        model: the model, already on the inputs' device.
        inputs: forward kwargs; the batch size is the first dim of the first tensor.
        warmup: untimed iterations first (>= 0).
        iters: timed iterations (>= 1).
        autocast_dtype: e.g. ``torch.bfloat16`` to run under autocast.
        progress: show a tqdm bar.
        memory: also measure ``forward_memory_mb`` (CUDA: from the timed runs; CPU: one extra,
            untimed forward under :class:`LiveTensorMemory`).
    """
    if warmup < 0 or iters < 1:
        raise SettingError(f"need warmup >= 0 and iters >= 1; got warmup={warmup}, iters={iters}")
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
        before = 0
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            before = torch.cuda.memory_allocated(device)
        for _ in range(iters):
            t0 = time.perf_counter()
            model(**inputs)
            _sync(device)
            times.append(time.perf_counter() - t0)
            bar.update()
    bar.close()
    peak = fwd = None
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
        fwd = peak - before / 2**20 if memory else None
    elif memory:
        fwd = forward_memory_mb(model, inputs, autocast_dtype)
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
        forward_memory_mb=fwd,
    )
