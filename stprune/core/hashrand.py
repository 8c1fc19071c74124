"""Counter-based pseudo-random numbers from tensor ops (no generator objects).

Deterministic functions of integer counters, so they need no RNG state, trace under
``torch.compile(fullgraph=True)`` and run on any device (meta included). :func:`content_keys`
turns each sample of a batch into a key from its own values, so a draw keyed by it is the same
for a sample whatever its batch and its position in the batch.
"""

from __future__ import annotations

import torch

__all__ = ["hash_uniform", "content_keys", "mix_keys", "CONTENT_KEY_VALUES"]

_MASK = 0xFFFFFFFF
_MUL = 0x45D9F3B  # 28-bit odd multiplier: products of 32-bit values stay exact in int64

#: at most this many evenly spaced values of a sample enter its content key
CONTENT_KEY_VALUES = 1 << 12


def _mix(x: torch.Tensor) -> torch.Tensor:
    x = (((x >> 16) ^ x) * _MUL) & _MASK
    x = (((x >> 16) ^ x) * _MUL) & _MASK
    return (x >> 16) ^ x


def hash_uniform(
    shape: tuple[int, ...],
    seed: int,
    stream: int,
    device: torch.device | str,
    row_keys: torch.Tensor | None = None,
) -> torch.Tensor:
    """Uniform [0, 1) float32 values, a deterministic function of (seed, stream, position).

    Args:
        shape: output shape; element positions are the counters.
        seed: user seed.
        stream: an extra key (e.g. the stage index) so different calls differ.
        device: where to build the tensor.
        row_keys: optional (shape[0],) int64 keys in [0, 2**32): then row i is a function of
            (seed, stream, row_keys[i], position inside the row) only, not of i.
    """
    n = 1
    for s in shape:
        n *= s
    key = _mix(torch.tensor((seed * 0x9E37 + stream * 0x85EB + 1) & _MASK, device=device, dtype=torch.int64))
    if row_keys is None:
        counter = torch.arange(n, device=device, dtype=torch.int64)
    else:
        per_row = n // shape[0] if shape[0] else 0
        counter = torch.arange(per_row, device=device, dtype=torch.int64).expand(shape[0], per_row)
        key = _mix(key ^ row_keys.to(device=device, dtype=torch.int64).view(-1, 1))
    h = _mix((counter ^ key) & _MASK)
    h = _mix(h ^ ((key * 0x2C1B) & _MASK))
    return (h.to(torch.float64) / 2**32).to(torch.float32).reshape(shape)


def content_keys(x: torch.Tensor) -> torch.Tensor:
    """(B,) int64 keys in [0, 2**32), each a hash of its own sample's values.

    A sample's key is a function of its values only (their float32 bit patterns, at up to
    :data:`CONTENT_KEY_VALUES` evenly spaced positions), so it is the same alone and at any
    position of any batch. Integer arithmetic only: exact and identical on every device, with
    no host synchronisation.

    Args:
        x: (B, ...) floating-point samples (e.g. the clips a model receives).
    """
    b = x.shape[0]
    flat = x.detach().reshape(b, -1)
    step = max(1, -(-flat.shape[1] // CONTENT_KEY_VALUES))
    vals = flat[:, ::step].to(torch.float32).contiguous().view(torch.int32).to(torch.int64) & _MASK
    pos = torch.arange(vals.shape[1], device=x.device, dtype=torch.int64)
    h = _mix(vals ^ _mix(pos * 0x9E3779B1 & _MASK))  # each term < 2**32: the sum is exact in int64
    return _mix(h.sum(1) & _MASK)


def mix_keys(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """A key in [0, 2**32) from two int64 keys in [0, 2**32) (elementwise, broadcasting)."""
    return _mix((a ^ _mix((b + 1) & _MASK)) & _MASK)
