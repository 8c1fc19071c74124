"""The synthetic task as video files: mp4 clips written with PyAV and a VideoMAE-style list file."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from tqdm.auto import tqdm

from stprune.demo.synthetic import DEFAULT_VAL_SEED, SPLITS
from stprune.demo.tasks import DEFAULT_TASK, check_task, generate_clip

#: Codecs tried in order: libx264rgb (lossless RGB: the decoded frames are the generated ones,
#: bit for bit), libx264 (lossless YUV 4:4:4 at crf 0: within 2 grey levels), mpeg4 (a PyAV build
#: without x264: lossy at its finest quantiser).
_CODECS = ("libx264rgb", "libx264", "mpeg4")


def pick_codec() -> str:
    """The best mp4 video encoder this PyAV build offers (``libx264rgb``, ``libx264``, else ``mpeg4``)."""
    for name in _CODECS:
        if name in av.codecs_available:
            return name
    raise RuntimeError(f"this PyAV build has none of the video encoders {_CODECS}")


def write_mp4(
    path: str | Path,
    frames: np.ndarray,
    fps: int = 8,
    codec: str | None = None,
    pix_fmt: str | None = None,
    crf: int = 0,
) -> None:
    """Encode frames (T, H, W, 3) uint8 RGB into an mp4 file.

    The default, ``crf=0``, is lossless (``libx264rgb``: the decoded frames equal ``frames``;
    ``libx264`` with ``yuv444p``: within 2 grey levels, the colour conversion's rounding). It is
    also what makes the files the same on every run: lossy x264 in PyAV gave different decoded
    frames for the same input from one encode to the next (measured: 2.8 distinct decodes per clip
    over 3 encodes at crf 8), which moved accuracy figures measured on the files. ``crf`` > 0
    (libx264 only) trades that for smaller files; ``pix_fmt`` (libx264): ``yuv444p`` (default) or
    ``yuv420p`` (plays everywhere). mpeg4, the fallback, always uses yuv420p at its finest quantiser.
    """
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    t, h, w, _ = frames.shape
    if t < 1 or h % 2 or w % 2:
        raise ValueError(f"need >= 1 frame with even height and width, got (T, H, W) = {(t, h, w)}")
    if fps < 1:
        raise ValueError(f"fps must be >= 1, got {fps}")
    codec = codec or pick_codec()
    if codec not in _CODECS:
        raise ValueError(f"codec must be one of {_CODECS}, got {codec!r}")
    if not 0 <= crf <= 51:
        raise ValueError(f"crf must be in [0, 51], got {crf}")
    if codec == "libx264rgb":
        if pix_fmt not in (None, "rgb24"):
            raise ValueError(f"libx264rgb encodes rgb24 only, got pix_fmt {pix_fmt!r}")
        pix_fmt, options = "rgb24", {"crf": str(crf), "preset": "fast"}
    elif codec == "libx264":
        pix_fmt = pix_fmt or "yuv444p"
        if pix_fmt not in ("yuv444p", "yuv420p"):
            raise ValueError(f"pix_fmt must be 'yuv444p' or 'yuv420p', got {pix_fmt!r}")
        options = {"crf": str(crf), "preset": "fast"}
    else:
        pix_fmt, options = "yuv420p", {"qscale": "1"}
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream(codec, rate=Fraction(fps, 1))
        stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
        stream.options = options
        if codec == "mpeg4":
            stream.codec_context.qmin = stream.codec_context.qmax = 1
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))


def read_mp4(path: str | Path) -> np.ndarray:
    """Decode every frame of a video file to (T, H, W, 3) uint8 RGB."""
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    if not frames:
        raise ValueError(f"{path} holds no video frames")
    return np.stack(frames)


def make_demo_videos(
    out_dir: str | Path,
    num: int,
    split: str = "val",
    seed: int = DEFAULT_VAL_SEED,
    progress: bool = True,
    fps: int = 8,
    pix_fmt: str | None = None,
    task: str = DEFAULT_TASK,
) -> Path:
    """Write clips ``0 .. num-1`` of a synthetic split of demo task ``task`` (``"easy"``, the
    default, or ``"hard"``) as mp4 files plus a list file. The hard task's files are named
    ``hard_<split>...`` (``videos/hard_val_00000.mp4``, ``hard_val.txt``), so both tasks can share
    a folder and neither overwrites the other.

    Files: ``out_dir/videos/<split>_<i:05d>.mp4`` and ``out_dir/<split>.txt`` with one
    ``videos/<split>_<i:05d>.mp4 <label>`` line per clip (paths relative to ``out_dir``, the VideoMAE
    list format). Each clip has exactly 16 frames: read them all (sampling rate 1). Encoded
    losslessly (see :func:`write_mp4`), so the files decode to the same frames on every run and
    machine. Returns the list file's path.
    """
    if not isinstance(num, int) or num < 1:
        raise ValueError(f"num must be an integer >= 1, got {num!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    check_task(task)
    out = Path(out_dir)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    codec = pick_codec()
    lines = []
    stem = split if task == DEFAULT_TASK else f"{task}_{split}"
    for i in tqdm(range(num), desc=f"writing {split} clips ({task} task)", disable=not progress, unit="clip"):
        frames, label = generate_clip(task, i, split, seed)
        rel = f"videos/{stem}_{i:05d}.mp4"
        write_mp4(out / rel, frames, fps=fps, codec=codec, pix_fmt=pix_fmt)
        lines.append(f"{rel} {label}\n")
    list_path = out / f"{stem}.txt"
    list_path.write_text("".join(lines))
    return list_path
