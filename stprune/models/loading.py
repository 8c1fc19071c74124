"""Resolve a ``--model`` argument into a model: preset, demo, local directory, checkpoint file
or Hugging Face hub id."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from stprune.models.presets import PRESETS, build_preset, preset_names

__all__ = ["load_model", "MODEL_HELP"]

MODEL_HELP = (
    f"preset ({', '.join(preset_names())}; random weights, offline), 'demo' (the bundled trained model), "
    "a local Hugging Face model directory, a checkpoint file, or a hub id"
)


def load_model(spec: str, weights: bool = True) -> nn.Module:
    """The model named by ``spec``, in eval mode.

    Args:
        spec: a preset name, ``"demo"``, a directory saved with ``save_pretrained``, a
            checkpoint file (.pth/.pt/.safetensors), or a hub id (needs network or the HF cache).
        weights: False builds presets and local HF directories on the meta device from their
            config alone (for exact FLOP counts without memory or compute); other sources load
            normally.
    """
    if spec in PRESETS:
        if not weights:
            with torch.device("meta"):
                return build_preset(spec)
        return build_preset(spec)
    if spec == "demo":
        from stprune.demo import load_demo_model

        return load_demo_model()
    path = Path(spec)
    if path.is_dir():
        from transformers import AutoConfig, AutoModelForVideoClassification

        if not weights:
            config = AutoConfig.from_pretrained(path)
            with torch.device("meta"):
                return AutoModelForVideoClassification.from_config(config).eval()
        return AutoModelForVideoClassification.from_pretrained(path).eval()
    if path.is_file():
        from stprune.models.checkpoints import load_checkpoint_file

        return load_checkpoint_file(path).eval()
    looks_local = spec.startswith((".", "/", "~")) or os.sep in spec.strip("/").split("/", 1)[-1]
    if looks_local or spec.count("/") != 1:
        raise ValueError(f"--model {spec!r}: no such file or directory, and not a preset; use {MODEL_HELP}")
    from transformers import AutoModelForVideoClassification

    try:
        return AutoModelForVideoClassification.from_pretrained(spec).eval()
    except OSError as err:
        raise ValueError(
            f"--model {spec!r}: could not load it from the Hugging Face hub or cache ({err}); "
            "without network access, pass a local directory saved with save_pretrained"
        ) from err
