"""torch.distributed plumbing for evaluation under ``torchrun``.

A process group is created only when ``WORLD_SIZE > 1`` (set by torchrun): NCCL when the
evaluation runs on CUDA, gloo on CPU. A single process needs no group and every helper here
degrades to the obvious local behaviour. Ranks exchange only small Python objects (settings
errors, sets of finished videos, result rows), so result files need not sit on a file system
shared by all nodes.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from stprune.errors import SettingError

__all__ = ["DistContext", "init_distributed", "resolve_device", "shard"]

T = TypeVar("T")

# Ranks wait at barriers while slower ranks finish their share of a long evaluation; the
# default 10-30 minute collective timeout would kill a healthy multi-hour run.
_DEFAULT_TIMEOUT_H = 24.0


@dataclass
class DistContext:
    """Where this process stands: ``rank`` of ``world_size``; ``device`` to run the model on."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1 and dist.is_available() and dist.is_initialized()

    def barrier(self) -> None:
        """Wait for every rank (no-op for one process)."""
        if self.active:
            if self.device.type == "cuda":
                dist.barrier(device_ids=[self.device.index or 0])
            else:
                dist.barrier()

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.active:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""
        if not self.active:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def close(self) -> None:
        """Destroy the process group if this context created it (NCCL).

        A gloo group is left to the process's exit (``python -m stprune`` leaves without
        teardown under torchrun): destroying it while another rank still tears its own down can
        abort this rank after its work is done.
        """
        if self.owns_group and dist.is_initialized():
            if dist.get_backend() != "gloo":
                dist.destroy_process_group()
            self.owns_group = False


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise SettingError(f"environment variable {name}={value!r} is not an integer") from None


def resolve_device(device: str | None, world_size: int = 1, local_rank: int = 0) -> torch.device:
    """The device ``--device`` names for this rank; SettingError for one this machine does not have.

    None means ``cuda`` when CUDA is available, else ``cpu``; ``cuda`` means GPU
    ``local_rank % device_count``; ``cuda:N`` one GPU (single process only).
    """
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise SettingError(f"--device {device!r} is not a device; use cpu, cuda or cuda:N") from None
    if dev.type == "cpu":
        return dev
    if dev.type != "cuda":
        raise SettingError(f"--device {device!r} is not supported; use cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise SettingError(f"--device {device!r}: CUDA is not available (torch.cuda.is_available() is False)")
    count = torch.cuda.device_count()
    if dev.index is None:
        return torch.device("cuda", local_rank % count)
    if world_size > 1:
        raise SettingError(f"--device {device!r} names one GPU; under torchrun pass --device cuda")
    if dev.index >= count:
        raise SettingError(f"--device {device!r}: this machine has {count} GPU(s), cuda:0..cuda:{count - 1}")
    return dev


def init_distributed(device: str | None = None) -> DistContext:
    """Read torchrun's environment, pick the device, and join the process group if WORLD_SIZE > 1.

    ``device``: ``"cpu"``, ``"cuda"`` (this rank's GPU is ``cuda:LOCAL_RANK``), ``"cuda:N"``
    (single process only) or None for CUDA when available. The group timeout is
    ``STPRUNE_DIST_TIMEOUT_HOURS`` hours (default 24).
    """
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    if world < 1 or not 0 <= rank < world:
        raise SettingError(f"RANK={rank} must be in 0..WORLD_SIZE-1 (WORLD_SIZE={world})")

    dev = resolve_device(device, world, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)

    ctx = DistContext(rank=rank, world_size=world, local_rank=local_rank, device=dev)
    if world > 1:
        if not dist.is_available():
            raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
        if not dist.is_initialized():
            hours = float(os.environ.get("STPRUNE_DIST_TIMEOUT_HOURS", _DEFAULT_TIMEOUT_H))
            backend = "nccl" if dev.type == "cuda" else "gloo"
            kwargs: dict[str, Any] = {"backend": backend, "timeout": datetime.timedelta(hours=hours)}
            if dev.type == "cuda":
                kwargs["device_id"] = dev
            dist.init_process_group(**kwargs)
            ctx.owns_group = True
    return ctx


def shard(items: Sequence[T], rank: int, world_size: int) -> list[T]:
    """Items ``rank, rank + world_size, ...``: disjoint shards that together cover ``items``."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise SettingError(f"rank {rank} must be in 0..{world_size - 1}")
    return list(items[rank::world_size])
