"""Run-Length Tokenization (RLT) token selection as pure tensor functions (no modules, no model names).

RLT (Choudhury et al., NeurIPS 2024) drops the input tokens of a video ViT that repeat the token
before them in time, before the first block. For a tubelet of ``ts`` frames and ``ph x pw``
patches, token ``(t, y, x)`` of the ``T0 x h x w`` grid (``T0 = T // ts``) with ``t >= 1`` has
the difference

    d[t, y, x] = mean over channels c and the patch's pixels (i, j) of
                 | pixels[(t + 1) * ts - 1, c, y * ph + i, x * pw + j]
                   - pixels[(t - 1) * ts,   c, y * ph + i, x * pw + j] |

(the last frame of tubelet ``t`` against the first frame of tubelet ``t - 1``, on the input the
model receives, i.e. after its normalisation), and is *static* when ``d <= tau``. Every token of
slot 0 is kept. The paper's ``tau = 0.1`` is in units of the ImageNet-normalised input
(``(x / 255 - mean) / std``); on another scale ``tau`` must be scaled with it.

Token index ``t * N + y * w + x`` (``N = h * w``) is the raster order of a tubelet embedding's
output (temporal-major), so the indices returned here index the ``T0 * N`` grid directly.

Two selections:

* :func:`keep_by_threshold` (the paper): every non-static token; a different count per clip,
  returned padded (``-1``) with a validity mask. Its output shape depends on the data, so it
  reads the longest count on the host (one synchronisation per call).
* :func:`keep_by_budget`: a fixed number of tokens per clip (the largest differences, slot 0
  always in), with no host synchronisation.

Both are computed per clip, so a clip's selection never depends on the other clips of a batch.
"""

from __future__ import annotations

import math
import numbers

import torch

from stprune.errors import InputError, SettingError, SettingTypeError

__all__ = [
    "FIRST_SLOT_DIFFERENCE",
    "check_threshold",
    "patch_differences",
    "static_mask",
    "keep_by_threshold",
    "keep_by_budget",
]

#: the difference given to every token of slot 0 (which has no earlier tubelet): always kept
FIRST_SLOT_DIFFERENCE = math.inf


def _pair(patch: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(patch, numbers.Integral) and not isinstance(patch, bool):
        return int(patch), int(patch)
    if isinstance(patch, (tuple, list)) and len(patch) == 2:
        return int(patch[0]), int(patch[1])
    raise SettingTypeError(f"patch must be an int or a pair (ph, pw); got {patch!r}")


def _check_int(name: str, value: object, low: int) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise SettingTypeError(f"{name} must be an int; got {value!r} ({type(value).__name__})")
    if value < low:
        raise SettingError(f"{name} must be >= {low}; got {value}")
    return int(value)


def check_threshold(threshold: object) -> float:
    if not isinstance(threshold, numbers.Real) or isinstance(threshold, bool):
        raise SettingTypeError(
            f"threshold must be a real number; got {threshold!r} ({type(threshold).__name__})"
        )
    if not math.isfinite(float(threshold)):
        raise SettingError(f"threshold must be finite; got {threshold!r}")
    return float(threshold)


def patch_differences(pixels: torch.Tensor, tubelet: int, patch: int | tuple[int, int]) -> torch.Tensor:
    """Per-token RLT difference: mean |last frame of tubelet t - first frame of tubelet t-1|.

    The grid is the one a stride = kernel tubelet embedding (Conv3d) produces: ``T0 = T // ts``
    slots, ``h = H // ph`` rows, ``w = W // pw`` columns; frames and pixels beyond it are ignored.

    Args:
        pixels: (B, T, C, H, W) the model's (normalised) input clip, any floating or integer
            dtype; computed in float32 (float64 stays float64).
        tubelet: ts, frames per temporal slot (>= 1).
        patch: (ph, pw) pixels per token (or one int for both).

    Returns:
        (B, T0, N) differences, N = h * w in raster order (``y * w + x``); slot 0 is
        :data:`FIRST_SLOT_DIFFERENCE` (+inf). float32 (float64 for float64 input).

    Raises:
        InputError: pixels not 5-D, or smaller than one tubelet / one patch.
        SettingError / SettingTypeError: bad ``tubelet`` or ``patch``.
    """
    ts = _check_int("tubelet", tubelet, 1)
    ph, pw = _pair(patch)
    _check_int("patch height", ph, 1)
    _check_int("patch width", pw, 1)
    if pixels.dim() != 5:
        raise InputError(f"pixels must be (B, T, C, H, W); got shape {tuple(pixels.shape)}")
    b, t, c, height, width = pixels.shape
    t0, h, w = t // ts, height // ph, width // pw
    if t0 < 1 or h < 1 or w < 1:
        raise InputError(
            f"pixels {tuple(pixels.shape)} (B, T, C, H, W) hold no whole tubelet of {ts} frames x "
            f"{ph} x {pw} pixels"
        )
    x = pixels if pixels.dtype == torch.float64 else pixels.to(torch.float32)
    x = x[:, : t0 * ts, :, : h * ph, : w * pw]
    last = x[:, 2 * ts - 1 :: ts]  # frames (t + 1) * ts - 1 for t = 1 .. T0 - 1
    first = x[:, 0 : (t0 - 1) * ts : ts]  # frames (t - 1) * ts for t = 1 .. T0 - 1
    d = (last - first).abs().view(b, t0 - 1, c, h, ph, w, pw).mean(dim=(2, 4, 6))  # (B, T0-1, h, w)
    head = d.new_full((b, 1, h * w), FIRST_SLOT_DIFFERENCE)
    return torch.cat([head, d.reshape(b, t0 - 1, h * w)], dim=1)


def static_mask(diff: torch.Tensor, threshold: float) -> torch.Tensor:
    """Which tokens are static (dropped): ``not (diff > threshold)``, never in slot 0.

    ``diff == threshold`` is static (the rule is ``d <= tau``); a NaN difference is static too
    (as in the authors' code, which keeps ``d > tau``). The comparison runs in ``diff``'s dtype.

    Args:
        diff: (B, T0, N) differences from :func:`patch_differences`.
        threshold: tau, a finite real number.

    Returns:
        (B, T0 * N) bool, True where the token is static; slot 0 (the first N) is always False.
    """
    tau = check_threshold(threshold)
    if diff.dim() != 3:
        raise InputError(f"diff must be (B, T0, N); got shape {tuple(diff.shape)}")
    static = ~(diff > tau)
    static[:, 0] = False
    return static.flatten(1)


def keep_by_threshold(
    diff: torch.Tensor, threshold: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """RLT's own selection: every token that is not static, a different count per clip.

    Reads the longest count on the host (``counts.max()``, one synchronisation) because the
    output's length depends on the data; everything else stays on the device.

    Args:
        diff: (B, T0, N) differences from :func:`patch_differences`.
        threshold: tau (see :func:`static_mask`).

    Returns:
        ``(indices, counts, valid)``:

        * indices: (B, Lmax) int64 indices into the T0 * N grid of each clip's kept tokens, in
          ascending (raster) order, padded with -1 after the clip's last kept token;
          ``Lmax = counts.max()`` (at least N: slot 0 is always kept).
        * counts: (B,) int64 kept tokens per clip.
        * valid: (B, Lmax) bool, ``indices >= 0`` (``valid[b, :counts[b]]`` True, the rest False).
    """
    keep = ~static_mask(diff, threshold)  # (B, M)
    counts = keep.sum(1)
    length = int(counts.max()) if keep.shape[0] else 0  # the one host synchronisation
    # stable: the kept tokens come first, each group in ascending index order
    order = torch.argsort((~keep).to(torch.uint8), dim=1, stable=True)[:, :length]
    valid = torch.arange(length, device=diff.device) < counts[:, None]
    indices = torch.where(valid, order, torch.full_like(order, -1))
    return indices, counts, valid


def keep_by_budget(diff: torch.Tensor, keep: int) -> torch.Tensor:
    """A fixed budget per clip: the ``keep`` tokens with the largest differences, slot 0 always in.

    Ties are broken by index (the smaller index is kept), a NaN difference ranks below every
    number. No host synchronisation; each clip is selected on its own.

    Args:
        diff: (B, T0, N) differences from :func:`patch_differences`.
        keep: tokens kept per clip, N <= keep <= T0 * N.

    Returns:
        (B, keep) int64 indices into the T0 * N grid, ascending (raster order).

    Raises:
        SettingError: ``keep`` outside [N, T0 * N].
    """
    if diff.dim() != 3:
        raise InputError(f"diff must be (B, T0, N); got shape {tuple(diff.shape)}")
    b, t0, n = diff.shape
    keep = _check_int("keep", keep, 0)
    if not n <= keep <= t0 * n:
        raise SettingError(
            f"keep must be in [{n}, {t0 * n}] (every token of the first tubelet is kept, {t0} x {n} tokens "
            f"in all); got {keep}"
        )
    score = torch.where(diff.isnan(), -math.inf, diff)  # a new tensor: diff is not changed
    score[:, 0] = math.inf
    order = torch.sort(score.flatten(1), dim=1, descending=True, stable=True).indices
    return order[:, :keep].sort(dim=1).values
