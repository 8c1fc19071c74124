"""Random pruning: the floor any informed method must beat. Same schedule and r as STA."""

from __future__ import annotations

from typing import ClassVar

import torch

from stprune.core.hashrand import hash_uniform, mix_keys
from stprune.core.schedule import Stage
from stprune.methods.base import ForwardContext, IndexPruningMethod

__all__ = ["RandomPruning"]


class RandomPruning(IndexPruningMethod):
    """Drop r uniformly random tokens from every group; kept tokens stay in their order.

    Args:
        seed: the draw is a fixed function of (seed, stage, the sample's content key, token
            position). The content key (``ctx.sample_key``, set by the engine from a hash of
            the clip the model receives, see :func:`stprune.core.hashrand.content_keys`) makes a
            clip's selection the same alone and at any position of any batch, so results do not
            depend on the batch size. There is no RNG state, and ``torch.compile`` traces it
            without graph breaks.
    """

    name: ClassVar[str] = "random"
    uses_sample_key: ClassVar[bool] = True
    uses_keys: ClassVar[bool] = False
    option_names: ClassVar[tuple[str, ...]] = ("seed",)

    def __init__(self, seed: int = 0) -> None:
        import numbers

        from stprune.errors import SettingTypeError

        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise SettingTypeError(f"seed must be an int; got {seed!r} ({type(seed).__name__})")
        self.seed = int(seed)

    def keep_indices(
        self, x: torch.Tensor, keys: torch.Tensor, stage: Stage, ctx: ForwardContext
    ) -> torch.Tensor:
        m, length, _ = x.shape
        g = stage.groups
        n = length // g
        noise = hash_uniform((m, g * n), self.seed, stage.after_block, x.device, self.row_keys(m, ctx))
        keep = noise.view(m, g, n).topk(n - stage.r, dim=-1).indices.sort(dim=-1).values  # (M, G, n - r)
        offsets = torch.arange(g, device=x.device).view(1, g, 1) * n
        return (keep + offsets).reshape(m, -1)

    @staticmethod
    def row_keys(rows: int, ctx: ForwardContext) -> torch.Tensor:
        """(rows,) keys of the rows ``keep_indices`` sees.

        The rows are the batch's samples, or (Video Swin) every sample's windows, sample-major:
        row ``i`` belongs to sample ``i // (rows // B)`` and is its window ``i % (rows // B)``.

        Raises:
            RuntimeError if the engine did not provide ``ctx.sample_key`` (B,).
        """
        sample = ctx.sample_key
        if sample is None:
            raise RuntimeError(
                "random pruning keys its draw on the clip (ctx.sample_key, set when the patched model "
                "is called): call the model itself, not model.forward() or one of its submodules"
            )
        per_sample = rows // sample.shape[0]
        if per_sample == 1:
            return sample
        window = torch.arange(per_sample, device=sample.device, dtype=torch.int64)
        return mix_keys(sample.view(-1, 1), window.view(1, -1)).reshape(rows)
