"""RLT (Run-Length Tokenization, Choudhury et al., NeurIPS 2024), training-free, as published.

Tokens that repeat the token one tubelet earlier are dropped before the first block (see
:mod:`stprune.core.rlt` for the rule). Two modes:

* threshold (the paper): ``RLT(threshold=tau)``, every token whose difference exceeds ``tau`` is
  kept, so each clip keeps its own number of tokens (a batch is padded, and the padding is kept
  out of attention and pooling by the pruner);
* fixed budget: with ``r`` (tokens dropped per clip) or ``flops_target``, the tokens with the
  smallest differences are dropped, so RLT can be compared with other methods at equal FLOPs.

``tau`` is in units of the input the model receives. The paper's 0.1 is for ImageNet-normalised
input (std about 0.225); for a model fed ``(x - 0.5) / 0.5`` (the default of transformers'
VideoMAE processor class) the same pixel change is 0.225 / 0.5 = 0.45 times as large, so
``threshold=0.045`` matches it.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from stprune.core.rlt import check_threshold, keep_by_budget, keep_by_threshold, patch_differences
from stprune.errors import SettingError
from stprune.methods.base import InputSelection, InputSelectionMethod

__all__ = ["RLT", "DEFAULT_THRESHOLD"]

#: the paper's tau (ImageNet-normalised input)
DEFAULT_THRESHOLD = 0.1


class RLT(InputSelectionMethod):
    """Drop temporally repeated input tokens (see the module docstring).

    Args:
        threshold: tau of the threshold mode (a finite number >= 0; the paper: 0.1). ``None``: the
            mode follows the setting: a fixed budget when ``r`` or ``flops_target`` is given,
            else the threshold mode with tau = 0.1.
    """

    name: ClassVar[str] = "rlt"
    option_names: ClassVar[tuple[str, ...]] = ("threshold",)
    adaptive: ClassVar[bool] = True

    def __init__(self, threshold: float | None = None) -> None:
        tau = None if threshold is None else check_threshold(threshold)
        if tau is not None and tau < 0:
            raise SettingError(
                f"threshold must be >= 0 (a mean |difference| of the input; a negative one keeps every "
                f"token, nothing is pruned); got {threshold!r}"
            )
        self.threshold = tau

    def check_budget(self) -> None:
        if self.threshold is not None:
            raise SettingError(
                f"rlt: give threshold (the tokens kept follow each clip) or r / flops_target (a fixed "
                f"budget per clip), not both; got threshold={self.threshold}"
            )

    def select(
        self, pixels: torch.Tensor, tubelet: int, patch: tuple[int, int], keep: int | None
    ) -> InputSelection:
        diff = patch_differences(pixels, tubelet, patch)
        if keep is not None:
            indices = keep_by_budget(diff, keep)
            counts = torch.full((indices.shape[0],), keep, dtype=torch.int64, device=indices.device)
            return InputSelection(indices, None, counts)
        tau = DEFAULT_THRESHOLD if self.threshold is None else self.threshold
        indices, counts, valid = keep_by_threshold(diff, tau)
        padded = bool(valid.shape[0]) and not bool(valid.all())
        return InputSelection(indices, valid if padded else None, counts)
