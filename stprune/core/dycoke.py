"""DyCoke's temporal token merging (TTM) stage as pure tensor functions (no modules, no model names).

DyCoke (Tao et al., CVPR 2025) prunes the visual tokens of a video LLM in two stages; the first,
temporal token merging (TTM), runs once on one video's tokens ``x`` of shape ``(F * N, C)``
(``F`` frames of ``N`` tokens, frame-major) before the language model, and keeps, in every
*pruned* frame, the ``keep`` tokens least similar to the same spatial token of a reference
frame. This module reproduces the authors' published function (``dycole_ttm`` in
``llava/model/llava_arch.py`` of github.com/KD-TAO/DyCoke, commit 35cc532, 2025-03-01, unchanged
at the repository's head in 2026-12) *exactly*: :func:`dycoke_ttm_keep` returns the flat indices
``idx`` with ``x[idx]`` bitwise equal to the published output, in its order.

The rule, as published (including its quirks, which are reproduced on purpose):

1. **Pairs.** Frames are taken in pairs ``(2j, 2j + 1)``, ``j = 0 .. F // 2 - 1``. For each pair
   the per-token similarity is ``cosine_similarity(normalize(frame 2j), normalize(frame 2j+1))``
   (each token L2-normalised first, then the cosine: two roundings that matter for ties). The
   even frame is kept whole, the odd frame keeps the ``keep`` tokens of smallest similarity.
2. **Windows of four.** For ``i`` in ``range(0, F - 4, 4)``, frame ``i + 2`` is pruned again,
   now against frame ``i``, with ``cosine_similarity(frame i, frame i+2)`` on the raw tokens
   (*not* normalised first). It replaces the whole frame ``i + 2`` that step 1 kept (frame ``i``
   stays whole). The similarities always come from the input, never from a pruned frame.
3. The kept tokens of all frames are concatenated in frame order.

Quirks of the published function, all reproduced:

* **The last window is skipped.** The window loop is ``range(0, F - 4, 4)``, not
  ``range(0, F - 3, 4)``: with ``F = 8`` only frame 2 is window-pruned, frame 6 stays whole; with
  ``F = 16`` frames 2, 6 and 10 are, frame 14 is not. For ``F <= 4`` there is no window at all.
* **An odd frame count drops the last frame entirely** (it belongs to no pair).
* **Kept tokens are in ``topk(largest=False)`` order**, i.e. by similarity ascending, not in
  spatial order; on ties the order is whatever ``torch.topk`` returns for the same values on the
  same device. This module calls ``normalize``, ``cosine_similarity`` and ``topk`` on exactly
  the tensors (same shapes, same defaults) the published function does, one frame pair at a
  time, so the similarity values and therefore the tie order are identical, in any dtype.
* **The keep count is a float expression:** the published function keeps
  ``int((1 - merging_ratio) * N)`` tokens per pruned frame (truncation after a floating-point
  product: ``merging_ratio = 0.9, N = 10`` keeps 0, not 1), see :func:`dycoke_keep_from_ratio`.
* **The number of tokens is not checked there:** ``F = len(x) // N`` and trailing tokens are
  ignored. Here ``len(x)`` must be a multiple of ``N`` (an :class:`~stprune.errors.InputError`
  otherwise).

Two differences from the published function, both where it cannot run:

* **``F <= 4``:** the published function raises ``RuntimeError`` (``torch.stack`` of the empty
  list of window similarities). Here the window stage then simply has no window (what the
  published loops describe), so ``F = 2, 3, 4`` work; ``F < 2`` is an
  :class:`~stprune.errors.InputError` (the published function raises there too).
* **The first public version** (commit 26dc6f4, 2024-12-19) pruned pair ``j``'s odd frame with
  the similarity of pair ``j - 1`` (``similarities[(i - 2) // 2]``, i.e. pair 0's odd frame with
  the *last* pair's similarity, by Python's negative indexing); commit 35cc532 ("Update ttm
  code", 2025-03-01) changed it to pair ``j``'s own similarity. ``legacy_pair_index=True``
  reproduces the first version; the default is the current one.

Which frames are kept whole, pruned or dropped depends only on ``F``
(:func:`dycoke_frame_roles`), so the output length is known without data
(:func:`dycoke_kept_count`) and the selection needs no host-device synchronisation.
"""

from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F

from stprune.errors import InputError, SettingError, SettingTypeError

__all__ = ["dycoke_keep_from_ratio", "dycoke_frame_roles", "dycoke_kept_count", "dycoke_ttm_keep"]


def _check_int(name: str, value: object, low: int, high: int | None = None) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise SettingTypeError(f"{name} must be an int; got {value!r} ({type(value).__name__})")
    if value < low or (high is not None and value > high):
        allowed = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise SettingError(f"{name} must be {allowed}; got {value}")
    return int(value)


def _check_frames(num_frames: object) -> int:
    if not isinstance(num_frames, numbers.Integral) or isinstance(num_frames, bool):
        raise SettingTypeError(
            f"num_frames must be an int; got {num_frames!r} ({type(num_frames).__name__})"
        )
    if num_frames < 2:
        raise InputError(f"DyCoke's TTM needs at least 2 frames (it prunes frame pairs); got {num_frames}")
    return int(num_frames)


def dycoke_keep_from_ratio(merging_ratio: float, tokens_per_frame: int) -> int:
    """Tokens kept per pruned frame for DyCoke's ``merging_ratio``, as the published code computes it.

    ``int((1 - merging_ratio) * tokens_per_frame)``: the float product, truncated toward zero
    (``0.7, 196 -> 58``; ``0.3, 196 -> 137``; ``0.9, 10 -> 0``, since ``1 - 0.9`` is just below 0.1).

    Args:
        merging_ratio: fraction of a pruned frame's tokens removed, a real number in [0, 1]
            (DyCoke's ``dycoke_k``, default 0.7).
        tokens_per_frame: N >= 1.

    Returns:
        keep, an int in [0, N].

    Raises:
        SettingError / SettingTypeError: ``merging_ratio`` outside [0, 1] or not a real number,
            ``tokens_per_frame`` < 1 or not an int.
    """
    n = _check_int("tokens_per_frame", tokens_per_frame, 1)
    if not isinstance(merging_ratio, numbers.Real) or isinstance(merging_ratio, bool):
        raise SettingTypeError(
            f"merging_ratio must be a real number; got {merging_ratio!r} ({type(merging_ratio).__name__})"
        )
    ratio = float(merging_ratio)
    if not (math.isfinite(ratio) and 0.0 <= ratio <= 1.0):
        raise SettingError(f"merging_ratio must be in [0, 1]; got {merging_ratio!r}")
    return int((1 - ratio) * n)


def dycoke_frame_roles(num_frames: int) -> tuple[list[int], list[int], list[int]]:
    """Which frames TTM keeps whole, prunes to ``keep`` tokens, or drops, for F frames.

    Depends on F only. Pruned: every odd frame of a pair (``1, 3, .., 2 * (F // 2) - 1``) and the
    window frames ``i + 2`` for ``i`` in ``range(0, F - 4, 4)``; dropped: frame ``F - 1`` when F is
    odd; full: the other even frames.

    Args:
        num_frames: F >= 2.

    Returns:
        ``(full, pruned, dropped)``: ascending frame indices; together they partition
        ``range(F)``.

    Raises:
        InputError: F < 2. SettingTypeError: F not an int.
    """
    frames = _check_frames(num_frames)
    paired = 2 * (frames // 2)
    window = set(range(2, frames - 2, 4))  # i + 2 for i in range(0, F - 4, 4)
    pruned = sorted(set(range(1, paired, 2)) | window)
    full = [f for f in range(0, paired, 2) if f not in window]
    dropped = list(range(paired, frames))
    return full, pruned, dropped


def dycoke_kept_count(num_frames: int, tokens_per_frame: int, keep: int) -> int:
    """Number of tokens TTM keeps: ``len(full) * N + len(pruned) * keep`` (see :func:`dycoke_frame_roles`).

    With ``keep = 0`` this is the floor no ``keep`` can go below (the full frames alone).

    Args:
        num_frames: F >= 2.
        tokens_per_frame: N >= 1.
        keep: tokens kept per pruned frame, in [0, N].

    Returns:
        L, the length of :func:`dycoke_ttm_keep`'s output.
    """
    n = _check_int("tokens_per_frame", tokens_per_frame, 1)
    k = _check_int("keep", keep, 0, n)
    full, pruned, _ = dycoke_frame_roles(num_frames)
    return len(full) * n + len(pruned) * k


def dycoke_ttm_keep(
    x: torch.Tensor, tokens_per_frame: int, keep: int, *, legacy_pair_index: bool = False
) -> torch.Tensor:
    """Flat indices of the tokens DyCoke's TTM keeps, in the published function's output order.

    ``x[dycoke_ttm_keep(x, N, keep)]`` is bitwise equal to the published
    ``dycole_ttm(x, N, merging_ratio)`` when ``keep == dycoke_keep_from_ratio(merging_ratio, N)``
    (for F >= 5, where the published function runs; see the module docstring for F <= 4).

    Output order: frames ascending; a full frame's tokens in spatial order, a pruned frame's
    ``keep`` tokens in ``topk(largest=False)`` order of their similarity; dropped frames absent.

    Args:
        x: (F * N, C) one video's tokens, frame-major, floating point; F >= 2.
        tokens_per_frame: N >= 1.
        keep: tokens kept in every pruned frame, in [0, N] (the published
            ``int((1 - merging_ratio) * N)``, :func:`dycoke_keep_from_ratio`).
        legacy_pair_index: prune pair j's odd frame with pair j - 1's similarity (pair 0 with
            the last pair's), as the first public version (commit 26dc6f4) did.

    Returns:
        (L,) int64 indices into F * N on ``x``'s device, L = :func:`dycoke_kept_count`.

    Raises:
        InputError: x not 2-D or not floating point, ``len(x)`` not a multiple of N, F < 2.
        SettingError / SettingTypeError: N < 1, ``keep`` outside [0, N], or not ints.
    """
    n = _check_int("tokens_per_frame", tokens_per_frame, 1)
    k = _check_int("keep", keep, 0, n)
    if x.dim() != 2:
        raise InputError(f"x must be (F * N, C), one video's tokens; got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise InputError(f"x must be floating point; got dtype {x.dtype}")
    if x.shape[0] % n:
        raise InputError(
            f"x has {x.shape[0]} tokens, not a multiple of tokens_per_frame={n} (F * N tokens expected)"
        )
    frames = _check_frames(x.shape[0] // n)
    pairs = frames // 2

    def frame(f: int) -> torch.Tensor:
        return x[f * n : (f + 1) * n]

    # the published calls, on the same (N, C) tensors: normalise, then cosine (pairs) ...
    normed = [F.normalize(frame(f), p=2, dim=1) for f in range(2 * pairs)]
    pair_sim = [F.cosine_similarity(normed[2 * j], normed[2 * j + 1], dim=1) for j in range(pairs)]
    local: list[torch.Tensor | None] = [None] * (2 * pairs)  # None: the whole frame
    for j in range(pairs):
        source = (j - 1) % pairs if legacy_pair_index else j
        local[2 * j + 1] = pair_sim[source].topk(k, largest=False).indices
    # ... and the raw cosine (windows), which overwrites the even frame i + 2
    for i in range(0, frames - 4, 4):
        window_sim = F.cosine_similarity(frame(i), frame(i + 2), dim=1)
        local[i + 2] = window_sim.topk(k, largest=False).indices

    whole = torch.arange(n, device=x.device)
    return torch.cat([(whole if sel is None else sel) + f * n for f, sel in enumerate(local)])
