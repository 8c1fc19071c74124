"""stprune.demo: the offline demo's synthetic video task and its bundled trained VideoMAE.

- ``generate_clip(i, split, seed)``: clip ``i`` of a split as (16, 96, 96, 3) uint8 + label.
- ``SyntheticVideoDataset``: the same as torch items ``{"pixel_values": (T, C, H, W), "labels"}``.
- ``make_demo_videos(out_dir, num)``: mp4 files + a ``val.txt`` list.
- ``load_demo_model()`` / ``load_demo_info()``: the bundled classifier, its normalisation and classes.

Names are imported lazily so that ``import stprune.demo`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CLASS_NAMES": "stprune.demo.synthetic",
    "NUM_CLASSES": "stprune.demo.synthetic",
    "generate_clip": "stprune.demo.synthetic",
    "generate_clips": "stprune.demo.synthetic",
    "SyntheticVideoDataset": "stprune.demo.dataset",
    "frames_to_pixel_values": "stprune.demo.dataset",
    "make_demo_videos": "stprune.demo.videos",
    "DemoModelInfo": "stprune.demo.model",
    "load_demo_model": "stprune.demo.model",
    "load_demo_info": "stprune.demo.model",
    "evaluate_top1": "stprune.demo.evaluate",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'stprune.demo' has no attribute {name!r}")
