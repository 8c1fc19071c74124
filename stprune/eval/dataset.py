"""A torch Dataset whose item is one video with all of its test views.

One item per *video* rather than per (video, view): the video is decoded once and all its views
are cut from the same frames (the reference decodes the file again for each of its 15 views). The
runner still batches *views* (``--batch-size`` views per forward pass, across video boundaries).

A video that cannot be read is not an exception here: its item carries the error message and no
views, so one bad file never stops a run and is never silently dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset, get_worker_info

from stprune.errors import SettingError
from stprune.eval.decode import VideoDecodeError, read_clips
from stprune.eval.lists import VideoEntry
from stprune.eval.sampling import ViewSpec, clip_indices
from stprune.eval.transforms import make_views

__all__ = ["VideoItem", "VideoViewsDataset", "worker_init"]


@dataclass
class VideoItem:
    """``views``: uint8 (V, T, 3, S, S) or None when ``error`` says why the video failed;
    ``frames``: the video's frame count (None when it failed)."""

    index: int
    path: str
    label: int
    views: torch.Tensor | None
    error: str | None
    frames: int | None = None


class VideoViewsDataset(Dataset):
    """Videos of a list with their ``views`` under ``protocol``; ``frames`` per clip, ``size`` px.

    Frames are resized to ``short_side`` (default ``size``), antialiased if ``antialias``
    (:func:`stprune.eval.transforms.make_views`).
    """

    def __init__(
        self,
        entries: Sequence[VideoEntry],
        protocol: str,
        views: ViewSpec,
        frames: int,
        size: int,
        sampling_rate: int = 4,
        short_side: int | None = None,
        antialias: bool = False,
    ) -> None:
        self.entries = list(entries)
        self.protocol = protocol
        self.views = views
        self.frames = frames
        self.size = size
        self.sampling_rate = sampling_rate
        self.short_side = short_side
        self.antialias = antialias
        if short_side is not None and short_side < size:
            raise SettingError(f"short_side {short_side} must be >= the crop size {size} (or None)")
        # Validate the settings once, eagerly, on a dummy length (raises ValueError if bad).
        clip_indices(protocol, 1, frames, views.clips, sampling_rate)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> VideoItem:
        entry = self.entries[index]
        counted: list[int] = []

        def make_indices(num_frames: int) -> list[list[int]]:
            counted.append(num_frames)
            return clip_indices(self.protocol, num_frames, self.frames, self.views.clips, self.sampling_rate)

        try:
            threads = 1 if get_worker_info() is not None else 0  # workers already run in parallel
            frames, positions = read_clips(entry.file, make_indices, threads)
            views = make_views(
                frames, positions, self.size, self.views.crops, self.short_side, self.antialias
            )
        except VideoDecodeError as e:
            return VideoItem(index, entry.path, entry.label, None, str(e))
        except Exception as e:  # noqa: BLE001 - any failure on one file must become an error row
            return VideoItem(index, entry.path, entry.label, None, f"{type(e).__name__}: {e}")
        return VideoItem(index, entry.path, entry.label, views, None, counted[-1])


def worker_init(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: one intra-op thread per worker (workers are the parallelism)."""
    torch.set_num_threads(1)
