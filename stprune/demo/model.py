"""The bundled demo classifier: a small VideoMAE (Hugging Face ``transformers``) trained from scratch on
the synthetic task, shipped as safetensors + a JSON of its config, normalisation and class names."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from transformers import VideoMAEConfig, VideoMAEForVideoClassification

from stprune.demo.synthetic import FRAME_SIZE, NUM_FRAMES

DEMO_WEIGHTS = Path(__file__).with_name("demo_model.safetensors")
DEMO_INFO = Path(__file__).with_name("demo_model.json")

#: Architecture of the demo model. 96x96 frames, patch 16, tubelet 2 -> 8 temporal slots of 36
#: tokens (288 tokens); depth 6 puts the paper schedule's pruning points after blocks 0, 2 and 4.
DEMO_ARCH: dict[str, Any] = {
    "image_size": FRAME_SIZE,
    "patch_size": 16,
    "num_channels": 3,
    "num_frames": NUM_FRAMES,
    "tubelet_size": 2,
    "hidden_size": 192,
    "num_hidden_layers": 6,
    "num_attention_heads": 3,
    "intermediate_size": 768,
    "hidden_act": "gelu",
    "qkv_bias": True,
    "use_mean_pooling": True,
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
}


@dataclass(frozen=True)
class DemoModelInfo:
    """What a user of the demo checkpoint needs besides the weights."""

    config: dict[str, Any]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    class_names: tuple[str, ...]
    raw: dict[str, Any]

    @property
    def num_frames(self) -> int:
        return int(self.config["num_frames"])

    @property
    def image_size(self) -> int:
        return int(self.config["image_size"])


def demo_config(task: str = "easy", **overrides: Any) -> VideoMAEConfig:
    """The demo ``VideoMAEConfig`` (``DEMO_ARCH`` with the labels of ``task``, ``"easy"`` or
    ``"hard"``), with ``overrides`` applied."""
    from stprune.demo.tasks import class_names

    names = class_names(task)
    kwargs: dict[str, Any] = dict(DEMO_ARCH)
    kwargs.update(
        num_labels=len(names),
        id2label=dict(enumerate(names)),
        label2id={name: i for i, name in enumerate(names)},
    )
    kwargs.update(overrides)
    return VideoMAEConfig(**kwargs)


def build_demo_model(config: VideoMAEConfig | None = None) -> VideoMAEForVideoClassification:
    """A randomly initialised demo model (seed torch beforehand for a reproducible init)."""
    return VideoMAEForVideoClassification(config if config is not None else demo_config())


def load_demo_info(info_path: str | Path | None = None, task: str = "easy") -> DemoModelInfo:
    """Read the demo checkpoint's JSON (default: the bundled model's of ``task``: ``demo_model.json``
    for ``"easy"``, ``demo_hard_model.json`` for ``"hard"``)."""
    from stprune.demo.tasks import model_path

    path = Path(info_path) if info_path is not None else model_path(task).with_suffix(".json")
    if not path.is_file():
        raise FileNotFoundError(f"demo model info not found: {path}")
    raw = json.loads(path.read_text())
    for key in ("config", "mean", "std", "class_names"):
        if key not in raw:
            raise ValueError(f"{path} lacks the key {key!r}")
    return DemoModelInfo(
        config=dict(raw["config"]),
        mean=tuple(float(v) for v in raw["mean"]),
        std=tuple(float(v) for v in raw["std"]),
        class_names=tuple(raw["class_names"]),
        raw=raw,
    )


def load_demo_model(
    weights_path: str | Path | None = None,
    info_path: str | Path | None = None,
    device: str | torch.device = "cpu",
    task: str = "easy",
) -> VideoMAEForVideoClassification:
    """The trained demo classifier in eval mode, loaded offline from safetensors.

    Defaults to the checkpoint bundled in the package for ``task`` (``"easy"``: ``demo_model``,
    ``"hard"``: ``demo_hard_model``). Input: ``pixel_values`` (B, 16, 3, 96, 96)
    float32 normalised with ``load_demo_info().mean/std`` (see ``frames_to_pixel_values``);
    output logits (B, 12).
    """
    from stprune.demo.tasks import model_path

    weights = Path(weights_path) if weights_path is not None else model_path(task)
    if not weights.is_file():
        raise FileNotFoundError(f"demo model weights not found: {weights}")
    if info_path is None:
        info_path = weights.with_suffix(".json")
    info = load_demo_info(info_path)
    model = VideoMAEForVideoClassification(VideoMAEConfig(**info.config))
    state = load_file(str(weights))
    state = {k: v.to(torch.float32) for k, v in state.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{weights} does not match the demo architecture: missing {missing}, unexpected {unexpected}"
        )
    return model.to(device).eval()
