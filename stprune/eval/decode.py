"""Video decoding with PyAV: frame counting and reading selected frames as RGB.

Frames are numbered 0, 1, 2, ... in presentation order as the decoder outputs them (the same
numbering decord's ``VideoReader`` uses in the reference code). Every failure — a missing file, a
file FFmpeg cannot open, a stream with no video, a text file (FFmpeg's ``tty`` demuxer would play
it as ANSI art), a file truncated before a needed frame — raises
:class:`VideoDecodeError` with a message that says what went wrong, so callers can record it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

__all__ = ["VideoDecodeError", "count_frames", "read_frames", "read_clips"]


class VideoDecodeError(RuntimeError):
    """A video could not be read; the message says which file and why."""


#: FFmpeg demuxers that turn a text file into a "video" (a video list given where a video belongs)
_TEXT_FORMATS = {"tty": "'tty' demuxer would render its text as ANSI-art frames"}


def _open(path: str | os.PathLike):  # noqa: ANN202 - av.container.InputContainer
    import av

    p = Path(path)
    if not p.exists():
        raise VideoDecodeError(f"file not found: {str(p)!r}")
    if not p.is_file():
        raise VideoDecodeError(f"not a regular file: {str(p)!r}")
    if p.stat().st_size == 0:
        raise VideoDecodeError(f"empty file (0 bytes): {str(p)!r}")
    try:
        container = av.open(str(p), mode="r")
    except (av.FFmpegError, OSError, ValueError) as e:
        # FFmpeg's reason without its errno and the repeated file name ("[Errno 1094995529] ...: 'x'")
        reason = getattr(e, "strerror", None) or str(e)
        raise VideoDecodeError(f"cannot open {str(p)!r}: {reason} (not a video FFmpeg can read)") from e
    if not container.streams.video:
        container.close()
        raise VideoDecodeError(f"no video stream in {str(p)!r}")
    if container.format.name in _TEXT_FORMATS:
        container.close()
        raise VideoDecodeError(
            f"{str(p)!r} is a text file, not a video (FFmpeg's {_TEXT_FORMATS[container.format.name]})"
        )
    return container


def count_frames(path: str | os.PathLike) -> int:
    """Number of frames of the first video stream, without decoding.

    The count the container's index declares (``nb_frames``, e.g. MP4's sample table) when it has
    one, as decord does in the reference code; otherwise (e.g. WebM) the number of video packets
    found by demuxing; as a last resort the number of frames that decode. A truncated MP4 still
    declares its full count, so :func:`read_clips` notices the missing frames; a truncated WebM
    has no index and reads as a shorter video.
    """
    import av

    container = _open(path)
    try:
        stream = container.streams.video[0]
        n = int(stream.frames or 0)
        if n <= 0:
            try:
                n = sum(1 for packet in container.demux(stream) if packet.size > 0)
            except av.FFmpegError as e:
                raise VideoDecodeError(f"cannot demux {str(path)!r}: {e}") from e
    finally:
        container.close()
    if n <= 0:
        n = _decode_count(path)
    if n <= 0:
        raise VideoDecodeError(f"no decodable video frames in {str(path)!r}")
    return n


def _decode_count(path: str | os.PathLike) -> int:
    import av

    container = _open(path)
    try:
        return sum(1 for _ in container.decode(video=0))
    except av.FFmpegError as e:
        raise VideoDecodeError(f"cannot decode {str(path)!r}: {e}") from e
    finally:
        container.close()


def read_frames(
    path: str | os.PathLike, indices: Iterable[int], threads: int = 0
) -> tuple[dict[int, np.ndarray], int]:
    """Decode the video once and keep the frames whose index is in ``indices``.

    ``threads``: FFmpeg decoding threads (0 = FFmpeg's choice; 1 inside DataLoader workers, which
    already decode in parallel).

    Returns ``({index: uint8 array (H, W, 3) RGB}, number of frames decoded)``. Frames past the end
    of the stream are simply absent from the dict; the caller decides what that means.
    """
    import av

    wanted = set(indices)
    last = max(wanted) if wanted else -1
    frames: dict[int, np.ndarray] = {}
    container = _open(path)
    decoded = 0
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.thread_count = threads
        for i, frame in enumerate(container.decode(stream)):
            decoded = i + 1
            if i in wanted:
                frames[i] = frame.to_ndarray(format="rgb24")
            if i >= last:
                break
    except av.FFmpegError as e:
        # A corrupt tail after the needed frames is harmless; before them it is an error.
        if len(frames) < len(wanted):
            raise VideoDecodeError(
                f"truncated or corrupt video {str(path)!r}: decoding failed after {decoded} frames: {e}"
            ) from e
    finally:
        container.close()
    return frames, decoded


def read_clips(
    path: str | os.PathLike, make_indices: Callable[[int], Sequence[Sequence[int]]], threads: int = 0
) -> tuple[np.ndarray, list[list[int]]]:
    """Decode the frames of every clip: ``make_indices(num_frames)`` gives each clip's indices.

    Returns ``(frames, positions)``: ``frames`` uint8 (U, H, W, 3) holds each needed frame once
    (clips often share frames), and clip ``k`` is ``frames[positions[k]]``. The frame count comes
    from :func:`count_frames`. A file whose stream ends before a needed frame (truncated) raises
    VideoDecodeError: sampling a different, shorter video than the one listed would change the
    protocol silently.
    """
    n = count_frames(path)
    clips = [list(c) for c in make_indices(n)]
    needed = sorted({i for c in clips for i in c})
    frames, decoded = read_frames(path, needed, threads)
    if len(frames) < len(needed):
        missing = min(set(needed) - frames.keys())
        raise VideoDecodeError(
            f"truncated video {str(path)!r}: the container lists {n} frames but only {decoded} decode "
            f"(frame {missing} is needed)"
        )
    where = {index: pos for pos, index in enumerate(needed)}
    return np.stack([frames[i] for i in needed]), [[where[i] for i in c] for c in clips]
