"""PyAV decoding: frame numbering, counting in MP4 and WebM, and clear errors for bad files."""

import random

import av
import numpy as np
import pytest

from stprune.eval.decode import VideoDecodeError, count_frames, read_clips


def _solid_video(path, n, codec="libx264", fmt=None, step=6, options=None):
    """Frame i is a solid grey of value step * i (so a frame's index can be read off its pixels)."""
    with av.open(str(path), mode="w", format=fmt, options=options or {}) as c:
        s = c.add_stream(codec, rate=12)
        s.width, s.height, s.pix_fmt = 48, 32, "yuv420p"
        for i in range(n):
            img = np.full((32, 48, 3), step * i, dtype=np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


@pytest.mark.parametrize("codec, suffix", [("libx264", ".mp4"), ("libvpx-vp9", ".webm")])
def test_frames_come_back_by_index(tmp_path, codec, suffix):
    path = _solid_video(tmp_path / f"v{suffix}", 30, codec=codec)
    assert count_frames(path) == 30
    frames, positions = read_clips(path, lambda n: [[0, 29, 7], [7, 7, 12]])
    assert frames.shape == (4, 32, 48, 3) and frames.dtype == np.uint8  # 0, 7, 12, 29 once each
    assert positions == [[0, 3, 1], [1, 1, 2]]
    values = frames.reshape(4, -1).mean(1)
    assert np.allclose(values, [0, 42, 72, 174], atol=4)


def test_truncated_mp4_is_reported(tmp_path):
    # noisy frames so the file is large enough for a cut to land inside the frame data
    full, cut = tmp_path / "v.mp4", tmp_path / "cut.mp4"
    rng = np.random.default_rng(0)
    with av.open(str(full), "w", options={"movflags": "faststart"}) as c:  # index first
        s = c.add_stream("libx264", rate=12)
        s.width, s.height, s.pix_fmt = 48, 32, "yuv420p"
        for _ in range(40):
            img = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    assert count_frames(cut) == 40  # the index still lists every frame
    with pytest.raises(VideoDecodeError, match="truncated"):
        read_clips(cut, lambda n: [list(range(n))])
    for threads in (0, 1):  # frames before the cut are still readable
        frames, _ = read_clips(cut, lambda n: [[0, 1]], threads)
        assert frames.shape[0] == 2
    with pytest.raises(VideoDecodeError, match="truncated"):
        read_clips(cut, lambda n: [[n - 1]], 1)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda p: None, "file not found"),
        (lambda p: p.write_bytes(b""), "empty file"),
        # fixed bytes: os.urandom now and then parsed as an audio stream ("no video stream")
        (
            lambda p: p.write_bytes(random.Random(0).randbytes(2048)),
            r"^cannot open '[^']*bad\.mp4': [^\[']+ \(not a video FFmpeg can read\)$",  # no errno, one name
        ),
        (lambda p: p.mkdir(), "not a regular file"),
    ],
)
def test_bad_files(tmp_path, make, match):
    p = tmp_path / "bad.mp4"
    make(p)
    with pytest.raises(VideoDecodeError, match=match):
        read_clips(p, lambda n: [[0]])
