"""``stprune show``: which tokens a pruning method keeps, drawn on the clip's frames.

One column per temporal slot (its first frame), one row for the input and one per pruning
stage; tokens pruned by that stage (or earlier) are whited out, as in the STA paper's figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

import stprune

__all__ = ["kept_masks", "render_kept_tokens", "clip_from_video", "show"]


def kept_masks(model: nn.Module, pixel_values: torch.Tensor) -> tuple[list[np.ndarray], list[str]]:
    """Run a patched model on one clip and return, per stage, a kept mask over the token grid.

    Args:
        model: a model patched with a pruning method (one that keeps token positions).
        pixel_values: (1, T, C, H, W).

    Returns:
        masks of shape (T0, N) (True = kept after that stage), and a label per stage.
    """
    if pixel_values.shape[0] != 1:
        raise ValueError(f"show draws one clip; got a batch of {pixel_values.shape[0]}")
    from stprune.models import get_adapter

    lay = get_adapter(model).layout()
    with torch.inference_mode():
        model(pixel_values=pixel_values)
    trace = stprune.last_trace(model)
    masks, labels = [], []
    for st in trace.stages:
        if st.positions is None:
            raise ValueError(
                f"method {stprune.patch_info(model).method!r} merges tokens, so kept positions do not exist; "
                "show needs a pruning method (sta or random)"
            )
        m = np.zeros(lay.num_slots * lay.tokens_per_slot, dtype=bool)
        m[st.positions[0].cpu().numpy()] = True
        masks.append(m.reshape(lay.num_slots, lay.tokens_per_slot))
        labels.append(f"after block {st.stage.after_block} (r={st.stage.r})")
    return masks, labels


def render_kept_tokens(
    frames: np.ndarray,
    masks: Sequence[np.ndarray],
    labels: Sequence[str],
    patch: int,
    tubelet: int,
    out: str | Path,
    title: str = "",
) -> Path:
    """Save the figure.

    Args:
        frames: uint8 (T, H, W, 3), the clip as the model saw it (after resize/crop).
        masks: per stage, bool (T0, N) kept masks, N = (H / patch) * (W / patch).
        labels: row labels.
        patch: spatial patch size; tubelet: frames per temporal slot.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t, h, w, _ = frames.shape
    slots = t // tubelet
    gw = w // patch
    rows = 1 + len(masks)
    fig, axes = plt.subplots(rows, slots, figsize=(1.3 * slots, 1.35 * rows + 0.4), dpi=110, squeeze=False)
    for s in range(slots):
        frame = frames[s * tubelet]
        axes[0, s].imshow(frame)
        axes[0, s].set_title(f"slot {s}", fontsize=8)
        for k, mask in enumerate(masks):
            img = frame.astype(np.float32).copy()
            for tok in np.flatnonzero(~mask[s]):
                y, x = divmod(int(tok), gw)
                img[y * patch : (y + 1) * patch, x * patch : (x + 1) * patch] = 255.0
            axes[k + 1, s].imshow(img.astype(np.uint8))
    for k, label in enumerate(["input", *labels]):
        axes[k, 0].set_ylabel(label, fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=9)
    from stprune.bench.report import save_figure

    return save_figure(fig, out)


def clip_from_video(path: str | Path, num_frames: int, size: int) -> np.ndarray:
    """``num_frames`` frames spread uniformly over a video file, short side resized to ``size``
    and centre-cropped: uint8 (T, size, size, 3)."""
    from stprune.eval.decode import read_clips
    from stprune.eval.sampling import ssv2_clip_indices
    from stprune.eval.transforms import make_views

    frames, positions = read_clips(path, lambda n: ssv2_clip_indices(n, num_frames, 1))
    views = make_views(frames, positions, size, 1)  # (1, T, 3, size, size)
    return views[0].permute(0, 2, 3, 1).contiguous().numpy()


def show(
    model_spec: str,
    out: str | Path,
    clip: int | None = None,
    video: str | Path | None = None,
    method: str = "sta",
    r: int | list[int] | None = None,
    flops_target: float | None = None,
) -> Path:
    """What ``stprune show`` does: prune one clip and draw the kept tokens of every stage.

    Args:
        model_spec: anything ``--model`` accepts; ``clip`` needs ``"demo"``.
        clip: index of a demo validation clip (default 0) unless ``video`` is given.
        video: a video file; ``num_frames`` frames spread over it, resized and centre-cropped.
        method: a method that keeps positions (``"sta"`` or ``"random"``).
        r / flops_target: the pruning setting (default: flops_target 0.5).
    """
    from stprune.eval.transforms import normalize
    from stprune.models.loading import resolve_model

    resolved = resolve_model(model_spec)
    model, pre = resolved.model, resolved.preprocessing
    cfg = model.config
    if video is not None:
        frames = clip_from_video(video, pre.num_frames, pre.image_size)
        source = str(video)
    else:
        if model_spec != "demo":
            raise ValueError(
                "clip picks a clip of the demo task (--model demo); for another model give a video file"
            )
        from stprune.demo.synthetic import generate_clip

        index = 0 if clip is None else clip
        if index < 0:
            raise ValueError(f"clip must be >= 0; got {index}")
        frames, label = generate_clip(index, "val")
        source = f"demo validation clip {index} ({cfg.id2label.get(label, label)})"
    x = normalize(torch.from_numpy(frames).permute(0, 3, 1, 2), pre.mean, pre.std)[None]
    if r is None and flops_target is None:
        flops_target = 0.5
    stprune.patch(model, method=method, r=r, flops_target=flops_target)
    try:
        info = stprune.patch_info(model)
        masks, labels = kept_masks(model, x)
    finally:
        stprune.unpatch(model)
    patch = cfg.patch_size if isinstance(cfg.patch_size, int) else cfg.patch_size[0]
    tubelet = cfg.tubelet_size if isinstance(cfg.tubelet_size, int) else cfg.tubelet_size[0]
    title = f"{method}, FLOPs ratio {info.flops_ratio:.2f}: {source}"
    return render_kept_tokens(frames, masks, labels, patch, tubelet, out, title)
