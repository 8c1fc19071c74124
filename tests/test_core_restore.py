"""restore_grid: round trips, nearest-in-time fill against a loop reference, value fill, padding."""

from __future__ import annotations

import pytest
import torch

from stprune.core.restore import restore_grid
from stprune.core.rlt import keep_by_threshold, patch_differences
from stprune.errors import InputError, SettingError, SettingTypeError


def naive_nearest(tokens: torch.Tensor, positions: torch.Tensor, t0: int, n: int) -> torch.Tensor:
    """Place by place: the own token, else the nearest slot in time with one (earlier first), else 0."""
    b_, _, c = tokens.shape
    out = torch.zeros(b_, t0 * n, c, dtype=tokens.dtype)
    for b in range(b_):
        at = {int(p): tokens[b, i] for i, p in enumerate(positions[b].tolist()) if p >= 0}
        for t in range(t0):
            for k in range(n):
                for dist in range(t0):
                    src = next((s for s in (t - dist, t + dist) if 0 <= s < t0 and s * n + k in at), None)
                    if src is not None:
                        out[b, t * n + k] = at[src * n + k]
                        break
    return out


def random_selection(b: int, t0: int, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, L) positions (shuffled, -1 padded) of random subsets, and the matching bool grid."""
    g = torch.Generator().manual_seed(seed)
    real = torch.rand(b, t0 * n, generator=g) < 0.4
    real[0, 2::n] = False  # spatial index 2 of clip 0: no real token in any slot
    length = int(real.sum(1).max()) + 2
    positions = torch.full((b, length), -1, dtype=torch.int64)
    for i in range(b):
        kept = real[i].nonzero().flatten()
        kept = kept[torch.randperm(len(kept), generator=g)]
        slots = torch.randperm(length, generator=g)[: len(kept)]  # padding anywhere, not only at the end
        positions[i, slots] = kept
    return positions, real


def test_all_positions_round_trip():
    g = torch.Generator().manual_seed(0)
    t0, n, c = 4, 6, 5
    grid = torch.randn(3, t0 * n, c, generator=g)
    for fill in ("nearest_time", 0.0, -7.5):
        out, real = restore_grid(grid, torch.arange(t0 * n).expand(3, -1), (t0, n), fill=fill)
        assert torch.equal(out, grid) and real.all()
        perm = torch.stack([torch.randperm(t0 * n, generator=g) for _ in range(3)])
        tokens = grid.gather(1, perm[..., None].expand(-1, -1, c))
        out, real = restore_grid(tokens, perm, (t0, n), fill=fill)
        assert torch.equal(out, grid) and real.all()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_nearest_time_equals_the_loop_reference(seed):
    t0, n, c = 5, 4, 3
    positions, real = random_selection(4, t0, n, seed)
    tokens = torch.randn(4, positions.shape[1], c, generator=torch.Generator().manual_seed(seed))
    out, got_real = restore_grid(tokens, positions, (t0, n))
    assert torch.equal(got_real, real)
    assert torch.equal(out, naive_nearest(tokens, positions, t0, n))
    assert (out[0, 2::n] == 0).all()  # no real token at that spatial index: 0


def test_nearest_time_ties_go_to_the_earlier_slot():
    t0, n = 5, 1
    tokens = torch.tensor([[[1.0], [3.0]]])  # slots 1 and 3 of the one spatial index
    out, real = restore_grid(tokens, torch.tensor([[1, 3]]), (t0, n))
    assert out[0, :, 0].tolist() == [1.0, 1.0, 1.0, 3.0, 3.0]  # slot 2 is 1 away from both: slot 1
    assert real[0].tolist() == [False, True, False, True, False]


def test_value_fill():
    t0, n, c = 3, 4, 2
    positions, real = random_selection(2, t0, n, 4)
    tokens = torch.randn(2, positions.shape[1], c)
    out, got_real = restore_grid(tokens, positions, (t0, n), fill=-2.5)
    assert torch.equal(got_real, real)
    assert (out[~real] == -2.5).all()
    for b in range(2):
        for i, p in enumerate(positions[b].tolist()):
            if p >= 0:
                assert torch.equal(out[b, p], tokens[b, i])


def test_padding_is_ignored():
    t0, n, c = 4, 3, 2
    positions, _ = random_selection(3, t0, n, 5)
    tokens = torch.randn(3, positions.shape[1], c)
    poisoned = torch.where((positions < 0)[..., None], torch.full_like(tokens, float("nan")), tokens)
    for fill in ("nearest_time", 1.0):
        out, _ = restore_grid(tokens, positions, (t0, n), fill=fill)
        out_poisoned, _ = restore_grid(poisoned, positions, (t0, n), fill=fill)
        assert not out_poisoned.isnan().any()
        assert torch.equal(out, out_poisoned)
        # the same clip without its padding columns
        keep = positions[1] >= 0
        alone, _ = restore_grid(tokens[1:2, keep], positions[1:2, keep], (t0, n), fill=fill)
        assert torch.equal(alone[0], out[1])


def test_threshold_selection_restores():
    g = torch.Generator().manual_seed(6)
    clip = torch.rand(3, 8, 3, 16, 16, generator=g)
    clip[0] = clip[0, :1]  # static: slot 0 only
    t0, n = 4, 16
    idx, _, valid = keep_by_threshold(patch_differences(clip, 2, 4), 0.3)
    grid = torch.randn(3, t0 * n, 7, generator=g)  # stands for a model's output tokens
    tokens = grid.gather(1, idx.clamp_min(0)[..., None].expand(-1, -1, 7))
    out, real = restore_grid(tokens, idx, (t0, n), fill=0.0)
    assert torch.equal(real.sum(1), valid.sum(1))
    assert torch.equal(out[real], grid[real])
    out, _ = restore_grid(tokens, idx, (t0, n))
    assert torch.equal(out[0], grid[0, :n].repeat(t0, 1))  # every slot from slot 0


def test_gradient_reaches_each_token_once_per_place_it_fills():
    tokens = torch.randn(1, 3, 2, requires_grad=True)
    positions = torch.tensor([[0, 5, -1]])  # grid 3 x 2: token 0 at (0, 0), token 1 at (2, 1)
    out, _ = restore_grid(tokens, positions, (3, 2))
    out.sum().backward()
    # token 0 fills (0,0), (1,0), (2,0); token 1 fills (0,1), (1,1), (2,1); the padding nothing
    assert tokens.grad[0, :, 0].tolist() == [3.0, 3.0, 0.0]


def test_bad_arguments():
    tokens = torch.zeros(1, 2, 3)
    with pytest.raises(InputError, match="twice"):
        restore_grid(tokens, torch.tensor([[1, 1]]), (2, 2))
    with pytest.raises(InputError, match=r"\[0, 4\)"):
        restore_grid(tokens, torch.tensor([[0, 4]]), (2, 2))
    with pytest.raises(InputError):
        restore_grid(tokens, torch.tensor([[0, -2]]), (2, 2))
    with pytest.raises(InputError):
        restore_grid(tokens, torch.tensor([[0.0, 1.0]]), (2, 2))
    with pytest.raises(InputError):
        restore_grid(tokens, torch.tensor([[0, 1, 2]]), (2, 2))
    with pytest.raises(SettingError, match="nearest_time"):
        restore_grid(tokens, torch.tensor([[0, 1]]), (2, 2), fill="nearest")
    with pytest.raises(SettingTypeError):
        restore_grid(tokens, torch.tensor([[0, 1]]), (2, 2), fill=None)
    with pytest.raises(SettingError):
        restore_grid(tokens, torch.tensor([[0, 1]]), (0, 2))
    with pytest.raises(SettingTypeError):
        restore_grid(tokens, torch.tensor([[0, 1]]), 4)
