"""The one checkpoint reader: files and state dicts into memory stprune owns.

Every checkpoint stprune reads (VideoMAE model-zoo ``.pth``, Video Swin in torchvision or official
layout, ``.safetensors``) goes through :func:`read_checkpoint`: ``.safetensors`` read directly
into fresh 64-byte aligned tensors (no memory map), anything else via
``torch.load(weights_only=True, mmap=False)`` (no arbitrary unpickling; the only extra type
allowed is ``argparse.Namespace``, the training arguments zoo checkpoints carry). Wrappers such as
``{"model": ...}``, ``{"module": ...}``, ``{"state_dict": ...}`` are unwrapped; key prefixes are
the family loaders' business.

Memory: a model must not keep weights that live in a file mapping or at unaligned addresses
(safetensors >= 0.8 memory-maps at 4-byte offsets): other fp32 kernel paths, other results, and
a model that changes when the file is re-saved in place. :func:`owned` copies such tensors and
adopts the rest without a copy; :func:`own_memory` does it for a whole module (used after
``transformers``' ``from_pretrained``).
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import pickle
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from stprune.errors import InputError, MissingFileError

__all__ = [
    "WRAPPER_KEYS",
    "file_mapped_ranges",
    "own_memory",
    "owned",
    "read_checkpoint",
    "read_safetensors",
    "unwrap_state_dict",
]

#: keys under which training code nests the state dict, tried in this order
WRAPPER_KEYS = ("state_dict", "model", "module", "model_state", "model_state_dict")

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


def file_mapped_ranges() -> list[tuple[int, int]] | None:
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


def owned(tensor: Tensor, dtype: torch.dtype, mapped: list[tuple[int, int]] | None) -> Tensor:
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
    64-byte aligned anonymous CPU memory is copied (see :func:`owned`); the others stay as they
    are. Returns how many tensors were copied.
    """
    mapped = file_mapped_ranges()
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
                    data = value.data  # a new alias object on every access: keep this one
                    copy = owned(data, value.dtype, mapped)
                    if copy is data:  # already contiguous, aligned, anonymous memory: kept
                        continue
                    if isinstance(value, nn.Parameter):
                        copy = nn.Parameter(copy, requires_grad=value.requires_grad)
                    store[name] = new[id(value)] = copy
                    copied += 1
    return copied


def read_safetensors(path: Path) -> dict[str, Tensor]:
    """Every tensor of a ``.safetensors`` file, each read into a fresh aligned CPU tensor.

    The format (8-byte little-endian header size, a JSON header of dtype / shape / byte offsets,
    then the bytes) is read directly with ``readinto``, so no memory map is involved and the
    peak memory is one copy of the weights. Raises InputError naming the file if it is damaged.
    """
    if sys.byteorder != "little":  # the format is little-endian: let the library convert, then copy
        from safetensors.torch import load_file

        return {k: owned(v, v.dtype, None) for k, v in load_file(str(path), device="cpu").items()}
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


def _load_failure(err: BaseException) -> str:
    """What ``torch.load`` found wrong, in a few words, without its advice.

    torch's messages suggest retrying with ``weights_only=False`` (unpickling arbitrary code, never
    right for a file that does not even parse) or filing an issue; only the reason is kept:
    ``WeightsUnpickler error: Unsupported operand 0`` -> ``Unsupported operand 0``, a zip reader's
    first sentence, or ``KeyError: 101``.
    """
    text = str(err)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    marker = next((i for i, line in enumerate(lines) if line.endswith("WeightsUnpickler error:")), None)
    if marker is not None and marker + 1 < len(lines):
        return lines[marker + 1]
    if "weights_only" in text:  # torch's generic advice only: no reason worth repeating
        return f"{type(err).__name__}: torch.load could not parse it"
    first = lines[0] if lines else ""
    first = first.split(". ")[0].rstrip(".")  # the reason, not the advice that follows it
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The flat state dict of a checkpoint file, and the training arguments saved with it.

    Returns:
        (``{name: tensor}`` with wrappers removed, saved ``args`` as a dict (empty if none)).

    Raises:
        MissingFileError: no such file. InputError: unreadable, refused by ``weights_only``, or
        not a state dict of tensors (the message names the file).
    """
    p = Path(path)
    if not p.is_file():
        raise MissingFileError(f"checkpoint {str(p)!r} does not exist")
    if p.suffix == ".safetensors":
        return read_safetensors(p), {}
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            # mmap=False whatever torch's configured default: the tensors are then our own memory
            obj = torch.load(p, map_location="cpu", weights_only=True, mmap=False)
    except pickle.UnpicklingError as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()] or [type(err).__name__]
        reason = next((line for line in lines if "Unsupported global" in line), None)
        if reason is None:
            raise InputError(
                f"{str(p)!r} is corrupt or not a PyTorch checkpoint ({_load_failure(err)})"
            ) from err
        raise InputError(
            f"{str(p)!r} holds Python objects that torch.load(weights_only=True) refuses to unpickle "
            f"({reason}); stprune never loads arbitrary pickles: re-save only the state dict, e.g. "
            "torch.save(ckpt['model'], 'clean.pth'), or convert it to .safetensors"
        ) from err
    except Exception as err:  # noqa: BLE001 - a damaged file raises anything (KeyError, RuntimeError...)
        raise InputError(f"{str(p)!r} is corrupt or not a PyTorch checkpoint ({_load_failure(err)})") from err
    args: dict[str, Any] = {}
    if isinstance(obj, Mapping):
        saved = obj.get("args")
        if isinstance(saved, argparse.Namespace):
            args = vars(saved)
        elif isinstance(saved, Mapping):
            args = dict(saved)
    return unwrap_state_dict(obj, str(p)), args


def unwrap_state_dict(obj: object, name: str = "checkpoint") -> dict[str, Tensor]:
    """The flat ``{name: tensor}`` dict inside ``obj`` (up to three wrapper levels, see WRAPPER_KEYS)."""
    for _ in range(3):
        if not isinstance(obj, Mapping) or (obj and all(isinstance(v, Tensor) for v in obj.values())):
            break
        inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping) or not obj:
        raise InputError(f"{name} holds no state dict (got {type(obj).__name__})")
    not_tensors = [str(k) for k, v in obj.items() if not isinstance(v, Tensor)]
    if not_tensors:
        more = f" (+{len(not_tensors) - 5} more)" if len(not_tensors) > 5 else ""
        listed = ", ".join(not_tensors[:5]) + more
        raise InputError(
            f"{name} is not a flat state dict of tensors: entries {listed} are not tensors (known "
            f"wrapper keys: {', '.join(WRAPPER_KEYS)})"
        )
    return {str(k): v for k, v in obj.items()}
