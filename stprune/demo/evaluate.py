"""Top-1 accuracy of a video classifier on the synthetic validation clips."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from stprune.errors import SettingError


@torch.no_grad()
def evaluate_top1(
    model: torch.nn.Module,
    dataset: Dataset,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    progress: bool = True,
    desc: str = "val",
) -> float:
    """Fraction of clips whose arg-max logit equals the label.

    ``dataset`` items are ``{"pixel_values": (T, C, H, W), "labels": ()}``; ``model(pixel_values=x)``
    must return an object with ``.logits`` (B, num_classes). The model's train/eval mode is restored.
    """
    if batch_size < 1:
        raise SettingError(f"batch_size must be >= 1, got {batch_size}")
    was_training = model.training
    model.eval()
    correct = total = 0
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    for batch in tqdm(loader, desc=desc, disable=not progress, leave=False):
        logits = model(pixel_values=batch["pixel_values"].to(device)).logits
        correct += int((logits.argmax(-1).cpu() == batch["labels"]).sum())
        total += int(batch["labels"].numel())
    model.train(was_training)
    return correct / max(total, 1)
