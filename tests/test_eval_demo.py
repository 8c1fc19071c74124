"""`stprune eval --model demo` on the demo's own videos: the model is evaluated with its own sampling."""

import json
import warnings

import pytest
import torch

from stprune.architectures.loading import resolve_model
from stprune.eval.runner import run_eval

NUM = 6


@pytest.fixture(scope="module")
def demo_videos(tmp_path_factory):
    from stprune.demo.videos import make_demo_videos

    return make_demo_videos(tmp_path_factory.mktemp("demo"), NUM, progress=False)


def test_the_demo_model_carries_its_sampling():
    resolved = resolve_model("demo")
    assert resolved.preprocessing.num_frames == 16 and resolved.preprocessing.sampling_rate == 1


def test_eval_of_the_demo_videos_gives_the_demo_pipeline_predictions(demo_videos, tmp_path):
    """docs/demo.md's command: its predictions are the model's on the clips as generated (every frame)."""
    from stprune.demo.dataset import frames_to_pixel_values
    from stprune.demo.model import load_demo_info, load_demo_model
    from stprune.demo.synthetic import generate_clip

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no short-clip warning: the demo's clips fill the window
        summary = run_eval("demo", demo_videos, tmp_path / "out", views="1x1", workers=0, progress=False)
    assert summary["settings"]["sampling_rate"] == 1 and summary["num_short"] == 0
    rows = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    model, info = load_demo_model(), load_demo_info()
    clips = [generate_clip(i, "val") for i in range(NUM)]
    x = frames_to_pixel_values(torch.stack([torch.as_tensor(f) for f, _ in clips]), info.mean, info.std)
    with torch.no_grad():
        expected = model(pixel_values=x).logits.argmax(-1).tolist()
    assert [r["pred"] for r in rows] == expected  # the mp4 round trip is near-lossless
    assert [r["label"] for r in rows] == [label for _, label in clips]


def test_eval_of_the_hard_task_videos_gives_the_hard_demo_model_predictions(tmp_path):
    """`--model demo-hard` on `make-demo-videos --task hard` clips: the bundled hard-task model, its
    own sampling, and its predictions on the clips as generated; the easy model predicts otherwise."""
    from stprune.demo.dataset import frames_to_pixel_values
    from stprune.demo.model import load_demo_info, load_demo_model
    from stprune.demo.tasks import generate_clip, model_path
    from stprune.demo.videos import make_demo_videos

    videos = make_demo_videos(tmp_path / "hard", NUM, progress=False, task="hard")
    summary = run_eval("demo-hard", videos, tmp_path / "out", views="1x1", workers=0, progress=False)
    assert summary["settings"]["sampling_rate"] == 1 and summary["settings"]["model"] == "demo-hard"
    rows = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    info = load_demo_info(model_path("hard").with_suffix(".json"))
    clips = [generate_clip("hard", i, "val") for i in range(NUM)]
    x = frames_to_pixel_values(torch.stack([torch.as_tensor(f) for f, _ in clips]), info.mean, info.std)
    with torch.no_grad():
        logits = load_demo_model(task="hard")(pixel_values=x).logits
        easy = load_demo_model(task="easy")(pixel_values=x).logits
    assert [r["pred"] for r in rows] == logits.argmax(-1).tolist()
    assert [r["label"] for r in rows] == [label for _, label in clips]
    assert not torch.allclose(logits, easy)  # a different model, not the easy one under another name
    resolved = resolve_model("demo-hard")
    for got, want in zip(
        resolved.model.state_dict().values(), load_demo_model(task="hard").state_dict().values(), strict=True
    ):
        assert torch.equal(got, want)


def test_the_demo_models_refuse_another_clip_shape():
    from stprune.errors import SettingError

    for spec in ("demo", "demo-hard"):
        with pytest.raises(SettingError, match=f"the {spec} model takes 16 frames of 96x96"):
            resolve_model(spec, num_frames=8)


def test_an_explicit_sampling_rate_overrides_the_model_and_warns(demo_videos, tmp_path):
    with pytest.warns(UserWarning, match=rf"{NUM} of {NUM} videos .*fewer than 61 frames"):
        summary = run_eval(
            "demo", demo_videos, tmp_path / "out", views="1x1", sampling_rate=4, workers=0, progress=False
        )
    assert summary["settings"]["sampling_rate"] == 4 and summary["num_short"] == NUM


def _doc_block(marker: str) -> str:
    """The ```python block of docs/eval.md that contains ``marker``."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "eval.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    return next(b for b in blocks if marker in b)


def test_the_documented_python_snippet_runs_on_a_model_in_memory(tmp_path, monkeypatch, capsys):
    """docs/eval.md's offline block, as written there, on the videos it names; it equals the same
    sweep given the model as a --model spec."""
    from stprune.demo.videos import make_demo_videos

    make_demo_videos(tmp_path / "demo_videos", 8, progress=False)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(_doc_block('resolve_model("demo")'), namespace)  # noqa: S102 - the documented code itself
    printed = capsys.readouterr().out.splitlines()
    rows = namespace["summary"]["sweep"]
    assert [r["method"] for r in rows] == ["none", "sta", "random"] and len(printed) == 3
    by_spec = run_eval(
        "demo", "demo_videos/val.txt", "runs/by_spec", method=["sta", "random"], flops_target=[0.7],
        views="1x1", progress=False,
    )  # fmt: skip
    for got, want in zip(rows, by_spec["sweep"], strict=True):
        assert (got["top1"], got["gflops_per_view"], got["num_evaluated"]) == (
            want["top1"], want["gflops_per_view"], want["num_evaluated"]
        )  # fmt: skip
    run = json.loads(next((tmp_path / "runs" / "demo_python").glob("*/run.json")).read_text())
    assert run["model"].startswith("in-memory VideoMAEForVideoClassification, weights sha256:")


def test_run_eval_takes_a_loaded_hf_model_with_its_processor_config(demo_videos, tmp_path):
    """The first block of docs/eval.md, offline: a from_pretrained model (here a tiny one saved with
    its processor config) gives what its directory given as --model gives; other weights in the same
    out are refused on resume; a patched model and checkpoint-file options are refused."""
    from conftest import tiny_videomae
    from transformers import VideoMAEForVideoClassification

    import stprune
    from stprune.errors import SettingError, StpruneError

    folder = tmp_path / "tiny"
    tiny_videomae(labels=12).save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(
        json.dumps({"image_mean": [0.5] * 3, "image_std": [0.25] * 3})
    )
    model = VideoMAEForVideoClassification.from_pretrained(folder)
    common = {"r": 4, "views": "1x1", "sampling_rate": 1, "workers": 0, "progress": False}
    got = run_eval(model, demo_videos, tmp_path / "mem", **common)
    want = run_eval(str(folder), demo_videos, tmp_path / "dir", **common)
    assert got["settings"]["mean"] == [0.5] * 3 == want["settings"]["mean"]
    assert got["settings"]["model_kind"] == "module"
    mem = (tmp_path / "mem" / "predictions.jsonl").read_text().splitlines()
    ref = (tmp_path / "dir" / "predictions.jsonl").read_text().splitlines()
    assert [json.loads(a) for a in mem] == [json.loads(b) for b in ref]  # predictions, top-5
    assert not stprune.is_patched(model)
    other = tiny_videomae(labels=12, seed=1)
    with pytest.raises(StpruneError, match="different settings|model"):
        run_eval(other, demo_videos, tmp_path / "mem", **common)
    stprune.patch(model, r=2)
    with pytest.raises(SettingError, match="is patched by stprune; run_eval patches the model"):
        run_eval(model, demo_videos, tmp_path / "p", **common)
    stprune.unpatch(model)
    with pytest.raises(SettingError, match="num_frames=8: for a checkpoint file"):
        run_eval(model, demo_videos, tmp_path / "q", num_frames=8, **common)
