"""Parity with torchvision through reference data torchvision produced.

``tests/data/swin3d_torchvision_reference.safetensors`` holds a small torchvision
``SwinTransformer3d``'s weights (torchvision key names, perturbed random values), two clips
(2x3x7x44x36 and 1x3x2x20x20: padding, shifted windows, windows shrunk to the grid and the
shrunk-window bias index all occur) and torchvision's float64 logits for them. The test loads
those weights into our Video Swin and requires the same logits within 1e-9 (float64: both sides
compute the same operations in a different order; the measured difference was 5.6e-17 with
logits up to 0.27).

Generated on 2026-12-01 on the 2-core x86_64 CPU sandbox with torch 2.14.1+cu130 and torchvision
0.29.1+cu130 (run on CPU), in a virtual environment of their own (torchvision is not a
dependency of stprune), from the repository root::

    python3.11 -m venv /work/tvvenv && source /work/tvvenv/bin/activate
    pip install torch==2.14.1 torchvision==0.29.1
    pip install 'transformers>=5,<6' safetensors numpy tqdm rich av matplotlib \
        torch==2.14.1 torchvision==0.29.1
    PYTHONPATH=. python benchmarks/swin_torchvision_parity.py

(the script's defaults: seed 0, swin3d_t parity at 1x3x16x224x224 float32, then this file).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open

from stprune.models import VideoSwinConfig, load_video_swin

DATA = Path(__file__).parent / "data" / "swin3d_torchvision_reference.safetensors"


def test_logits_match_torchvision_reference_data():
    assert DATA.exists(), (
        f"missing {DATA}: it is committed with the repository; regenerate it with "
        f"benchmarks/swin_torchvision_parity.py (see this module's docstring)"
    )
    with safe_open(str(DATA), framework="pt") as f:
        config = VideoSwinConfig(**json.loads(f.metadata()["config"]))
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    weights = {k[len("weights.") :]: v for k, v in tensors.items() if k.startswith("weights.")}
    model = load_video_swin(weights, config=config, dtype=torch.float64)
    clips = sorted(k for k in tensors if k.startswith("clip_"))
    assert len(clips) == 2
    for name in clips:
        with torch.no_grad():
            logits = model(tensors[name])
        torch.testing.assert_close(logits, tensors["logits_" + name[len("clip_") :]], rtol=0, atol=1e-9)
