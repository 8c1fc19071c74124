"""Additive attention bias for Hugging Face models, through their attention-function registry.

Used by methods that need it (ToMe's proportional attention). The model's attention modules
call ``ALL_ATTENTION_FUNCTIONS[config._attn_implementation]``; while a bias is installed, that
name points to a wrapper that adds the bias to the mask and calls the implementation the model
was using: HF's SDPA path (the fused ``scaled_dot_product_attention`` kernel stays in use) or the
model's own eager attention (so ``output_attentions=True`` still returns the attention
probabilities). Other implementations (flash attention, flex attention, ...) take no additive
bias and are refused before anything changes. STA never needs this.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

import torch
from torch import nn

from stprune.errors import UnsupportedModelError

__all__ = ["install_attention_bias", "BIASED_IMPLEMENTATIONS"]

_BIAS_ATTR = "_stprune_attention_bias"
_EAGER_ATTR = "_stprune_eager_attention"
#: the model's attention implementation -> the registered name of its biased wrapper
BIASED_IMPLEMENTATIONS: dict[str, str] = {"sdpa": "stprune_biased_sdpa", "eager": "stprune_biased_eager"}


def _bias_mask(
    module: nn.Module, query: torch.Tensor, attention_mask: torch.Tensor | None
) -> torch.Tensor | None:
    bias_fn = getattr(module, _BIAS_ATTR, None)
    bias = bias_fn() if bias_fn is not None else None
    if bias is None:
        return attention_mask
    bias = bias.to(query.dtype)
    return bias if attention_mask is None else attention_mask + bias


def _biased_sdpa(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    **kwargs: object,
) -> tuple[torch.Tensor, None]:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    return sdpa_attention_forward(
        module, query, key, value, _bias_mask(module, query, attention_mask), **kwargs
    )


def _biased_eager(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    **kwargs: object,
) -> tuple[torch.Tensor, torch.Tensor]:
    eager = getattr(module, _EAGER_ATTR)
    return eager(module, query, key, value, _bias_mask(module, query, attention_mask), **kwargs)


_WRAPPERS = {"sdpa": _biased_sdpa, "eager": _biased_eager}


def _register() -> None:
    from transformers.modeling_utils import AttentionInterface

    for impl, name in BIASED_IMPLEMENTATIONS.items():
        if name not in AttentionInterface._global_mapping:
            AttentionInterface.register(name, _WRAPPERS[impl])


def _eager_function(module: nn.Module) -> Callable | None:
    """The model's own eager attention function (``eager_attention_forward`` of its modeling file)."""
    return getattr(sys.modules.get(type(module).__module__), "eager_attention_forward", None)


def install_attention_bias(
    config: object,
    attention_modules: Sequence[nn.Module],
    bias_fn: Callable[[int], torch.Tensor | None],
    eager: Callable | None = None,
) -> Callable[[], None]:
    """Make attention module ``i`` (block ``i``) add ``bias_fn(i)`` (B, 1, 1, L) to its logits.

    Keeps the model's attention implementation: ``"sdpa"`` stays SDPA, ``"eager"`` stays the
    model's eager attention (attention probabilities are returned as before). ``eager``: the
    eager function to run instead of the modeling file's own, for models whose own eager
    attention ignores ``attention_mask`` (V-JEPA 2); same signature as HF's
    ``eager_attention_forward``.

    Returns:
        a function that restores the original attention implementation.

    Raises:
        UnsupportedModelError, before changing anything, for any other implementation, or an eager
        model whose modeling file has no ``eager_attention_forward``.
    """
    restore = getattr(config, "_attn_implementation", None)
    original = restore or "eager"
    if original not in BIASED_IMPLEMENTATIONS:
        raise UnsupportedModelError(
            f"this method adds log(token size) to the attention logits (proportional attention), which "
            f"attn_implementation={original!r} cannot take; load the model with attn_implementation='sdpa' "
            "or 'eager', or use an index-pruning method such as 'sta'"
        )
    if original == "eager":
        eager_fns = [eager or _eager_function(m) for m in attention_modules]
        if any(f is None for f in eager_fns):
            raise UnsupportedModelError(
                f"{type(attention_modules[0]).__name__}'s modeling file has no eager_attention_forward to "
                "add the proportional-attention bias to; load the model with attn_implementation='sdpa'"
            )
    _register()
    config._attn_implementation = BIASED_IMPLEMENTATIONS[original]
    for i, m in enumerate(attention_modules):
        setattr(m, _BIAS_ATTR, lambda i=i: bias_fn(i))
        if original == "eager":
            setattr(m, _EAGER_ATTR, eager_fns[i])

    def remove() -> None:
        config._attn_implementation = restore
        for m in attention_modules:
            for attr in (_BIAS_ATTR, _EAGER_ATTR):
                if hasattr(m, attr):
                    delattr(m, attr)

    return remove
