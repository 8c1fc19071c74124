"""Which frames and which pixels make each test view: the VideoMAE test protocol.

Pure index arithmetic, no decoding. The definitions reproduce the VideoMAE / STA test code
(``kinetics.py`` / ``ssv2.py``, mode ``test``) for their settings, and generalise it where their
code cannot run (one clip or one crop divides by zero there):

**Kinetics (dense sampling).** Take every ``sampling_rate``-th frame of the whole video,
``0, s, 2s, ...``; if that gives fewer than ``clip_len`` frames, repeat the last one until it does.
Call that list ``sub`` (length ``m``). Clip ``k`` of ``K`` is ``sub[start_k : start_k + clip_len]``
with ``start_k = int(k * max(m - clip_len, 0) / (K - 1))`` (the reference formula, ``K >= 2``); for
``K = 1`` the single clip is centred: ``start = int(max(m - clip_len, 0) / 2)``.

**Something-Something V2 (segment-based, TSN style).** Split the video into ``num_segments`` equal
segments of ``tick = n / num_segments`` frames. Clip ``k`` of ``K`` takes, in segment ``x``, frame
``int(tick * x + tick * k / K)``. For ``K = 2`` that is the reference exactly: clip 0 takes the
first frame of every segment, clip 1 the middle one. For ``K = 1`` the single clip takes the
middle frame of every segment (``int(tick * x + tick / 2)``).

**Spatial crops.** After the short side is resized to ``crop`` (``resized_hw``), square crops of
``crop`` pixels slide along the long side: crop ``j`` of ``S`` starts at
``int(j * (long - crop) / (S - 1))`` (reference formula, ``S >= 2``: for ``S = 3`` that is
left/top, centre, right/bottom); ``S = 1`` is the centre crop ``int((long - crop) / 2)``. When
height >= width the crops move along the height (the reference's tie rule).
"""

from __future__ import annotations

from dataclasses import dataclass

from stprune.errors import SettingError

__all__ = [
    "PROTOCOLS",
    "ViewSpec",
    "parse_views",
    "default_views",
    "kinetics_clip_indices",
    "ssv2_clip_indices",
    "clip_indices",
    "sampling_window",
    "DEFAULT_SAMPLING_RATE",
    "resized_hw",
    "crop_boxes",
]

PROTOCOLS: tuple[str, ...] = ("kinetics", "ssv2")
#: VideoMAE's Kinetics-400 test stride: used for models that do not record their own sampling.
DEFAULT_SAMPLING_RATE = 4
_DEFAULT_VIEWS = {"kinetics": (5, 3), "ssv2": (2, 3)}


@dataclass(frozen=True)
class ViewSpec:
    """``clips`` temporal clips x ``crops`` spatial crops; views are ordered clip-major."""

    clips: int
    crops: int

    @property
    def num_views(self) -> int:
        return self.clips * self.crops

    def __str__(self) -> str:
        return f"{self.clips}x{self.crops}"


def parse_views(text: str) -> ViewSpec:
    """Parse ``"TxS"`` (e.g. ``"5x3"``, ``"1x1"``) into a ViewSpec; both numbers in 1..100."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise SettingError(f"--views {text!r} must look like TxS, e.g. 5x3 (temporal clips x spatial crops)")
    clips, crops = (int(p) for p in parts)
    for name, v in (("temporal clips", clips), ("spatial crops", crops)):
        if not 1 <= v <= 100:
            raise SettingError(f"--views {text!r}: {name} = {v} must be in 1..100")
    return ViewSpec(clips, crops)


def default_views(protocol: str) -> ViewSpec:
    """The VideoMAE test views of a protocol: kinetics 5x3, ssv2 2x3."""
    if protocol not in _DEFAULT_VIEWS:
        raise SettingError(f"protocol {protocol!r} is not one of {PROTOCOLS}")
    return ViewSpec(*_DEFAULT_VIEWS[protocol])


def _check_positive(**values: int) -> None:
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, int):
            raise SettingError(f"{name} = {v!r} must be an integer >= 1")
        if v < 1:
            raise SettingError(f"{name} = {v!r} must be an integer >= 1")


def kinetics_clip_indices(
    num_frames: int, clip_len: int = 16, sampling_rate: int = 4, num_clips: int = 5
) -> list[list[int]]:
    """Frame indices of every temporal clip under the Kinetics dense protocol.

    Returns ``num_clips`` lists of ``clip_len`` indices into the decoded video (0-based, all
    ``< num_frames``).
    """
    _check_positive(
        num_frames=num_frames, clip_len=clip_len, sampling_rate=sampling_rate, num_clips=num_clips
    )
    sub = list(range(0, num_frames, sampling_rate))
    while len(sub) < clip_len:
        sub.append(sub[-1])
    slack = max(len(sub) - clip_len, 0)
    if num_clips == 1:
        starts = [int(slack / 2)]
    else:
        step = max(1.0 * slack / (num_clips - 1), 0)
        starts = [int(k * step) for k in range(num_clips)]
    return [sub[s : s + clip_len] for s in starts]


def ssv2_clip_indices(num_frames: int, num_segments: int = 16, num_clips: int = 2) -> list[list[int]]:
    """Frame indices of every temporal clip under the SSv2 segment protocol.

    Returns ``num_clips`` lists of ``num_segments`` indices (0-based, all ``< num_frames``).
    """
    _check_positive(num_frames=num_frames, num_segments=num_segments, num_clips=num_clips)
    tick = num_frames / float(num_segments)
    offsets = [tick / 2.0] if num_clips == 1 else [tick * k / num_clips for k in range(num_clips)]
    return [[min(int(off + tick * x), num_frames - 1) for x in range(num_segments)] for off in offsets]


def clip_indices(
    protocol: str, num_frames: int, frames_per_clip: int, num_clips: int, sampling_rate: int = 4
) -> list[list[int]]:
    """Dispatch to the protocol: ``frames_per_clip`` is the model's input frame count."""
    if protocol == "kinetics":
        return kinetics_clip_indices(num_frames, frames_per_clip, sampling_rate, num_clips)
    if protocol == "ssv2":
        return ssv2_clip_indices(num_frames, frames_per_clip, num_clips)
    raise SettingError(f"protocol {protocol!r} is not one of {PROTOCOLS}")


def sampling_window(protocol: str, frames_per_clip: int, sampling_rate: int = DEFAULT_SAMPLING_RATE) -> int:
    """The fewest frames a video needs so that no clip repeats a frame.

    Kinetics: ``frames_per_clip`` frames ``sampling_rate`` apart span ``(T - 1) * s + 1`` frames; a
    shorter video repeats its last sampled frame. SSv2: one frame per segment, so ``T`` frames.
    """
    _check_positive(frames_per_clip=frames_per_clip, sampling_rate=sampling_rate)
    if protocol == "kinetics":
        return (frames_per_clip - 1) * sampling_rate + 1
    if protocol == "ssv2":
        return frames_per_clip
    raise SettingError(f"protocol {protocol!r} is not one of {PROTOCOLS}")


def resized_hw(height: int, width: int, short: int) -> tuple[int, int]:
    """Size after resizing the short side to ``short`` (long side truncated, aspect kept)."""
    _check_positive(height=height, width=width, short=short)
    if width < height:
        return int(short * height / width), short
    return short, int(short * width / height)


def crop_boxes(height: int, width: int, crop: int, num_crops: int) -> list[tuple[int, int]]:
    """Top-left corners ``(y, x)`` of ``num_crops`` square ``crop`` x ``crop`` crops.

    ``height``/``width`` are the frame size *after* the short-side resize, so the short side equals
    ``crop`` (a short side larger than ``crop`` is centred on that axis).
    """
    _check_positive(height=height, width=width, crop=crop, num_crops=num_crops)
    if min(height, width) < crop:
        raise ValueError(f"frame {height}x{width} is smaller than the crop size {crop}")
    along_height = height >= width
    long_side, short_side = (height, width) if along_height else (width, height)
    slack = long_side - crop
    if num_crops == 1:
        offsets = [int(slack / 2)]
    else:
        step = 1.0 * slack / (num_crops - 1)
        offsets = [int(j * step) for j in range(num_crops)]
    other = int((short_side - crop) / 2)
    return [(o, other) if along_height else (other, o) for o in offsets]
