"""The demo's *hard* task: which of four small markers flashes first, and which second.

Every clip shows four small coloured markers (red, green, blue, yellow disks, a few pixels wide)
fixed in a textured scene. Exactly two of them *flash* (grow and brighten) for two frames each, at
different times; the class is the ordered pair ``(first, second)``: 4 x 3 = 12 classes, e.g.
``red_then_blue``. Everything else in the clip is there to be ignored:

- the four markers are visible, unchanged, in every frame (which colours are present says
  nothing; a single frame says nothing);
- in half the clips the camera pans (up to 1 px per frame), so the whole background changes from
  frame to frame; in the other half it is still;
- 1 to 3 grey distractor objects drift with the scene;
- 0 to 2 *blinks*: a white or grey shape that appears for two frames somewhere, at a random time
  (a brief event that is not a flash);
- in half the clips a *decoy*: a disk in one of the markers' colours gliding across the frame,
  never flashing;
- per-frame brightness flicker and sensor noise.

The evidence is therefore two brief, small events: at 16 x 16 patches and tubelet 2, each flash
covers one to four of the 288 tokens in one or two temporal slots (the flash onsets are drawn so
that the second can follow the first by a single frame). A classifier must find both flashes and
compare their times; knowing only which two markers flashed gives 50% (the order is a coin toss).

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
    NUM_FRAMES,
    SPLITS,
    _background,
    _draw,
    _noise_bank,
)

__all__ = [
    "MARKERS",
    "NUM_CLASSES",
    "CLASS_NAMES",
    "FLASH_FRAMES",
    "Flash",
    "Scene",
    "label_of",
    "pair_of",
    "label_for",
    "clip_rng",
    "sample_scene",
    "render_scene",
    "generate_clip",
    "generate_clips",
]

#: The four markers: (name, RGB of the flash). Idle markers show a muted version of the colour.
MARKERS: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("red", (235, 40, 40)),
    ("green", (40, 215, 60)),
    ("blue", (50, 95, 245)),
    ("yellow", (240, 215, 40)),
)
NUM_MARKERS = len(MARKERS)
#: Ordered pairs (first, second) of distinct markers, in label order.
PAIRS: tuple[tuple[int, int], ...] = tuple(
    (a, b) for a in range(NUM_MARKERS) for b in range(NUM_MARKERS) if a != b
)
NUM_CLASSES = len(PAIRS)
#: Class names, indexed by label: ``"<first>_then_<second>"``.
CLASS_NAMES: tuple[str, ...] = tuple(f"{MARKERS[a][0]}_then_{MARKERS[b][0]}" for a, b in PAIRS)
#: How many frames a flash lasts.
FLASH_FRAMES = 2
#: Mixed into every clip's seed: this task's clips never share a random stream with the easy task's.
TASK_TAG = 2
#: Idle marker radius range (pixels) and how much a flash enlarges it.
MARKER_RADIUS = (3.0, 4.5)
FLASH_GROWTH = 1.6
#: Share of clips whose camera pans, and the largest pan speed (pixels per frame, per axis).
PAN_PROB = 0.5
MAX_PAN = 1.0
#: Share of clips with a decoy.
DECOY_PROB = 0.5


@dataclass(frozen=True)
class Flash:
    """Marker ``marker`` flashes during frames ``onset .. onset + duration - 1``."""

    marker: int
    onset: int
    duration: int = FLASH_FRAMES


@dataclass(frozen=True)
class Scene:
    """Every choice that makes one clip (positions in pixels, image coordinates, at the clip's middle
    frame; the scene moves by ``-pan * (t - mid)`` with the camera).

    ``markers``: (4, 2) centres; ``radii``: (4,); ``flashes``: two :class:`Flash` of different
    markers and onsets; ``pan``: (2,) camera pan in px/frame; ``distractors``: (x, y, radius, grey,
    own vx, own vy) rows; ``blinks``: (x, y, radius, grey, onset) rows; ``decoy``: None or (marker,
    x, y, radius, vx, vy); ``texture_seed``: the background's seed; ``gain``: (T,) brightness per
    frame; ``noise_sigma`` and ``noise_offset``: the sensor noise's strength and where it is read
    in the fixed noise bank.
    """

    markers: np.ndarray
    radii: np.ndarray
    flashes: tuple[Flash, Flash]
    pan: np.ndarray
    distractors: tuple[tuple[float, ...], ...] = ()
    blinks: tuple[tuple[float, ...], ...] = ()
    decoy: tuple[float, ...] | None = None
    texture_seed: int = 0
    gain: np.ndarray | None = None
    noise_sigma: float = 0.0
    noise_offset: int = 0
    num_frames: int = NUM_FRAMES
    size: int = FRAME_SIZE
    flash_growth: float = FLASH_GROWTH

    @property
    def label(self) -> int:
        """The class: the ordered pair (marker flashing first, marker flashing second)."""
        a, b = sorted(self.flashes, key=lambda f: f.onset)
        if a.onset == b.onset or a.marker == b.marker:
            raise ValueError(
                f"a scene needs two flashes of different markers at different onsets: {self.flashes}"
            )
        return label_for(a.marker, b.marker)


def label_for(first: int, second: int) -> int:
    """The label of "marker ``first`` flashes, then marker ``second``"."""
    return PAIRS.index((int(first), int(second)))


def pair_of(label: int) -> tuple[int, int]:
    """``(first, second)`` marker indices of ``label``."""
    if not 0 <= int(label) < NUM_CLASSES:
        raise ValueError(f"label must be in [0, {NUM_CLASSES - 1}], got {label}")
    return PAIRS[int(label)]


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

    ``ease`` in [0, 1] (a training curriculum; 0, the default, is the task) makes the flashes
    larger (up to 2.6x the idle radius instead of 1.6x), longer (up to 3 more frames, cut at the
    clip's end) and further apart (at ease 1 the first starts in frames 0-6, the second in 8-14);
    the scene is otherwise the same, and so is its label.
    """
    first, second = pair_of(label)
    if not 0.0 <= ease <= 1.0:
        raise ValueError(f"ease must be in [0, 1], got {ease}")
    if num_frames < FLASH_FRAMES + 2:
        raise ValueError(f"num_frames must be >= {FLASH_FRAMES + 2}, got {num_frames}")
    if size < 48:
        raise ValueError(f"size must be >= 48 pixels, got {size}")
    pan = np.zeros(2, dtype=np.float32)
    if rng.random() < PAN_PROB:
        pan = rng.uniform(-MAX_PAN, MAX_PAN, size=2).astype(np.float32)
    drift = np.abs(pan) * num_frames / 2.0  # how far the scene moves from the middle frame

    # Markers: anywhere their whole path stays inside the frame, at least 18 px apart.
    lo, hi = 6.0 + drift, size - 6.0 - drift
    markers = np.empty((NUM_MARKERS, 2), dtype=np.float32)
    for m in range(NUM_MARKERS):
        for _ in range(1000):
            p = rng.uniform(lo, hi).astype(np.float32)
            if m == 0 or np.min(np.hypot(*(markers[:m] - p).T)) >= 18.0:
                break
        markers[m] = p
    radii = rng.uniform(*MARKER_RADIUS, size=NUM_MARKERS).astype(np.float32)

    # Onsets: two different frames, both flashes inside the clip, every such pair equally likely.
    last = num_frames - FLASH_FRAMES
    t1, t2 = sorted(rng.choice(last + 1, size=2, replace=False).tolist())
    if ease > 0:  # pull the first flash towards the clip's start and the second towards its end
        t1 = int(np.floor((1 - ease) * t1 + ease * t1 * 6 / last))
        t2 = int(np.floor((1 - ease) * t2 + ease * (last - 6 + t2 * 6 / last)))
    duration = FLASH_FRAMES + int(round(3 * ease))
    flashes = tuple(
        Flash(m, int(t), min(duration, num_frames - int(t))) for m, t in ((first, t1), (second, t2))
    )

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
        speed = rng.uniform(1.0, 3.0)
        angle = rng.uniform(0, 2 * np.pi)
        v = (speed * np.cos(angle), speed * np.sin(angle))
        reach = np.abs(v) * num_frames / 2.0
        x, y = (float(rng.uniform(min(c, size / 2), max(size - c, size / 2))) for c in 5.0 + reach)
        decoy = (int(rng.integers(NUM_MARKERS)), x, y, float(rng.uniform(*MARKER_RADIUS)), *map(float, v))
    return Scene(
        markers=markers,
        radii=radii,
        flashes=flashes,
        pan=pan,
        distractors=distractors,
        blinks=blinks,
        decoy=decoy,
        texture_seed=int(rng.integers(2**63)),
        gain=(1.0 + rng.normal(0.0, 0.02, size=num_frames)).astype(np.float32),
        noise_sigma=float(rng.uniform(2.0, 8.0)),
        noise_offset=int(rng.integers(0, _noise_bank().size - num_frames * size * size + 1)),
        num_frames=num_frames,
        size=size,
        flash_growth=FLASH_GROWTH + ease,
    )


def _idle_colour(marker: int) -> np.ndarray:
    """A marker's colour when it is not flashing: its hue, muted towards grey."""
    return 0.6 * np.asarray(MARKERS[marker][1], np.float32) + 0.4 * 120.0


def render_scene(scene: Scene) -> np.ndarray:
    """The frames of ``scene``: (T, H, W, 3) uint8."""
    t_count, size = scene.num_frames, scene.size
    tc = np.arange(t_count, dtype=np.float32) - (t_count - 1) / 2.0
    pan = np.asarray(scene.pan, dtype=np.float32)
    margin = int(np.ceil(np.abs(pan).max() * t_count / 2.0)) + 2
    canvas = _background(np.random.Generator(np.random.PCG64(scene.texture_seed)), size + 2 * margin)
    ox = np.clip(np.rint(margin + pan[0] * tc).astype(int), 0, 2 * margin)
    oy = np.clip(np.rint(margin + pan[1] * tc).astype(int), 0, 2 * margin)
    frames = np.stack([canvas[oy[k] : oy[k] + size, ox[k] : ox[k] + size] for k in range(t_count)])
    # Scene points move opposite to the crop window, by the same whole pixels as the background.
    sx, sy = (ox - margin).astype(np.float32), (oy - margin).astype(np.float32)

    for x, y, radius, grey, vx, vy in scene.distractors:
        colour = np.full(3, grey, np.float32)
        _draw(
            frames,
            "square" if radius > 4.5 else "diamond",
            x - sx + vx * tc,
            y - sy + vy * tc,
            radius,
            colour,
        )
    if scene.decoy is not None:
        marker, x, y, radius, vx, vy = scene.decoy
        _draw(frames, "disk", x - sx + vx * tc, y - sy + vy * tc, radius, _idle_colour(int(marker)))
    for x, y, radius, grey, onset in scene.blinks:
        k = slice(int(onset), int(onset) + FLASH_FRAMES)
        _draw(frames[k], "diamond", (x - sx)[k], (y - sy)[k], radius, np.full(3, grey, np.float32))

    flashing = {f.marker: f for f in scene.flashes}
    for m in range(len(scene.markers)):
        x, y = scene.markers[m]
        cx, cy = x - sx, y - sy
        _draw(frames, "disk", cx, cy, float(scene.radii[m]), _idle_colour(m))
        f = flashing.get(m)
        if f is not None:
            k = slice(f.onset, f.onset + f.duration)
            bright = np.asarray(MARKERS[m][1], np.float32)
            _draw(frames[k], "disk", cx[k], cy[k], float(scene.radii[m]) * scene.flash_growth, bright)

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
