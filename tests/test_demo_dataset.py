"""Torch dataset view of the synthetic task: VideoMAE layout and normalisation."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from stprune.demo.dataset import IMAGENET_MEAN, IMAGENET_STD, SyntheticVideoDataset, frames_to_pixel_values
from stprune.demo.synthetic import FRAME_SIZE, NUM_FRAMES, generate_clip


def test_item_layout_and_normalisation():
    ds = SyntheticVideoDataset(4, "val", 0)
    item = ds[2]
    x = item["pixel_values"]
    assert x.shape == (NUM_FRAMES, 3, FRAME_SIZE, FRAME_SIZE) and x.dtype == torch.float32
    frames, label = generate_clip(2, "val", 0)
    assert int(item["labels"]) == label and item["labels"].dtype == torch.long
    # Channel c of frame t at pixel (i, j) is (frames[t, i, j, c] / 255 - mean[c]) / std[c].
    for t, c, i, j in [(0, 0, 0, 0), (5, 1, 40, 17), (15, 2, 95, 60)]:
        want = (frames[t, i, j, c] / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
        assert x[t, c, i, j].item() == pytest.approx(want, abs=1e-5)


def test_custom_normalisation_and_batched_frames():
    frames = np.random.default_rng(0).integers(0, 256, size=(2, 3, 4, 6, 3), dtype=np.uint8)
    x = frames_to_pixel_values(frames, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    assert x.shape == (2, 3, 3, 4, 6)
    np.testing.assert_allclose(x.numpy(), frames.transpose(0, 1, 4, 2, 3) / 255.0, atol=1e-6)


def test_loader_batches_are_independent_of_batch_size():
    ds = SyntheticVideoDataset(6, "train", 9)
    a = torch.cat([b["pixel_values"] for b in DataLoader(ds, batch_size=4)])
    b = torch.cat([b["pixel_values"] for b in DataLoader(ds, batch_size=3)])
    assert torch.equal(a, b)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="num"):
        SyntheticVideoDataset(0)
    with pytest.raises(IndexError):
        SyntheticVideoDataset(3)[3]
    with pytest.raises(TypeError, match="uint8"):
        frames_to_pixel_values(np.zeros((2, 4, 4, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="shape"):
        frames_to_pixel_values(np.zeros((2, 4, 4, 4), dtype=np.uint8))
