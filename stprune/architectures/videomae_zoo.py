"""VideoMAE model-zoo checkpoints (``.pth`` from MCG-NJU/VideoMAE and OpenGVLab/VideoMAEv2) -> HF
VideoMAEForVideoClassification.

Both zoos' fine-tuned models are timm-style ViTs (``modeling_finetune.VisionTransformer``, the same
key layout; VideoMAE V2 adds ViT-g/14: width 1408, 40 blocks, 16 heads, MLP 6144, patch 14, and
distilled ViT-S/16 and ViT-B/16):

=====================================  ===============================================================
zoo key                                HF ``VideoMAEForVideoClassification`` key
=====================================  ===============================================================
patch_embed.proj.{weight,bias}         videomae.embeddings.patch_embeddings.projection.{weight,bias}
blocks.N.norm1.{weight,bias}           videomae.encoder.layer.N.layernorm_before.{weight,bias}
blocks.N.attn.qkv.weight (3D, D)       ...layer.N.attention.attention.{query,key,value}.weight (split)
blocks.N.attn.q_bias / v_bias          ...layer.N.attention.attention.query.bias / value.bias
blocks.N.attn.proj.{weight,bias}       ...layer.N.attention.output.dense.{weight,bias}
blocks.N.norm2.{weight,bias}           videomae.encoder.layer.N.layernorm_after.{weight,bias}
blocks.N.mlp.fc1.{weight,bias}         videomae.encoder.layer.N.intermediate.dense.{weight,bias}
blocks.N.mlp.fc2.{weight,bias}         videomae.encoder.layer.N.output.dense.{weight,bias}
fc_norm.{weight,bias}                  fc_norm.{weight,bias}          (mean pooling)
norm.{weight,bias}                     videomae.layernorm.{weight,bias} (CLS-free first-token head)
head.{weight,bias}                     classifier.{weight,bias}
=====================================  ===============================================================

The key projection has no bias in either (the zoo concatenates zeros between q_bias and v_bias).
The position embedding is the fixed sinusoid table in both and is not stored. The config is
inferred from tensor shapes (width, depth, MLP size, patch and tubelet from ``patch_embed.proj``,
classes from ``head``, mean pooling from ``fc_norm``); the head count is not in the weights, so
it comes from the standard table (width 384/768/1024/1280/1408 -> 6/12/16/16/16 heads) unless
given. Frames and image size come from the checkpoint's saved ``args`` (``num_frames``,
``input_size``) when present, else 16 and 224 (every released fine-tuned model), unless given.

Layer scale (``blocks.N.gamma_1`` / ``gamma_2``, the zoo code's ``init_values > 0``; the released
fine-tuned models have none) is folded into the linear layer before it, which HF VideoMAE can hold:
``x + gamma * (y @ W.T + b) == x + y @ (gamma[:, None] * W).T + gamma * b``
(:func:`fold_layer_scale`). Cosine attention (``cos_attn``, a learned ``attn.scale``) and a learned
position embedding have no HF VideoMAE equivalent and are refused. A missing key is reported by
name (:func:`missing_zoo_keys`).

Loading is safe: ``torch.load(weights_only=True)``; the only extra type allowed is
``argparse.Namespace`` (the zoo saves its command-line ``args`` next to the weights).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from stprune.architectures.checkpoints import read_checkpoint
from stprune.errors import InputError, UnsupportedModelError

if TYPE_CHECKING:
    from transformers import VideoMAEConfig, VideoMAEForVideoClassification

__all__ = [
    "HEADS_BY_WIDTH",
    "ZOO_LAYER_NORM_EPS",
    "load_zoo_checkpoint",
    "strip_zoo_prefixes",
    "is_zoo_state_dict",
    "zoo_config",
    "convert_zoo_state_dict",
    "fold_layer_scale",
    "missing_zoo_keys",
    "videomae_from_zoo_state_dict",
    "load_videomae_zoo",
]

HEADS_BY_WIDTH: dict[int, int] = {384: 6, 768: 12, 1024: 16, 1280: 16, 1408: 16}  # S, B, L, H, g (V2)
ZOO_LAYER_NORM_EPS = 1e-6  # partial(nn.LayerNorm, eps=1e-6) in every zoo ViT
_WRAPPER_KEYS = ("model", "module", "state_dict", "model_state")
_PREFIXES = ("module.", "model.", "backbone.", "encoder.", "_orig_mod.")  # _orig_mod.: torch.compile
_BLOCK_RE = re.compile(r"^blocks\.(\d+)\.(.+)$")


def load_zoo_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Safely load a ``.pth`` checkpoint; returns (unwrapped state dict, saved args as a dict).

    Unwraps ``{"model": ...}`` / ``{"module": ...}`` and strips ``module.`` style prefixes.

    Raises:
        MissingFileError: no such file. InputError: not loadable with ``weights_only=True``, or
        not a state dict of tensors.
    """
    sd, args = read_checkpoint(path)
    return strip_zoo_prefixes(sd), args


def strip_zoo_prefixes(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``sd`` without the ``module.`` / ``model.`` / ``backbone.`` / ``encoder.`` / ``_orig_mod.``
    prefixes training code puts in front of every key (each removed when every key has it)."""
    sd = dict(sd)
    for prefix in _PREFIXES:
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix) :]: v for k, v in sd.items()}
    return sd


def is_zoo_state_dict(sd: Mapping[str, Any]) -> bool:
    """True when ``sd`` has the VideoMAE zoo ViT layout (patch_embed.proj + blocks.N.attn.qkv)."""
    return "patch_embed.proj.weight" in sd and "blocks.0.attn.qkv.weight" in sd


def _depth(sd: Mapping[str, Any]) -> int:
    ids = {int(m.group(1)) for k in sd if (m := _BLOCK_RE.match(k))}
    if not ids or ids != set(range(max(ids) + 1)):
        raise InputError(f"checkpoint blocks are not numbered 0..N-1 (found {sorted(ids)})")
    return max(ids) + 1


_BLOCK_KEYS = (
    "norm1.weight",
    "norm1.bias",
    "attn.qkv.weight",
    "attn.proj.weight",
    "attn.proj.bias",
    "norm2.weight",
    "norm2.bias",
    "mlp.fc1.weight",
    "mlp.fc1.bias",
    "mlp.fc2.weight",
    "mlp.fc2.bias",
)
# parts a checkpoint may or may not have; if one block has it, every block must
_OPTIONAL_BLOCK_KEYS = ("attn.q_bias", "attn.v_bias", "gamma_1", "gamma_2")


def missing_zoo_keys(sd: Mapping[str, Any]) -> list[str]:
    """The keys a zoo ViT state dict ``sd`` should have and lacks, sorted (``[]``: complete).

    What it should have follows from ``sd`` itself: blocks ``0..N-1`` up to its highest block
    index, each with the norms, ``attn.qkv`` / ``attn.proj`` and ``mlp.fc1`` / ``fc2``; ``q_bias``
    / ``v_bias`` and layer scale ``gamma_1`` / ``gamma_2`` in every block if any block has them;
    ``patch_embed.proj``, ``head`` and the ``weight`` and ``bias`` of the final norm it uses
    (``fc_norm`` or ``norm``).
    """
    ids = {int(m.group(1)) for k in sd if (m := _BLOCK_RE.match(k))}
    depth = max(ids) + 1 if ids else 0
    block_keys = list(_BLOCK_KEYS) + [
        k for k in _OPTIONAL_BLOCK_KEYS if any(f"blocks.{i}.{k}" in sd for i in range(depth))
    ]
    need = [f"blocks.{i}.{k}" for i in range(depth) for k in block_keys]
    need += ["patch_embed.proj.weight", "patch_embed.proj.bias", "head.weight", "head.bias"]
    for norm in ("fc_norm", "norm"):
        if f"{norm}.weight" in sd or f"{norm}.bias" in sd:
            need += [f"{norm}.weight", f"{norm}.bias"]
            break
    return sorted(k for k in need if k not in sd)


def _require_complete(sd: Mapping[str, Any]) -> None:
    missing = missing_zoo_keys(sd)
    if missing:
        hint = " (no classifier: is it a pre-training checkpoint?)" if "head.weight" in missing else ""
        shown = ", ".join(missing[:12]) + (f", ... ({len(missing)} in all)" if len(missing) > 12 else "")
        raise InputError(f"VideoMAE zoo checkpoint lacks {len(missing)} key(s){hint}: {shown}")


def fold_layer_scale(
    sd: Mapping[str, torch.Tensor], dtype: torch.dtype | None = None
) -> dict[str, torch.Tensor]:
    """``sd`` with layer scale folded into the linear layers before it; no ``gamma_*`` key left.

    A block with ``gamma_1`` (D,) computes ``x + gamma_1 * attn.proj(y)``; that equals
    ``x + proj'(y)`` with ``proj'.weight = gamma_1[:, None] * weight`` (D, D) and ``proj'.bias =
    gamma_1 * bias`` (D,). ``gamma_2`` folds into ``mlp.fc2`` (weight (D, mlp)) the same way. The
    products are computed in float64 and stored in ``dtype`` (default: the weight's own dtype), so
    each folded value is rounded once. Other tensors are passed through as they are; ``sd`` is not
    modified.
    """
    out = dict(sd)
    for key in list(out):
        m = _BLOCK_RE.match(key)
        if not m or m.group(2) not in ("gamma_1", "gamma_2"):
            continue
        layer = "attn.proj" if m.group(2) == "gamma_1" else "mlp.fc2"
        gamma = out.pop(key).double()
        for param in ("weight", "bias"):
            name = f"blocks.{m.group(1)}.{layer}.{param}"
            if name not in out:
                raise InputError(f"checkpoint has {key!r} but not {name!r}, which it scales")
            value = out[name]
            scale = gamma[:, None] if param == "weight" else gamma
            if value.shape[0] != gamma.shape[0]:
                raise InputError(f"{key!r} has shape {tuple(gamma.shape)}; {name!r} {tuple(value.shape)}")
            out[name] = (scale * value.double()).to(dtype or value.dtype)
    return out


def zoo_config(
    sd: Mapping[str, torch.Tensor],
    num_heads: int | None = None,
    num_frames: int | None = None,
    image_size: int | None = None,
    saved_args: Mapping[str, Any] | None = None,
) -> VideoMAEConfig:
    """A ``VideoMAEConfig`` that fits the zoo state dict ``sd`` (shapes -> sizes, see module doc)."""
    from transformers import VideoMAEConfig

    if not is_zoo_state_dict(sd):
        raise InputError(
            "not a VideoMAE zoo state dict: needs patch_embed.proj.weight and blocks.0.attn.qkv.weight"
        )
    for key in sd:
        if key.endswith(("gamma_1", "gamma_2")):
            raise UnsupportedModelError(
                f"checkpoint key {key!r}: layer scale (init_values > 0) has no equivalent in HF VideoMAE; "
                "fold it first (fold_layer_scale, as videomae_from_zoo_state_dict does)"
            )
        if key.endswith("attn.scale"):
            raise UnsupportedModelError(
                f"checkpoint key {key!r}: cosine attention (cos_attn=True) has no equivalent in HF VideoMAE"
            )
    _require_complete(sd)
    mean_pooling = "fc_norm.weight" in sd
    if not mean_pooling and "norm.weight" not in sd:
        raise InputError("checkpoint has neither fc_norm (mean pooling) nor norm (first-token head)")
    saved_args = dict(saved_args or {})
    proj = sd["patch_embed.proj.weight"]
    if proj.ndim != 5:
        raise InputError(f"patch_embed.proj.weight has shape {tuple(proj.shape)}; expected (D, C, t, p, p)")
    width, channels, tubelet, ph, pw = proj.shape
    if ph != pw:
        raise UnsupportedModelError(f"non-square patches {ph}x{pw} are not supported")
    qkv = sd["blocks.0.attn.qkv.weight"]
    if tuple(qkv.shape) != (3 * width, width):
        raise UnsupportedModelError(
            f"blocks.0.attn.qkv.weight has shape {tuple(qkv.shape)}; HF VideoMAE needs (3*{width}, {width})"
        )
    if num_heads is None:
        if width not in HEADS_BY_WIDTH:
            raise InputError(
                f"width {width} is not in the standard table {HEADS_BY_WIDTH}; "
                "pass the head count (--num-heads)"
            )
        num_heads = HEADS_BY_WIDTH[width]
    if num_heads < 1 or width % num_heads:
        raise InputError(f"num_heads={num_heads} must be >= 1 and divide the width {width}")
    if num_frames is None:
        num_frames = int(saved_args.get("num_frames", 16))
    if image_size is None:
        image_size = int(saved_args.get("input_size", 224))
    if num_frames % tubelet or image_size % ph:
        raise InputError(
            f"num_frames={num_frames} must be a multiple of the tubelet {tubelet} and "
            f"image_size={image_size} a multiple of the patch {ph}"
        )
    return VideoMAEConfig(
        image_size=image_size,
        patch_size=int(ph),
        num_channels=int(channels),
        num_frames=num_frames,
        tubelet_size=int(tubelet),
        hidden_size=int(width),
        num_hidden_layers=_depth(sd),
        num_attention_heads=int(num_heads),
        intermediate_size=int(sd["blocks.0.mlp.fc1.weight"].shape[0]),
        hidden_act="gelu",
        layer_norm_eps=ZOO_LAYER_NORM_EPS,
        qv_bias="blocks.0.attn.q_bias" in sd,
        use_mean_pooling=mean_pooling,
        num_labels=int(sd["head.weight"].shape[0]),
    )


_BLOCK_MAP = {
    "norm1": "layernorm_before",
    "norm2": "layernorm_after",
    "attn.proj": "attention.output.dense",
    "mlp.fc1": "intermediate.dense",
    "mlp.fc2": "output.dense",
}
_TOP_MAP = {
    "patch_embed.proj": "videomae.embeddings.patch_embeddings.projection",
    "fc_norm": "fc_norm",
    "norm": "videomae.layernorm",
    "head": "classifier",
}


def _check_sinusoid(pos: torch.Tensor, width: int) -> None:
    from transformers.models.videomae.modeling_videomae import get_sinusoid_encoding_table

    table = get_sinusoid_encoding_table(pos.shape[-2], width)
    if pos.shape[-2:] != table.shape[-2:] or not torch.allclose(
        pos.float().reshape(table.shape), table, atol=1e-5
    ):
        raise UnsupportedModelError(
            "checkpoint has a learned pos_embed; HF VideoMAE only has the fixed sinusoid table"
        )


def convert_zoo_state_dict(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename (and split qkv of) a zoo state dict into HF VideoMAEForVideoClassification keys.

    Every input key must be understood: an unknown key raises InputError (nothing is dropped
    silently; layer scale must have been folded, :func:`fold_layer_scale`). A stored ``pos_embed``
    is accepted only if it equals the fixed sinusoid table.
    """
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in sd.items():
        if key == "pos_embed":
            _check_sinusoid(value, sd["patch_embed.proj.weight"].shape[0])
            continue
        m = _BLOCK_RE.match(key)
        if m:
            n, rest = m.group(1), m.group(2)
            pre = f"videomae.encoder.layer.{n}."
            if rest == "attn.qkv.weight":
                q, k, v = value.chunk(3, dim=0)
                out[pre + "attention.attention.query.weight"] = q.clone()
                out[pre + "attention.attention.key.weight"] = k.clone()
                out[pre + "attention.attention.value.weight"] = v.clone()
                continue
            if rest == "attn.q_bias":
                out[pre + "attention.attention.query.bias"] = value
                continue
            if rest == "attn.v_bias":
                out[pre + "attention.attention.value.bias"] = value
                continue
            module, _, param = rest.rpartition(".")
            if module in _BLOCK_MAP and param in ("weight", "bias"):
                out[pre + _BLOCK_MAP[module] + "." + param] = value
                continue
        else:
            module, _, param = key.rpartition(".")
            if module in _TOP_MAP and param in ("weight", "bias"):
                out[_TOP_MAP[module] + "." + param] = value
                continue
        unknown.append(key)
    if unknown:
        hint = "; fold layer scale first (fold_layer_scale)" if any("gamma_" in k for k in unknown) else ""
        raise InputError(f"checkpoint keys not understood as a VideoMAE zoo ViT: {unknown[:10]}{hint}")
    return out


def videomae_from_zoo_state_dict(
    sd: Mapping[str, torch.Tensor],
    num_heads: int | None = None,
    num_frames: int | None = None,
    image_size: int | None = None,
    saved_args: Mapping[str, Any] | None = None,
    dtype: torch.dtype | None = None,
) -> VideoMAEForVideoClassification:
    """An HF ``VideoMAEForVideoClassification`` (eval mode) holding the zoo weights ``sd``.

    Loads strictly (every HF parameter must come from the checkpoint; a missing key raises
    InputError naming it). Layer scale is folded into the linear layers (:func:`fold_layer_scale`).
    The classifier's ``fc_norm`` gets the zoo's eps 1e-6 (HF builds it with PyTorch's default
    1e-5), so logits match the zoo model's, not just approximately. ``dtype``: the parameters'
    dtype (default float32); folded weights are rounded once, to it.
    """
    from transformers import VideoMAEForVideoClassification

    if is_zoo_state_dict(sd):
        _require_complete(sd)  # before folding, which would hide a missing gamma
    sd = fold_layer_scale(sd, dtype or torch.float32)
    config = zoo_config(sd, num_heads, num_frames, image_size, saved_args)
    model = VideoMAEForVideoClassification(config)
    if dtype is not None:
        model = model.to(dtype)
    model.load_state_dict(convert_zoo_state_dict(sd), strict=True)
    if model.fc_norm is not None:
        model.fc_norm.eps = ZOO_LAYER_NORM_EPS
    return model.eval()


def load_videomae_zoo(
    path: str | os.PathLike,
    num_heads: int | None = None,
    num_frames: int | None = None,
    image_size: int | None = None,
    dtype: torch.dtype | None = None,
) -> VideoMAEForVideoClassification:
    """Load a VideoMAE (v1 or V2) zoo ``.pth`` file as an HF ``VideoMAEForVideoClassification`` in eval mode.

    ``dtype``: the parameters' dtype (default float32).
    """
    sd, saved_args = load_zoo_checkpoint(path)
    return videomae_from_zoo_state_dict(sd, num_heads, num_frames, image_size, saved_args, dtype)
