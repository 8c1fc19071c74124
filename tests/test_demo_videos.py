"""Synthetic clips as mp4 files: PyAV round trip, list file format, CLI."""

import numpy as np
import pytest

from stprune.cli import main
from stprune.demo.synthetic import FRAME_SIZE, NUM_FRAMES, generate_clip
from stprune.demo.videos import make_demo_videos, read_mp4, write_mp4


def test_default_roundtrip_is_lossless(tmp_path):
    frames, _ = generate_clip(1)
    write_mp4(tmp_path / "a.mp4", frames)  # libx264rgb at crf 0
    back = read_mp4(tmp_path / "a.mp4")
    assert back.shape == frames.shape and back.dtype == np.uint8
    np.testing.assert_array_equal(back, frames)


def test_libx264_yuv_roundtrip_is_within_two_levels_and_lossy_crf_is_close(tmp_path):
    frames, _ = generate_clip(1)
    write_mp4(tmp_path / "a.mp4", frames, codec="libx264")  # yuv444p, crf 0: colour rounding only
    assert np.abs(read_mp4(tmp_path / "a.mp4").astype(int) - frames).max() <= 2
    write_mp4(tmp_path / "b.mp4", frames, codec="libx264", crf=8)
    err = np.abs(read_mp4(tmp_path / "b.mp4").astype(int) - frames)
    assert err.mean() < 2.0 and np.percentile(err, 99) <= 8
    with pytest.raises(ValueError, match="rgb24 only"):
        write_mp4(tmp_path / "c.mp4", frames, codec="libx264rgb", pix_fmt="yuv420p")


def test_demo_videos_decode_to_the_generated_clips_on_every_run(tmp_path):
    """The README's sweep figures depend on it: two runs give the same frames, the generated ones."""
    runs = [make_demo_videos(tmp_path / f"run{k}", 4, progress=False) for k in range(2)]
    for i in range(4):
        frames, _ = generate_clip(i, "val")
        for list_path in runs:
            np.testing.assert_array_equal(read_mp4(list_path.parent / f"videos/val_{i:05d}.mp4"), frames)


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
        np.testing.assert_array_equal(back, frames)


def test_cli_make_demo_videos(tmp_path, capsys):
    assert main(["make-demo-videos", "--out", str(tmp_path / "o"), "--num", "2", "--seed", "1"]) == 0
    lines = (tmp_path / "o" / "val.txt").read_text().splitlines()
    assert [ln.split()[1] for ln in lines] == [str(generate_clip(i, "val", 1)[1]) for i in range(2)]
    assert all((tmp_path / "o" / ln.split()[0]).is_file() for ln in lines)
    assert "val.txt" in capsys.readouterr().out


def test_cli_make_demo_videos_no_progress_and_split_help(tmp_path, capsys):
    assert main(["make-demo-videos", "--out", str(tmp_path / "a"), "--num", "2", "--progress"]) == 0
    assert "writing val clips" in capsys.readouterr().err  # tqdm's bar, on stderr
    assert main(["make-demo-videos", "--out", str(tmp_path / "b"), "--num", "2", "--no-progress"]) == 0
    assert "writing" not in capsys.readouterr().err
    assert main(["make-demo-videos", "--out", str(tmp_path / "c"), "--num", "2"]) == 0
    assert "writing" not in capsys.readouterr().err  # captured stderr is not a terminal: no bar
    assert main(["make-demo-videos", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--split {val,train} synthetic split the clips come from" in text


def test_bad_arguments_raise(tmp_path):
    with pytest.raises(ValueError, match="num"):
        make_demo_videos(tmp_path, 0)
    with pytest.raises(ValueError, match="frames"):
        write_mp4(tmp_path / "x.mp4", np.zeros((2, 8, 8), dtype=np.uint8))
    with pytest.raises(ValueError, match="even"):
        write_mp4(tmp_path / "x.mp4", np.zeros((2, 9, 8, 3), dtype=np.uint8))


def test_cli_make_demo_videos_of_the_hard_task(tmp_path, capsys):
    """--task hard writes the hard task's clips (the 'demo-hard' model's), decoded losslessly."""
    from stprune.demo.tasks import generate_clip as task_clip

    assert main(["make-demo-videos", "--out", str(tmp_path), "--num", "3"]) == 0  # easy, same folder
    easy = (tmp_path / "val.txt").read_text()
    assert main(["make-demo-videos", "--out", str(tmp_path), "--num", "2", "--task", "hard"]) == 0
    assert (tmp_path / "val.txt").read_text() == easy  # not overwritten
    lines = (tmp_path / "hard_val.txt").read_text().splitlines()
    assert [line.split()[0] for line in lines] == ["videos/hard_val_00000.mp4", "videos/hard_val_00001.mp4"]
    for i, line in enumerate(lines):
        frames, label = task_clip("hard", i, "val")
        assert line.split()[1] == str(label)
        np.testing.assert_array_equal(read_mp4(tmp_path / line.split()[0]), frames)
    assert not np.array_equal(task_clip("hard", 0, "val")[0], generate_clip(0, "val")[0])
    assert main(["make-demo-videos", "--out", str(tmp_path), "--num", "2", "--task", "medium"]) == 2
    assert "argument --task: invalid choice: 'medium'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="task must be one of easy, hard; got 'medium'"):
        make_demo_videos(tmp_path, 1, task="medium")
