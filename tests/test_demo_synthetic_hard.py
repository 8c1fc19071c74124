"""The demo's hard task: determinism, and labels that are what the design says (the colour of a
small spark x the way it darts, during 6 frames), checked on hand-made scenes and on generated
clips."""

import dataclasses

import numpy as np
import pytest

from stprune.demo.synthetic import MOTIONS
from stprune.demo.synthetic_hard import (
    CLASS_NAMES,
    FLASH_FRAMES,
    LAMPS,
    NUM_CLASSES,
    SPARK_FRAMES,
    Flash,
    Scene,
    Spark,
    clip_rng,
    generate_clip,
    generate_clips,
    label_for,
    render_scene,
    sample_scene,
    split_label,
)
from stprune.demo.tasks import generate_clip as task_clip

RED, GREEN, BLUE, YELLOW = range(4)
RIGHT, LEFT, DOWN, UP = range(4)


def crafted(colour=RED, direction=RIGHT, onset=5, at=(30.0, 60.0), **changes) -> Scene:
    """A quiet hand-made scene: four lamps in a row at the top, a spark darting at 3 px per frame
    from ``at`` from frame ``onset``, still camera, no noise."""
    v = np.asarray(MOTIONS[direction][1], np.float32) * 3.0
    scene = Scene(
        spark=Spark(colour, direction, at[0], at[1], (float(v[0]), float(v[1])), onset, 3.5),
        lamps=np.array([[16.0, 12.0], [40.0, 12.0], [64.0, 12.0], [84.0, 12.0]], np.float32),
        radii=np.full(4, 4.0, np.float32),
        pan=np.zeros(2, np.float32),
        texture_seed=7,
    )
    return dataclasses.replace(scene, **changes)


def bright(frames, colour):
    """Per frame, the pixels close to bright ``colour``, and their centroid: (count (T,), x (T,), y (T,))."""
    mask = np.abs(frames.astype(int) - np.asarray(LAMPS[colour][1])).max(-1) < 30  # (T, H, W)
    n = mask.sum(axis=(1, 2))
    ys, xs = np.arange(frames.shape[1])[None, :, None], np.arange(frames.shape[2])[None, None, :]
    with np.errstate(invalid="ignore"):
        return n, (mask * xs).sum(axis=(1, 2)) / n, (mask * ys).sum(axis=(1, 2)) / n


def test_classes_are_colour_times_direction():
    assert NUM_CLASSES == 12 and len(set(CLASS_NAMES)) == 12
    assert CLASS_NAMES[label_for(RED, UP)] == "red_dart_up"
    assert CLASS_NAMES[label_for(BLUE, LEFT)] == "blue_dart_left"
    for label in range(NUM_CLASSES):
        assert label_for(*split_label(label)) == label
    with pytest.raises(ValueError, match="label"):
        split_label(12)
    with pytest.raises(ValueError, match="colour"):
        label_for(YELLOW, UP)  # yellow is a lamp colour only


@pytest.mark.parametrize("direction", [RIGHT, LEFT, DOWN, UP])
def test_the_spark_shows_in_its_frames_moving_its_way(direction):
    scene = crafted(GREEN, direction, onset=5, at=(48.0, 48.0), lone=Flash(GREEN, 0, 12))
    assert scene.label == label_for(GREEN, direction)
    frames = render_scene(scene)
    assert frames.shape == (16, 96, 96, 3) and frames.dtype == np.uint8
    n, x, y = bright(frames[:, 24:, :], GREEN)  # below the lamps: the spark only
    on = np.zeros(16, bool)
    on[5 : 5 + SPARK_FRAMES] = True
    assert (n[on] > 0.7 * np.pi * 3.5**2).all() and (n[~on] == 0).all(), n
    dx, dy = MOTIONS[direction][1]
    moved = (x[8] - x[5]) * dx + (y[8] - y[5]) * dy
    assert 8.5 < moved < 9.5  # 3 frames at 3 px per frame, along the labelled direction
    assert abs((x[8] - x[5]) * dy) + abs((y[8] - y[5]) * dx) < 0.5
    # the lone flash lights its lamp (in the top row) for two frames, in place
    n_top, x_top, _ = bright(frames[:, :24, :], GREEN)
    assert (n_top[12 : 12 + FLASH_FRAMES] > 50).all() and n_top[:12].max() == 0
    assert abs(x_top[12] - 16.0) < 1.0


def test_other_directions_change_only_the_spark_frames():
    """Same scene, the spark sent another way from the same start: the label changes and only the
    spark's later frames differ (its first frame is the same place), so nothing but those frames
    says anything about the direction."""
    a, b = crafted(RED, RIGHT, at=(40.0, 50.0)), crafted(RED, UP, at=(40.0, 50.0))
    assert (a.label, b.label) == (label_for(RED, RIGHT), label_for(RED, UP))
    differs = np.abs(render_scene(a).astype(int) - render_scene(b)).max(axis=(1, 2, 3)) > 0
    assert differs.tolist() == [t in range(6, 5 + SPARK_FRAMES) for t in range(16)]


def test_generated_clips_hold_the_spark_their_label_says():
    for index in range(24):
        label = index % NUM_CLASSES
        scene = sample_scene(clip_rng(index, "train", 4), label)
        frames, got = generate_clip(index, "train", 4)
        assert got == label == scene.label
        np.testing.assert_array_equal(frames, render_scene(scene))
        sp = scene.spark
        assert (sp.colour, sp.direction) == split_label(label) and sp.duration == SPARK_FRAMES
        assert 0 <= sp.onset <= 16 - SPARK_FRAMES
        px, py = scene.spark_path()
        assert (px - sp.radius >= 0).all() and (px + sp.radius <= 96).all()  # inside the frame
        assert (py - sp.radius >= 0).all() and (py + sp.radius <= 96).all()
        # its own motion is along the labelled direction, 2 to 3.5 px per frame
        dx, dy = MOTIONS[sp.direction][1]
        along = sp.velocity[0] * dx + sp.velocity[1] * dy
        assert (
            0.85 * 2.0 <= along <= 1.15 * 3.5
            and abs(sp.velocity[0] * dy) + abs(sp.velocity[1] * dx) <= 0.15 * 3.5
        )
        for t, x, y in zip(range(sp.onset, sp.onset + sp.duration), px, py, strict=True):
            patch = frames[t, max(int(y) - 2, 0) : int(y) + 3, max(int(x) - 2, 0) : int(x) + 3].astype(int)
            assert (np.abs(patch - np.asarray(LAMPS[sp.colour][1])).max(-1) < 40).mean() > 0.5, (index, t)


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
    for share in (
        [bool(np.any(s.pan)) for s in scenes],
        [s.decoy is not None for s in scenes],
        [s.lone is not None for s in scenes],
    ):
        assert 0.35 < np.mean(share) < 0.65
    assert {s.spark.onset for s in scenes} == set(range(16 - SPARK_FRAMES + 1))
    assert all(np.abs(s.pan).max() <= 1.0 for s in scenes)


def test_ease_makes_the_spark_larger_and_longer_but_keeps_the_scene():
    plain = sample_scene(clip_rng(5, "train", 0), 5)
    eased = sample_scene(clip_rng(5, "train", 0), 5, ease=1.0)
    assert eased.label == plain.label and eased.spark.radius > plain.spark.radius
    assert eased.spark.duration == SPARK_FRAMES + 4
    np.testing.assert_array_equal(eased.lamps, plain.lamps)
    assert eased.texture_seed == plain.texture_seed
    with pytest.raises(ValueError, match="ease"):
        sample_scene(clip_rng(5, "train", 0), 5, ease=1.5)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="split"):
        generate_clip(0, "test")
    with pytest.raises(ValueError, match="index"):
        generate_clip(-1)
    with pytest.raises(ValueError, match="seed"):
        generate_clip(0, "val", -3)
    with pytest.raises(ValueError, match="task"):
        task_clip("medium", 0)
