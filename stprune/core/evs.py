"""EVS (Efficient Video Sampling) token selection as pure tensor functions (no modules, no model names).

EVS (Bagrov et al., NVIDIA 2025; vLLM's ``video_pruning_rate``) prunes a video LLM's visual
tokens *after* the vision encoder and its merger, on the embeddings the language model would
receive (not on pixels). For ``T`` frames of ``N`` merged tokens (``x`` of shape ``(T * N, C)``,
frame-major, row-major inside a frame):

    dissimilarity[t, n] = 1 - cosine_similarity(x[t, n], x[t - 1, n])   for t >= 1
    dissimilarity[0, n] = 255                                            (first frame forced in)

The ``retain`` tokens of largest dissimilarity are kept: a *stable* descending argsort of the
flattened ``(T * N,)`` dissimilarities, so among equal values the earlier token (smaller flat
index) wins, and the first frame (255 is above any ``1 - cos``, which is at most 2) is always
in when ``retain >= N``. The number to keep for a pruning rate ``q`` is
``max(N, int(T * N * (1 - q)))`` (:func:`evs_retained_count`).

This reproduces ``compute_retention_mask`` / ``compute_retained_tokens_count`` of vLLM's
``vllm/multimodal/evs.py`` (checked at commit 926c71f) exactly: the same ``cosine_similarity``
call on the same memory layout, in ``x``'s dtype (bfloat16 embeddings are compared in bfloat16,
as vLLM does), the same stable sort. A NaN in ``x`` gives a NaN dissimilarity, which the
descending sort puts before every number (vLLM's behaviour too, reproduced, not endorsed).
"""

from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F

from stprune.errors import InputError, SettingError, SettingTypeError

__all__ = ["FIRST_FRAME_DISSIMILARITY", "evs_retained_count", "evs_dissimilarity", "evs_retention_mask"]

#: the dissimilarity given to every token of the first frame (above any 1 - cos): always kept
FIRST_FRAME_DISSIMILARITY = 255


def _check_int(name: str, value: object, low: int, high: int | None = None) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise SettingTypeError(f"{name} must be an int; got {value!r} ({type(value).__name__})")
    if value < low or (high is not None and value > high):
        allowed = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise SettingError(f"{name} must be {allowed}; got {value}")
    return int(value)


def evs_retained_count(tokens_per_frame: int, num_frames: int, pruning_rate: float) -> int:
    """Tokens EVS keeps for pruning rate q: ``max(N, int(T * N * (1 - q)))``, as vLLM computes it.

    The product is in floating point and truncated toward zero (``N * T = 10, q = 0.9`` gives
    ``int(0.9999...) = 0``, so the first-frame floor N applies); never fewer than one frame.

    Args:
        tokens_per_frame: N >= 1, merged tokens per frame.
        num_frames: T >= 1, frames after temporal merging.
        pruning_rate: q in [0, 1) (the range vLLM accepts for ``video_pruning_rate``).

    Returns:
        retain, an int in [N, T * N].

    Raises:
        SettingError / SettingTypeError: a value outside its range, or of the wrong type.
    """
    n = _check_int("tokens_per_frame", tokens_per_frame, 1)
    t = _check_int("num_frames", num_frames, 1)
    if not isinstance(pruning_rate, numbers.Real) or isinstance(pruning_rate, bool):
        raise SettingTypeError(
            f"pruning_rate must be a real number; got {pruning_rate!r} ({type(pruning_rate).__name__})"
        )
    q = float(pruning_rate)
    if not (math.isfinite(q) and 0.0 <= q < 1.0):
        raise SettingError(f"pruning_rate must be in [0, 1); got {pruning_rate!r}")
    return max(n, int(n * t * (1 - q)))


def _check_x(x: torch.Tensor, tokens_per_frame: int) -> tuple[int, int]:
    n = _check_int("tokens_per_frame", tokens_per_frame, 1)
    if x.dim() != 2:
        raise InputError(f"x must be (T * N, C), one video's merged tokens; got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise InputError(f"x must be floating point; got dtype {x.dtype}")
    if x.shape[0] == 0 or x.shape[0] % n:
        raise InputError(
            f"x has {x.shape[0]} tokens, not a positive multiple of tokens_per_frame={n} "
            "(T * N tokens expected, T >= 1)"
        )
    return x.shape[0] // n, n


def evs_dissimilarity(x: torch.Tensor, tokens_per_frame: int) -> torch.Tensor:
    """EVS's per-token score: ``1 - cos`` to the same token one frame earlier; 255 in frame 0.

    Args:
        x: (T * N, C) one video's merged tokens, frame-major, floating point.
        tokens_per_frame: N >= 1.

    Returns:
        (T * N,) dissimilarities in ``x``'s dtype, the values vLLM sorts.

    Raises:
        InputError: x not 2-D or not floating point, or ``len(x)`` not a positive multiple of N.
    """
    t, n = _check_x(x, tokens_per_frame)
    frames = x.reshape(t, n, x.shape[-1])
    dissimilarity = 1 - F.cosine_similarity(frames[1:], frames[:-1], dim=-1)  # (T - 1, N)
    first = FIRST_FRAME_DISSIMILARITY * torch.ones_like(frames[:1, :, 0])  # (1, N), x's dtype
    return torch.cat([first, dissimilarity], dim=0).view(-1)


def evs_retention_mask(x: torch.Tensor, tokens_per_frame: int, retain: int) -> torch.Tensor:
    """Which tokens EVS keeps: the ``retain`` largest dissimilarities, ties to the earlier token.

    Equals vLLM's ``compute_retention_mask(x, (T, H, W), m, q)`` for ``N = (H // m) * (W // m)``
    and ``retain = evs_retained_count(N, T, q)``.

    Args:
        x: (T * N, C) one video's merged tokens, frame-major, floating point.
        tokens_per_frame: N >= 1.
        retain: tokens kept, in [N, T * N] (the whole first frame is always kept).

    Returns:
        (T * N,) bool mask on ``x``'s device, True at the ``retain`` kept tokens; the first N
        are True.

    Raises:
        InputError: bad ``x`` (see :func:`evs_dissimilarity`).
        SettingError / SettingTypeError: ``retain`` outside [N, T * N] or not an int.
    """
    t, n = _check_x(x, tokens_per_frame)
    if not isinstance(retain, numbers.Integral) or isinstance(retain, bool):
        raise SettingTypeError(f"retain must be an int; got {retain!r} ({type(retain).__name__})")
    if not n <= retain <= t * n:
        raise SettingError(
            f"retain must be in [{n}, {t * n}] (the whole first frame of {n} tokens is always kept; "
            f"{t} x {n} tokens in all); got {retain}"
        )
    keep = int(retain)
    score = evs_dissimilarity(x, n)
    order = torch.argsort(score, dim=-1, descending=True, stable=True)
    mask = torch.zeros_like(score, dtype=torch.bool)
    mask[order[:keep]] = True
    return mask
