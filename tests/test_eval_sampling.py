"""Frame indices and crops of the VideoMAE test protocol.

Expected values are worked out by hand from the protocol definition (docs/eval.md), e.g. for a
300-frame Kinetics video: every 4th frame gives 75 frames; 5 clips of 16 start at
int(k * (75 - 16) / 4) = 0, 14, 29, 44, 59 of those.
"""

import numpy as np
import pytest
import torch

from stprune.eval.sampling import (
    ViewSpec,
    crop_boxes,
    default_views,
    kinetics_clip_indices,
    parse_views,
    resized_hw,
    ssv2_clip_indices,
)
from stprune.eval.transforms import make_views, normalize, resize_short_side


def test_kinetics_300_frames_5_clips():
    clips = kinetics_clip_indices(300, clip_len=16, sampling_rate=4, num_clips=5)
    starts = [0, 14, 29, 44, 59]  # in units of the stride-4 frames
    assert clips == [[4 * (s + i) for i in range(16)] for s in starts]
    assert clips[0][:3] == [0, 4, 8] and clips[-1][-1] == 296


def test_kinetics_small_video_and_centre_clip():
    # 20 frames, stride 4 -> 0,4,8,12,16; slack 1, step 1/4 -> starts 0,0,0,0,1
    assert kinetics_clip_indices(20, 4, 4, 5) == [[0, 4, 8, 12]] * 4 + [[4, 8, 12, 16]]
    # one clip: centred, start int(59 / 2) = 29
    assert kinetics_clip_indices(300, 16, 4, 1) == [[4 * (29 + i) for i in range(16)]]


def test_kinetics_short_video_repeats_last_frame():
    # 10 frames -> 0, 4, 8, padded with the last one
    assert kinetics_clip_indices(10, 4, 4, 3) == [[0, 4, 8, 8]] * 3
    assert kinetics_clip_indices(10, 16, 4, 1) == [[0, 4] + [8] * 14]
    assert kinetics_clip_indices(1, 4, 4, 2) == [[0, 0, 0, 0]] * 2


def test_ssv2_two_clips():
    # 32 frames, 16 segments of 2: first frames 0,2,..; middles 1,3,..
    assert ssv2_clip_indices(32, 16, 2) == [list(range(0, 32, 2)), list(range(1, 32, 2))]
    # 40 frames: tick 2.5 -> int(2.5 x) and int(2.5 x + 1.25)
    c0 = [0, 2, 5, 7, 10, 12, 15, 17, 20, 22, 25, 27, 30, 32, 35, 37]
    c1 = [1, 3, 6, 8, 11, 13, 16, 18, 21, 23, 26, 28, 31, 33, 36, 38]
    assert ssv2_clip_indices(40, 16, 2) == [c0, c1]
    assert ssv2_clip_indices(40, 16, 1) == [c1]  # one clip: segment middles


def test_ssv2_fewer_frames_than_segments():
    # 8 frames, tick 0.5: each frame used twice
    expected = [i // 2 for i in range(16)]
    assert ssv2_clip_indices(8, 16, 2) == [expected, expected]


def _reference_kinetics(n, clip_len, rate, clips):
    """The reference's procedure restated: stride over the whole video, pad, evenly spaced starts."""
    frames = list(range(0, n, rate))
    frames += [frames[-1]] * max(0, clip_len - len(frames))
    step = max((len(frames) - clip_len) / (clips - 1), 0)
    return [frames[int(k * step) : int(k * step) + clip_len] for k in range(clips)]


def _reference_ssv2(n, segments):
    """The reference's procedure restated: 2*segments indices (starts and middles), sorted, split even/odd."""
    tick = n / segments
    idx = sorted(
        [int(tick / 2 + tick * x) for x in range(segments)] + [int(tick * x) for x in range(segments)]
    )
    return [idx[0::2], idx[1::2]]


@pytest.mark.parametrize("n", [1, 3, 15, 16, 17, 63, 64, 65, 100, 250, 301])
def test_matches_reference_procedures(n):
    assert kinetics_clip_indices(n, 16, 4, 5) == _reference_kinetics(n, 16, 4, 5)
    assert kinetics_clip_indices(n, 16, 2, 4) == _reference_kinetics(n, 16, 2, 4)
    assert ssv2_clip_indices(n, 16, 2) == _reference_ssv2(n, 16)
    for clip in kinetics_clip_indices(n, 16, 4, 5) + ssv2_clip_indices(n, 16, 3):
        assert len(clip) == 16 and all(0 <= i < n for i in clip)


def test_resize_and_crop_positions():
    assert resized_hw(64, 80, 32) == (32, 40)
    assert resized_hw(100, 60, 32) == (53, 32)  # int(32 * 100 / 60) = 53
    assert resized_hw(48, 48, 32) == (32, 32)
    assert crop_boxes(32, 40, 32, 3) == [(0, 0), (0, 4), (0, 8)]  # along width, step 4
    assert crop_boxes(32, 40, 32, 1) == [(0, 4)]
    assert crop_boxes(53, 32, 32, 3) == [(0, 0), (10, 0), (21, 0)]  # along height, step 10.5
    assert crop_boxes(32, 32, 32, 3) == [(0, 0)] * 3
    with pytest.raises(ValueError, match="smaller than the crop"):
        crop_boxes(20, 40, 32, 1)


def test_make_views_cuts_the_right_pixels_in_clip_major_order():
    # 3 frames of 32x40 (short side already 32: no resize); red = column, green = frame id
    frames = np.zeros((3, 32, 40, 3), dtype=np.uint8)
    frames[..., 0] = np.arange(40)[None, None, :]
    frames[..., 1] = np.array([10, 20, 30])[:, None, None]
    views = make_views(frames, [[0, 1], [2, 2]], size=32, num_crops=3)
    assert views.shape == (6, 2, 3, 32, 32) and views.dtype == torch.uint8
    assert [int(v[0, 0, 0, 0]) for v in views] == [0, 4, 8, 0, 4, 8]  # left column of each crop
    assert views[:3, :, 1, 0, 0].tolist() == [[10, 20]] * 3  # clip 0 = frames 0, 1
    assert views[3:, :, 1, 0, 0].tolist() == [[30, 30]] * 3  # clip 1 = frame 2 twice


def test_resize_is_bilinear_half_pixel():
    # halving a horizontal ramp 0,10,20,...: each output pixel is the mean of two inputs
    ramp = np.tile(np.arange(0, 80, 10, dtype=np.uint8), (4, 1))  # (4, 8)
    frame = np.repeat(ramp[None, :, :, None], 3, axis=3)  # (1, 4, 8, 3)
    out = resize_short_side(frame, 2)
    assert out.shape == (1, 3, 2, 4)
    assert out[0, 0, 0].tolist() == [5, 25, 45, 65]


def test_normalize():
    x = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    y = normalize(x, (0.5, 0.5, 0.5), (0.25, 0.5, 1.0))
    assert torch.allclose(y[0, :, 0, 0], torch.tensor([2.0, 1.0, 0.5]))


def test_views_parsing():
    assert parse_views("5x3") == ViewSpec(5, 3) and parse_views("1X1").num_views == 1
    assert default_views("kinetics") == ViewSpec(5, 3) and default_views("ssv2") == ViewSpec(2, 3)
    for bad in ["5", "0x3", "ax3", "5x3x1", "101x1"]:
        with pytest.raises(ValueError, match="--views"):
            parse_views(bad)
    with pytest.raises(ValueError, match="protocol"):
        default_views("ucf")


@pytest.mark.parametrize(
    "protocol, frames, rate", [("kinetics", 16, 4), ("kinetics", 4, 1), ("kinetics", 8, 3), ("ssv2", 8, 4)]
)
def test_sampling_window_is_the_length_below_which_frames_repeat(protocol, frames, rate):
    from stprune.eval.sampling import clip_indices, sampling_window

    window = sampling_window(protocol, frames, rate)
    for n in range(1, window + 30):
        clips = clip_indices(protocol, n, frames, 2, rate)
        repeated = any(len(set(c)) < len(c) for c in clips)
        assert repeated == (n < window), n
