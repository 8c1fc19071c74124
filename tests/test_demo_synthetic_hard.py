"""The demo's hard task: determinism, and labels that are what the design says (which marker
flashes first, which second), checked on hand-made scenes and on generated clips."""

import dataclasses

import numpy as np
import pytest

from stprune.demo.synthetic_hard import (
    CLASS_NAMES,
    FLASH_FRAMES,
    FLASH_GROWTH,
    MARKERS,
    NUM_CLASSES,
    Flash,
    Scene,
    clip_rng,
    generate_clip,
    generate_clips,
    label_for,
    pair_of,
    render_scene,
    sample_scene,
)
from stprune.demo.tasks import generate_clip as task_clip

RED, GREEN, BLUE, YELLOW = range(4)


def crafted(first=(RED, 3), second=(BLUE, 9), **changes) -> Scene:
    """A quiet hand-made scene: the four markers on a row, two flashes, still camera, no noise."""
    scene = Scene(
        markers=np.array([[16.0, 48.0], [40.0, 48.0], [64.0, 48.0], [84.0, 20.0]], np.float32),
        radii=np.full(4, 4.0, np.float32),
        flashes=(Flash(*first), Flash(*second)),
        pan=np.zeros(2, np.float32),
        texture_seed=7,
    )
    return dataclasses.replace(scene, **changes)


def saturated(frames, marker, x, y, reach=9):
    """Per frame, pixels near (x, y) close to ``marker``'s flash colour (T,)."""
    y0, x0 = max(int(y) - reach, 0), max(int(x) - reach, 0)
    box = frames[:, y0 : int(y) + reach + 1, x0 : int(x) + reach + 1].astype(int)
    colour = np.asarray(MARKERS[marker][1])
    return (np.abs(box - colour).max(-1) < 30).sum(axis=(1, 2))


def test_classes_are_the_ordered_pairs_of_distinct_markers():
    assert NUM_CLASSES == 12 and len(set(CLASS_NAMES)) == 12
    assert CLASS_NAMES[label_for(RED, BLUE)] == "red_then_blue"
    assert CLASS_NAMES[label_for(BLUE, RED)] == "blue_then_red"
    for label in range(NUM_CLASSES):
        a, b = pair_of(label)
        assert a != b and label_for(a, b) == label
    with pytest.raises(ValueError, match="label"):
        pair_of(12)


def test_crafted_scene_label_follows_the_flash_order():
    assert crafted().label == label_for(RED, BLUE)
    # the order of the Flash entries does not matter, only their onsets
    assert crafted(first=(BLUE, 9), second=(RED, 3)).label == label_for(RED, BLUE)
    assert crafted(first=(RED, 9), second=(BLUE, 3)).label == label_for(BLUE, RED)
    assert crafted(first=(YELLOW, 13), second=(GREEN, 14)).label == label_for(YELLOW, GREEN)
    with pytest.raises(ValueError, match="different onsets"):
        _ = crafted(first=(RED, 5), second=(BLUE, 5)).label
    with pytest.raises(ValueError, match="different markers"):
        _ = crafted(first=(RED, 2), second=(RED, 5)).label


def test_a_flash_shows_exactly_in_its_frames_at_its_marker():
    scene = crafted()
    frames = render_scene(scene)
    assert frames.shape == (16, 96, 96, 3) and frames.dtype == np.uint8
    for marker, onset in ((RED, 3), (BLUE, 9)):
        x, y = scene.markers[marker]
        bright = saturated(frames, marker, x, y)
        on = np.zeros(16, bool)
        on[onset : onset + FLASH_FRAMES] = True
        # a flash covers ~pi (1.6 * 4)^2 ~ 129 px of the flash colour; idle, the marker is muted
        assert (bright[on] > 0.7 * np.pi * (FLASH_GROWTH * 4.0) ** 2).all(), bright
        assert (bright[~on] == 0).all(), bright
    for marker in (GREEN, YELLOW):  # markers that do not flash never show their flash colour
        x, y = scene.markers[marker]
        assert saturated(frames, marker, x, y).max() == 0


def test_reversing_the_order_changes_only_the_flash_frames():
    """Same scene, the two onsets swapped: the label flips and every other frame is identical, so
    no single frame without a flash says anything about the class."""
    a = crafted(first=(RED, 3), second=(BLUE, 9))
    b = crafted(first=(RED, 9), second=(BLUE, 3))
    fa, fb = render_scene(a), render_scene(b)
    assert (a.label, b.label) == (label_for(RED, BLUE), label_for(BLUE, RED))
    differs = np.abs(fa.astype(int) - fb).max(axis=(1, 2, 3)) > 0
    assert differs.tolist() == [t in (3, 4, 9, 10) for t in range(16)]


def test_generated_clips_flash_where_their_scene_says():
    for index in range(24):
        label = index % NUM_CLASSES
        scene = sample_scene(clip_rng(index, "train", 4), label)
        frames, got = generate_clip(index, "train", 4)
        assert got == label == scene.label
        np.testing.assert_array_equal(frames, render_scene(scene))
        first, second = sorted(scene.flashes, key=lambda f: f.onset)
        assert (first.marker, second.marker) == pair_of(label)
        assert 0 <= first.onset < second.onset <= 16 - FLASH_FRAMES
        mid = (16 - 1) / 2.0
        for f in scene.flashes:
            # the marker's position in each frame of its flash (the scene moves with the camera)
            for t in range(f.onset, f.onset + FLASH_FRAMES):
                x, y = scene.markers[f.marker] - np.rint(scene.pan * (t - mid))
                assert saturated(frames[t : t + 1], f.marker, x, y, reach=10)[0] > 40, (index, t)


def test_same_index_gives_the_same_clip_whatever_came_before():
    a, la = generate_clip(7, "val", 3)
    batch, labels = generate_clips([9, 7, 2], "val", 3)
    np.testing.assert_array_equal(batch[1], a)
    assert labels[1] == la
    b, _ = task_clip("hard", 7, "val", 3)
    np.testing.assert_array_equal(a, b)
    for other in (
        generate_clip(7, "val", 4)[0],
        generate_clip(7, "train", 3)[0],
        generate_clip(19, "val", 3)[0],
    ):
        assert np.abs(other.astype(int) - a).mean() > 5


def test_labels_are_balanced_and_the_task_has_the_stated_mix():
    scenes = [sample_scene(clip_rng(i, "val", 0), i % NUM_CLASSES) for i in range(240)]
    assert sorted(s.label for s in scenes) == sorted(list(range(NUM_CLASSES)) * 20)
    panning = np.mean([bool(np.any(s.pan)) for s in scenes])
    decoys = np.mean([s.decoy is not None for s in scenes])
    assert 0.35 < panning < 0.65 and 0.35 < decoys < 0.65
    gaps = [abs(s.flashes[1].onset - s.flashes[0].onset) for s in scenes]
    assert min(gaps) == 1  # the second flash can follow the first by one frame
    assert all(np.abs(s.pan).max() <= 1.0 for s in scenes)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="split"):
        generate_clip(0, "test")
    with pytest.raises(ValueError, match="index"):
        generate_clip(-1)
    with pytest.raises(ValueError, match="seed"):
        generate_clip(0, "val", -3)
    with pytest.raises(ValueError, match="task"):
        task_clip("medium", 0)
