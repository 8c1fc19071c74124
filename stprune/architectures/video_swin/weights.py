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

import bisect
import json
import os
import pickle
import re
import sys
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from stprune.architectures.video_swin.model import (
    ARCH_CONFIGS,
    VideoSwin,
    VideoSwinConfig,
    relative_position_index,
)
from stprune.errors import InputError, MissingFileError, SettingError, SettingTypeError

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

# Bytes: what torch's CPU allocator gives every tensor, and the most any CPU kernel asks for.
_ALIGNMENT = 64

# safetensors dtype names (https://github.com/huggingface/safetensors, "Format"); getattr: some
# exist only in newer torch releases.
_SAFETENSORS_DTYPES = {
    name: dtype
    for name, dtype in (
        ("BOOL", torch.bool),
        ("U8", torch.uint8),
        ("I8", torch.int8),
        ("I16", torch.int16),
        ("U16", getattr(torch, "uint16", None)),
        ("I32", torch.int32),
        ("U32", getattr(torch, "uint32", None)),
        ("I64", torch.int64),
        ("U64", getattr(torch, "uint64", None)),
        ("F16", torch.float16),
        ("BF16", torch.bfloat16),
        ("F32", torch.float32),
        ("F64", torch.float64),
        ("F8_E4M3", getattr(torch, "float8_e4m3fn", None)),
        ("F8_E5M2", getattr(torch, "float8_e5m2", None)),
        ("C64", torch.complex64),
    )
    if dtype is not None
}


def _aligned_empty(shape: tuple[int, ...] | torch.Size, dtype: torch.dtype) -> Tensor:
    """A fresh contiguous CPU tensor whose data starts at a multiple of :data:`_ALIGNMENT` bytes."""
    out = torch.empty(shape, dtype=dtype)
    if out.data_ptr() % _ALIGNMENT == 0:
        return out
    # torch's CPU allocator aligns to 64 bytes on every desktop/server build; stay correct anyway
    item = out.element_size()
    spare = torch.empty(out.numel() + _ALIGNMENT // item, dtype=dtype)
    skip = (-spare.data_ptr() % _ALIGNMENT) // item
    return spare[skip : skip + out.numel()].view(out.shape)


def _file_mapped_ranges() -> list[tuple[int, int]] | None:
    """Sorted address ranges of this process that map a file, from ``/proc/self/maps``.

    None where that cannot be read (not Linux): then no memory counts as safe to adopt.
    """
    try:
        with open("/proc/self/maps") as f:
            lines = f.readlines()
    except OSError:
        return None
    ranges = []
    for line in lines:
        fields = line.split(maxsplit=5)
        if len(fields) >= 5 and fields[4] != "0":  # inode 0: anonymous memory (heap, malloc's mmap)
            lo, hi = fields[0].split("-")
            ranges.append((int(lo, 16), int(hi, 16)))
    ranges.sort()
    return ranges


def _in_ranges(address: int, ranges: list[tuple[int, int]]) -> bool:
    i = bisect.bisect_right(ranges, (address, float("inf"))) - 1
    return i >= 0 and ranges[i][0] <= address < ranges[i][1]


def _owned(tensor: Tensor, dtype: torch.dtype, mapped: list[tuple[int, int]] | None) -> Tensor:
    """``tensor`` as a contiguous, 64-byte aligned CPU tensor of ``dtype`` in anonymous memory.

    Returned as is when it already is one (no copy: the memory win of adopting a checkpoint's
    tensors); copied when it is on another device or dtype, strided, unaligned, or inside a file
    mapping (``mapped``, see :func:`_file_mapped_ranges`; None: every tensor is copied).
    """
    if (
        mapped is not None
        and tensor.device.type == "cpu"
        and tensor.dtype == dtype
        and tensor.is_contiguous()
        and tensor.data_ptr() % _ALIGNMENT == 0
        and not (tensor.numel() and _in_ranges(tensor.data_ptr(), mapped))
    ):
        return tensor
    out = _aligned_empty(tensor.shape, dtype)
    out.copy_(tensor.detach())
    return out


def own_memory(module: nn.Module) -> int:
    """Give every parameter and buffer of ``module`` memory of its own, in place.

    Loaders such as ``transformers``' ``from_pretrained`` (safetensors >= 0.8) leave weights inside
    a memory-mapped file at 4-byte aligned addresses: the model then depends on the file and the
    fp32 kernels may take slower, differently rounding paths. Every tensor that is not contiguous,
    64-byte aligned anonymous CPU memory is copied (see :func:`_owned`); the others stay as they
    are. Returns how many tensors were copied.
    """
    mapped = _file_mapped_ranges()
    copied = 0
    new: dict[int, Tensor] = {}  # id of a tensor -> its replacement: tied weights stay tied
    with torch.no_grad():
        for sub in module.modules():
            for store in (sub._parameters, sub._buffers):
                for name, value in store.items():
                    if value is None or value.device.type != "cpu":
                        continue
                    if id(value) in new:
                        store[name] = new[id(value)]
                        continue
                    owned = _owned(value.data, value.dtype, mapped)
                    if owned is value.data:
                        continue
                    if isinstance(value, nn.Parameter):
                        owned = nn.Parameter(owned, requires_grad=value.requires_grad)
                    store[name] = new[id(value)] = owned
                    copied += 1
    return copied


def _read_safetensors(path: Path) -> dict[str, Tensor]:
    """Every tensor of a ``.safetensors`` file, each read into a fresh aligned CPU tensor.

    The format (8-byte little-endian header size, a JSON header of dtype / shape / byte offsets,
    then the bytes) is read directly with ``readinto``, so no memory map is involved and the
    peak memory is one copy of the weights. Raises InputError naming the file if it is damaged.
    """
    if sys.byteorder != "little":  # the format is little-endian: let the library convert, then copy
        from safetensors.torch import load_file

        return {k: _owned(v, v.dtype, None) for k, v in load_file(str(path), device="cpu").items()}
    size = path.stat().st_size
    out: dict[str, Tensor] = {}
    with open(path, "rb") as f:
        head = f.read(8)
        length = int.from_bytes(head, "little") if len(head) == 8 else -1
        if not 0 < length <= size - 8:
            raise InputError(
                f"{path} is not a safetensors file: its header size field says {length} bytes, the "
                f"file has {size}"
            )
        try:
            header = json.loads(f.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise InputError(f"{path} is not a safetensors file: its header is not JSON ({err})") from err
        if not isinstance(header, dict):
            raise InputError(f"{path} is not a safetensors file: its header is not a JSON object")
        base = 8 + length
        entries = []
        for name, info in header.items():
            if name == "__metadata__":
                continue
            try:
                dtype_name, (start, end) = info["dtype"], (int(x) for x in info["data_offsets"])
                shape = [int(d) for d in info["shape"]]
            except (TypeError, KeyError, ValueError) as err:
                raise InputError(f"{path}: bad header entry for tensor {name!r}: {info!r}") from err
            if any(d < 0 for d in shape):
                raise InputError(f"{path}: tensor {name!r} has a negative size in its shape {shape}")
            if dtype_name not in _SAFETENSORS_DTYPES:
                raise InputError(
                    f"{path}: tensor {name!r} has dtype {dtype_name!r}; this torch reads "
                    f"{', '.join(_SAFETENSORS_DTYPES)}"
                )
            entries.append((start, end, name, dtype_name, shape))
        for start, end, name, dtype_name, shape in sorted(entries):
            tensor = _aligned_empty(tuple(shape), _SAFETENSORS_DTYPES[dtype_name])
            nbytes = tensor.numel() * tensor.element_size()
            if start < 0 or end - start != nbytes or base + end > size:
                raise InputError(
                    f"{path}: tensor {name!r} ({dtype_name} {shape}, {nbytes} bytes) has byte "
                    f"offsets [{start}, {end}] that do not fit it or the file ({size - base} data "
                    f"bytes; the file ends early if it was cut short)"
                )
            if nbytes:
                f.seek(base + start)
                got = f.readinto(memoryview(tensor.reshape(-1).view(torch.uint8).numpy()))
                if got != nbytes:
                    raise InputError(f"{path} ends early: tensor {name!r} got {got} of {nbytes} bytes")
            out[name] = tensor
    return out


def read_checkpoint(source: str | os.PathLike | Mapping) -> dict[str, Tensor]:
    """A flat ``{name: tensor}`` dict from a file or an in-memory (possibly wrapped) state dict.

    Files: ``.safetensors`` read into fresh 64-byte aligned tensors (not memory-mapped); anything
    else via ``torch.load(path, map_location="cpu", weights_only=True, mmap=False)`` (no arbitrary
    unpickling).
    Wrappers such as ``{"state_dict": ...}`` (mmcv) or ``{"model": ...}`` are unwrapped and a
    ``module.`` prefix (DistributedDataParallel) is stripped.
    """
    if isinstance(source, Mapping):
        obj: object = source
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise MissingFileError(f"Video Swin checkpoint not found: {path}")
        if path.suffix == ".safetensors":
            obj = _read_safetensors(path)
        else:
            try:
                # mmap=False whatever torch's configured default: the tensors are then our own memory
                obj = torch.load(path, map_location="cpu", weights_only=True, mmap=False)
            except pickle.UnpicklingError as err:
                raise InputError(
                    f"{path} holds Python objects that torch.load(weights_only=True) refuses to "
                    f"unpickle (stprune never loads arbitrary pickles). Re-save only the state "
                    f"dict, e.g. torch.save(ckpt['state_dict'], 'clean.pth'), or convert it to "
                    f".safetensors. Original error: {err}"
                ) from err
    else:
        raise SettingTypeError(
            f"expected a checkpoint path or a state dict mapping, got {type(source).__name__}"
        )

    for _ in range(3):
        if not isinstance(obj, Mapping):
            break
        if obj and all(isinstance(v, Tensor) for v in obj.values()):
            break
        inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping) or not obj:
        raise InputError(f"checkpoint holds no state dict (got {type(obj).__name__})")
    not_tensors = [k for k, v in obj.items() if not isinstance(v, Tensor)]
    if not_tensors:
        raise InputError(
            f"checkpoint is not a flat state dict of tensors: entries {_listing(not_tensors)} are not "
            f"tensors (known wrapper keys: {', '.join(_WRAPPER_KEYS)})"
        )
    state = {str(k): v for k, v in obj.items()}
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
    # peak memory); see _owned.
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
    mapped = _file_mapped_ranges()
    if mapped is None and isinstance(path_or_state_dict, (str, os.PathLike)):
        mapped = []  # no /proc/self/maps, but read_checkpoint read the file into memory of its own
    for key, value in state.items():
        state[key] = _owned(value, dtype if value.is_floating_point() else value.dtype, mapped)
    model.load_state_dict(state, strict=True, assign=True)
    model.reset_buffers()  # the derived index buffers are still on meta
    return model.eval()
