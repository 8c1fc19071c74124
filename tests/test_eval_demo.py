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


def test_an_explicit_sampling_rate_overrides_the_model_and_warns(demo_videos, tmp_path):
    with pytest.warns(UserWarning, match=rf"{NUM} of {NUM} videos .*fewer than 61 frames"):
        summary = run_eval(
            "demo", demo_videos, tmp_path / "out", views="1x1", sampling_rate=4, workers=0, progress=False
        )
    assert summary["settings"]["sampling_rate"] == 4 and summary["num_short"] == NUM
