"""Every command fails in one line with exit code 2 on a user's mistake; bugs keep their traceback."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_videomae

import stprune
from stprune.cli import main
from stprune.errors import SettingError


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny_videomae_errors")
    tiny_videomae(depth=3, frames=8, image=32).save_pretrained(d)
    return d


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of ``stprune argv`` (argparse's own errors exit via SystemExit)."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, command: str, *needles: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"stprune {command}: error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, err)


QUICK = ["--iters", "1", "--warmup", "0", "--rounds", "1", "--device", "cpu"]


@pytest.mark.parametrize(
    ("option", "value", "allowed"),
    [
        ("--rounds", "0", ">= 1"),
        ("--iters", "0", ">= 1"),
        ("--warmup", "-1", ">= 0"),
        ("--batch-size", "0", ">= 1"),
        ("--threads", "0", ">= 1"),
        ("--threads", "-3", ">= 1"),
        ("--threads", "two", ">= 1"),
    ],
)
def test_bench_rejects_bad_counts_in_one_line(model_dir, capsys, option, value, allowed):
    args = ["bench", "--model", str(model_dir), "--r", "1", *QUICK, option, value]
    code, out, err = run(args, capsys)
    assert_one_line_error(code, err, "bench", option, value, allowed)
    assert out == ""  # nothing ran


def test_bench_rejects_an_unknown_device(model_dir, capsys):
    code, _, err = run(["bench", "--model", str(model_dir), "--device", "tpu"], capsys)
    assert_one_line_error(code, err, "bench", "'tpu'", "cpu, cuda")


def test_bench_rejects_cuda_without_cuda(model_dir, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, _, err = run(["bench", "--model", str(model_dir), "--device", "cuda"], capsys)
    assert_one_line_error(code, err, "bench", "'cuda'", "no CUDA device")


@pytest.mark.parametrize(
    ("argv", "bad"),
    [
        (["demo", "--clips", "0"], "--clips"),
        (["demo", "--batch-size", "0"], "--batch-size"),
        (["demo", "--threads", "0"], "--threads"),
        (["show", "--model", "demo", "--clip", "-1", "--out", "x.png"], "got -1"),
        (["make-demo-videos", "--out", "videos", "--num", "0"], "--num"),
    ],
)
def test_counts_are_checked_by_every_command(capsys, argv, bad, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(argv, capsys)
    assert_one_line_error(code, err, argv[0], bad)
    assert out == ""
    assert not any(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize(
    "argv",
    [
        ["demo", "--fast", "--json", "{file}/sub/demo.json"],
        ["demo", "--fast", "--plot", "{file}/demo.png"],
        ["show", "--model", "demo", "--out", "{file}/show.png"],
        ["flops", "--model", "videomae-s", "--r", "8", "--json", "{dir}"],
        ["bench", "--model", "videomae-s", "--r", "8", "--json", "{file}/b.json"],
        ["make-demo-videos", "--out", "{file}", "--num", "1"],
    ],
)
def test_output_paths_are_checked_before_the_run(capsys, tmp_path, argv):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    named = str(tmp_path) if "{dir}" in argv else str(blocker)
    argv = [a.format(file=blocker, dir=tmp_path) for a in argv]
    code, out, err = run(argv, capsys)
    assert_one_line_error(code, err, argv[0], named)
    assert out == ""  # failed before any work


def test_show_video_missing_or_corrupt_is_one_line(tmp_path, capsys):
    out = str(tmp_path / "v.png")
    code, _, err = run(
        ["show", "--model", "demo", "--video", str(tmp_path / "none.mp4"), "--out", out], capsys
    )
    assert_one_line_error(code, err, "show", "none.mp4", "does not exist")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"this is not a video" * 100)
    code, _, err = run(["show", "--model", "demo", "--video", str(bad), "--out", out], capsys)
    assert_one_line_error(code, err, "show", "bad.mp4", "cannot read video")


def test_a_corrupt_checkpoint_is_one_line(tmp_path, capsys):
    bad = tmp_path / "weights.safetensors"
    bad.write_bytes(b"\x00" * 64)
    code, _, err = run(["flops", "--model", str(bad), "--r", "2"], capsys)
    assert_one_line_error(code, err, "flops", "weights.safetensors", "is not a safetensors file")


def test_a_folder_without_config_is_one_line(tmp_path, capsys):
    code, _, err = run(["flops", "--model", str(tmp_path), "--r", "2"], capsys)
    assert_one_line_error(code, err, "flops", "config.json")


def test_library_errors_are_one_line_and_bugs_keep_their_traceback(model_dir, capsys, monkeypatch):
    import stprune.bench.compare as compare

    def user_mistake(*args, **kwargs):
        raise SettingError("r=99 is too large; allowed: 0..7")

    monkeypatch.setattr(compare, "measure_flops_rows", user_mistake)
    code, _, err = run(["flops", "--model", str(model_dir), "--r", "99"], capsys)
    assert code == 2 and err == "stprune flops: error: r=99 is too large; allowed: 0..7\n"

    def bug(*args, **kwargs):
        raise TypeError("unsupported operand type(s) for +: 'int' and 'str'")

    monkeypatch.setattr(compare, "measure_flops_rows", bug)
    with pytest.raises(TypeError, match="unsupported operand"):
        main(["flops", "--model", str(model_dir), "--r", "2"])


def test_version_option_and_command(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == stprune.__version__
    assert main(["version"]) == 0
    assert capsys.readouterr().out.strip() == stprune.__version__


def test_bench_threads_sets_torch_threads(model_dir, capsys, tmp_path):
    before = torch.get_num_threads()
    try:
        args = ["bench", "--model", str(model_dir), "--r", "1", *QUICK, "--threads", "1"]
        assert main(args) == 0
        assert torch.get_num_threads() == 1
        assert "1 thread," in capsys.readouterr().out
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"PK\x03\x04 not really a zip archive", "RuntimeError: PytorchStreamReader failed"),
        (b"junkjunkjunk", "KeyError"),  # torch.load raises KeyError on this
        # an unpickler error, where torch advises retrying with weights_only=False
        (bytes(range(256)) * 10, "Unsupported operand 0"),
    ],
    ids=["bad-zip", "junk", "bad-pickle"],
)
def test_a_corrupt_pth_checkpoint_is_one_line_without_torch_advice(tmp_path, capsys, content, reason):
    bad = tmp_path / "weights.pth"
    bad.write_bytes(content)
    code, _, err = run(["flops", "--model", str(bad), "--r", "2"], capsys)
    assert_one_line_error(code, err, "flops", "weights.pth", "is corrupt or not a PyTorch checkpoint", reason)
    # never the advice to unpickle arbitrary code, nor torch's long explanation
    assert "weights_only" not in err and "will likely succeed" not in err and "miniz" not in err


@pytest.mark.parametrize("out", ["vis.xyz", "noext"])
def test_show_and_demo_refuse_image_paths_matplotlib_cannot_write(tmp_path, capsys, out):
    for argv in (["show", "--model", "demo", "--out"], ["demo", "--fast", "--plot"]):
        code, _, err = run([*argv, str(tmp_path / out)], capsys)
        assert_one_line_error(code, err, argv[0], "must end in an image format")
    assert not list(tmp_path.iterdir())  # refused before any work


@pytest.mark.parametrize("out", ["/proc/stprune-x", "FILE/sub"])
def test_eval_out_that_cannot_be_written_is_one_line(tmp_path, capsys, out):
    (tmp_path / "FILE").write_text("x")
    out = out.replace("FILE", str(tmp_path / "FILE"))
    code, _, err = run(["eval", "--model", "demo", "--data", str(tmp_path / "l.txt"), "--out", out], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


@pytest.mark.parametrize("opt", ["--num-frames", "--image-size", "--num-heads"])
def test_eval_geometry_overrides_must_be_positive(tmp_path, capsys, opt):
    code, _, err = run(
        ["eval", "--model", "demo", "--data", "l.txt", "--out", str(tmp_path), opt, "0"], capsys
    )
    assert_one_line_error(code, err, "eval", opt, ">= 1")


def test_repeated_r_options_add_up(capsys):
    code, out, _ = run(["flops", "--model", "videomae-s", "--r", "8", "--r", "16"], capsys)
    assert code == 0 and "r=8" in out and "r=16" in out


def test_demo_with_only_unreachable_targets_fails_before_the_work(capsys):
    code, out, err = run(["demo", "--fast", "--targets", "0.05", "--no-progress"], capsys)
    assert_one_line_error(code, err, "demo", "no method reaches any of the FLOPs targets [0.05]")
    assert out == ""  # not even the banner


def test_flops_skips_an_unreachable_target_and_keeps_the_others(capsys):
    assert main(["flops", "--model", "video-swin-t", "--flops-target", "0.7", "0.5"]) == 0
    out, err = capsys.readouterr()
    assert "flops_target=0.7" in out and "flops_target=0.5" not in out
    assert "warning: skipped sta flops_target=0.5" in err and "lowest achievable FLOPs ratio" in err
    assert main(["flops", "--model", "video-swin-t", "--flops-target", "0.5", "0.4"]) == 2  # nothing can run
    assert "error:" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "extra"),
    [
        (["flops", "--model", "demo", "--bogus"], "--bogus"),
        (["export", "--model", "demo", "--flops-target", "0.7", "0.5", "--out", "x.onnx"], "0.5"),
        (["make-demo-videos", "--out", "d", "--num", "2", "stray"], "stray"),
    ],
)
def test_an_unknown_argument_is_named_by_its_subcommand(argv, extra, capsys):
    code, out, err = run(argv, capsys)
    assert_one_line_error(
        code, err, argv[0], f"unrecognized arguments: {extra}", f"'stprune {argv[0]} --help'"
    )
    assert out == ""


COMMANDS = ["version", "flops", "bench", "export", "eval", "demo", "show", "make-demo-videos"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_help_has_a_description_and_named_values(command, capsys):
    """`stprune <command> --help`: a description under the usage, every option with help text, no
    metavar that is just the option's name in capitals (argparse's default, e.g. SAMPLING_RATE)."""
    import re

    code, out, _ = run([command, "--help"], capsys)
    assert code == 0
    usage, rest = out.split("\n\n", 1)
    assert not rest.startswith("options:"), out  # a description paragraph comes first
    for option in re.findall(r"--([a-z][a-z0-9-]*) ([A-Z_]{2,})\b", out):
        assert option[1] != option[0].upper().replace("-", "_"), option
    lines = rest.split("options:", 1)[1].splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^  (-\S.*?)(\s{2,}\S.*)?$", line)
        if m and not m.group(2):  # an option alone on its line: its help is on the next
            assert i + 1 < len(lines) and lines[i + 1].startswith(" " * 10), (command, line)
