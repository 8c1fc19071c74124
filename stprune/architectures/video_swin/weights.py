"""Checkpoint layouts of Video Swin, loaded into :class:`~stprune.architectures.video_swin.VideoSwin`.

Three key layouts are understood (the names below are for stage ``i``, block ``j``):

=====================  ======================================  ==========================================
ours (native)          torchvision ``swin3d_t/s/b``            official Video Swin (mmaction)
=====================  ======================================  ==========================================
patch_embed.proj/norm  patch_embed.proj/norm                   backbone.patch_embed.proj/norm
stages.i.blocks.j.*    features.{2i}.j.*                       backbone.layers.i.blocks.j.*
  ...mlp.fc1 / fc2       ...mlp.0 / mlp.3                        ...mlp.fc1 / fc2
stages.i.downsample.*  features.{2i+1}.*                       backbone.layers.i.downsample.*
norm                   norm                                    backbone.norm (mmaction2 1.x: norm3)
head                   head                                    cls_head.fc_cls
=====================  ======================================  ==========================================

Both external layouts also carry a ``relative_position_index`` buffer per block; it is derived
from the window size, so it is checked against ours and then dropped. Loading is strict: any
missing, unexpected or wrongly shaped tensor raises an InputError (a ValueError) that lists them.

Checkpoints are read safely: ``.safetensors`` files, or ``torch.load(..., weights_only=True)``.

Memory: the loaded model owns its weights, each in its own contiguous, 64-byte aligned
allocation, never in a memory map of the file. ``.safetensors`` files are read straight into
such tensors (not through safetensors' memory map, whose tensors sit at the file's, often only
4-byte aligned, offsets: fp32 kernels then take other code paths, and the model would change if
the file were re-saved in place). Tensors that already live in such memory (``torch.load``'s, an
in-memory state dict's) are adopted without a copy, so the peak stays near one copy of the
weights; anything else (unaligned, strided, memory-mapped, another dtype or device) is copied.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

import torch
from torch import Tensor

from stprune.architectures.checkpoints import (
    file_mapped_ranges,
    own_memory,
    owned,
    unwrap_state_dict,
)
from stprune.architectures.checkpoints import read_checkpoint as read_checkpoint_file
from stprune.architectures.video_swin.model import (
    ARCH_CONFIGS,
    VideoSwin,
    VideoSwinConfig,
    relative_position_index,
)
from stprune.errors import InputError, SettingError, SettingTypeError

__all__ = [
    "LAYOUTS",
    "convert_state_dict",
    "detect_layout",
    "export_state_dict",
    "external_key",
    "infer_config",
    "load_video_swin",
    "own_memory",
    "read_checkpoint",
]

LAYOUTS = ("native", "torchvision", "official")

_ARCH_ALIASES = {
    "t": "t",
    "tiny": "t",
    "swin3d_t": "t",
    "video_swin_t": "t",
    "s": "s",
    "small": "s",
    "swin3d_s": "s",
    "video_swin_s": "s",
    "b": "b",
    "base": "b",
    "swin3d_b": "b",
    "video_swin_b": "b",
}

# Containers that training frameworks wrap a state dict in (mmcv/mmengine: "state_dict";
# Swin/DeiT-style scripts: "model"; some trainers: "module", "model_state").
_WRAPPER_KEYS = ("state_dict", "model", "module", "model_state", "model_state_dict")

_MAX_LISTED = 8

_TV_BLOCK = re.compile(r"^features\.(\d+)\.(\d+)\.(.+)$")
_TV_MERGE = re.compile(r"^features\.(\d+)\.(reduction\.weight|norm\.weight|norm\.bias)$")
_OFF_BLOCK = re.compile(r"^layers\.(\d+)\.blocks\.(\d+)\.(.+)$")
_OFF_MERGE = re.compile(r"^layers\.(\d+)\.downsample\.(.+)$")
_NATIVE_BLOCK = re.compile(r"^stages\.(\d+)\.blocks\.(\d+)\.(.+)$")
_NATIVE_MERGE = re.compile(r"^stages\.(\d+)\.downsample\.(.+)$")

_TV_MLP = {"mlp.0.": "mlp.fc1.", "mlp.3.": "mlp.fc2."}
_INDEX_SUFFIX = ".attn.relative_position_index"


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------


def read_checkpoint(source: str | os.PathLike | Mapping) -> dict[str, Tensor]:
    """A flat ``{name: tensor}`` dict from a file or an in-memory (possibly wrapped) state dict.

    Files are read by :func:`stprune.architectures.checkpoints.read_checkpoint` (``.safetensors``
    into fresh aligned tensors; else ``torch.load(weights_only=True, mmap=False)``). Wrappers such
    as ``{"state_dict": ...}`` (mmcv) or ``{"model": ...}`` are unwrapped and a ``module.`` prefix
    (DistributedDataParallel) is stripped.
    """
    if isinstance(source, Mapping):
        state = unwrap_state_dict(source)
    elif isinstance(source, (str, os.PathLike)):
        state, _ = read_checkpoint_file(source)
    else:
        raise SettingTypeError(
            f"expected a checkpoint path or a state dict mapping, got {type(source).__name__}"
        )
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


# --------------------------------------------------------------------------------------------
# layouts
# --------------------------------------------------------------------------------------------


def detect_layout(state_dict: Mapping[str, Tensor]) -> str:
    """Which of :data:`LAYOUTS` a state dict uses, from its key names."""
    keys = list(state_dict)
    found = []
    if any(k.startswith(("backbone.", "cls_head.")) or _OFF_BLOCK.match(k) for k in keys):
        found.append("official")
    if any(k.startswith("features.") for k in keys):
        found.append("torchvision")
    if any(k.startswith("stages.") for k in keys):
        found.append("native")
    if len(found) != 1:
        what = "mixes the layouts " + " and ".join(found) if found else "matches no known layout"
        raise InputError(
            f"this checkpoint {what} of Video Swin (torchvision 'features.N...', official "
            f"'backbone.layers.N...', or stprune 'stages.N...'); first keys: {_listing(keys)}"
        )
    return found[0]


def _torchvision_key(key: str) -> str:
    if m := _TV_MERGE.match(key):
        index, rest = int(m.group(1)), m.group(2)
        if index % 2 == 1:
            return f"stages.{index // 2}.downsample.{rest}"
    if m := _TV_BLOCK.match(key):
        index, block, rest = int(m.group(1)), m.group(2), m.group(3)
        if index % 2 == 0:
            for old, new in _TV_MLP.items():
                if rest.startswith(old):
                    rest = new + rest[len(old) :]
            return f"stages.{index // 2}.blocks.{block}.{rest}"
    return key  # patch_embed.*, norm.*, head.* are the same; anything else stays unexpected


def _official_key(key: str) -> str | None:
    if key.startswith("data_preprocessor."):
        return None  # mmaction2 1.x mean/std buffers, not part of the network
    if key.startswith("cls_head.fc_cls."):
        return "head." + key[len("cls_head.fc_cls.") :]
    if key.startswith("backbone."):
        key = key[len("backbone.") :]
    if key.startswith("norm3."):
        return "norm." + key[len("norm3.") :]
    if m := _OFF_BLOCK.match(key):
        return f"stages.{m.group(1)}.blocks.{m.group(2)}.{m.group(3)}"
    if m := _OFF_MERGE.match(key):
        return f"stages.{m.group(1)}.downsample.{m.group(2)}"
    return key


def _convert(state_dict: Mapping[str, Tensor], layout: str) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Native-named state dict and, for each native name, the checkpoint's own name."""
    if layout not in LAYOUTS:
        raise SettingError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if layout == "native":
        return dict(state_dict), {k: k for k in state_dict}
    rename = _torchvision_key if layout == "torchvision" else _official_key
    out: dict[str, Tensor] = {}
    origin: dict[str, str] = {}
    for key, value in state_dict.items():
        new = rename(key)
        if new is None:
            continue
        if new in out:
            raise InputError(f"checkpoint has two tensors for {new!r}: {origin[new]!r} and {key!r}")
        out[new] = value
        origin[new] = key
    return out, origin


def convert_state_dict(
    state_dict: Mapping[str, Tensor], layout: str | None = None, *, keep_index_buffers: bool = False
) -> dict[str, Tensor]:
    """Rename a torchvision / official / native state dict to native key names.

    ``layout`` None detects it (:func:`detect_layout`). Keys that belong to no known part keep
    their name, so a strict ``load_state_dict`` reports them as unexpected. The external layouts'
    ``relative_position_index`` buffers are dropped (ours are derived from the window size)
    unless ``keep_index_buffers``; :func:`load_video_swin` keeps them to check them.
    """
    layout = detect_layout(state_dict) if layout is None else layout
    state = _convert(state_dict, layout)[0]
    if not keep_index_buffers:
        state = {k: v for k, v in state.items() if not k.endswith(_INDEX_SUFFIX)}
    return state


def external_key(key: str, layout: str) -> str:
    """The name that native key ``key`` has in ``layout`` (inverse of :func:`convert_state_dict`)."""
    if layout not in LAYOUTS:
        raise SettingError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if layout == "native":
        return key
    if m := _NATIVE_BLOCK.match(key):
        stage, block, rest = int(m.group(1)), m.group(2), m.group(3)
        if layout == "official":
            return f"backbone.layers.{stage}.blocks.{block}.{rest}"
        for new, old in _TV_MLP.items():
            if rest.startswith(old):
                rest = new + rest[len(old) :]
        return f"features.{2 * stage}.{block}.{rest}"
    if m := _NATIVE_MERGE.match(key):
        stage, rest = int(m.group(1)), m.group(2)
        if layout == "official":
            return f"backbone.layers.{stage}.downsample.{rest}"
        return f"features.{2 * stage + 1}.{rest}"
    if layout == "official":
        return "cls_head.fc_cls." + key[len("head.") :] if key.startswith("head.") else "backbone." + key
    return key


def export_state_dict(model: VideoSwin, layout: str = "torchvision") -> dict[str, Tensor]:
    """The model's weights under the key names of ``layout`` (one of :data:`LAYOUTS`).

    External layouts include the ``relative_position_index`` buffers their models register, so
    the result loads strictly into torchvision's ``swin3d_*`` (and into the official backbone).
    """
    if layout not in LAYOUTS:
        raise SettingError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if layout == "native":
        return state
    for i, stage in enumerate(model.stages):
        for j, block in enumerate(stage.blocks):
            key = f"stages.{i}.blocks.{j}.attn.relative_position_index"
            state[key] = block.attn.relative_position_index.clone()
    return {external_key(k, layout): v for k, v in state.items()}


# --------------------------------------------------------------------------------------------
# architecture inference
# --------------------------------------------------------------------------------------------


def _arch_name(arch: str) -> str:
    key = str(arch).lower()
    if key not in _ARCH_ALIASES:
        raise SettingError(f"arch must be one of 't', 's', 'b' (or tiny/small/base), got {arch!r}")
    return _ARCH_ALIASES[key]


def _describe(arch: str) -> str:
    cfg = ARCH_CONFIGS[arch]
    sizes = f"embed_dim={cfg['embed_dim']}, depths={cfg['depths']}, heads={cfg['num_heads']}"
    return f"Swin-{arch.upper()} ({sizes})"


def _stage_blocks(state: Mapping[str, Tensor], stage: int) -> set[int]:
    """Indices of the blocks of ``stage`` that have at least one tensor in ``state``."""
    found = set()
    for key in state:
        if (m := _NATIVE_BLOCK.match(key)) and int(m.group(1)) == stage:
            found.add(int(m.group(2)))
    return found


def _infer_window(table_rows: int) -> tuple[int, int, int] | None:
    """Window (Wt, 7, 7) whose bias table has ``table_rows`` rows, or None."""
    spatial = 13 * 13  # (2*7 - 1)^2: every released Video Swin uses 7x7 spatial windows
    if table_rows % spatial or (table_rows // spatial) % 2 == 0:
        return None
    return ((table_rows // spatial + 1) // 2, 7, 7)


def infer_config(
    state_dict: Mapping[str, Tensor],
    arch: str | None = None,
    num_classes: int | None = None,
    window_size: tuple[int, int, int] | None = None,
) -> tuple[str, VideoSwinConfig]:
    """The architecture (``"t"``, ``"s"`` or ``"b"``) and config a native state dict needs.

    ``arch`` None infers it from the patch-embedding width and the stage-3 depth; given, it is
    used as is (a mismatching checkpoint then fails the strict load with a key listing).
    ``num_classes`` None reads it from the head. ``window_size`` None reads the temporal window
    from the size of the relative position bias table (spatial 7x7 assumed). Patch size, input
    channels, ``patch_norm`` and ``qkv_bias`` come from the tensors.
    """
    proj = state_dict.get("patch_embed.proj.weight")
    if proj is None or proj.dim() != 5:
        raise InputError(
            "checkpoint has no 5-D 'patch_embed.proj.weight' (the Conv3d patch embedding), so it is "
            f"not a Video Swin checkpoint; first keys: {_listing(list(state_dict))}"
        )
    embed_dim = int(proj.shape[0])
    if arch is None:
        # the width separates B from T/S; stage 3's blocks separate T (6) from S (18). Pick the
        # candidate whose stage-3 block indices differ least from the checkpoint's, so that a
        # damaged checkpoint is still reported against the closest architecture.
        blocks = _stage_blocks(state_dict, 2)
        distance = {
            a: len(blocks ^ set(range(cfg["depths"][2])))
            for a, cfg in ARCH_CONFIGS.items()
            if cfg["embed_dim"] == embed_dim
        }
        best = sorted(distance, key=distance.get)
        if not best or (len(best) > 1 and distance[best[0]] == distance[best[1]]):
            known = "; ".join(_describe(a) for a in ARCH_CONFIGS)
            raise InputError(
                f"cannot infer the Video Swin architecture: the checkpoint has embed_dim={embed_dim} "
                f"and {len(blocks)} blocks in stage 3, which fits none of {known} better than the "
                f"others. Pass arch='t', 's' or 'b' to see which keys differ, or config= for another size."
            )
        arch = best[0]
    else:
        arch = _arch_name(arch)

    head = state_dict.get("head.weight")
    if num_classes is None:
        if head is None or head.dim() != 2:
            raise InputError(
                "checkpoint has no classification head ('head.weight' / torchvision 'head.weight' / "
                "official 'cls_head.fc_cls.weight'); pass num_classes= to have the missing keys listed"
            )
        num_classes = int(head.shape[0])
    elif head is not None and head.dim() == 2 and int(head.shape[0]) != num_classes:
        raise SettingError(
            f"num_classes={num_classes} but the checkpoint's head has {int(head.shape[0])} classes"
        )

    if window_size is None:
        table = state_dict.get("stages.0.blocks.0.attn.relative_position_bias_table")
        window_size = (8, 7, 7)
        if table is not None:
            inferred = _infer_window(int(table.shape[0]))
            if inferred is None:
                raise InputError(
                    f"cannot infer the window size from a relative position bias table with "
                    f"{int(table.shape[0])} rows (expected (2*Wt-1)*13*13 for a (Wt, 7, 7) window); "
                    f"pass window_size=(Wt, Wh, Ww)"
                )
            window_size = inferred

    config = VideoSwinConfig(
        **ARCH_CONFIGS[arch],
        num_classes=num_classes,
        patch_size=tuple(int(s) for s in proj.shape[2:]),
        window_size=window_size,
        in_channels=int(proj.shape[1]),
        patch_norm="patch_embed.norm.weight" in state_dict,
        qkv_bias="stages.0.blocks.0.attn.qkv.bias" in state_dict,
    )
    return arch, config


# --------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------


def _listing(keys: list[str], limit: int = _MAX_LISTED) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return f"[{shown}{', ...' if len(keys) > limit else ''}] ({len(keys)} in all)"


def _check_index_buffers(
    state: dict[str, Tensor], origin: Mapping[str, str], model: VideoSwin, expected: str
) -> dict[str, Tensor]:
    """Drop ``relative_position_index`` buffers after checking they are the ones we derive."""
    ours = relative_position_index(model.config.window_size)
    blocks = {name for name, _ in model.named_buffers() if name.endswith(_INDEX_SUFFIX)}
    out = {}
    for key, value in state.items():
        if not key.endswith(_INDEX_SUFFIX) or key not in blocks:
            out[key] = value  # index buffers of blocks we do not have are reported as unexpected
        elif tuple(value.shape) != tuple(ours.shape) or not torch.equal(value.to("cpu", ours.dtype), ours):
            raise InputError(
                f"{origin.get(key, key)} in the checkpoint was built for another window size than "
                f"{expected} uses (window {model.config.window_size}); pass the checkpoint's window "
                f"size (window_size= or config=)"
            )
    return out


def load_video_swin(
    path_or_state_dict: str | os.PathLike | Mapping,
    arch: str | None = None,
    num_classes: int | None = None,
    *,
    window_size: tuple[int, int, int] | None = None,
    config: VideoSwinConfig | None = None,
    dtype: torch.dtype = torch.float32,
) -> VideoSwin:
    """Build a :class:`VideoSwin` and load a torchvision or official Video Swin checkpoint into it.

    ``path_or_state_dict``: a ``.pth``/``.pt`` file (read with ``weights_only=True``), a
    ``.safetensors`` file, or a state dict (possibly wrapped in ``state_dict``/``model``).
    ``arch``: ``"t"``, ``"s"``, ``"b"`` or None to infer it. ``num_classes``: None to read it from
    the head. ``window_size``: None to infer it from the bias tables. ``config``: build exactly
    this architecture instead (e.g. a custom size); then ``arch`` and ``window_size`` must be None.
    ``dtype``: floating dtype of the returned model's parameters (checkpoint values are cast).
    The model lives on the CPU and owns its weights: contiguous, 64-byte aligned, not
    memory-mapped. Checkpoint tensors that already are such CPU tensors of that dtype are adopted
    without a copy (so they share memory with an in-memory state dict passed in); the others
    (memory-mapped, e.g. from safetensors' ``load_file``; unaligned; strided; another dtype or
    device) are copied. Telling memory-mapped tensors apart needs Linux's ``/proc/self/maps``;
    elsewhere every tensor of an in-memory state dict is copied.
    Returns the model in eval mode. Raises InputError (a ValueError) naming the expected
    architecture and listing missing / unexpected / mis-shaped keys when the checkpoint does not
    fit exactly.
    """
    raw = read_checkpoint(path_or_state_dict)
    layout = detect_layout(raw)
    state, origin = _convert(raw, layout)
    del raw  # a file's tensors are then referenced by `state` alone and freed as they are replaced
    if config is not None:
        if arch is not None or window_size is not None:
            raise SettingError("pass either config= or arch=/window_size=, not both")
        if num_classes is not None and num_classes != config.num_classes:
            raise SettingError(
                f"num_classes={num_classes} contradicts config.num_classes={config.num_classes}"
            )
        sizes = f"embed_dim={config.embed_dim}, depths={config.depths}, heads={config.num_heads}"
        expected = f"Swin ({sizes}), {config.num_classes} classes"
    else:
        arch, config = infer_config(state, arch=arch, num_classes=num_classes, window_size=window_size)
        expected = f"{_describe(arch)}, {config.num_classes} classes"
    if not dtype.is_floating_point:
        raise SettingTypeError(f"dtype must be a floating point torch.dtype, got {dtype}")
    # Build on meta (no random init: it costs seconds for Swin-B and every value is replaced) and
    # adopt the checkpoint's tensors below where that is safe instead of copying them (half the
    # peak memory); see owned().
    with torch.device("meta"):
        model = VideoSwin(config)
    state = _check_index_buffers(state, origin, model, expected)

    own = model.state_dict()
    missing = [external_key(k, layout) for k in own if k not in state]
    unexpected = [origin.get(k, k) for k in state if k not in own]
    wrong = [
        f"{origin.get(k, k)}: checkpoint {tuple(state[k].shape)} vs expected {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing keys {_listing(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_listing(unexpected)}")
        if wrong:
            parts.append(f"wrong shapes {_listing(wrong, limit=4)}")
        raise InputError(
            f"{layout} checkpoint does not fit Video {expected}, window {config.window_size}, "
            f"patch {config.patch_size}: " + "; ".join(parts)
        )
    # Never adopt memory the model does not own in a layout that changes results or speed: a
    # memory map (safetensors' load_file gives tensors at 4-byte aligned file offsets, on which the
    # fp32 kernels take other paths, and a re-saved file would change the weights), unaligned or
    # strided tensors. Replacing entries in place frees a file's tensor as soon as it is copied.
    mapped = file_mapped_ranges()
    if mapped is None and isinstance(path_or_state_dict, (str, os.PathLike)):
        mapped = []  # no /proc/self/maps, but read_checkpoint read the file into memory of its own
    for key, value in state.items():
        state[key] = owned(value, dtype if value.is_floating_point() else value.dtype, mapped)
    model.load_state_dict(state, strict=True, assign=True)
    model.reset_buffers()  # the derived index buffers are still on meta
    return model.eval()
