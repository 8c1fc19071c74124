"""Parity with torchvision through reference data it produced (skipped until the data exists).

``benchmarks/swin_torchvision_parity.py``, run where torchvision works, writes
``tests/data/swin3d_torchvision_reference.safetensors``: a small torchvision
``SwinTransformer3d``'s weights (torchvision key names), two clips and its float64 logits.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from stprune.models import VideoSwinConfig, load_video_swin

DATA = Path(__file__).parent / "data" / "swin3d_torchvision_reference.safetensors"


@pytest.mark.skipif(
    not DATA.exists(),
    reason="no torchvision reference data: run benchmarks/swin_torchvision_parity.py where torchvision works",
)
def test_logits_match_torchvision_reference_data():
    with safe_open(str(DATA), framework="pt") as f:
        config = VideoSwinConfig(**json.loads(f.metadata()["config"]))
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    weights = {k[len("weights.") :]: v for k, v in tensors.items() if k.startswith("weights.")}
    model = load_video_swin(weights, config=config, dtype=torch.float64)
    clips = sorted(k for k in tensors if k.startswith("clip_"))
    assert clips
    for name in clips:
        with torch.no_grad():
            logits = model(tensors[name])
        torch.testing.assert_close(logits, tensors["logits_" + name[len("clip_") :]], rtol=0, atol=1e-9)
