"""Adapter: Hugging Face ``transformers`` V-JEPA 2 (``VJEPA2ForVideoClassification``, and
``VJEPA2Model`` as an encoder with ``skip_predictor=True``).

No CLS token. Blocks rotate queries and keys by each token's id in the T0 x H/p x W/p grid
(3D RoPE), which ``VJEPA2Layer`` takes as ``position_mask``: after pruning, the engine passes
every later block the kept tokens' ids (``needs_positions``). RoPE has no fixed-size position
table, so the model runs at any frame count: ``stprune.patch(model, ..., num_frames=N)`` plans
for N frames instead of ``config.frames_per_clip`` (the family's one pruning option). STA
scores with the key projection's output, before rotation. The classifier's head is an attentive pooler (self-
attention blocks over all remaining tokens, then cross-attention from one learned query);
with ToMe its attention adds log(size) like the encoder's (proportional attention).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch
from torch import nn

from stprune.adapters.base import EncoderLayout, InputGrid, register_adapter
from stprune.adapters.hf_attention import install_attention_bias
from stprune.adapters.hf_base import HFVideoAdapter
from stprune.core.flops import vit_block_macs
from stprune.core.schedule import plural
from stprune.errors import InputError, SettingError, SettingTypeError, UnsupportedModelError

__all__ = ["HFVJEPA2Adapter", "check_num_frames", "vjepa2_macs", "predictor_macs", "masked_eager_attention"]


def _mlp_width(hidden: int, ratio: float) -> int:
    """Hidden width of ``VJEPA2MLP``: ``int(hidden * ratio)`` exactly as HF computes it."""
    return int(hidden * ratio)


def check_num_frames(value: Any, tubelet: int, name: str = "num_frames") -> int:
    """``value`` as a V-JEPA 2 frame count: an int >= ``tubelet`` and a multiple of it.

    Raises ``SettingTypeError`` (not an int) or ``SettingError`` (out of range), one line naming
    the value and the allowed values.
    """
    allowed = f"{tubelet}, {2 * tubelet}, {3 * tubelet}, ..."
    if isinstance(value, bool) or not isinstance(value, int):
        raise SettingTypeError(
            f"{name}={value!r} must be an int, a multiple of tubelet_size={tubelet} ({allowed}); "
            f"got {type(value).__name__}"
        )
    if value < tubelet:
        raise SettingError(
            f"{name}={value!r} must be >= {tubelet}, a multiple of tubelet_size={tubelet} ({allowed})"
        )
    if value % tubelet:
        raise SettingError(
            f"{name}={value!r} must be a multiple of tubelet_size={tubelet} ({allowed}): each temporal slot "
            f"embeds {tubelet} frames"
        )
    return value


def vjepa2_macs(
    cfg: Any,
    tokens_per_block: Sequence[int],
    final_tokens: int | None = None,
    *,
    pooler: bool,
    num_labels: int = 0,
    frames: int | None = None,
) -> int:
    """Analytic matrix-product MACs of one sample's V-JEPA 2 forward (predictor skipped).

    ``frames``: frames per clip (default ``cfg.frames_per_clip``).

    embedding  Conv3d: N0 * C * in_chans * t * p * p
    block      (L tokens): qkv 3 L C^2 + scores & weighted sum 2 L^2 C + proj L C^2 + MLP 2 L C I,
               I = int(C * mlp_ratio)  (RoPE is elementwise: no MACs)
    pooler     (Lf = tokens leaving the encoder): num_pooler_layers plain ViT blocks on Lf tokens
               with MLP width int(C * 4.0) (HF builds the pooler's MLPs with the default ratio 4.0,
               NOT config.mlp_ratio: ViT-g's encoder MLP is 6144 wide, its pooler MLP 5632);
               cross-attention: q_proj on the 1 query C^2, k_proj and v_proj 2 Lf C^2, scores and
               weighted sum 2 Lf C, no output projection, MLP on the query 2 C int(4 C)
    head       C * num_labels
    """
    c = int(cfg.hidden_size)
    t, p = int(cfg.tubelet_size), int(cfg.patch_size)
    grid = int(cfg.crop_size) // p
    n0 = (int(cfg.frames_per_clip if frames is None else frames) // t) * grid * grid
    total = n0 * c * int(cfg.in_chans) * t * p * p
    inter = _mlp_width(c, cfg.mlp_ratio)
    total += sum(vit_block_macs(n, c, inter) for n in tokens_per_block)
    if pooler:
        lf = tokens_per_block[-1] if final_tokens is None else final_tokens
        ip = _mlp_width(c, 4.0)
        total += int(cfg.num_pooler_layers) * vit_block_macs(lf, c, ip)
        total += c * c + 2 * lf * c * c + 2 * lf * c + 2 * c * ip
        total += c * num_labels
    return total


def predictor_macs(cfg: Any, context_tokens: int, target_tokens: int) -> int:
    """MACs of ``VJEPA2Predictor`` for one sample (one context mask and one target mask).

    predictor_embeddings (Linear C -> Cp) on the context tokens, pred_num_hidden_layers blocks of
    width Cp on context + target tokens (MLP int(Cp * pred_mlp_ratio)), proj (Cp -> C) on the targets.
    """
    c, cp = int(cfg.hidden_size), int(cfg.pred_hidden_size)
    n = context_tokens + target_tokens
    ip = _mlp_width(cp, cfg.pred_mlp_ratio)
    return (
        context_tokens * c * cp
        + int(cfg.pred_num_hidden_layers) * vit_block_macs(n, cp, ip)
        + target_tokens * cp * c
    )


# --------------------------------------------------------------------------------------------
# attention bias (ToMe) for eager attention
# --------------------------------------------------------------------------------------------


def masked_eager_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """VJEPA2's ``eager_attention_forward`` plus the additive mask it leaves out.

    HF's VJEPA2 eager function never reads ``attention_mask``; with ``attention_mask=None`` this
    is the same computation op for op. Shapes: query (B, H, Lq, d), key/value (B, H, L, d),
    mask broadcastable to (B, H, Lq, L); returns (B, Lq, H, d) and the (B, H, Lq, L) weights.
    """
    attn_weights = torch.matmul(query, key.transpose(-1, -2)) * scaling
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask
    attn_weights = nn.functional.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query.dtype)
    attn_weights = nn.functional.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value)
    return attn_output.transpose(1, 2).contiguous(), attn_weights


@register_adapter
class HFVJEPA2Adapter(HFVideoAdapter):
    """``VJEPA2ForVideoClassification`` and ``VJEPA2Model`` (as an encoder: ``skip_predictor=True``).

    No CLS token (nothing protected). Token order from the tubelet embedding is (T0, H/p, W/p)
    flattened, slot-major, so group g of a T0-group stage is temporal slot g, and a token's
    stprune grid position (slot * N + spatial index) is exactly HF's ``position_mask`` id.

    ``num_frames``: frames per clip to plan for (default ``config.frames_per_clip``); HF's
    encoder runs any count (its RoPE ids come from the token index), so only the plan, the cost
    model and the input check depend on it. Set with ``stprune.patch(model, num_frames=N)``.
    """

    model_classes = ("VJEPA2ForVideoClassification", "VJEPA2Model")

    def __init__(self, model: nn.Module, num_frames: int | None = None) -> None:
        super().__init__(model)
        self.num_frames = num_frames

    def with_options(self, num_frames: Any = None, **options: Any) -> HFVJEPA2Adapter:
        """This adapter planning for ``num_frames`` frames per clip (``None``: the config's).

        Raises ``SettingTypeError`` for another option or a non-int, ``SettingError`` for a count
        that is not a multiple of ``tubelet_size`` (>= it).
        """
        if options:
            raise SettingTypeError(
                f"{type(self.model).__name__} takes one pruning option, num_frames (frames per clip, "
                f"default config.frames_per_clip); got {sorted(options)}"
            )
        if num_frames is None:
            return self
        frames = check_num_frames(num_frames, int(self.model.config.tubelet_size))
        return type(self)(self.model, num_frames=frames)

    @classmethod
    def example_model(cls, seed: int = 0) -> nn.Module:
        """V-JEPA 2 classifier, 6 blocks, 16 frames of 64 x 64 (8 slots x 16 tokens), 2 pooler
        layers, a 2-layer predictor, random weights.

        Width 64 with 4 heads: head_dim 16, RoPE rotates 3 x 4 dims and leaves 4 unrotated.
        """
        from transformers import VJEPA2Config, VJEPA2ForVideoClassification

        torch.manual_seed(seed)
        cfg = VJEPA2Config(
            crop_size=64, frames_per_clip=16, patch_size=16, tubelet_size=2, hidden_size=64,
            num_attention_heads=4, num_hidden_layers=6, mlp_ratio=2.0, num_pooler_layers=2,
            pred_hidden_size=32, pred_num_attention_heads=2, pred_num_hidden_layers=2, num_labels=5,
        )  # fmt: skip
        return VJEPA2ForVideoClassification(cfg).eval()

    @property
    def backbone(self) -> nn.Module:
        """The ``VJEPA2Model`` (the classifier's ``vjepa2``, or the model itself)."""
        return getattr(self.model, "vjepa2", self.model)

    @property
    def is_classifier(self) -> bool:
        return isinstance(getattr(self.model, "pooler", None), nn.Module)

    @property
    def outputs_tokens(self) -> bool:
        return not self.is_classifier

    def _geometry(self) -> tuple[int, int, int, int]:
        """(frames, tubelet, crop, patch) from the config; frames: ``num_frames`` when set."""
        cfg = self.model.config
        patch = cfg.patch_size
        if not isinstance(patch, int):
            raise UnsupportedModelError(
                f"VJEPA2 patch_size must be one int (the model's Conv3d and RoPE grid use it for both axes); "
                f"got {patch!r}"
            )
        frames = int(cfg.frames_per_clip) if self.num_frames is None else self.num_frames
        return frames, int(cfg.tubelet_size), int(cfg.crop_size), patch

    def layout(self) -> EncoderLayout:
        cfg = self.model.config
        layers = list(self.backbone.encoder.layer)
        keys = []
        for i, layer in enumerate(layers):
            key = getattr(getattr(layer, "attention", None), "key", None)
            if not isinstance(key, nn.Linear):
                raise UnsupportedModelError(
                    f"VJEPA2 block {i} has no 'attention.key' Linear; this transformers version's VJEPA2 "
                    "layout is not supported (transformers>=5 is)"
                )
            keys.append(key)
        frames, tubelet, crop, patch = self._geometry()
        return EncoderLayout(
            layers=layers,
            key_modules=keys,
            num_heads=int(cfg.num_attention_heads),
            protected=0,
            num_slots=frames // tubelet,
            tokens_per_slot=(crop // patch) ** 2,
            key_dim=int(cfg.hidden_size) // int(cfg.num_attention_heads),
        )

    def input_grid(self) -> InputGrid:
        """``pixel_values_videos`` (B, T, C, H, W); ``tubelet_size`` frames x ``patch_size`` px."""
        frames, tubelet, crop, patch = self._geometry()
        return InputGrid(
            input_name="pixel_values_videos",
            input_layout="BTCHW",
            num_frames=frames,
            image_size=(crop, crop),
            num_slots=frames // tubelet,
            grid=(crop // patch, crop // patch),
            tubelet=tubelet,
            patch=(patch, patch),
            protected=0,
        )

    # positions ------------------------------------------------------------------------------

    @property
    def needs_positions(self) -> bool:
        """RoPE: every block after a pruning point must get its tokens' grid ids (``position_mask``)."""
        return True

    def with_positions(self, args: tuple, kwargs: dict, positions: torch.Tensor) -> tuple[tuple, dict]:
        """Block call arguments with ``position_mask`` = (B, L) int64 grid ids of its tokens."""
        if len(args) > 1:
            return (args[0], positions, *args[2:]), kwargs
        return args, {**kwargs, "position_mask": positions}

    # ToMe --------------------------------------------------------------------------------------

    def install_attention_bias(self, bias_fn: Callable[[int], torch.Tensor | None]) -> Callable[[], None]:
        """Encoder block i adds ``bias_fn(i)``; the pooler's self- and cross-attention add
        ``bias_fn(depth)`` (the sizes after the last stage): proportional attention in the pooler.

        Eager attention: VJEPA2's own eager function ignores the mask, so the biased wrapper runs
        :func:`masked_eager_attention` instead (identical when no bias is set).
        """
        depth = len(self.backbone.encoder.layer)
        mods: list[nn.Module] = [layer.attention for layer in self.backbone.encoder.layer]
        if self.is_classifier:
            pooler = self.model.pooler
            mods += [layer.self_attn for layer in pooler.self_attention_layers]
            mods.append(pooler.cross_attention_layer.cross_attn)
        return install_attention_bias(
            self.model.config, mods, lambda i: bias_fn(min(i, depth)), eager=masked_eager_attention
        )

    # guards --------------------------------------------------------------------------------------

    def pruning_guards(self) -> list[torch.utils.hooks.RemovableHandle]:
        """VJEPA2Model: refuse a forward whose predictor (or context/target masks) would see pruned tokens.

        A model pre-hook refuses ``skip_predictor`` not True and any ``context_mask`` /
        ``target_mask`` before any compute; a pre-hook on the predictor refuses an encoder
        sequence shorter than the T0 x N grid. The classifier never runs its predictor: none.
        """
        if self.is_classifier:
            return []
        lay = self.layout()
        handles = [self.model.register_forward_pre_hook(self._refuse_predictor, with_kwargs=True)]
        handles.append(
            self.backbone.predictor.register_forward_pre_hook(
                partial(self._predictor_guard, lay.num_slots * lay.tokens_per_slot), with_kwargs=True
            )
        )
        return handles

    def _refuse_predictor(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        # VJEPA2Model.forward(pixel_values_videos, context_mask, target_mask, skip_predictor, ...)
        names = ("pixel_values_videos", "context_mask", "target_mask", "skip_predictor")
        call = dict(zip(names, args, strict=False)) | kwargs
        if not call.get("skip_predictor", False):
            raise InputError(
                "VJEPA2Model's predictor needs every token of the encoder grid, but this model is patched to "
                "prune them: call it with skip_predictor=True (the encoder alone), or stprune.unpatch(model) "
                "to run the predictor"
            )
        for name in ("context_mask", "target_mask"):
            if call.get(name) is not None:
                raise InputError(
                    f"{name} indexes the full encoder grid, but this model is patched to prune it; leave "
                    f"{name} out (skip_predictor=True), or stprune.unpatch(model) to use it"
                )

    def _predictor_guard(self, n0: int, module: nn.Module, args: tuple, kwargs: dict) -> None:
        hidden = args[0] if args else kwargs.get("encoder_hidden_states")
        if isinstance(hidden, torch.Tensor) and hidden.shape[1] != n0:
            raise InputError(
                f"the V-JEPA 2 predictor received {hidden.shape[1]} encoder tokens, but it needs the full "
                f"grid of {n0}: the encoder is pruned; call the model with skip_predictor=True"
            )

    # inputs, costs ---------------------------------------------------------------------------

    def clip_input(self, args: tuple, kwargs: dict) -> torch.Tensor | None:
        """``pixel_values_videos`` (B, T, C, H, W) of a forward call (keyword or first argument)."""
        x = kwargs.get("pixel_values_videos", args[0] if args else None)
        return x if isinstance(x, torch.Tensor) else None

    def example_inputs(
        self, batch_size: int = 1, device: Any = "cpu", dtype: torch.dtype = torch.float32
    ) -> dict:
        """``pixel_values_videos`` (B, frames, in_chans, crop, crop) (frames: ``num_frames``, else
        ``frames_per_clip``); VJEPA2Model also
        ``skip_predictor=True`` (the encoder alone, as patched)."""
        frames, _, crop, _ = self._geometry()
        shape = (batch_size, frames, int(self.model.config.in_chans), crop, crop)
        inputs: dict[str, Any] = {"pixel_values_videos": torch.randn(shape, device=device, dtype=dtype)}
        if not self.is_classifier:
            inputs["skip_predictor"] = True
        return inputs

    def check_inputs(self, args: tuple, kwargs: dict) -> None:
        """Raise ``InputError`` unless ``pixel_values_videos`` is (B, frames, in_chans, crop, crop).

        The frame count fixes the token plan (T0 = frames / tubelet slots); the frame size fixes
        the grid the model's RoPE assumes (crop_size / patch_size per side).
        """
        x = self.clip_input(args, kwargs)
        if x is None:
            return
        frames, tubelet, crop, _ = self._geometry()
        if x.dim() != 5:
            raise InputError(f"pixel_values_videos must be (B, T, C, H, W); got shape {tuple(x.shape)}")
        if x.shape[1] != frames:
            setup = f"frames_per_clip={frames}" if self.num_frames is None else f"num_frames={frames}"
            raise InputError(
                f"pixel_values_videos has {x.shape[1]} frames but the model and its pruning schedule are set "
                f"up for {setup} ({plural(frames // tubelet, 'temporal slot')}); sample {frames} frames per "
                f"clip, or patch with stprune.patch(model, ..., num_frames={x.shape[1]})"
            )
        if tuple(x.shape[3:]) != (crop, crop):
            raise InputError(
                f"pixel_values_videos frames are {tuple(x.shape[3:])}; the model expects {(crop, crop)} "
                "(crop_size)"
            )

    def macs(self, tokens_per_block: Sequence[int]) -> int:
        """Analytic MACs of one sample, the pooler reading ``tokens_per_block[-1]`` tokens."""
        return self.planned_macs(tokens_per_block, tokens_per_block[-1])

    def planned_macs(self, tokens_per_block: Sequence[int], final_tokens: int) -> int:
        """Analytic MACs of one sample (see :func:`vjepa2_macs`); the predictor is not run.

        The attentive pooler reads ``final_tokens`` (fewer than the last block's when a stage
        follows the last block).
        """
        labels = self.model.classifier.out_features if self.is_classifier else 0
        return vjepa2_macs(
            self.model.config,
            tokens_per_block,
            final_tokens,
            pooler=self.is_classifier,
            num_labels=labels,
            frames=self._geometry()[0],
        )
