"""Additive attention bias for Hugging Face models, through their attention-function registry.

Used by methods that need it (ToMe's proportional attention, RLT's padding mask). The model's
attention modules call ``ALL_ATTENTION_FUNCTIONS[self.config._attn_implementation]``; while a
bias is installed, the patched model's attention modules read a config of their own (a shallow
copy of theirs whose ``_attn_implementation`` names a wrapper) that adds the bias to the mask and
calls the implementation the model was using: HF's SDPA path (the fused
``scaled_dot_product_attention`` kernel stays in use) or the model's own eager attention (so
``output_attentions=True`` still returns the attention probabilities). Other implementations
(flash attention, flex attention, ...) take no additive bias and are refused before anything
changes. STA never needs this.

Nothing another model can see changes: the config object itself (often shared, e.g. by models
built from one config) keeps its ``_attn_implementation``, and the only global change is that
the two wrapper names are registered once in HF's attention registry (a wrapper called by a
module without a bias computes what the wrapped implementation does).
"""

from __future__ import annotations

import copy
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


def _own_config(config: object, implementation: str) -> object:
    """A shallow copy of ``config`` whose ``_attn_implementation`` is ``implementation``.

    Set in the copy's own ``__dict__``: transformers' setter would also set it on the sub-configs,
    which the copy shares with ``config``.
    """
    own = copy.copy(config)
    if isinstance(getattr(type(config), "_attn_implementation", None), property):
        vars(own)["_attn_implementation_internal"] = implementation
    else:
        vars(own)["_attn_implementation"] = implementation
    if getattr(own, "_attn_implementation", None) != implementation:
        raise UnsupportedModelError(
            f"cannot set the attention implementation of a copy of {type(config).__name__}: this "
            "transformers version stores it in a way stprune does not know; use an index-pruning "
            "method such as 'sta'"
        )
    return own


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

    Only the given modules change: each reads a copy of its own ``config`` (see the module
    docstring). ``config``, the model's, is left as it is, like every other model sharing it.

    Returns:
        a function that restores every module's own config object and removes the bias.

    Raises:
        UnsupportedModelError, before changing anything, for any other implementation, or an eager
        model whose modeling file has no ``eager_attention_forward``.
    """
    configs = [getattr(m, "config", None) for m in attention_modules]
    if any(c is None for c in configs):
        raise UnsupportedModelError(
            f"{type(attention_modules[0]).__name__} has no 'config' attribute to read its attention "
            "implementation from; this transformers version's layout is not supported for this method"
        )
    originals = [getattr(c, "_attn_implementation", None) or "eager" for c in configs]
    bad = next((o for o in originals if o not in BIASED_IMPLEMENTATIONS), None)
    if bad is not None:
        raise UnsupportedModelError(
            f"this method adds a bias to the attention logits (ToMe: log(token size), proportional "
            f"attention; RLT's threshold mode: -inf for padding), which attn_implementation={bad!r} cannot "
            "take; load the model with attn_implementation='sdpa' or 'eager', or use an index-pruning "
            "method such as 'sta'"
        )
    eager_fns = [
        (eager or _eager_function(m)) if o == "eager" else None
        for m, o in zip(attention_modules, originals, strict=True)
    ]
    if any(f is None and o == "eager" for f, o in zip(eager_fns, originals, strict=True)):
        raise UnsupportedModelError(
            f"{type(attention_modules[0]).__name__}'s modeling file has no eager_attention_forward to "
            "add the bias to; load the model with attn_implementation='sdpa'"
        )
    own: dict[int, object] = {}  # one copy per config object (a model's modules share theirs)
    for c, o in zip(configs, originals, strict=True):
        if id(c) not in own:
            own[id(c)] = _own_config(c, BIASED_IMPLEMENTATIONS[o])
    _register()
    for i, (m, c) in enumerate(zip(attention_modules, configs, strict=True)):
        m.config = own[id(c)]
        setattr(m, _BIAS_ATTR, lambda i=i: bias_fn(i))
        if eager_fns[i] is not None:
            setattr(m, _EAGER_ATTR, eager_fns[i])

    def remove() -> None:
        for m, c in zip(attention_modules, configs, strict=True):
            m.config = c
            for attr in (_BIAS_ATTR, _EAGER_ATTR):
                if hasattr(m, attr):
                    delattr(m, attr)

    return remove
