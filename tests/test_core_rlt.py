"""RLT selection: crafted clips, an independent per-token loop implementation of the rule, budgets."""

from __future__ import annotations

import math

import pytest
import torch

from stprune.core.rlt import keep_by_budget, keep_by_threshold, patch_differences, static_mask
from stprune.errors import InputError, SettingError, SettingTypeError

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 1, 3, 1, 1)


def naive_differences(pixels: torch.Tensor, ts: int, ph: int, pw: int) -> list[list[list[float]]]:
    """The rule, token by token and pixel by pixel, in float64 (slow, for tests).

    d[b][t][y * w + x] = mean over c, i, j of |frame (t+1)*ts-1 - frame (t-1)*ts| at the patch's pixels;
    slot 0 has no earlier tubelet (None).
    """
    b_, t_, c_, h_, w_ = pixels.shape
    t0, h, w = t_ // ts, h_ // ph, w_ // pw
    p = pixels.double()
    out = []
    for b in range(b_):
        clip = [[None] * (h * w)]
        for t in range(1, t0):
            row = []
            late, early = (t + 1) * ts - 1, (t - 1) * ts
            for y in range(h):
                for x in range(w):
                    total = 0.0
                    for c in range(c_):
                        for i in range(y * ph, (y + 1) * ph):
                            for j in range(x * pw, (x + 1) * pw):
                                total += abs(float(p[b, late, c, i, j]) - float(p[b, early, c, i, j]))
                    row.append(total / (c_ * ph * pw))
            clip.append(row)
        out.append(clip)
    return out


def naive_kept(pixels: torch.Tensor, ts: int, ph: int, pw: int, tau: float) -> list[list[int]]:
    """Kept grid indices per clip: all of slot 0, and every later token with d > tau."""
    kept = []
    for clip in naive_differences(pixels, ts, ph, pw):
        n = len(clip[0])
        kept.append([t * n + k for t, row in enumerate(clip) for k, d in enumerate(row) if t == 0 or d > tau])
    return kept


def moving_square_clip(
    columns: list[int], ts: int = 2, row: int = 2, patch: int = 8, size: int = 32, seed: int = 0
) -> torch.Tensor:
    """(1, T, 3, size, size) ImageNet-normalised clip: a static random texture, and one patch-sized
    white square at patch (row, columns[s]) during every frame of tubelet s."""
    g = torch.Generator().manual_seed(seed)
    background = torch.randint(0, 200, (3, size, size), generator=g).float()  # values <= 199
    frames = []
    for col in columns:
        for _ in range(ts):
            f = background.clone()
            f[:, row * patch : (row + 1) * patch, col * patch : (col + 1) * patch] = 255.0
            frames.append(f)
    x = torch.stack(frames)[None] / 255.0
    return (x - IMAGENET_MEAN) / IMAGENET_STD


def test_moving_square_keeps_exactly_the_moving_patches_and_the_first_tubelet():
    # 4 tubelets; the square sits at column 0, moves to 1, stays at 1, jumps to 3 (row 2, 4 x 4 patches)
    clip = moving_square_clip([0, 1, 1, 3])
    n = 16
    idx, counts, valid = keep_by_threshold(patch_differences(clip, 2, 8), 0.1)
    expected = list(range(n))  # slot 0
    expected += [1 * n + 2 * 4 + 0, 1 * n + 2 * 4 + 1]  # slot 1: the square left (2, 0) and entered (2, 1)
    expected += []  # slot 2: it stayed at (2, 1): nothing changes
    expected += [3 * n + 2 * 4 + 1, 3 * n + 2 * 4 + 3]  # slot 3: left (2, 1), entered (2, 3)
    assert idx[0].tolist() == expected
    assert counts.tolist() == [len(expected)]
    assert valid.all()
    assert naive_kept(clip, 2, 8, 8, 0.1) == [expected]


def test_differences_equal_the_per_pixel_loop():
    g = torch.Generator().manual_seed(1)
    # ts = 3, non-square patches, frames and pixels beyond the grid (ignored, as by a Conv3d)
    x = torch.randn(2, 10, 3, 13, 14, generator=g)
    d = patch_differences(x, 3, (4, 7))
    assert d.shape == (2, 3, 3 * 2)
    assert torch.isinf(d[:, 0]).all() and (d[:, 0] > 0).all()
    ref = naive_differences(x, 3, 4, 7)
    got = d[:, 1:].double()
    want = torch.tensor([clip[1:] for clip in ref], dtype=torch.float64)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


def test_sub_patch_motion_matches_the_loop_rule():
    # a small square moving 3 pixels every frame, over a texture with a little sensor noise
    g = torch.Generator().manual_seed(2)
    t, size = 8, 24
    x = torch.rand(1, 1, 3, size, size, generator=g).repeat(1, t, 1, 1, 1)
    x = x + 0.01 * torch.randn(x.shape, generator=g)
    for f in range(t):
        x[0, f, :, 5:10, 3 * f : 3 * f + 5] = 3.0
    for tau in (0.02, 0.1, 0.5):
        idx, counts, _ = keep_by_threshold(patch_differences(x, 2, 6), tau)
        ref = naive_kept(x, 2, 6, 6, tau)
        assert idx[0, : counts[0]].tolist() == ref[0]


def test_only_the_compared_frames_matter():
    # ts = 4: token t compares frame 4t + 3 with frame 4t - 4; the frames between are not read
    base = torch.zeros(1, 12, 1, 4, 4)
    x = base.clone()
    x[0, [1, 2, 5, 6, 9, 10]] = 7.0  # middle frames of every tubelet
    x[0, 4] = 5.0  # first frame of tubelet 1: compared only by tubelet 2 (with frame 11)
    d = patch_differences(x, 4, 2)
    assert torch.equal(d[0, 1], torch.zeros(4))  # frame 7 vs frame 0
    assert torch.equal(d[0, 2], torch.full((4,), 5.0))  # frame 11 vs frame 4


def test_equal_to_tau_is_static():
    x = torch.zeros(1, 6, 3, 8, 8)
    x[0, 3, :, :4, :4] = 0.25  # last frame of tubelet 1, patch (0, 0): d = 0.25 exactly
    d = patch_differences(x, 2, 4)
    assert d[0, 1, 0].item() == 0.25
    assert int((d[0, 1:] != 0).sum()) == 1
    n = 4
    static = static_mask(d, 0.25)
    assert static[0, n].item() is True  # d == tau: static ...
    assert static[0, n:].all() and not static[0, :n].any()
    below = static_mask(d, 0.25 - 2**-10)
    assert below[0, n].item() is False  # ... d > tau: kept
    assert below[0, n + 1 :].all()
    idx, counts, _ = keep_by_threshold(d, 0.25)
    assert counts.tolist() == [n] and idx[0].tolist() == list(range(n))
    idx, counts, _ = keep_by_threshold(d, 0.25 - 2**-10)
    assert idx[0].tolist() == [*range(n), n]


def test_first_tubelet_is_kept_whatever_the_threshold():
    x = torch.zeros(2, 4, 3, 8, 8)
    d = patch_differences(x, 2, 4)
    for tau in (-1.0, 0.0, 1e30):
        static = static_mask(d, tau)
        assert not static[:, :4].any()
        assert static[:, 4:].all() == (tau >= 0)
    # not only through the +inf sentinel: a difference tensor with anything in slot 0
    d = torch.zeros(2, 3, 4)
    idx, counts, _ = keep_by_threshold(d, 0.5)
    assert counts.tolist() == [4, 4] and idx.tolist() == [[0, 1, 2, 3]] * 2


def test_integer_pixels_are_not_wrapped():
    g = torch.Generator().manual_seed(3)
    x = torch.randint(0, 256, (1, 4, 3, 8, 8), generator=g, dtype=torch.uint8)
    d = patch_differences(x, 2, 4)
    assert d.dtype == torch.float32
    torch.testing.assert_close(d, patch_differences(x.float(), 2, 4), rtol=0, atol=0)
    ref = naive_differences(x.float(), 2, 4, 4)
    torch.testing.assert_close(d[:, 1:].double(), torch.tensor([c[1:] for c in ref], dtype=torch.float64))


def test_float64_stays_float64():
    x = torch.randn(1, 4, 3, 8, 8, dtype=torch.float64)
    assert patch_differences(x, 2, 4).dtype == torch.float64


def test_threshold_batch_equals_each_clip_alone_with_padding():
    clips = [moving_square_clip(c, seed=s) for s, c in enumerate([[0, 1, 1, 3], [2, 2, 2, 2], [0, 1, 2, 3]])]
    g = torch.Generator().manual_seed(4)
    clips.append(torch.randn(1, 8, 3, 32, 32, generator=g))  # everything moves
    batch = torch.cat(clips)
    idx, counts, valid = keep_by_threshold(patch_differences(batch, 2, 8), 0.1)
    assert idx.dtype == torch.int64 and counts.dtype == torch.int64 and valid.dtype == torch.bool
    assert counts.tolist() == [20, 16, 22, 64]
    assert idx.shape == (4, 64)  # the longest clip
    assert torch.equal(valid, torch.arange(64) < counts[:, None])
    assert torch.equal(idx >= 0, valid)
    assert (idx[~valid] == -1).all()
    for b, clip in enumerate(clips):
        alone, n_alone, _ = keep_by_threshold(patch_differences(clip, 2, 8), 0.1)
        assert n_alone.tolist() == [counts[b].item()]
        assert torch.equal(alone[0], idx[b, : counts[b]])
        assert torch.all(idx[b, : counts[b]].diff() > 0)  # ascending


def naive_budget(diff: torch.Tensor, keep: int) -> list[list[int]]:
    out = []
    for clip in diff:
        n = clip.shape[1]
        flat = clip.flatten().tolist()
        score = [math.inf if i < n else (-math.inf if math.isnan(v) else v) for i, v in enumerate(flat)]
        order = sorted(range(len(flat)), key=lambda i: (-score[i], i))
        out.append(sorted(order[:keep]))
    return out


@pytest.mark.parametrize("keep", [6, 7, 11, 19, 30])
def test_budget_keeps_the_largest_differences_and_slot_0(keep):
    g = torch.Generator().manual_seed(5)
    # few distinct values: many ties, broken by index
    diff = torch.randint(0, 4, (3, 5, 6), generator=g).float()
    diff[1, 2, 3] = float("nan")
    diff[:, 0] = math.inf
    idx = keep_by_budget(diff, keep)
    assert idx.shape == (3, keep) and idx.dtype == torch.int64
    assert idx.tolist() == naive_budget(diff, keep)
    assert (idx[:, :6] == torch.arange(6)).all()  # slot 0 first, all of it


def test_budget_ties_keep_the_smaller_index():
    diff = torch.zeros(1, 4, 3)
    diff[0, 0] = math.inf
    assert keep_by_budget(diff, 5).tolist() == [[0, 1, 2, 3, 4]]


def test_budget_keeps_slot_0_even_when_later_tokens_differ_more():
    diff = torch.full((1, 3, 2), 1e30)
    diff[0, 0] = 0.0  # not the sentinel: slot 0 must still be kept
    assert keep_by_budget(diff, 3).tolist() == [[0, 1, 2]]


def test_budget_batch_independent():
    g = torch.Generator().manual_seed(6)
    batch = torch.randn(5, 8, 3, 16, 16, generator=g)
    batch[1] = batch[1, :1]  # a static clip
    d = patch_differences(batch, 2, 4)
    together = keep_by_budget(d, 40)
    for b in range(5):
        assert torch.equal(keep_by_budget(patch_differences(batch[b : b + 1], 2, 4), 40)[0], together[b])
    assert together[1].tolist() == list(range(40))  # static: slot 0, then by index


def test_budget_bounds():
    d = torch.rand(2, 4, 6)
    assert keep_by_budget(d, 6).tolist() == [list(range(6))] * 2
    assert keep_by_budget(d, 24).tolist() == [list(range(24))] * 2
    with pytest.raises(SettingError, match=r"\[6, 24\].*got 5"):
        keep_by_budget(d, 5)
    with pytest.raises(SettingError, match="got 25"):
        keep_by_budget(d, 25)
    with pytest.raises(SettingTypeError):
        keep_by_budget(d, 7.0)


def test_bad_settings_and_inputs():
    x = torch.zeros(1, 4, 3, 8, 8)
    d = patch_differences(x, 2, 4)
    for bad in (math.inf, math.nan):
        with pytest.raises(SettingError, match="finite"):
            static_mask(d, bad)
    with pytest.raises(SettingTypeError):
        keep_by_threshold(d, True)
    with pytest.raises(SettingTypeError):
        keep_by_threshold(d, "0.1")
    with pytest.raises(InputError, match="B, T, C, H, W"):
        patch_differences(x[0], 2, 4)
    with pytest.raises(InputError, match="no whole tubelet"):
        patch_differences(x, 5, 4)
    with pytest.raises(SettingError):
        patch_differences(x, 0, 4)
    with pytest.raises(SettingTypeError):
        patch_differences(x, 2, (4, 4, 4))
