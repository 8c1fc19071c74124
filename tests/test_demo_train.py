"""The demo training script: schedule, outputs, reproducibility and resume."""

import json

import pytest
import torch
from safetensors.torch import load_file

from stprune.demo.model import load_demo_model
from stprune.demo.train import build_parser, lr_factor, train


def test_lr_factor_warmup_then_cosine():
    assert lr_factor(0, 100, 10) == pytest.approx(0.1)
    assert lr_factor(9, 100, 10) == pytest.approx(1.0)
    assert lr_factor(10, 100, 10) == pytest.approx(1.0)
    assert lr_factor(55, 100, 10) == pytest.approx(0.01 + 0.99 * 0.5)
    assert lr_factor(100, 100, 10) == pytest.approx(0.01)
    values = [lr_factor(s, 100, 10) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(values[:-1], values[1:], strict=True))


def _args(out, *extra):
    return build_parser().parse_args(
        [
            "--out",
            str(out),
            "--steps",
            "2",
            "--batch-size",
            "2",
            "--val-num",
            "2",
            "--val-every",
            "0",
            "--warmup",
            "1",
            "--workers",
            "0",
            "--save-every",
            "1",
            *extra,
        ]
    )


def test_train_writes_loadable_model_and_resumes_identically(tmp_path):
    info = train(_args(tmp_path / "a"), "cmd a")
    files = json.loads((tmp_path / "a" / "demo_model.json").read_text())
    assert files["training_command"] == "cmd a" and files["seed"] == 0
    assert files["sampling"] == {"sampling_rate": 1}  # what stprune eval reads the clips with
    assert files["val_top1"] == info["val_top1"] and 0.0 <= info["val_top1"] <= 1.0
    assert len(files["class_names"]) == len(files["config"]["id2label"])
    model = load_demo_model(tmp_path / "a" / "demo_model.safetensors")
    logits = model(pixel_values=torch.zeros(1, 16, 3, 96, 96)).logits
    assert logits.shape == (1, len(files["class_names"]))

    # The run left a checkpoint after step 1; running again resumes there and redoes step 2, which
    # must give the same weights as the uninterrupted run.
    ckpt = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    assert ckpt["step"] == 1
    first = load_file(str(tmp_path / "a" / "demo_model.safetensors"))
    train(_args(tmp_path / "a"), "cmd a")
    again = load_file(str(tmp_path / "a" / "demo_model.safetensors"))
    assert first.keys() == again.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)


def test_bad_arguments_raise(tmp_path):
    # train() called from Python (not through the parser, which refuses these while parsing)
    args = _args(tmp_path)
    args.steps = 0
    with pytest.raises(ValueError, match="steps"):
        train(args, "cmd")
    args = _args(tmp_path)
    args.decoy_ramp = (0.8, 0.2)
    with pytest.raises(ValueError, match="decoy-ramp"):
        train(args, "cmd")


def test_decoy_ramp():
    from stprune.demo.synthetic import DECOY_PROB
    from stprune.demo.train import DecoyRamp

    ramp = DecoyRamp(start=10, end=20, batch_size=4)
    assert ramp(0) == 0.0 and ramp(39) == 0.0  # steps 0..9
    assert ramp(15 * 4) == pytest.approx(DECOY_PROB / 2)
    assert ramp(20 * 4) == DECOY_PROB and ramp(10**6) == DECOY_PROB
    with pytest.raises(ValueError, match="start"):
        DecoyRamp(5, 3, 4)


@pytest.mark.parametrize(
    ("module", "args", "words"),
    [
        ("train", ["--steps", "0"], "--steps: must be an integer >= 1; got 0"),
        ("train", ["--batch-size", "x"], "got 'x'"),
        ("train", ["--lr", "-1"], "--lr must be >= 0"),
        ("train", ["--decoy-ramp", "0.8", "0.2"], "0 <= START <= END <= 1"),
        ("train", ["--label-smoothing", "1"], "< 1"),
        ("check", ["--num", "0"], "--num: must be an integer >= 1"),
        ("check", ["--flops-target", "1.5"], "FLOPs ratio in (0, 1]"),
        ("check", ["--method", "nope"], "invalid choice"),
        ("check", ["--weights", "/no/such/file.safetensors"], "needs the file"),
    ],
)
def test_developer_scripts_refuse_bad_values_in_one_line(module, args, words, tmp_path, capsys):
    from stprune.demo import check, train

    main = {"train": train.main, "check": check.main}[module]
    argv = ["--out", str(tmp_path / "run"), *args] if module == "train" else args
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()  # nothing was started


def test_check_measures_the_task_it_is_given(capsys):
    """`python -m stprune.demo.check --task hard`: the hard task's bundled model on the hard task's
    clips, its top-1 as computed here; the easy task's model scores otherwise on the same count."""
    from stprune.demo import check
    from stprune.demo.dataset import frames_to_pixel_values
    from stprune.demo.model import load_demo_info, load_demo_model
    from stprune.demo.synthetic_hard import generate_clips
    from stprune.demo.tasks import model_path

    num = 40
    assert check.main(["--task", "hard", "--num", str(num), "--flops-target", "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert "hard task" in printed.splitlines()[0]
    frames, labels = generate_clips(range(num), "val")
    info = load_demo_info(model_path("hard").with_suffix(".json"))
    x = frames_to_pixel_values(frames, info.mean, info.std)
    with torch.no_grad():
        pred = load_demo_model(task="hard")(pixel_values=x).logits.argmax(-1)
    top1 = 100 * (pred == torch.as_tensor(labels)).float().mean().item()
    assert f"unpruned: top-1 {top1:.2f}% on {num} val clips" in printed
