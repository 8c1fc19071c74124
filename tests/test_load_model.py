"""stprune.load_model: the public loader on every source it takes (offline, small random models)."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import tiny_videomae
from test_eval_zoo import _zoo_state_dict

import stprune
from stprune.errors import MissingFileError, SettingError


def test_preset_model_and_preprocessing_unpack():
    loaded = stprune.load_model("videomae-s", weights=False)
    assert isinstance(loaded, stprune.ResolvedModel)
    model, pre = loaded  # unpacks as (model, preprocessing)
    assert model is loaded.model and pre is loaded.preprocessing
    assert type(model).__name__ == "VideoMAEForVideoClassification" and not model.training
    assert next(model.parameters()).is_meta  # weights=False: the meta device
    assert isinstance(pre, stprune.Preprocessing)
    assert (pre.num_frames, pre.image_size, pre.layout) == (16, 224, "BTCHW")
    assert loaded.clip == "16 frames x 224x224"


def test_video_swin_preset_takes_its_own_layout():
    model, pre = stprune.load_model("video-swin-t", weights=False)
    assert type(model).__name__ == "VideoSwin" and pre.layout == "BCTHW"


def test_video_llm_preset_has_no_preprocessing():
    loaded = stprune.load_model("qwen2.5-vl-mini", weights=False)
    model, pre = loaded
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration" and pre is None
    assert "video LLM" in loaded.clip
    with pytest.raises(SettingError, match="video LLM, which takes any video"):
        stprune.load_model("qwen2.5-vl-mini", num_frames=8, weights=False)


def test_save_pretrained_directory(tmp_path):
    ref = tiny_videomae(depth=2, frames=8, image=32)
    ref.save_pretrained(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "image_processor_type": "VideoMAEImageProcessor",
                "image_mean": [0.5] * 3,
                "image_std": [0.5] * 3,
            }
        )
    )
    model, pre = stprune.load_model(tmp_path)  # a Path works too
    assert (pre.num_frames, pre.image_size, pre.mean) == (8, 32, (0.5, 0.5, 0.5))
    x = torch.randn(1, 8, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(pixel_values=x).logits, ref(pixel_values=x).logits)


def test_hub_id_from_the_cache_when_offline(tmp_path, monkeypatch):
    """A hub id whose files are in the Hugging Face cache loads without the hub (HF_HUB_OFFLINE)."""
    import huggingface_hub.constants as hub_constants

    ref = tiny_videomae(depth=2, frames=8, image=32)
    repo = tmp_path / "hub" / "models--someone--tiny-videomae"
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = repo / "snapshots" / commit
    ref.save_pretrained(snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    model, pre = stprune.load_model("someone/tiny-videomae")
    assert pre.num_frames == 8
    x = torch.randn(1, 8, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(pixel_values=x).logits, ref(pixel_values=x).logits)
    with pytest.raises(MissingFileError, match="not in the local cache"):
        stprune.load_model("someone/not-cached")


def test_videomae_zoo_pth(tmp_path):
    path = tmp_path / "checkpoint.pth"
    torch.save({"model": _zoo_state_dict(width=32, depth=2, heads=2, patch=8)}, path)
    loaded = stprune.load_model(path, num_heads=2, num_frames=4, image_size=16)
    assert type(loaded.model).__name__ == "VideoMAEForVideoClassification"
    assert (loaded.preprocessing.num_frames, loaded.preprocessing.image_size) == (4, 16)
    assert loaded.source["kind"] == "videomae_zoo"


@pytest.fixture(scope="module")
def swin_t():
    from stprune.models import video_swin_t

    torch.manual_seed(0)
    return video_swin_t(num_classes=3).eval()


@pytest.mark.parametrize("layout", ["torchvision", "official"])
def test_video_swin_checkpoint_in_both_layouts(tmp_path, layout, swin_t):
    from stprune.architectures.video_swin.weights import export_state_dict

    path = tmp_path / f"swin3d_t_{layout}.pth"
    torch.save(export_state_dict(swin_t, layout), path)
    loaded = stprune.load_model(path)
    model, pre = loaded
    assert type(model).__name__ == "VideoSwin" and (pre.num_frames, pre.image_size, pre.layout) == (
        32,
        224,
        "BCTHW",
    )
    assert "Kinetics-400 test clip" in loaded.clip  # the file does not record it: said so
    x = torch.randn(1, 3, 4, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), swin_t(x))


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(MissingFileError, match="no such file or directory"):
        stprune.load_model(tmp_path / "nope")
