"""What an adapter tells the pruners about a model family, and the registry of adapters.

An adapter knows *where* things are in one model family (blocks, key projections, protected
tokens, the token grid, the input, the exact cost model, a small example model); it never
knows which method prunes, and this package imports nothing of ``stprune.pruning``. A new
family is one file with an :class:`Adapter` subclass decorated with :func:`register_adapter`;
it then enters the contract test suite (``tests/test_contract.py``) with no test written for it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

__all__ = [
    "ADAPTERS",
    "Adapter",
    "EncoderLayout",
    "InputGrid",
    "MidBlock",
    "SequenceAdapter",
    "class_names",
    "register_adapter",
]


def class_names(model: nn.Module) -> list[str]:
    """Names of the model's class and its bases (matching by name needs no imports)."""
    return [c.__name__ for c in type(model).__mro__]


@dataclass(frozen=True)
class MidBlock:
    """Where hooks reach one block's residual stream between its attention and its MLP.

    In a pre-norm block ``h = x + attn(norm1(x)); out = h + mlp(norm2(h))``, ``h`` (B, L, C) is
    the first input of ``norm`` (norm2) and is passed again to ``rejoin``, the module that adds the
    MLP's output to it (as positional argument ``rejoin_arg``, or keyword ``rejoin_kwarg``).
    Replacing ``h`` in both calls (forward pre-hooks) runs the MLP and its residual on other
    tokens, e.g. fewer.

    Attributes:
        norm: the module that normalises ``h`` for the MLP.
        rejoin: the module that receives ``h`` to add the MLP's output to it.
        rejoin_arg: position of ``h`` in ``rejoin``'s positional arguments.
        rejoin_kwarg: its name when passed by keyword.
        mlp_macs_per_token: matrix-product MACs of the block's MLP per token.
    """

    norm: nn.Module
    rejoin: nn.Module
    rejoin_arg: int
    rejoin_kwarg: str
    mlp_macs_per_token: int


@dataclass
class EncoderLayout:
    """A plain token-sequence encoder (ViT family) as the engine sees it.

    Attributes:
        layers: the transformer blocks in order; each returns (B, L, C) (or a tuple starting with it).
        key_modules: per block, the module whose output is that block's keys, (B, L, heads * head_dim).
        num_heads: attention heads (keys are averaged over heads).
        protected: leading tokens that are never pruned and stay first (e.g. CLS, or any token the
            head reads by position).
        num_slots: T0, temporal slots (frames / tubelet size).
        tokens_per_slot: N, spatial tokens per slot.
        key_dim: d, the width of the head-averaged keys (head dim).
        protected_in_grid: whether the protected tokens are the first tokens *of* the T0 x N grid
            (VideoMAE without mean pooling: its head reads token 0, a patch token) rather than
            extra tokens before it (ViViT's CLS). The other tokens then do not fill whole temporal
            slots, so every pruning stage must use one group.
        query_modules: per block, the module whose output is that block's queries,
            (B, L, heads * head_dim), such that the attention logits are ``q k^T / sqrt(key_dim)``
            of these projections (``None``: the adapter does not say, or they are not, e.g. when
            queries and keys are rotated inside the attention).
        width: C, the width of the tokens between blocks (``None``: not given).
        mid_blocks: per block, where hooks reach it between attention and MLP (:class:`MidBlock`;
            ``None`` where the block adds its residuals inside its own forward).
    """

    layers: Sequence[nn.Module]
    key_modules: Sequence[nn.Module]
    num_heads: int
    protected: int
    num_slots: int
    tokens_per_slot: int
    key_dim: int
    protected_in_grid: bool = False
    query_modules: Sequence[nn.Module] | None = None
    width: int | None = None
    mid_blocks: Sequence[MidBlock] | None = None

    @property
    def depth(self) -> int:
        return len(self.layers)

    @property
    def input_tokens(self) -> int:
        """Tokens block 0 receives: the T0 x N grid, plus the protected tokens outside it."""
        grid = self.num_slots * self.tokens_per_slot
        return grid if self.protected_in_grid else grid + self.protected

    @property
    def prunable_tokens(self) -> int:
        """Tokens the first pruning stage may drop (the protected ones excluded)."""
        return self.input_tokens - self.protected

    @property
    def plan_grid(self) -> tuple[int, int]:
        """(slots, tokens per slot) that the schedule's groups split: (T0, N), or one slot of all
        prunable tokens when protected tokens sit inside the grid."""
        if self.protected_in_grid and self.protected:
            return 1, self.prunable_tokens
        return self.num_slots, self.tokens_per_slot

    @property
    def grid_offset(self) -> int:
        """Grid position of prunable token 0 (``protected`` when protected tokens are grid tokens)."""
        return self.protected if self.protected_in_grid else 0


@dataclass(frozen=True)
class InputGrid:
    """How a model's first token grid covers its input clip (what ``stprune show`` draws on).

    Token ``(s, y, x)`` of the grid covers frames ``s * tubelet .. (s + 1) * tubelet - 1`` and
    pixels ``y * patch[0] .. (y + 1) * patch[0] - 1`` (rows), ``x * patch[1] ..`` (columns).

    Attributes:
        input_name: the forward keyword argument that takes the clip (``"pixel_values"``, ``"x"``).
        input_layout: axis order of that tensor, ``"BTCHW"`` or ``"BCTHW"``.
        num_frames: frames per clip the model (and its pruning plan) is set up for.
        image_size: (H, W) pixels of a frame.
        num_slots: T0, temporal slots of the grid (``num_frames / tubelet``, rounded up).
        grid: (h, w) spatial tokens per slot.
        tubelet: frames per temporal slot.
        patch: (ph, pw) pixels per token.
        protected: leading tokens outside the grid (e.g. CLS), never pruned.
    """

    input_name: str
    input_layout: str
    num_frames: int
    image_size: tuple[int, int]
    num_slots: int
    grid: tuple[int, int]
    tubelet: int
    patch: tuple[int, int]
    protected: int = 0


#: every registered adapter, tried in order by ``stprune.adapters.get_adapter``
ADAPTERS: list[type[Adapter]] = []

_A = TypeVar("_A", bound="type[Adapter]")


def register_adapter(cls: _A) -> _A:
    """Class decorator: make ``stprune.adapters.get_adapter`` (and so ``stprune.patch``) know ``cls``."""
    if cls not in ADAPTERS:
        ADAPTERS.append(cls)
    return cls


class Adapter(ABC):
    """Knows one model family: its token geometry, cost model and a valid example input."""

    #: class names (or base-class names) this adapter handles
    model_classes: ClassVar[tuple[str, ...]]

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    @classmethod
    def supports(cls, model: nn.Module) -> bool:
        return any(name in cls.model_classes for name in class_names(model))

    @classmethod
    def example_model(cls, seed: int = 0) -> nn.Module:
        """A small model of this family with random weights, built offline (for the contract tests)."""
        from stprune.errors import UnsupportedModelError

        raise UnsupportedModelError(f"{cls.__name__} provides no example model")

    @abstractmethod
    def example_inputs(
        self, batch_size: int = 1, device: Any = "cpu", dtype: torch.dtype = torch.float32
    ) -> dict:
        """Keyword arguments of a random input the model accepts (for FLOPs and speed)."""

    @abstractmethod
    def unpruned_tokens_per_block(self) -> list[int]:
        """Tokens each block processes without pruning."""

    @abstractmethod
    def describe(self) -> str:
        """One line: model class and token geometry."""

    def input_grid(self) -> InputGrid:
        """Where the model's first token grid lies on its input clip (see :class:`InputGrid`)."""
        from stprune.errors import UnsupportedModelError

        raise UnsupportedModelError(f"{type(self).__name__} does not describe its input token grid")


class SequenceAdapter(Adapter):
    """Adapter for encoders that process a flat token sequence: the engine prunes between blocks."""

    @abstractmethod
    def layout(self) -> EncoderLayout:
        """Blocks, key modules and token grid of the wrapped model."""

    def with_options(self, **options: Any) -> SequenceAdapter:
        """This adapter set up with the family options of ``stprune.patch`` (V-JEPA 2: ``num_frames``).

        Returns an adapter for the same model (``self`` when nothing changes); the pruner plans,
        counts and checks inputs with it. Default: the family takes no options, and any option
        raises ``SettingTypeError`` naming them.
        """
        if options:
            from stprune.errors import SettingTypeError

            raise SettingTypeError(
                f"{type(self.model).__name__} takes no pruning options; got {sorted(options)}"
            )
        return self

    @property
    def mean_pooled(self) -> bool:
        """Whether the head averages the encoder's output tokens (size-weighting matters then)."""
        return False

    @property
    def outputs_tokens(self) -> bool:
        """Whether the model returns its encoder's output tokens to the caller, without a head of its
        own that pools them (``VideoMAEModel``, ``VivitModel``, ``VJEPA2Model``): a caller who pools
        merged or padded tokens must weight them (``stprune.last_trace(model).sizes``)."""
        return False

    @property
    def protected_reason(self) -> str:
        """Why the protected tokens are protected, for messages (e.g. ``"its head reads token 0"``)."""
        return "its leading tokens are protected"

    def install_attention_bias(self, bias_fn: Callable[[int], torch.Tensor | None]) -> Callable[[], None]:
        """Make block ``i``'s attention add ``bias_fn(i)`` (B, 1, 1, L) to its logits; returns an undo.

        Needed only by methods with proportional attention (ToMe). Raises
        ``UnsupportedModelError`` (before changing anything) if the model's attention cannot take
        an additive bias.
        """
        from stprune.errors import UnsupportedModelError

        raise UnsupportedModelError(f"{type(self).__name__} cannot add an attention bias")

    def clip_input(self, args: tuple, kwargs: dict) -> torch.Tensor | None:
        """The (B, ...) clip tensor of a forward call, or ``None`` (default: the first tensor argument)."""
        for value in (*args, *kwargs.values()):
            if isinstance(value, torch.Tensor):
                return value
        return None

    @abstractmethod
    def macs(self, tokens_per_block: Sequence[int]) -> int:
        """Analytic matrix-product MACs of one sample's forward with these tokens per block."""

    def planned_macs(self, tokens_per_block: Sequence[int], final_tokens: int) -> int:
        """:meth:`macs` when the head reads ``final_tokens`` tokens (protected included), which is
        fewer than the last block's when a stage follows the last block.

        Default: :meth:`macs` (a head whose cost does not depend on the token count: mean pooling,
        a CLS token); a head that attends over the tokens (V-JEPA 2's attentive pooler) overrides it.
        """
        return self.macs(tokens_per_block)

    @property
    def needs_positions(self) -> bool:
        """Whether every block after a pruning point must be told its tokens' grid positions
        (rotary position models, V-JEPA 2's 3D RoPE); then :meth:`with_positions` passes them."""
        return False

    def with_positions(self, args: tuple, kwargs: dict, positions: torch.Tensor) -> tuple[tuple, dict]:
        """A block's call arguments with ``positions`` added: (B, L) int64 index of each of its
        tokens in the T0 x N grid (slot * N + spatial index). Only asked if :attr:`needs_positions`."""
        from stprune.errors import UnsupportedModelError

        raise UnsupportedModelError(f"{type(self).__name__} takes no token positions")

    def pruning_guards(self) -> list[torch.utils.hooks.RemovableHandle]:
        """Hooks that refuse forwards needing the full token sequence elsewhere in the model (e.g.
        V-JEPA 2's predictor); installed while some stage prunes (r > 0), removed on unpatch.
        Default: none."""
        return []

    def unpruned_tokens_per_block(self) -> list[int]:
        lay = self.layout()
        return [lay.input_tokens] * lay.depth

    def check_inputs(self, args: tuple, kwargs: dict) -> None:
        """Raise ``InputError`` if a forward input does not fit the configured geometry (default: none)."""

    def describe(self) -> str:
        """One line: model class and geometry."""
        from stprune.core.schedule import plural

        lay = self.layout()
        grid = f"{plural(lay.num_slots, 'temporal slot')} x {plural(lay.tokens_per_slot, 'token')}"
        if lay.protected_in_grid and lay.protected:
            first = "token 0" if lay.protected == 1 else f"tokens 0..{lay.protected - 1}"
            grid += f", {first} protected ({self.protected_reason})"
        elif lay.protected:
            grid += f" + {lay.protected} protected"
        return f"{type(self.model).__name__}: depth {lay.depth}, {grid}"
