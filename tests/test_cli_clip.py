"""The clip every command assumes: ``--num-heads`` / ``--num-frames`` / ``--image-size`` on flops,
bench, show and eval (one definition), the ``clip:`` line printed above every table, why a
checkpoint file's default clip is what it is, and one-line refusals naming the value."""

from __future__ import annotations

import re

import pytest
import torch
from test_cli_errors import QUICK, assert_one_line_error, run
from test_eval_zoo import _zoo_state_dict

from stprune.cli import build_parser

GEOMETRY = ["--num-heads", "2", "--num-frames", "8", "--image-size", "32"]


@pytest.fixture(scope="module")
def zoo_pth(tmp_path_factory):
    """A tiny VideoMAE zoo checkpoint with no saved args: nothing in it says its clip."""
    path = tmp_path_factory.mktemp("zoo") / "checkpoint.pth"
    torch.save({"model": _zoo_state_dict(depth=3)}, path)
    return path


@pytest.mark.parametrize("command", ["flops", "bench", "show", "eval"])
def test_every_model_command_takes_the_clip_options(command):
    required = {"flops": [], "bench": [], "show": ["--out", "x.png"], "eval": ["--data", "l", "--out", "o"]}
    args = build_parser().parse_args([command, "--model", "m", *GEOMETRY, *required[command]])
    assert (args.num_heads, args.num_frames, args.image_size) == (2, 8, 32)
    bad = build_parser()
    with pytest.raises(SystemExit):
        bad.parse_args([command, "--model", "m", "--num-frames", "0", *required[command]])


def test_flops_counts_a_zoo_pth_at_the_clip_given_and_says_so(zoo_pth, capsys):
    code, out, err = run(["flops", "--model", str(zoo_pth), *GEOMETRY, "--r", "1"], capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "clip: 8 frames x 32x32"  # the line above the table
    assert "4 temporal slots x 16 tokens" in lines[1]  # 8 frames / tubelet 2, (32 / 8)^2
    # without them: the default, and why, on the same line
    code, out, err = run(["flops", "--model", str(zoo_pth), "--num-heads", "2", "--r", "1"], capsys)
    assert code == 0, err
    assert out.splitlines()[0] == (
        "clip: 16 frames x 224x224 (16 frames x 224: the released fine-tuned models' clip, which this "
        "file's saved args do not record; --num-frames / --image-size to change)"
    )
    assert "8 temporal slots x 784 tokens" in out


def test_bench_prints_the_clip_above_its_table(zoo_pth, capsys):
    code, out, err = run(["bench", "--model", str(zoo_pth), *GEOMETRY, "--r", "1", *QUICK], capsys)
    assert code == 0, err
    assert out.splitlines()[0] == "clip: 8 frames x 32x32"


def test_flops_and_bench_json_record_the_clip(zoo_pth, tmp_path, capsys):
    import json

    for command, extra in (("flops", []), ("bench", QUICK)):
        out = tmp_path / f"{command}.json"
        code, _, err = run(
            [command, "--model", str(zoo_pth), *GEOMETRY, "--r", "1", *extra, "--json", str(out)], capsys
        )
        assert code == 0, err
        assert json.loads(out.read_text())["clip"] == "8 frames x 32x32"


def test_eval_prints_the_clip_of_every_view(tmp_path, capsys):
    from stprune.demo.videos import make_demo_videos

    videos = make_demo_videos(tmp_path / "v", 2, progress=False)
    code, out, err = run(
        ["eval", "--model", "demo", "--data", str(videos), "--views", "1x1", "--out", str(tmp_path / "a")],
        capsys,
    )
    assert code == 0, err
    assert out.splitlines()[0] == "clip per view: 16 frames x 96x96 (consecutive frames of the video)"
    argv = ["eval", "--model", "demo", "--data", str(videos), "--views", "1x1", "--sampling-rate", "2"]
    code, out, err = run([*argv, "--r", "5", "10", "--out", str(tmp_path / "b")], capsys)  # a sweep
    assert code == 0, err
    assert out.splitlines()[0] == "clip per view: 16 frames x 96x96 (every 2nd frame of the video)"
    argv = ["eval", "--model", "demo", "--data", str(videos), "--views", "1x1", "--protocol", "ssv2"]
    code, out, err = run([*argv, "--out", str(tmp_path / "c")], capsys)
    assert code == 0, err
    assert (
        out.splitlines()[0]
        == "clip per view: 16 frames x 96x96 (one frame from each of 16 equal segments of the video)"
    )


def test_eval_says_its_clip_before_the_first_video(tmp_path):
    """run_eval's on_start sees the checked settings before any prediction is written."""
    from stprune.demo.videos import make_demo_videos
    from stprune.eval.plan import clip_description
    from stprune.eval.runner import run_eval

    videos = make_demo_videos(tmp_path / "v", 2, progress=False)
    seen = []

    def on_start(settings):
        seen.append((clip_description(settings), (tmp_path / "o" / "predictions.jsonl").exists()))

    summary = run_eval("demo", videos, tmp_path / "o", views="1x1", progress=False, on_start=on_start)
    assert seen == [("16 frames x 96x96 (consecutive frames of the video)", False)]
    assert summary["num_evaluated"] == 2
    assert clip_description({**summary["settings"], "sampling_rate": 21}).endswith(
        "(every 21st frame of the video)"
    )
    assert clip_description({**summary["settings"], "sampling_rate": 12}).endswith(
        "(every 12th frame of the video)"
    )


def test_flops_on_a_vjepa2_preset_at_another_frame_count_on_meta(capsys):
    code, out, err = run(["flops", "--model", "vjepa2-l", "--num-frames", "16", "--r", "8"], capsys)
    assert code == 0, err
    assert out.splitlines()[0] == "clip: 16 frames x 256x256"
    assert "8 temporal slots x 256 tokens" in out
    row = next(line for line in out.splitlines() if line.startswith("| none"))
    assert re.search(r"\| 2048x24 \|$", row)  # 8 x 256 tokens in each of the 24 blocks


def test_show_prints_the_clip(zoo_pth, tmp_path, capsys):
    code, out, err = run(
        ["show", "--model", str(zoo_pth), *GEOMETRY, "--r", "2", "--out", str(tmp_path / "v.png")], capsys
    )
    assert code == 0, err
    assert out.splitlines()[0] == "clip: 8 frames x 32x32"


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (
            ["eval", "--model", "demo", "--num-frames", "7"],
            ["--num-frames 7: the demo model takes 16 frames of 96x96, fixed by its config", "V-JEPA 2"],
        ),
        (
            ["flops", "--model", "videomae-s", "--num-frames", "8", "--image-size", "112"],
            ["--num-frames 8, --image-size 112: preset 'videomae-s'", "are for checkpoint files"],
        ),
        (
            ["flops", "--model", "vjepa2-l", "--image-size", "64"],
            ["--image-size 64: V-JEPA 2 preset 'vjepa2-l' takes --num-frames only"],
        ),
    ],
    ids=["demo-frames", "preset", "vjepa2-size"],
)
def test_clip_options_a_model_does_not_take_are_one_line_naming_the_value(argv, needles, tmp_path, capsys):
    extra = []
    if argv[0] == "eval":
        (tmp_path / "l.txt").write_text("a.mp4 0\n")
        extra = ["--data", str(tmp_path / "l.txt"), "--out", str(tmp_path / "out")]
    code, _, err = run([*argv, *extra], capsys)
    assert_one_line_error(code, err, argv[0], *needles)


def test_fast_sinusoid_table_equals_transformers_bitwise():
    """Presets build VideoMAE's position table without transformers' Python loop (3 s for ViT-g,
    the bulk of `stprune flops --model videomae-v2-g` after the imports); the values are the same."""
    from transformers.models.videomae import modeling_videomae

    from stprune.architectures.presets import build_preset, sinusoid_table

    for n, d in [(1568, 384), (2048, 1408), (7, 5)]:
        assert torch.equal(sinusoid_table(n, d), modeling_videomae.get_sinusoid_encoding_table(n, d))
    original = modeling_videomae.get_sinusoid_encoding_table
    model = build_preset("videomae-s")
    assert modeling_videomae.get_sinusoid_encoding_table is original  # put back after the build
    table = model.videomae.embeddings.position_embeddings
    assert torch.equal(table, original(1568, 384))


@pytest.mark.parametrize("command", ["flops", "bench", "export"])
def test_a_bad_setting_is_the_only_output(command, tmp_path, capsys):
    """The clip line comes with the figures: a refused setting prints nothing on stdout."""
    extra = {"flops": [], "bench": QUICK, "export": ["--out", str(tmp_path / "m.onnx")]}[command]
    code, out, err = run([command, "--model", "demo", "--r", "100", *extra], capsys)
    assert_one_line_error(code, err, command, "r=100 is too large for groups of 36 tokens")
    assert out == ""


@pytest.mark.parametrize(
    "argv",
    [
        ["export", "--model", "demo", "--method", "random", "--r", "4", "--out", "x.onnx"],
        ["bench", "--model", "demo", "--method", "random", "--r", "10", "--runtime", "onnxruntime", *QUICK],
    ],
    ids=["export", "bench-onnxruntime"],
)
def test_an_unexportable_setting_is_the_only_output(argv, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(argv, capsys)
    assert_one_line_error(code, err, argv[0], "method 'random'", "opset 26")
    assert out == "" and not (tmp_path / "x.onnx").exists()
