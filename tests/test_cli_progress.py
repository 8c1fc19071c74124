"""Command-line behaviour shared by the commands: progress only on a terminal unless asked, fp16 on
the CPU refused alike by bench and eval, output folders created only by a run that succeeds."""

from __future__ import annotations

import argparse

import pytest
from conftest import tiny_videomae

from stprune.cli import _progress, build_parser, main


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny_progress")
    tiny_videomae(depth=3, frames=8, image=32).save_pretrained(d)
    return d


def one_line_error(code: int, err: str, command: str, needle: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith(f"stprune {command}: error: ") and needle in lines[0], err


@pytest.mark.parametrize(
    "argv",
    [
        ["bench", "--model", "M"],
        ["export", "--model", "M", "--out", "m.onnx"],
        ["demo"],
        ["eval", "--model", "M", "--data", "list.txt", "--out", "runs"],
        ["make-demo-videos", "--out", "videos", "--num", "1"],
    ],
)
def test_progress_follows_the_terminal_unless_asked(argv, monkeypatch):
    parser = build_parser()
    args = parser.parse_args(argv)
    monkeypatch.setattr("sys.stderr.isatty", lambda: False)
    assert args.progress is None and _progress(args) is False  # not a terminal: off
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    assert _progress(args) is True  # a terminal: on
    assert _progress(parser.parse_args([*argv, "--no-progress"])) is False
    monkeypatch.setattr("sys.stderr.isatty", lambda: False)
    assert _progress(parser.parse_args([*argv, "--progress"])) is True
    with pytest.raises(SystemExit):  # one or the other
        parser.parse_args([*argv, "--progress", "--no-progress"])


def test_progress_bar_only_when_asked(tmp_path, capsys):
    assert main(["make-demo-videos", "--out", str(tmp_path / "a"), "--num", "1"]) == 0
    assert "it/s" not in capsys.readouterr().err  # stderr is captured: not a terminal
    assert main(["make-demo-videos", "--out", str(tmp_path / "b"), "--num", "1", "--progress"]) == 0
    assert "1/1" in capsys.readouterr().err


def test_fp16_on_cpu_is_refused_by_bench_and_eval_alike(tmp_path, capsys):
    # before any work: the model is not even looked at
    code = main(["bench", "--model", str(tmp_path / "nope"), "--amp", "fp16", "--device", "cpu"])
    one_line_error(code, capsys.readouterr().err, "bench", "--amp fp16 needs --device cuda")
    data = tmp_path / "list.txt"
    data.write_text("a.mp4 0\n")
    argv = ["eval", "--model", str(tmp_path / "nope"), "--data", str(data), "--out", str(tmp_path / "runs")]
    code = main([*argv, "--precision", "fp16", "--device", "cpu"])
    one_line_error(code, capsys.readouterr().err, "eval", "--precision fp16 needs --device cuda")


def test_output_folders_are_created_only_by_a_run_that_succeeds(model_dir, tmp_path, capsys):
    missing = tmp_path / "new" / "deeper"
    code = main(["flops", "--model", str(model_dir), "--r", "99", "--json", str(missing / "f.json")])
    one_line_error(code, capsys.readouterr().err, "flops", "r=99")
    code = main(["bench", "--model", str(model_dir), "--r", "99", "--json", str(missing / "b.json")])
    one_line_error(code, capsys.readouterr().err, "bench", "r=99")
    code = main(["show", "--model", str(tmp_path / "nope"), "--out", str(missing / "s.png")])
    one_line_error(code, capsys.readouterr().err, "show", "no such file")
    argv = ["export", "--model", str(model_dir), "--method", "random", "--r", "2"]
    code = main([*argv, "--out", str(missing / "m.onnx"), "--json", str(missing / "m.json")])
    one_line_error(code, capsys.readouterr().err, "export", "method 'random'")
    assert not (tmp_path / "new").exists()
    # and a run that succeeds creates them
    assert main(["flops", "--model", str(model_dir), "--r", "2", "--json", str(missing / "f.json")]) == 0
    assert (missing / "f.json").is_file()


def test_parser_has_every_command():
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert {"flops", "bench", "export", "eval", "demo", "show", "make-demo-videos"} <= set(sub.choices)
