"""`stprune eval` on the command line: bad values are one-line errors (exit 2), failures are in the
headline, a run where no video could be evaluated exits non-zero."""

import random

import pytest
import torch
from eval_utils import save_tiny_videomae, write_video

from stprune.cli import main
from stprune.errors import StpruneError
from stprune.eval.runner import run_eval


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("evalcli")
    model = save_tiny_videomae(base / "model", frames=8, num_hidden_layers=3)  # prunable: paper schedule
    vids = base / "videos"
    for i in range(2):
        write_video(vids / f"v{i}.mp4", frames=40, seed=i)
    (vids / "garbage.mp4").write_bytes(random.Random(0).randbytes(2048))  # fixed: not a container
    (base / "good.txt").write_text("v0.mp4 0\nv1.mp4 1\n")
    (base / "mixed.txt").write_text("v0.mp4 0\nmissing.mp4 1\nv1.mp4 1\ngarbage.mp4 2\n")
    (base / "broken.txt").write_text("missing.mp4 1\ngarbage.mp4 2\n")
    (base / "noline.txt").write_text("v0.mp4 0\nv1.mp4\n")
    (base / "badlabel.txt").write_text("v0.mp4 zero\n")
    (base / "afile").write_text("")
    return base, model, vids


NO_CUDA = not torch.cuda.is_available()

# (extra CLI arguments, API keyword overrides, text the one-line message must contain)
BAD = [
    (["--views", "0x1"], {"views": "0x1"}, "--views"),
    (["--views", "five"], {"views": "five"}, "--views"),
    (["--sampling-rate", "0"], {"sampling_rate": 0}, "--sampling-rate"),
    (["--limit", "0"], {"limit": 0}, "--limit"),
    (["--workers", "-1"], {"workers": -1}, "--workers"),
    (["--batch-size", "0"], {"batch_size": 0}, "--batch-size"),
    (["--r", "-1"], {"r": -1}, "--r"),
    (["--flops-target", "0"], {"flops_target": 0.0}, "flops_target must be a number in (0, 1]"),
    (["--flops-target", "1.5"], {"flops_target": 1.5}, "flops_target must be a number in (0, 1]"),
    (["--flops-target", "nan"], {"flops_target": float("nan")}, "flops_target must be a number in (0, 1]"),
    (["--device", "tpu"], {"device": "tpu"}, "--device"),
    (["--device", "cuda" if NO_CUDA else "cuda:999"], {"device": "cuda" if NO_CUDA else "cuda:999"}, "cuda"),
    (["--data", "DIR/nothere.txt"], {"data": "DIR/nothere.txt"}, "nothere.txt"),
    (["--data", "DIR/noline.txt"], {"data": "DIR/noline.txt"}, "noline.txt:2"),
    (["--data", "DIR/badlabel.txt"], {"data": "DIR/badlabel.txt"}, "badlabel.txt:1"),
    (["--root", "DIR/nodir"], {"root": "DIR/nodir"}, "--root"),
    (["--out", "DIR/afile"], {"out": "DIR/afile"}, "--out"),
]


def _one_line_error(err: str) -> str:
    """The ``stprune eval: error: ...`` message at the end of stderr (after any progress bars)."""
    assert "stprune eval: error: " in err, err
    tail = err[err.index("stprune eval: error: ") :]
    assert tail.endswith("\n") and tail.count("\n") == 1, err
    return tail


def _args(setup, tmp_path, extra):
    base, model, vids = setup
    args = {"--model": str(model), "--data": str(base / "good.txt"), "--root": str(vids)}
    args["--out"] = str(tmp_path / "out")
    rest = []
    for i in range(0, len(extra), 2):
        key, value = extra[i], extra[i + 1].replace("DIR", str(base))
        if key in args:
            args[key] = value
        else:
            rest += [key, value]
    flat = [x for kv in args.items() for x in kv]
    return ["eval", *flat, "--workers", "0", "--no-progress", *rest]


@pytest.mark.parametrize("extra, kw, text", BAD, ids=[" ".join(b[0]) for b in BAD])
def test_bad_values_are_one_line_errors_with_exit_code_2(setup, tmp_path, capsys, extra, kw, text):
    base, model, vids = setup
    if "--device" not in extra:
        extra = [*extra, "--device", "cpu"]
    assert main(_args(setup, tmp_path, extra)) == 2
    assert text in _one_line_error(capsys.readouterr().err)
    # the same through the API: a StpruneError (what the CLI reports as a user's mistake)
    call = {"data": base / "good.txt", "out": tmp_path / "api", "root": vids, "device": "cpu", "workers": 0}
    call.update({k: v.replace("DIR", str(base)) if isinstance(v, str) else v for k, v in kw.items()})
    with pytest.raises(StpruneError):
        run_eval(str(model), progress=False, **call)


@pytest.mark.parametrize("extra", [["--r", "100000"], ["--flops-target", "0.01"]])
def test_settings_the_model_cannot_take_are_one_line_errors(setup, tmp_path, capsys, extra):
    assert main(_args(setup, tmp_path, [*extra, "--device", "cpu"])) == 2
    _one_line_error(capsys.readouterr().err)


def test_failures_are_in_the_headline(setup, tmp_path, capsys):
    base, _, _ = setup
    args = _args(setup, tmp_path, ["--data", str(base / "mixed.txt"), "--views", "1x1", "--device", "cpu"])
    assert main(args) == 0
    out = capsys.readouterr().out
    clip, headline = out.splitlines()[:2]  # the clip line, printed before the first video, then the result
    assert clip.startswith("clip per view: ")
    assert "2 of 4 videos evaluated" in headline and "2 failed" in headline, headline
    assert "counting failures as wrong" in headline, headline


def test_no_video_evaluated_exits_non_zero(setup, tmp_path, capsys):
    base, _, _ = setup
    args = _args(setup, tmp_path, ["--data", str(base / "broken.txt"), "--views", "1x1", "--device", "cpu"])
    code = main(args)
    captured = capsys.readouterr()
    assert code == 1
    assert "0 of 2 videos evaluated, 2 failed" in captured.out.splitlines()[1]
    assert "no video could be evaluated" in _one_line_error(captured.err)


def test_sampling_rate_with_ssv2_warns_that_it_is_ignored(tmp_path):
    from stprune.errors import SettingError

    with pytest.warns(UserWarning, match="ignored with --protocol ssv2"), pytest.raises(SettingError):
        # limit=0 stops the run right after the settings are checked: no model is loaded
        run_eval(
            "demo", data=tmp_path / "l.txt", out=tmp_path / "o", protocol="ssv2", sampling_rate=2, limit=0
        )
