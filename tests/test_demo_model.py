"""The bundled demo checkpoint: loads offline, right shapes, and has really learned the task."""

import pytest
import torch
from transformers import VideoMAEForVideoClassification

from stprune.demo.dataset import frames_to_pixel_values
from stprune.demo.model import (
    DEMO_INFO,
    DEMO_WEIGHTS,
    build_demo_model,
    demo_config,
    load_demo_info,
    load_demo_model,
)
from stprune.demo.synthetic import CLASS_NAMES, NUM_CLASSES, generate_clips


def test_demo_config_meets_the_schedule_constraints():
    cfg = demo_config()
    t0 = cfg.num_frames // cfg.tubelet_size
    assert t0 % 4 == 0
    assert cfg.num_hidden_layers >= 6
    assert cfg.image_size % cfg.patch_size == 0
    assert cfg.use_mean_pooling and cfg.num_labels == NUM_CLASSES
    model = build_demo_model(demo_config(num_hidden_layers=1))
    out = model(pixel_values=torch.zeros(2, 16, 3, 96, 96)).logits
    assert out.shape == (2, NUM_CLASSES)


def test_bundled_files_are_small_and_consistent():
    assert DEMO_WEIGHTS.is_file() and DEMO_INFO.is_file()
    assert DEMO_WEIGHTS.stat().st_size <= 30 * 2**20
    info = load_demo_info()
    assert info.class_names == CLASS_NAMES
    assert info.num_frames == 16 and info.image_size == 96
    assert len(info.mean) == len(info.std) == 3
    assert info.raw["val_top1"] >= 0.85


def test_bundled_model_predicts_the_synthetic_task():
    model = load_demo_model()
    assert isinstance(model, VideoMAEForVideoClassification) and not model.training
    info = load_demo_info()
    frames, labels = generate_clips(range(1000, 1048), "val", 0)
    with torch.no_grad():
        logits = model(pixel_values=frames_to_pixel_values(frames, info.mean, info.std)).logits
    assert logits.shape == (48, NUM_CLASSES)
    acc = (logits.argmax(-1) == torch.as_tensor(labels)).float().mean().item()
    assert acc >= 0.7, acc  # chance is 1/12


def test_missing_or_mismatched_checkpoint_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_demo_model(tmp_path / "nope.safetensors")
    from safetensors.torch import save_file

    save_file({"foo": torch.zeros(1)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ValueError, match="does not match"):
        load_demo_model(tmp_path / "bad.safetensors", info_path=DEMO_INFO)
