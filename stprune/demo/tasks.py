"""The demo's synthetic tasks by name, and the bundled model of each.

- ``easy`` (:mod:`stprune.demo.synthetic`): which large object moves which way; the bundled model
  scores ~99.8%, whatever is pruned.
- ``hard`` (:mod:`stprune.demo.synthetic_hard`): which colour of small spark darts which way, for
  6 of the 16 frames, among lamps that flash in place and a decoy that glides; the evidence is
  about 3% of the tokens, so which tokens are kept matters.

Both render 16 frames of 96 x 96 RGB and have 12 classes; both models share the demo architecture
(:data:`stprune.demo.model.DEMO_ARCH`).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import numpy as np

#: task name -> the module that generates it
TASKS: dict[str, str] = {"easy": "stprune.demo.synthetic", "hard": "stprune.demo.synthetic_hard"}
#: task name -> file stem of its bundled model (``<stem>.safetensors`` + ``<stem>.json`` here)
MODEL_STEMS: dict[str, str] = {"easy": "demo_model", "hard": "demo_hard_model"}
DEFAULT_TASK = "easy"


def check_task(task: str) -> str:
    """``task`` if it names a task, else a ValueError naming the choices."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}; got {task!r}")
    return task


def task_module(task: str = DEFAULT_TASK) -> ModuleType:
    """The module generating ``task``: ``generate_clip(index, split, seed)``, ``CLASS_NAMES``, ..."""
    return importlib.import_module(TASKS[check_task(task)])


def class_names(task: str = DEFAULT_TASK) -> tuple[str, ...]:
    """The class names of ``task``, indexed by label."""
    return tuple(task_module(task).CLASS_NAMES)


def generate_clip(
    task: str, index: int, split: str = "val", seed: int = 0, **curriculum: float
) -> tuple[np.ndarray, int]:
    """Clip ``index`` of ``split`` of ``task``: frames (16, 96, 96, 3) uint8 and its label.
    ``curriculum``: the task's training knob (easy: ``decoy_prob``, hard: ``ease``)."""
    return task_module(task).generate_clip(index, split, seed, **curriculum)


def model_path(task: str = DEFAULT_TASK) -> Path:
    """The bundled weights of ``task``'s model (``.safetensors``; its ``.json`` lies beside it)."""
    return Path(__file__).with_name(MODEL_STEMS[check_task(task)] + ".safetensors")
