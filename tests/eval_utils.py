"""Shared helpers for the tests/test_eval_*.py files: tiny videos and tiny models on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_video(
    path: str | Path,
    frames: int = 20,
    height: int = 64,
    width: int = 64,
    seed: int = 0,
    codec: str = "libx264",
    faststart: bool = False,
) -> Path:
    """Write a small RGB video of moving blocky random patterns; returns the path.

    ``faststart`` puts the MP4 index first, so a truncated copy still opens (and lists all frames).
    """
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(height // 8 + 1, width // 8 + 1, 3)).astype(np.float32)
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), mode="w", options=options) as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for t in range(frames):
            img = np.kron(np.roll(base, t, axis=1), np.ones((8, 8, 1)))[:height, :width]
            img = np.clip(img + 4 * t, 0, 255).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def tiny_videomae_config(num_labels: int = 7, frames: int = 4, image_size: int = 32, **kw):
    from transformers import VideoMAEConfig

    args = dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=image_size,
        patch_size=8,
        num_frames=frames,
        tubelet_size=2,
        num_labels=num_labels,
    )
    args.update(kw)
    return VideoMAEConfig(**args)


def save_tiny_videomae(directory: str | Path, seed: int = 0, **kw) -> Path:
    """save_pretrained a tiny random VideoMAEForVideoClassification into ``directory``."""
    import torch
    from transformers import VideoMAEForVideoClassification

    torch.manual_seed(seed)
    model = VideoMAEForVideoClassification(tiny_videomae_config(**kw)).eval()
    # Larger head weights so class scores are well separated (stable top-5 order across batchings).
    with torch.no_grad():
        model.classifier.weight.mul_(50.0)
    model.save_pretrained(directory)
    return Path(directory)
