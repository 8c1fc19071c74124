"""The demo's *hard* task: which colour of small spark darts which way, for a fraction of a second.

The same kind of label as the easy task (what moves which way), with the evidence shrunk: every
clip shows, once, a small bright *spark* (a disk 8 to 11 pixels wide, red, green or blue) that
darts in a straight line (right, left, down or up, 2 to 3.5 px per frame) for 6 of the 16 frames,
then is gone. The class is its colour x its direction: 3 x 4 = 12 classes, e.g. ``red_dart_up``.
Everything else in the clip is there to be ignored:

- four small *lamps* (muted red, green, blue and yellow disks) stand in the scene in every frame;
- in half the clips one lamp gives a *lone flash*: a bright colour (possibly the spark's) for two
  frames, in place (so "which bright colour appears" is not the label: it must be the one that
  moves);
- in half the clips a *decoy*: a muted disk in a lamp colour gliding across the whole clip, its
  own way (so "which way does something move" is not the label either);
- in half the clips the camera pans (up to 1 px per frame), so the whole background changes from
  frame to frame, and the spark's motion in the image is its own plus the pan; in the other half
  it is still;
- 1 to 3 grey distractor objects drift with the scene;
- 0 to 2 *blinks*: a white or grey shape that appears for two frames somewhere;
- per-frame brightness flicker and sensor noise.

At 16 x 16 patches and tubelet 2 the spark covers one to four of the 36 positions of a frame in
three or four of the 8 temporal slots: 4 to 16 of the 288 tokens (3.3% on average over the first
400 validation clips), against about 15% spread
over every slot for the easy task's target. A method that drops those tokens early leaves the
classifier a guess; one that keeps them keeps the answer.

A clip is a :class:`Scene` (every random choice, drawn by :func:`sample_scene`) rendered by
:func:`render_scene`; the label is a property of the scene (:attr:`Scene.label`), so a hand-made
scene gives a clip whose label is known by construction. Clip ``i`` of a split is a pure function
of ``(split, seed, i)`` (its generator is seeded from those and a tag of this task, so no clip
shares its random stream with the easy task's), whatever the process, batch size or workers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from stprune.demo.synthetic import (
    DEFAULT_VAL_SEED,
    FRAME_SIZE,
    MOTIONS,
    NUM_FRAMES,
    SPLITS,
    _background,
    _draw,
    _noise_bank,
)

__all__ = [
    "LAMPS",
    "SPARK_COLOURS",
    "MOTIONS",
    "NUM_CLASSES",
    "CLASS_NAMES",
    "SPARK_FRAMES",
    "FLASH_FRAMES",
    "Spark",
    "Flash",
    "Scene",
    "label_of",
    "label_for",
    "split_label",
    "clip_rng",
    "sample_scene",
    "render_scene",
    "generate_clip",
    "generate_clips",
]

#: The lamps' colours (name, bright RGB); a lamp shows a muted version when idle, the bright one
#: when it flashes.
LAMPS: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("red", (235, 40, 40)),
    ("green", (40, 215, 60)),
    ("blue", (50, 95, 245)),
    ("yellow", (240, 215, 40)),
)
NUM_LAMPS = len(LAMPS)
#: The spark's colours: the first three lamp colours (so a lamp of the spark's colour is in every clip).
SPARK_COLOURS = 3
NUM_MOTIONS = len(MOTIONS)
NUM_CLASSES = SPARK_COLOURS * NUM_MOTIONS
#: Class names, indexed by label: ``"<colour>_dart_<direction>"``.
CLASS_NAMES: tuple[str, ...] = tuple(
    f"{LAMPS[c][0]}_dart_{MOTIONS[d][0]}" for c in range(SPARK_COLOURS) for d in range(NUM_MOTIONS)
)
#: How many frames the spark is visible, and a flash (lone flash, blink) lasts.
SPARK_FRAMES = 6
FLASH_FRAMES = 2
#: Spark radius and speed ranges (pixels, pixels per frame).
SPARK_RADIUS = (4.0, 5.5)
SPARK_SPEED = (2.0, 3.5)
#: Mixed into every clip's seed: this task's clips never share a random stream with the easy task's.
TASK_TAG = 2
#: Idle lamp radius range (pixels) and how much a flash enlarges it.
LAMP_RADIUS = (3.0, 4.5)
FLASH_GROWTH = 1.6
#: Share of clips whose camera pans, and the largest pan speed (pixels per frame, per axis).
PAN_PROB = 0.5
MAX_PAN = 1.0
#: Share of clips with a decoy, and with a lone flash.
DECOY_PROB = 0.5
LONE_PROB = 0.5


@dataclass(frozen=True)
class Spark:
    """The spark: colour ``colour`` (index into :data:`LAMPS`, < :data:`SPARK_COLOURS`), moving along
    ``MOTIONS[direction]`` by ``velocity`` (vx, vy) px per frame in the scene, at (x, y) (scene
    coordinates, see :class:`Scene`) in its first frame ``onset``, visible for ``duration`` frames."""

    colour: int
    direction: int
    x: float
    y: float
    velocity: tuple[float, float]
    onset: int
    radius: float = 4.5
    duration: int = SPARK_FRAMES


@dataclass(frozen=True)
class Flash:
    """Lamp ``site`` shows bright colour ``colour`` during frames ``onset .. onset + duration - 1``."""

    colour: int
    site: int
    onset: int
    duration: int = FLASH_FRAMES


@dataclass(frozen=True)
class Scene:
    """Every choice that makes one clip (positions in pixels, image coordinates, at the clip's middle
    frame; the scene moves by ``-pan * (t - mid)`` with the camera).

    ``spark``: the :class:`Spark`; ``lamps``: (4, 2) lamp centres; ``radii``: (4,); ``lone``: None
    or a lone :class:`Flash`; ``pan``: (2,) camera pan in px/frame; ``distractors``: (x, y, radius,
    grey, own vx, own vy) rows; ``blinks``: (x, y, radius, grey, onset) rows; ``decoy``: None or
    (lamp colour, x, y, radius, vx, vy); ``texture_seed``: the background's seed; ``gain``: (T,)
    brightness per frame; ``noise_sigma`` and ``noise_offset``: the sensor noise's strength and
    where it is read in the fixed noise bank.
    """

    spark: Spark
    lamps: np.ndarray
    radii: np.ndarray
    pan: np.ndarray
    lone: Flash | None = None
    distractors: tuple[tuple[float, ...], ...] = ()
    blinks: tuple[tuple[float, ...], ...] = ()
    decoy: tuple[float, ...] | None = None
    texture_seed: int = 0
    gain: np.ndarray | None = None
    noise_sigma: float = 0.0
    noise_offset: int = 0
    num_frames: int = NUM_FRAMES
    size: int = FRAME_SIZE

    @property
    def label(self) -> int:
        """The class: the spark's colour x its direction."""
        return label_for(self.spark.colour, self.spark.direction)

    def spark_path(self) -> tuple[np.ndarray, np.ndarray]:
        """The spark's centre (x, y) in the image, each (duration,): frames onset .. onset + duration - 1."""
        sp = self.spark
        sx, sy = _camera(self.pan, self.num_frames)
        k = slice(sp.onset, sp.onset + sp.duration)
        dt = np.arange(sp.duration, dtype=np.float32)
        return sp.x + sp.velocity[0] * dt - sx[k], sp.y + sp.velocity[1] * dt - sy[k]


def label_for(colour: int, direction: int) -> int:
    """The label of "a spark of colour ``colour`` darts along ``MOTIONS[direction]``"."""
    if not (0 <= int(colour) < SPARK_COLOURS and 0 <= int(direction) < NUM_MOTIONS):
        raise ValueError(
            f"colour must be in [0, {SPARK_COLOURS - 1}], direction in [0, 3]; got {colour}, {direction}"
        )
    return int(colour) * NUM_MOTIONS + int(direction)


def split_label(label: int) -> tuple[int, int]:
    """``(colour, direction)`` of ``label``."""
    if not 0 <= int(label) < NUM_CLASSES:
        raise ValueError(f"label must be in [0, {NUM_CLASSES - 1}], got {label}")
    return int(label) // NUM_MOTIONS, int(label) % NUM_MOTIONS


def label_of(index: int) -> int:
    """The label of clip ``index`` (labels cycle through the classes, so splits are balanced)."""
    return int(index) % NUM_CLASSES


def clip_rng(index: int, split: str = "val", seed: int = DEFAULT_VAL_SEED) -> np.random.Generator:
    """The random generator of clip ``index`` of ``split`` under ``seed`` (a pure function of the three)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    if not isinstance(index, (int, np.integer)) or index < 0:
        raise ValueError(f"index must be an integer >= 0, got {index!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    return np.random.Generator(
        np.random.PCG64(np.random.SeedSequence([SPLITS[split], int(seed), int(index), TASK_TAG]))
    )


def sample_scene(
    rng: np.random.Generator,
    label: int,
    num_frames: int = NUM_FRAMES,
    size: int = FRAME_SIZE,
    ease: float = 0.0,
) -> Scene:
    """Draw a scene of class ``label`` with randomness from ``rng``.

    ``ease`` in [0, 1] (a training curriculum; 0, the default, is the task) makes the spark larger
    (up to 1.6x) and longer-lived (up to 4 more frames); the scene is otherwise the same, and so
    is its label.
    """
    colour, direction = split_label(label)
    if not 0.0 <= ease <= 1.0:
        raise ValueError(f"ease must be in [0, 1], got {ease}")
    if num_frames < SPARK_FRAMES + 4:
        raise ValueError(f"num_frames must be >= {SPARK_FRAMES + 4}, got {num_frames}")
    if size < 48:
        raise ValueError(f"size must be >= 48 pixels, got {size}")
    pan = np.zeros(2, dtype=np.float32)
    if rng.random() < PAN_PROB:
        pan = rng.uniform(-MAX_PAN, MAX_PAN, size=2).astype(np.float32)
    drift = np.abs(pan) * num_frames / 2.0  # how far the scene moves from the middle frame

    # Lamps: anywhere their whole path stays inside the frame, at least 18 px apart.
    lo, hi = 6.0 + drift, size - 6.0 - drift
    lamps = np.empty((NUM_LAMPS, 2), dtype=np.float32)
    for m in range(NUM_LAMPS):
        for _ in range(1000):
            p = rng.uniform(lo, hi).astype(np.float32)
            if m == 0 or np.min(np.hypot(*(lamps[:m] - p).T)) >= 18.0:
                break
        lamps[m] = p
    radii = rng.uniform(*LAMP_RADIUS, size=NUM_LAMPS).astype(np.float32)

    # The spark: its whole path inside the frame (in the image, camera motion included).
    duration = SPARK_FRAMES + int(round(4 * ease))
    radius = float(rng.uniform(*SPARK_RADIUS)) * (1.0 + 0.6 * ease)
    speed = float(rng.uniform(*SPARK_SPEED))
    v = np.asarray(MOTIONS[direction][1], np.float32) * speed
    v += rng.uniform(-0.15, 0.15, size=2).astype(np.float32) * speed  # slightly off-axis
    onset = int(rng.random() * (num_frames - duration + 1))
    tc = np.arange(num_frames, dtype=np.float32) - (num_frames - 1) / 2.0
    path = (v[:, None] - pan[:, None]) * (tc[onset : onset + duration] - tc[onset])[None]  # (2, D)
    reach = radius + 2.0
    start = np.empty(2, np.float32)
    for d in range(2):
        lo_d = reach - path[d].min()
        hi_d = size - reach - path[d].max()
        start[d] = rng.uniform(lo_d, hi_d) if hi_d > lo_d else (lo_d + hi_d) / 2.0
    start += pan * tc[onset]  # image position in frame `onset` -> scene coordinates
    spark = Spark(
        colour,
        direction,
        float(start[0]),
        float(start[1]),
        (float(v[0]), float(v[1])),
        onset,
        radius,
        duration,
    )

    # A lone flash (LONE_PROB of the clips): a lamp flashes a bright colour for two frames, in place.
    lone_u = rng.random()
    lone = Flash(
        int(rng.integers(NUM_LAMPS)),
        int(rng.integers(NUM_LAMPS)),
        int(rng.integers(0, num_frames - FLASH_FRAMES + 1)),
    )
    lone = lone if lone_u < LONE_PROB else None

    last = num_frames - FLASH_FRAMES
    distractors = tuple(
        (
            *rng.uniform(0, size, size=2).tolist(),
            float(rng.uniform(3.0, 6.0)),
            float(rng.uniform(60, 200)),
            *rng.uniform(-0.3, 0.3, size=2).tolist(),
        )
        for _ in range(int(rng.integers(1, 4)))
    )
    blinks = tuple(
        (
            *rng.uniform(8, size - 8, size=2).tolist(),
            float(rng.uniform(3.0, 6.0)),
            float(rng.uniform(170, 250)),
            int(rng.integers(0, last + 1)),
        )
        for _ in range(int(rng.integers(0, 3)))
    )
    decoy = None
    if rng.random() < DECOY_PROB:
        dspeed = rng.uniform(1.0, 3.0)
        angle = rng.uniform(0, 2 * np.pi)
        dv = (dspeed * np.cos(angle), dspeed * np.sin(angle))
        dreach = np.abs(dv) * num_frames / 2.0
        x, y = (float(rng.uniform(min(c, size / 2), max(size - c, size / 2))) for c in 5.0 + dreach)
        decoy = (int(rng.integers(NUM_LAMPS)), x, y, float(rng.uniform(*LAMP_RADIUS)), *map(float, dv))
    return Scene(
        spark=spark,
        lamps=lamps,
        radii=radii,
        pan=pan,
        lone=lone,
        distractors=distractors,
        blinks=blinks,
        decoy=decoy,
        texture_seed=int(rng.integers(2**63)),
        gain=(1.0 + rng.normal(0.0, 0.02, size=num_frames)).astype(np.float32),
        noise_sigma=float(rng.uniform(2.0, 8.0)),
        noise_offset=int(rng.integers(0, _noise_bank().size - num_frames * size * size + 1)),
        num_frames=num_frames,
        size=size,
    )


def _idle_colour(lamp: int) -> np.ndarray:
    """Lamp colour ``lamp`` when it is not flashing: its hue, muted towards grey."""
    return 0.6 * np.asarray(LAMPS[lamp][1], np.float32) + 0.4 * 120.0


def _camera(pan: np.ndarray, num_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Whole-pixel camera offsets (sx, sy), each (T,): a scene point at (x, y) is at (x - sx[t],
    y - sy[t]) in frame t (the background is cropped by the same offsets)."""
    tc = np.arange(num_frames, dtype=np.float32) - (num_frames - 1) / 2.0
    pan = np.asarray(pan, dtype=np.float32)
    return np.rint(pan[0] * tc), np.rint(pan[1] * tc)


def render_scene(scene: Scene) -> np.ndarray:
    """The frames of ``scene``: (T, H, W, 3) uint8."""
    t_count, size = scene.num_frames, scene.size
    tc = np.arange(t_count, dtype=np.float32) - (t_count - 1) / 2.0
    pan = np.asarray(scene.pan, dtype=np.float32)
    margin = int(np.ceil(np.abs(pan).max() * t_count / 2.0)) + 2
    canvas = _background(np.random.Generator(np.random.PCG64(scene.texture_seed)), size + 2 * margin)
    sx, sy = _camera(pan, t_count)
    ox, oy = (margin + sx).astype(int), (margin + sy).astype(int)
    frames = np.stack([canvas[oy[k] : oy[k] + size, ox[k] : ox[k] + size] for k in range(t_count)])

    for x, y, radius, grey, vx, vy in scene.distractors:
        colour = np.full(3, grey, np.float32)
        shape = "square" if radius > 4.5 else "diamond"
        _draw(frames, shape, x - sx + vx * tc, y - sy + vy * tc, radius, colour)
    if scene.decoy is not None:
        lamp, x, y, radius, vx, vy = scene.decoy
        _draw(frames, "disk", x - sx + vx * tc, y - sy + vy * tc, radius, _idle_colour(int(lamp)))
    for x, y, radius, grey, onset in scene.blinks:
        k = slice(int(onset), int(onset) + FLASH_FRAMES)
        _draw(frames[k], "diamond", (x - sx)[k], (y - sy)[k], radius, np.full(3, grey, np.float32))
    for m in range(len(scene.lamps)):
        x, y = scene.lamps[m]
        _draw(frames, "disk", x - sx, y - sy, float(scene.radii[m]), _idle_colour(m))
    if scene.lone is not None:
        f = scene.lone
        x, y = scene.lamps[f.site]
        k = slice(f.onset, f.onset + f.duration)
        radius = float(scene.radii[f.site]) * FLASH_GROWTH
        _draw(frames[k], "disk", (x - sx)[k], (y - sy)[k], radius, np.asarray(LAMPS[f.colour][1], np.float32))
    sp = scene.spark
    px, py = scene.spark_path()
    k = slice(sp.onset, sp.onset + sp.duration)
    _draw(frames[k], "disk", px, py, sp.radius, np.asarray(LAMPS[sp.colour][1], np.float32))

    gain = scene.gain if scene.gain is not None else np.ones(t_count, np.float32)
    frames *= np.asarray(gain, np.float32)[:, None, None, None]
    if scene.noise_sigma > 0:
        count = t_count * size * size
        bank = _noise_bank()
        noise = bank[scene.noise_offset : scene.noise_offset + count]
        frames += noise.reshape(t_count, size, size, 1) * scene.noise_sigma
    return np.clip(frames, 0, 255).astype(np.uint8)


def generate_clip(
    index: int, split: str = "val", seed: int = DEFAULT_VAL_SEED, ease: float = 0.0
) -> tuple[np.ndarray, int]:
    """Clip ``index`` of ``split``: frames (T, H, W, 3) uint8 with T = 16, H = W = 96, and its label
    (``ease``: see :func:`sample_scene`; leave 0 for the task itself)."""
    label = label_of(index)
    scene = sample_scene(clip_rng(index, split, seed), label, ease=ease)
    return render_scene(scene), scene.label


def generate_clips(
    indices: Sequence[int], split: str = "val", seed: int = DEFAULT_VAL_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """Several clips: frames (N, T, H, W, 3) uint8 and labels (N,) int64."""
    indices = list(indices)
    frames = np.empty((len(indices), NUM_FRAMES, FRAME_SIZE, FRAME_SIZE, 3), dtype=np.uint8)
    labels = np.empty(len(indices), dtype=np.int64)
    for n, i in enumerate(indices):
        frames[n], labels[n] = generate_clip(i, split, seed)
    return frames, labels
