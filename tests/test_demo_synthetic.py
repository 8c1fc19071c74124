"""The synthetic demo task: determinism, labels, and that classes really differ in appearance and motion."""

import numpy as np
import pytest

from stprune.demo.synthetic import (
    CLASS_NAMES,
    FRAME_SIZE,
    KINDS,
    MOTIONS,
    NUM_CLASSES,
    NUM_FRAMES,
    clip_rng,
    generate_clip,
    generate_clips,
    kind_and_motion,
    render_clip,
)


def test_shapes_dtype_and_labels():
    assert NUM_CLASSES >= 10 and len(CLASS_NAMES) == NUM_CLASSES == len(set(CLASS_NAMES))
    frames, labels = generate_clips(range(2 * NUM_CLASSES))
    assert frames.shape == (2 * NUM_CLASSES, NUM_FRAMES, FRAME_SIZE, FRAME_SIZE, 3)
    assert frames.dtype == np.uint8 and labels.dtype == np.int64
    assert FRAME_SIZE % 16 == 0
    # Labels cover every class, in range, balanced.
    assert sorted(labels.tolist()) == sorted(list(range(NUM_CLASSES)) * 2)


def test_same_index_gives_identical_clip():
    a, la = generate_clip(7, "val", 3)
    b, lb = generate_clip(7, "val", 3)
    assert la == lb
    np.testing.assert_array_equal(a, b)
    # Independent of what was generated before or of batching.
    batch, labels = generate_clips([5, 6, 7, 8], "val", 3)
    np.testing.assert_array_equal(batch[2], a)
    assert labels[2] == la


def test_different_seeds_splits_and_indices_differ():
    base, _ = generate_clip(4, "val", 0)
    for other in (
        generate_clip(4, "val", 1)[0],
        generate_clip(4, "train", 0)[0],
        generate_clip(4 + NUM_CLASSES)[0],
    ):
        assert np.abs(other.astype(int) - base).mean() > 5


def test_clip_has_temporal_redundancy_and_change():
    frames, _ = generate_clip(0)
    diff = np.abs(frames[1:].astype(int) - frames[:-1]).mean(-1)  # (T-1, H, W)
    # Most pixels barely change frame to frame (noise + slow pan) ...
    assert np.median(diff) < 15
    # ... yet the clip is not static.
    assert (diff > 60).any()


def _target_track(frames, kind):
    """Per-frame centroid (x, y) of the target's saturated colour."""
    f = frames.astype(int)
    ch = {"red": 0, "green": 1, "blue": 2}[KINDS[kind][0]]
    others = [c for c in range(3) if c != ch]
    mask = f[..., ch] - np.maximum(f[..., others[0]], f[..., others[1]]) > 60
    ys, xs = np.arange(FRAME_SIZE)[None, :, None], np.arange(FRAME_SIZE)[None, None, :]
    n = mask.sum(axis=(1, 2))
    assert (n > 50).all(), n
    return (mask * xs).sum(axis=(1, 2)) / n, (mask * ys).sum(axis=(1, 2)) / n


@pytest.mark.parametrize("label", range(NUM_CLASSES))
def test_target_colour_and_direction_match_the_label(label):
    kind, motion = kind_and_motion(label)
    dx, dy = MOTIONS[motion][1]
    for index in (label, label + NUM_CLASSES):
        frames, got = generate_clip(index, "train", 11)
        assert got == label
        x, y = _target_track(frames, kind)
        # The target moves over the clip along the labelled axis, by several pixels.
        along = (x[-1] - x[0]) * dx + (y[-1] - y[0]) * dy
        across = abs((x[-1] - x[0]) * dy) + abs((y[-1] - y[0]) * dx)
        assert along > 6, (along, across)
        assert across < along / 2


def test_classes_with_same_object_differ_only_in_motion():
    # Same random stream, labels differing only in the direction: backgrounds and distractors are
    # identical; only the target's path differs.
    right, left = 0, 1
    assert kind_and_motion(right)[0] == kind_and_motion(left)[0]
    a = render_clip(clip_rng(5), right).astype(int)
    b = render_clip(clip_rng(5), left).astype(int)
    changed = np.abs(a - b).max(-1) > 0  # (T, H, W)
    assert changed.any()
    assert changed.mean() < 0.2
    xa, _ = _target_track(a.astype(np.uint8), 0)
    xb, _ = _target_track(b.astype(np.uint8), 0)
    assert xa[-1] - xa[0] > 6 and xb[-1] - xb[0] < -6


def test_one_frame_does_not_reveal_the_direction():
    # Across clips, the target's position in the middle frame has the same distribution whether it
    # moves right or left; only comparing frames (here: the last one) separates the directions.
    mid, last = {0: [], 1: []}, {0: [], 1: []}
    for i in range(0, 24 * NUM_CLASSES, NUM_CLASSES):
        for m in (0, 1):
            x, _ = _target_track(generate_clip(i + m, "train", 2)[0], 0)
            mid[m].append(x[NUM_FRAMES // 2])
            last[m].append(x[-1])
    assert abs(np.mean(mid[0]) - np.mean(mid[1])) < 8
    assert np.std(mid[0]) > 8 and np.std(mid[1]) > 8
    assert np.mean(last[0]) - np.mean(last[1]) > 20


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="split"):
        generate_clip(0, "test")
    with pytest.raises(ValueError, match="index"):
        generate_clip(-1)
    with pytest.raises(ValueError, match="seed"):
        generate_clip(0, "val", -3)
    with pytest.raises(ValueError, match="label"):
        render_clip(clip_rng(0), NUM_CLASSES)


def test_some_clips_hold_a_moving_decoy_of_another_kind():
    # A decoy shows up as saturated pixels of a colour that is not the target's.
    with_decoy = 0
    for i in range(30):
        frames, label = generate_clip(i, "val", 0)
        kind, _ = kind_and_motion(label)
        f = frames.astype(int)
        for other in range(len(KINDS)):
            if other == kind:
                continue
            ch = {"red": 0, "green": 1, "blue": 2}[KINDS[other][0]]
            rest = [c for c in range(3) if c != ch]
            if ((f[..., ch] - np.maximum(f[..., rest[0]], f[..., rest[1]]) > 60).sum(axis=(1, 2)) > 20).all():
                with_decoy += 1
    assert 3 <= with_decoy <= 27


def test_decoy_share_only_removes_the_decoy():
    # With decoy_prob 0 the clip is the same scene without the decoy: identical wherever the decoy
    # is not drawn, and for clips that have none under the default share, identical everywhere.
    differing = 0
    for i in range(12):
        full, label = generate_clip(i, "train", 5)
        none, label0 = generate_clip(i, "train", 5, decoy_prob=0.0)
        assert label == label0
        changed = np.abs(full.astype(int) - none).max(-1) > 0
        assert changed.mean() < 0.05
        differing += bool(changed.any())
    assert 0 < differing < 12
    with pytest.raises(ValueError, match="decoy_prob"):
        generate_clip(0, decoy_prob=1.5)
