"""Additive attention bias for Hugging Face models, through their attention-function registry.

Used by methods that need it (ToMe's proportional attention). The model's attention modules
call ``ALL_ATTENTION_FUNCTIONS[config._attn_implementation]``; while a bias is installed, that
name points to a wrapper that adds the bias to the mask and calls HF's SDPA path, so the fused
``scaled_dot_product_attention`` kernel stays in use. STA never needs this.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

__all__ = ["install_attention_bias"]

_NAME = "stprune_biased_sdpa"
_BIAS_ATTR = "_stprune_attention_bias"


def _biased_sdpa(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    **kwargs: object,
) -> tuple[torch.Tensor, None]:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    bias_fn = getattr(module, _BIAS_ATTR, None)
    bias = bias_fn() if bias_fn is not None else None
    if bias is not None:
        bias = bias.to(query.dtype)
        attention_mask = bias if attention_mask is None else attention_mask + bias
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


def _register() -> None:
    from transformers.modeling_utils import AttentionInterface

    if _NAME not in AttentionInterface._global_mapping:
        AttentionInterface.register(_NAME, _biased_sdpa)


def install_attention_bias(
    config: object, attention_modules: Sequence[nn.Module], bias_fn: Callable[[], torch.Tensor | None]
) -> Callable[[], None]:
    """Make every attention module add ``bias_fn()`` (B, 1, 1, L) to its logits.

    Returns:
        a function that restores the original attention implementation.
    """
    _register()
    original = config._attn_implementation
    config._attn_implementation = _NAME
    for m in attention_modules:
        setattr(m, _BIAS_ATTR, bias_fn)

    def remove() -> None:
        config._attn_implementation = original
        for m in attention_modules:
            if hasattr(m, _BIAS_ATTR):
                delattr(m, _BIAS_ATTR)

    return remove
