"""The demo's hard task end to end: the bundled hard model, ``stprune demo --task``, the dataset
and the training script on it."""

import json

import pytest
import torch

from stprune.cli import build_parser, main
from stprune.demo.benchmark import DEFAULT_CLIPS, demo_tasks, run_demo, task_path
from stprune.demo.dataset import SyntheticVideoDataset, frames_to_pixel_values
from stprune.demo.model import load_demo_info, load_demo_model
from stprune.demo.synthetic_hard import CLASS_NAMES, generate_clip, generate_clips
from stprune.demo.tasks import model_path
from stprune.errors import SettingError


def test_the_bundled_hard_model_is_small_and_says_how_it_was_made():
    weights = model_path("hard")
    assert weights.name == "demo_hard_model.safetensors" and weights.is_file()
    assert weights.stat().st_size <= 30 * 2**20
    info = load_demo_info(task="hard")
    assert info.class_names == CLASS_NAMES and info.num_frames == 16 and info.image_size == 96
    raw = info.raw
    assert raw["task_name"] == "hard" and "--task hard" in raw["training_command"]
    assert raw["sampling"] == {"sampling_rate": 1}
    # room to lose, but a model that learned something (chance is 1/12; the colour alone, 1/4)
    assert 0.80 <= raw["val_top1"] <= 0.95, raw["val_top1"]
    assert raw["val_num"] >= 500


def test_the_bundled_hard_model_reaches_its_recorded_accuracy():
    """Its top-1 on a fixed subset of validation clips is the one its JSON records (within 2 clips:
    float rounding may flip a borderline clip on another CPU); a changed generator or broken
    weights fail here."""
    info = load_demo_info(task="hard")
    subset = info.raw["subset_check"]
    model = load_demo_model(task="hard")
    frames, labels = generate_clips(range(subset["num"]), "val", 0)
    x = frames_to_pixel_values(frames, info.mean, info.std)
    with torch.no_grad():
        pred = torch.cat([model(pixel_values=x[i : i + 32]).logits.argmax(-1) for i in range(0, len(x), 32)])
    correct = int((pred == torch.as_tensor(labels)).sum())
    assert abs(correct - subset["correct"]) <= 2, (correct, subset)


def test_demo_task_option(capsys):
    for bad in ("medium", "EASY", ""):
        assert main(["demo", "--fast", "--task", bad]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1, err
        assert "--task" in err and "invalid choice" in err
    assert demo_tasks("both") == ("easy", "hard")
    assert build_parser().parse_args(["demo"]).task == "both"  # the default runs both tasks
    assert demo_tasks("hard") == ("hard",)
    with pytest.raises(SettingError, match="task"):
        demo_tasks("all")
    with pytest.raises(ValueError, match="task"):
        run_demo(num_clips=2, task="medium", progress=False)
    assert DEFAULT_CLIPS["hard"] >= DEFAULT_CLIPS["easy"]


def test_fast_demo_on_the_hard_task(tmp_path, capsys):
    out_json = tmp_path / "hard.json"
    code = main(
        ["demo", "--fast", "--task", "hard", "--clips", "8", "--json", str(out_json), "--no-progress"]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "hard task" in printed and "flops_target=0.7" in printed
    payload = json.loads(out_json.read_text())
    assert payload["task"] == "hard" and payload["clips"] == 8
    assert payload["results"][0]["setting"] == "unpruned"
    assert {r["method"] for r in payload["results"]} >= {"none", "sta", "rlt"}


def test_both_tasks_write_a_file_per_task(tmp_path, capsys):
    out_json, out_png = tmp_path / "demo.json", tmp_path / "demo.png"
    args = ["demo", "--fast", "--task", "both", "--clips", "4", "--methods", "sta", "--no-progress"]
    assert main([*args, "--json", str(out_json), "--plot", str(out_png)]) == 0
    printed = capsys.readouterr().out
    assert printed.index("easy task") < printed.index("hard task")
    for task in ("easy", "hard"):
        assert json.loads((tmp_path / f"demo_{task}.json").read_text())["task"] == task
        assert (tmp_path / f"demo_{task}.png").read_bytes()[:4] == b"\x89PNG"
    assert not out_json.exists() and not out_png.exists()
    assert task_path("docs/demo.json", "hard", several=True) == "docs/demo_hard.json"
    assert task_path("docs/demo.json", "hard", several=False) == "docs/demo.json"


def test_the_hard_dataset_is_the_generator_and_refuses_the_easy_knob():
    ds = SyntheticVideoDataset(3, "val", 0, task="hard")
    frames, label = generate_clip(2, "val", 0)
    item = ds[2]
    assert int(item["labels"]) == label
    assert torch.equal(item["pixel_values"], frames_to_pixel_values(frames))
    eased = SyntheticVideoDataset(3, "val", 0, task="hard", ease=1.0)[2]
    assert int(eased["labels"]) == label and not torch.equal(eased["pixel_values"], item["pixel_values"])
    with pytest.raises(ValueError, match="easy task only"):
        SyntheticVideoDataset(3, task="hard", decoy_prob=0.0)
    with pytest.raises(ValueError, match="hard task only"):
        SyntheticVideoDataset(3, task="easy", ease=0.5)
    with pytest.raises(ValueError, match="task"):
        SyntheticVideoDataset(3, task="medium")


def test_training_on_the_hard_task_from_the_easy_model(tmp_path):
    from stprune.demo.train import EaseRamp, build_parser, train

    args = build_parser().parse_args(
        ["--task", "hard", "--init", "easy", "--out", str(tmp_path), "--steps", "2", "--batch-size", "2"]
        + ["--val-num", "2", "--val-every", "0", "--warmup", "1", "--workers", "0"]
    )
    info = train(args, "cmd hard")
    assert info["task_name"] == "hard" and info["init"] == "easy" and info["ease_ramp"] == [0.0, 0.5]
    assert info["class_names"] == list(CLASS_NAMES) and info["decoy_ramp"] is None
    model = load_demo_model(tmp_path / "demo_hard_model.safetensors")
    easy = load_demo_model()
    # two small steps from the easy model's weights: close to them, the new head apart
    w = model.videomae.embeddings.patch_embeddings.projection.weight
    w0 = easy.videomae.embeddings.patch_embeddings.projection.weight
    assert (w - w0).abs().max() < 0.01
    assert (model.classifier.weight - easy.classifier.weight).abs().max() > 0.01
    ramp = EaseRamp(start=0, end=10, batch_size=4)
    assert ramp(0) == 1.0 and ramp(5 * 4) == pytest.approx(0.5) and ramp(10 * 4) == 0.0
