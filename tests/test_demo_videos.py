"""Synthetic clips as mp4 files: PyAV round trip, list file format, CLI."""

import numpy as np
import pytest

from stprune.cli import main
from stprune.demo.synthetic import FRAME_SIZE, NUM_FRAMES, generate_clip
from stprune.demo.videos import make_demo_videos, read_mp4, write_mp4


def test_write_read_roundtrip_is_close(tmp_path):
    frames, _ = generate_clip(1)
    write_mp4(tmp_path / "a.mp4", frames)
    back = read_mp4(tmp_path / "a.mp4")
    assert back.shape == frames.shape and back.dtype == np.uint8
    err = np.abs(back.astype(int) - frames)
    assert err.mean() < 2.0
    assert np.percentile(err, 99) <= 8


def test_mpeg4_fallback_roundtrip(tmp_path):
    frames, _ = generate_clip(2)
    write_mp4(tmp_path / "b.mp4", frames, codec="mpeg4")
    back = read_mp4(tmp_path / "b.mp4")
    assert back.shape == frames.shape
    assert np.abs(back.astype(int) - frames).mean() < 4.0


def test_make_demo_videos_list_and_files(tmp_path):
    list_path = make_demo_videos(tmp_path / "demo", 3, split="val", seed=4, progress=False)
    assert list_path == tmp_path / "demo" / "val.txt"
    lines = list_path.read_text().splitlines()
    assert len(lines) == 3
    for i, line in enumerate(lines):
        rel, label = line.split(" ")
        frames, want_label = generate_clip(i, "val", 4)
        assert int(label) == want_label
        assert not rel.startswith("/")
        back = read_mp4(tmp_path / "demo" / rel)
        assert back.shape == (NUM_FRAMES, FRAME_SIZE, FRAME_SIZE, 3)
        assert np.abs(back.astype(int) - frames).mean() < 2.0


def test_cli_make_demo_videos(tmp_path, capsys):
    assert main(["make-demo-videos", "--out", str(tmp_path / "o"), "--num", "2", "--seed", "1"]) == 0
    lines = (tmp_path / "o" / "val.txt").read_text().splitlines()
    assert [ln.split()[1] for ln in lines] == [str(generate_clip(i, "val", 1)[1]) for i in range(2)]
    assert all((tmp_path / "o" / ln.split()[0]).is_file() for ln in lines)
    assert "val.txt" in capsys.readouterr().out


def test_bad_arguments_raise(tmp_path):
    with pytest.raises(ValueError, match="num"):
        make_demo_videos(tmp_path, 0)
    with pytest.raises(ValueError, match="frames"):
        write_mp4(tmp_path / "x.mp4", np.zeros((2, 8, 8), dtype=np.uint8))
    with pytest.raises(ValueError, match="even"):
        write_mp4(tmp_path / "x.mp4", np.zeros((2, 9, 8, 3), dtype=np.uint8))
