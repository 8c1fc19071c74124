"""``stprune show``: which tokens a pruning method keeps, drawn on the clip's frames.

One column per temporal slot of the model's input token grid (its first frame), one row for the
input and one per pruning point; tokens pruned at that point (or earlier) are whited out, as in
the STA paper's figure. The geometry comes from the model's adapter
(:meth:`~stprune.adapters.base.Adapter.input_grid`) and the kept tokens from
:func:`stprune.last_trace`, so every supported family draws the same way: for a ViT the rows are
the T0 x h x w grid; for Video Swin each row is drawn on the grid of the Swin stage the pruning
point is in (later stages merge 2 x 2 tokens, so their cells are larger), and a new Swin stage
starts with every token active again.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import stprune
from stprune.adapters.base import InputGrid
from stprune.errors import InputError, MissingFileError, SettingError

__all__ = [
    "StageMask",
    "ShowResult",
    "kept_masks",
    "kept_figure",
    "render_kept_tokens",
    "clip_from_video",
    "video_clip",
    "synthetic_clip",
    "synthetic_frame_ids",
    "show_model",
    "show",
]

#: pruning setting when neither r nor flops_target is given (reachable by every supported family)
DEFAULT_FLOPS_TARGET = 0.7


@dataclass(frozen=True)
class StageMask:
    """The tokens still kept after one pruning point of the last forward.

    Attributes:
        label: e.g. ``"after block 1 (r=8)"``.
        mask: bool (T, h, w) over the token grid the point prunes in (True = kept).
        kept: tokens kept in that grid; total: tokens of that grid (protected tokens excluded).
    """

    label: str
    mask: np.ndarray
    kept: int
    total: int


@dataclass(frozen=True)
class ShowResult:
    """What :func:`show` drew: the PNG, its panel grid, the stages and the predictions."""

    path: Path
    rows: int
    columns: int
    panels: int
    stages: list[StageMask]
    prediction: int
    prediction_unpruned: int
    title: str
    #: the clip the model ran on, e.g. ``"16 frames x 224x224"`` (see ``ResolvedModel.clip``)
    clip: str = ""


def _forward(model: nn.Module, grid: InputGrid, clip: torch.Tensor) -> torch.Tensor:
    """``clip`` (1, T, C, H, W) in the model's input layout through the model; returns the logits."""
    x = clip if grid.input_layout == "BTCHW" else clip.transpose(1, 2)
    with torch.inference_mode():
        out = model(**{grid.input_name: x})
    logits = getattr(out, "logits", out)
    if isinstance(logits, tuple | list):
        logits = logits[0]
    return logits


def kept_masks(model: nn.Module, pixel_values: torch.Tensor) -> tuple[list[StageMask], torch.Tensor]:
    """Run a patched model on one clip and return, per pruning point, the kept tokens.

    Args:
        model: a model patched with a pruning method that keeps token positions (sta, random, rlt).
        pixel_values: (1, T, C, H, W), normalised (frames first, whatever the model's layout).

    Returns:
        per pruning point a :class:`StageMask` over that point's token grid, and the logits
        (1, num_classes) of the pruned forward.
    """
    if pixel_values.shape[0] != 1:
        raise SettingError(f"show draws one clip; got a batch of {pixel_values.shape[0]}")
    from stprune.models import get_adapter

    grid = get_adapter(model).input_grid()
    logits = _forward(model, grid, pixel_values)
    trace = stprune.last_trace(model)
    first = (grid.num_slots, grid.grid[0], grid.grid[1])
    masks = []
    for st in trace.stages:
        if st.positions is None:
            raise SettingError(
                f"method {stprune.patch_info(model).method!r} merges tokens, so kept positions do not exist; "
                "show needs a pruning method (sta, random or rlt)"
            )
        shape = tuple(int(v) for v in getattr(st, "grid", first))  # grid models: that stage's grid
        m = np.zeros(math.prod(shape), dtype=bool)
        pos = st.positions[0].cpu().numpy()
        m[pos[pos >= 0]] = True
        if grid.protected == 0 and getattr(trace, "protected", 0):  # a protected grid token is kept
            m[: trace.protected] = True
        m = m.reshape(shape)
        if st.stage.after_block < 0:  # an input-level method (RLT), before block 0
            how = "per clip" if st.stage.r is None else f"r={st.stage.r}"
            label = f"input, before block 0 ({how})"
        else:
            label = f"after block {st.stage.after_block} (r={st.stage.r})"
        masks.append(StageMask(label, m, int(m.sum()), m.size))
    return masks, logits


def kept_figure(
    frames: np.ndarray,
    masks: Sequence[StageMask],
    grid: InputGrid,
    title: str = "",
    frame_ids: Sequence[int] | None = None,
) -> Any:
    """The figure: a row for the input, a row per pruning point, a column per temporal slot.

    Args:
        frames: uint8 (T, H, W, 3), the clip as the model saw it (T = ``grid.num_frames``).
        frame_ids: (T,) each clip frame's index in its source video, for the column titles
            (``"frame 37"``: the first frame of the slot); None: indices into the clip.
        masks: per pruning point, the kept tokens over its grid (T_s, h_s, w_s). A cell of a
            coarser grid than the input grid covers ``ceil(h / h_s)`` input patches per side.
        grid: the model's input token grid.
        title: the figure's title.

    Returns:
        a matplotlib Figure with ``(1 + len(masks)) * grid.num_slots`` image panels.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    slots, (gh, gw), (ph, pw) = grid.num_slots, grid.grid, grid.patch
    rows = 1 + len(masks)
    fig, axes = plt.subplots(
        rows, slots, figsize=(1.3 * slots + 0.9, 1.45 * rows + 0.9), dpi=110, squeeze=False
    )
    for s in range(slots):
        first = min(s * grid.tubelet, len(frames) - 1)
        frame = frames[first]
        axes[0, s].imshow(frame)
        axes[0, s].set_title(f"frame {first if frame_ids is None else int(frame_ids[first])}", fontsize=7)
        for k, sm in enumerate(masks):
            ts, hs, ws = sm.mask.shape
            slot_mask = sm.mask[min(s * ts // slots, ts - 1)]
            cy, cx = ph * math.ceil(gh / hs), pw * math.ceil(gw / ws)  # pixels per cell
            img = frame.astype(np.float32).copy()
            for y, x in zip(*np.nonzero(~slot_mask), strict=True):
                img[y * cy : (y + 1) * cy, x * cx : (x + 1) * cx] = 255.0
            ax = axes[k + 1, s]
            ax.imshow(img.astype(np.uint8))
            ax.set_title(f"{int(slot_mask.sum())}/{slot_mask.size}", fontsize=6)
    for k, sm in enumerate(masks):
        grid_note = (
            "" if sm.mask.shape == (slots, gh, gw) else f"\nof grid {'x'.join(map(str, sm.mask.shape))}"
        )
        axes[k + 1, 0].set_ylabel(
            f"{sm.label}\nkept {sm.kept}/{sm.total} ({100 * sm.kept / sm.total:.0f}%){grid_note}", fontsize=6
        )
    axes[0, 0].set_ylabel("input", fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=8)
    fig.legend(
        handles=[
            Patch(facecolor="white", edgecolor="black", label="white: pruned token"),
            Patch(facecolor="none", edgecolor="none", label="panel title: kept / tokens of that slot"),
        ],
        loc="lower center",
        ncol=2,
        fontsize=7,
        frameon=False,
    )
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


def render_kept_tokens(
    frames: np.ndarray,
    masks: Sequence[StageMask],
    grid: InputGrid,
    out: str | Path,
    title: str = "",
    frame_ids: Sequence[int] | None = None,
) -> Path:
    """Save :func:`kept_figure` as ``out`` (PNG; folders created) and return the path."""
    from stprune.bench.report import save_figure

    return save_figure(kept_figure(frames, masks, grid, title, frame_ids), out, layout=False)


def _fit(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 (T, h, w, 3) -> (T, H, W, 3): resized to cover (H, W) (aspect kept), centre-cropped."""
    h0, w0 = frames.shape[1:3]
    hh, ww = size
    if (h0, w0) == (hh, ww):
        return frames
    scale = max(hh / h0, ww / w0)
    nh, nw = max(hh, round(h0 * scale)), max(ww, round(w0 * scale))
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    x = torch.nn.functional.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False)
    top, left = (nh - hh) // 2, (nw - ww) // 2
    x = x[:, :, top : top + hh, left : left + ww]
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def clip_from_video(
    path: str | Path,
    num_frames: int,
    size: int | tuple[int, int],
    short_side: int | None = None,
    antialias: bool = False,
) -> np.ndarray:
    """``num_frames`` frames spread uniformly over a video file, resized and centre-cropped.

    Returns uint8 (num_frames, H, W, 3); ``size`` is H = W or (H, W). ``short_side`` /
    ``antialias``: the model's own resize before the crop, as in evaluation (V-JEPA 2's
    processor: ``int(S * 256 / 224)``, antialiased; see ``Preprocessing``). Raises
    MissingFileError for a missing file and InputError for one that cannot be decoded, has no
    video stream (a text file: FFmpeg would play a video list as ANSI art) or fewer than
    ``num_frames`` frames. :func:`video_clip` also says which frames were taken.
    """
    return video_clip(path, num_frames, size, short_side, antialias)[0]


def video_clip(
    path: str | Path,
    num_frames: int,
    size: int | tuple[int, int],
    short_side: int | None = None,
    antialias: bool = False,
) -> tuple[np.ndarray, list[int]]:
    """:func:`clip_from_video`, and the index in the video of each of the ``num_frames`` frames."""
    from stprune.eval.decode import VideoDecodeError, count_frames, read_clips
    from stprune.eval.sampling import ssv2_clip_indices

    p = Path(path)
    if not p.exists():
        raise MissingFileError(f"video file {str(path)!r} does not exist")
    if not p.is_file():
        raise InputError(f"video {str(path)!r} is not a file")
    hw = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    try:
        available = count_frames(p)
        if available < num_frames:
            raise InputError(
                f"video {str(path)!r} has {available} frame{'s' if available != 1 else ''}; the model takes "
                f"{num_frames} per clip (frames spread over the video, none repeated): use a video of >= "
                f"{num_frames} frames"
            )
        indices = ssv2_clip_indices(available, num_frames, 1)[0]
        frames, positions = read_clips(p, lambda n: [indices])
    except VideoDecodeError as err:
        raise InputError(f"cannot read video: {err}") from err  # the message names the file
    if hw[0] == hw[1]:  # the eval protocol's own resize and crop
        from stprune.eval.transforms import make_views

        views = make_views(frames, positions, hw[0], 1, short_side=short_side, antialias=antialias)
        return views[0].permute(0, 2, 3, 1).contiguous().numpy(), list(indices)
    return _fit(frames[positions[0]], hw), list(indices)


def synthetic_clip(
    index: int, num_frames: int, size: tuple[int, int], task: str = "easy"
) -> tuple[np.ndarray, int]:
    """Clip ``index`` of the validation split of demo task ``task`` (``"easy"`` or ``"hard"``), its
    16 frames resampled to ``num_frames`` (spread evenly, repeated when more are asked) and resized
    to ``size`` (H, W) when needed.

    Returns uint8 (num_frames, H, W, 3) and the demo label.
    """
    from stprune.demo.tasks import generate_clip

    if index < 0:
        raise SettingError(f"clip must be >= 0; got {index}")
    frames, label = generate_clip(task, index, "val")
    return _fit(frames[synthetic_frame_ids(len(frames), num_frames)], size), label


def synthetic_frame_ids(available: int, num_frames: int) -> list[int]:
    """Which of a demo clip's ``available`` frames :func:`synthetic_clip` takes for ``num_frames``:
    all of them in order when the counts agree, else spread evenly (repeated when more are asked)."""
    if available == num_frames:
        return list(range(num_frames))
    return [int(i) for i in np.linspace(0, available - 1, num_frames).round().astype(int)]


def _class_name(model: nn.Module, k: int) -> str:
    """``"name (class k)"`` when the model's config names its classes, else ``"class k"``."""
    id2label = getattr(getattr(model, "config", None), "id2label", None) or {}
    name = id2label.get(k, id2label.get(str(k)))
    return f"{name} (class {k})" if name and name != f"LABEL_{k}" else f"class {k}"


def show_model(
    model: nn.Module,
    out: str | Path,
    frames: np.ndarray,
    mean: Sequence[float],
    std: Sequence[float],
    source: str = "",
    method: str = "sta",
    r: int | list[int] | None = None,
    flops_target: float | None = None,
    threshold: float | None = None,
    frame_ids: Sequence[int] | None = None,
) -> ShowResult:
    """Prune one clip in ``model`` and save the kept tokens of every pruning point as a PNG.

    Args:
        model: an unpatched supported model (it is left unpatched).
        out: PNG path (folders created).
        frames: uint8 (T, H, W, 3) at the model's input size (see its adapter's ``input_grid``).
        mean / std: the model's per-channel normalisation of [0, 1] RGB.
        source: what the clip is, for the title.
        method: a method that keeps positions (``"sta"``, ``"random"`` or ``"rlt"``).
        r / flops_target: the pruning setting (default: flops_target 0.7; for rlt: threshold 0.1).
        threshold: RLT's threshold mode instead (tokens kept follow the clip).
        frame_ids: each frame's index in its source video, for the column titles.
    """
    from stprune.eval.transforms import normalize
    from stprune.models import get_adapter

    grid = get_adapter(model).input_grid()
    want = (grid.num_frames, *grid.image_size, 3)
    if tuple(frames.shape) != want:
        raise InputError(f"frames have shape {tuple(frames.shape)}; the model takes {want} (T, H, W, 3)")
    x = normalize(torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2), mean, std)[None]
    if r is None and flops_target is None and threshold is None:
        if method == "rlt":  # as stprune.patch(model, "rlt"): the paper's threshold mode
            from stprune.methods.rlt import DEFAULT_THRESHOLD

            threshold = DEFAULT_THRESHOLD
        else:
            flops_target = DEFAULT_FLOPS_TARGET
    unpruned = int(_forward(model, grid, x).argmax(-1)[0])
    options = {} if threshold is None else {"threshold": threshold}
    stprune.patch(model, method=method, r=r, flops_target=flops_target, **options)
    try:
        info = stprune.patch_info(model)
        masks, logits = kept_masks(model, x)
        ratio = float(stprune.last_macs(model)[0]) / info.macs_unpruned  # what this clip used
    finally:
        stprune.unpatch(model)
    pred = int(logits.argmax(-1)[0])
    setting = f"threshold {threshold}, " if threshold is not None else ""
    # what this clip used; where that depends on the clip (RLT's threshold mode, Video Swin's padded
    # windows), also the planned figure that flops / patch_info report
    used = f"FLOPs ratio {ratio:.2f} on this clip"
    if threshold is None and abs(ratio - info.flops_ratio) >= 0.005:
        used += f" (planned {info.flops_ratio:.3f})"
    title = (
        f"{method}, {setting}{used}: {source}\n"
        f"prediction: {_class_name(model, pred)}; unpruned: {_class_name(model, unpruned)}"
    )
    fig = kept_figure(frames, masks, grid, title, frame_ids)
    panels = len(fig.axes)
    from stprune.bench.report import save_figure

    path = save_figure(fig, out, layout=False)
    return ShowResult(path, 1 + len(masks), grid.num_slots, panels, masks, pred, unpruned, title)


def show(
    model_spec: str,
    out: str | Path,
    clip: int | None = None,
    video: str | Path | None = None,
    method: str = "sta",
    r: int | list[int] | None = None,
    flops_target: float | None = None,
    threshold: float | None = None,
    num_heads: int | None = None,
    num_frames: int | None = None,
    image_size: int | None = None,
) -> ShowResult:
    """What ``stprune show`` does: load a model, prune one clip and draw the kept tokens.

    Args:
        model_spec: anything ``--model`` accepts.
        out: PNG path.
        clip: index of a synthetic demo validation clip (default 0) unless ``video`` is given: of
            the hard task for ``"demo-hard"``, else of the easy task; for another model than the
            demo ones its frames are resampled and resized to the model's input.
        video: a video file; the model's frame count spread over it, resized and centre-cropped.
        method: a method that keeps positions (``"sta"``, ``"random"`` or ``"rlt"``).
        r / flops_target: the pruning setting (default: flops_target 0.7).
        threshold: RLT's threshold mode instead (tokens kept follow the clip).
        num_heads / num_frames / image_size: what a checkpoint file does not record (see
            ``stprune.architectures.loading.resolve_model``).

    Columns are labelled with the frame indices of the source (the video's, or the demo clip's).
    """
    import dataclasses

    from stprune.architectures.loading import resolve_model
    from stprune.demo.synthetic import NUM_FRAMES
    from stprune.models import get_adapter

    if video is not None and clip is not None:
        raise SettingError("give a clip index or a video file, not both")
    if clip is not None and clip < 0:
        raise SettingError(f"clip must be >= 0; got {clip}")
    if video is not None and not Path(video).exists():  # before loading the model
        raise MissingFileError(f"video file {str(video)!r} does not exist")
    resolved = resolve_model(model_spec, num_heads, num_frames, image_size)
    model, pre = resolved.model, resolved.preprocessing
    grid = get_adapter(model).input_grid()
    if video is not None:
        frames, ids = video_clip(video, grid.num_frames, grid.image_size, pre.short_side, pre.antialias)
        source = str(video)
    else:
        index = 0 if clip is None else clip
        task = "hard" if model_spec == "demo-hard" else "easy"
        frames, label = synthetic_clip(index, grid.num_frames, grid.image_size, task)
        ids = synthetic_frame_ids(NUM_FRAMES, grid.num_frames)
        if model_spec in ("demo", "demo-hard"):
            source = f"{task} demo validation clip {index} (label: {_class_name(model, label)})"
        else:
            source = (
                f"synthetic demo clip {index} at {grid.num_frames}x{grid.image_size[0]}x{grid.image_size[1]}"
            )
    res = show_model(model, out, frames, pre.mean, pre.std, source, method, r, flops_target, threshold, ids)
    return dataclasses.replace(res, clip=resolved.clip)
