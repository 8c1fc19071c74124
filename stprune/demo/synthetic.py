"""Deterministic synthetic video classification task for the offline demo.

Every clip shows one large *target* object (its kind = colour + shape) moving in a straight line in
one of four directions over a textured background that stays still or pans slowly, with a few
small muted distractor objects that move with the background, in 40% of the clips a small *decoy*
of another kind moving its own way, per-frame brightness flicker and sensor noise. The class is
``kind * NUM_MOTIONS + motion``: the kind can be read from any frame, but the direction only from
several (the target's position is random, so one frame says little about where it is heading),
and it must be bound to the large object, not the decoy: a classifier needs both appearance and
motion. Most of each frame is background
that repeats from frame to frame, so the task has the temporal redundancy token pruning exploits.

Clip ``i`` of a split is a pure function of ``(split, seed, i)``: its random generator is seeded
from those three numbers alone, so it is the same in every process, batch size and worker count.
Everything here is vectorised numpy (no torch) and renders a clip in a few milliseconds.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

NUM_FRAMES = 16
FRAME_SIZE = 96

#: The target object kinds: (colour name, shape name, RGB colour).
KINDS: tuple[tuple[str, str, tuple[int, int, int]], ...] = (
    ("red", "disk", (225, 35, 35)),
    ("green", "square", (35, 195, 55)),
    ("blue", "triangle", (45, 85, 235)),
)
#: Motion directions of the target as unit (dx, dy) steps in image coordinates (y grows downwards).
MOTIONS: tuple[tuple[str, tuple[int, int]], ...] = (
    ("right", (1, 0)),
    ("left", (-1, 0)),
    ("down", (0, 1)),
    ("up", (0, -1)),
)
NUM_MOTIONS = len(MOTIONS)
NUM_CLASSES = len(KINDS) * NUM_MOTIONS
#: Class names, indexed by label: ``"<colour>_<shape>_<direction>"``.
CLASS_NAMES: tuple[str, ...] = tuple(
    f"{colour}_{shape}_{motion}" for colour, shape, _ in KINDS for motion, _ in MOTIONS
)

#: Split tags mixed into every clip's seed so that equal seed numbers never give equal clips
#: across splits.
SPLITS: dict[str, int] = {"train": 1, "val": 2}
DEFAULT_TRAIN_SEED = 0
DEFAULT_VAL_SEED = 0
#: Share of clips that hold a decoy (the validation task; training may ramp up to it).
DECOY_PROB = 0.4

_DISTRACTOR_SHAPES = ("disk", "square", "triangle", "diamond")


def label_of(index: int) -> int:
    """The label of clip ``index`` (labels cycle through the classes, so splits are balanced)."""
    return int(index) % NUM_CLASSES


def kind_and_motion(label: int) -> tuple[int, int]:
    """Split a label into ``(kind index, motion index)``."""
    _check_label(label)
    return label // NUM_MOTIONS, label % NUM_MOTIONS


def clip_rng(index: int, split: str = "val", seed: int = DEFAULT_VAL_SEED) -> np.random.Generator:
    """The random generator of clip ``index`` of ``split`` under ``seed`` (a pure function of the three)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    if not isinstance(index, (int, np.integer)) or index < 0:
        raise ValueError(f"index must be an integer >= 0, got {index!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    return np.random.Generator(
        np.random.PCG64(np.random.SeedSequence([SPLITS[split], int(seed), int(index)]))
    )


def generate_clip(
    index: int, split: str = "val", seed: int = DEFAULT_VAL_SEED, decoy_prob: float = DECOY_PROB
) -> tuple[np.ndarray, int]:
    """Clip ``index`` of ``split``: frames (T, H, W, 3) uint8 with T = 16, H = W = 96, and its label.

    ``decoy_prob`` below the default (a training curriculum) only removes decoys: the clip is
    otherwise the same.
    """
    label = label_of(index)
    return render_clip(clip_rng(index, split, seed), label, decoy_prob=decoy_prob), label


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


def render_clip(
    rng: np.random.Generator,
    label: int,
    num_frames: int = NUM_FRAMES,
    size: int = FRAME_SIZE,
    decoy_prob: float = DECOY_PROB,
) -> np.ndarray:
    """Draw one clip of class ``label`` with randomness from ``rng``: frames (num_frames, size, size, 3)
    uint8. Labels differing only in direction consume the same random numbers, so the same ``rng``
    state gives the same scene with the target travelling another way; the decoy draws from its own
    generator, so ``decoy_prob`` only decides whether it appears."""
    _check_label(label)
    if not 0.0 <= decoy_prob <= 1.0:
        raise ValueError(f"decoy_prob must be in [0, 1], got {decoy_prob}")
    if num_frames < 2:
        raise ValueError(f"num_frames must be >= 2, got {num_frames}")
    if size < 48:
        raise ValueError(f"size must be >= 48 pixels, got {size}")
    kind, motion = kind_and_motion(label)
    t = np.arange(num_frames, dtype=np.float32)
    tc = t - (num_frames - 1) / 2.0  # time relative to the clip's middle

    # Camera pan (background and distractors move together), pixels per frame.
    pan = rng.uniform(-0.45, 0.45, size=2).astype(np.float32)
    margin = int(np.ceil(np.abs(pan).max() * num_frames / 2.0)) + 2
    canvas = _background(rng, size + 2 * margin)
    # Whole-pixel pan offsets per frame (the texture itself is smooth, so rounding is invisible).
    ox = np.clip(np.rint(margin + pan[0] * tc).astype(int), 0, 2 * margin)
    oy = np.clip(np.rint(margin + pan[1] * tc).astype(int), 0, 2 * margin)
    frames = np.stack([canvas[oy[k] : oy[k] + size, ox[k] : ox[k] + size] for k in range(num_frames)])

    # Distractors: small muted objects attached to the (panning) scene, with a little own motion.
    for _ in range(int(rng.integers(1, 4))):
        radius = float(rng.uniform(4.0, 7.0))
        start = rng.uniform(radius, size - radius, size=2).astype(np.float32)
        own = rng.uniform(-0.25, 0.25, size=2).astype(np.float32)
        cx = start[0] - (pan[0] - own[0]) * tc
        cy = start[1] - (pan[1] - own[1]) * tc
        grey = rng.uniform(60, 200)
        colour = np.clip(grey + rng.uniform(-25, 25, size=3), 0, 255).astype(np.float32)
        shape = _DISTRACTOR_SHAPES[int(rng.integers(len(_DISTRACTOR_SHAPES)))]
        _draw(frames, shape, cx, cy, radius, colour)

    # Decoy (in DECOY_PROB = 40% of the clips): a small copy of another kind, moving its own way at
    # its own speed, so neither "which colour is present" nor "which way does something move" gives the label;
    # the direction must be bound to the large object.
    decoy_u = rng.random()
    decoy_rng = np.random.Generator(np.random.PCG64(int(rng.integers(2**63))))
    if decoy_u < decoy_prob:
        decoy_kind = (kind + int(decoy_rng.integers(1, len(KINDS)))) % len(KINDS)
        decoy_dir = MOTIONS[int(decoy_rng.integers(NUM_MOTIONS))][1]
        _draw_mover(frames, decoy_rng, decoy_kind, decoy_dir, (4.5, 6.5), (1.5, 3.5), tc)

    # Target: kind fixes colour and shape; motion fixes the direction.
    _draw_mover(frames, rng, kind, MOTIONS[motion][1], (10.0, 15.0), (1.5, 3.5), tc)

    # Per-frame brightness flicker and sensor noise.
    gain = (1.0 + rng.normal(0.0, 0.02, size=num_frames)).astype(np.float32)
    frames *= gain[:, None, None, None]
    # Luminance noise, the same on the three channels.
    sigma = float(rng.uniform(2.0, 8.0))
    count = num_frames * size * size
    bank = _noise_bank()
    if count > bank.size:
        raise ValueError(f"num_frames * size**2 must be <= {bank.size}, got {count}")
    start = int(rng.integers(0, bank.size - count + 1))
    frames += bank[start : start + count].reshape(num_frames, size, size, 1) * sigma
    return np.clip(frames, 0, 255).astype(np.uint8)


@functools.cache
def _noise_bank() -> np.ndarray:
    """A fixed bank of standard-normal samples (float32); each clip reads its noise from a random
    offset in it, which is ~10x cheaper than drawing fresh normals and just as deterministic."""
    return np.random.Generator(np.random.PCG64(0x5EED)).standard_normal(1 << 21, dtype=np.float32)


def _draw_mover(
    frames: np.ndarray,
    rng: np.random.Generator,
    kind: int,
    direction: tuple[int, int],
    radius_range: tuple[float, float],
    speed_range: tuple[float, float],
    tc: np.ndarray,
) -> None:
    """Draw an object of ``kind`` moving along ``direction`` (unit (dx, dy)) into ``frames``
    (T, H, W, 3) float32, at ``tc`` (T,) frame times relative to the clip middle. Size and speed are
    drawn from the ranges; the mid-clip position so that the whole path stays inside the frame."""
    size = frames.shape[1]
    _, shape, base_colour = KINDS[kind]
    radius = float(rng.uniform(*radius_range))
    speed = float(rng.uniform(*speed_range))
    step = np.asarray(direction, dtype=np.float32) * speed
    step += rng.uniform(-0.15, 0.15, size=2).astype(np.float32) * speed  # slightly off-axis
    half_path = np.abs(step) * float(tc.max())
    lo = radius + 1.0 + half_path
    hi = size - radius - 1.0 - half_path
    mid = np.array(
        [rng.uniform(lo[d], hi[d]) if hi[d] > lo[d] else size / 2.0 for d in range(2)], dtype=np.float32
    )
    colour = np.clip(np.asarray(base_colour, np.float32) + rng.uniform(-25, 25, size=3), 0, 255)
    _draw(frames, shape, mid[0] + step[0] * tc, mid[1] + step[1] * tc, radius, colour)


def _check_label(label: int) -> None:
    if not 0 <= int(label) < NUM_CLASSES:
        raise ValueError(f"label must be in [0, {NUM_CLASSES - 1}], got {label}")


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth, muted colour texture (size, size, 3) float32: a tint plus a few oriented gratings
    and a low-frequency blob field."""
    tint = rng.uniform(70, 170) + rng.uniform(-20, 20, size=3)
    img = np.broadcast_to(tint.astype(np.float32), (size, size, 3)).copy()
    coords = np.arange(size, dtype=np.float32)
    for _ in range(int(rng.integers(2, 4))):
        freq = rng.uniform(0.04, 0.25)  # radians per pixel
        theta = rng.uniform(0, np.pi)
        phase = rng.uniform(0, 2 * np.pi)
        ax, ay = freq * np.cos(theta), freq * np.sin(theta)
        # cos(ax*x + ay*y + phase) as a sum of two outer products (separable, cheap).
        cx, sx = np.cos(ax * coords), np.sin(ax * coords)
        cy, sy = np.cos(ay * coords + phase), np.sin(ay * coords + phase)
        grating = np.outer(cy, cx) - np.outer(sy, sx)  # (y, x)
        amp = (rng.uniform(8, 28) * (1.0 + rng.uniform(-0.3, 0.3, size=3))).astype(np.float32)
        img += grating[:, :, None] * amp
    # Low-frequency blobs: a coarse random grid, upsampled by repetition and box-smoothed.
    cells = int(rng.integers(3, 6))
    grid = rng.normal(0, 18, size=(cells, cells, 3)).astype(np.float32)
    rep = -(-size // cells)
    blobs = np.repeat(np.repeat(grid, rep, axis=0), rep, axis=1)[:size, :size]
    blobs = _box_blur(blobs, rep // 2 + 1)
    img += blobs
    return img


def _box_blur(img: np.ndarray, k: int) -> np.ndarray:
    """Separable box blur of an (H, W, C) image with window ``2k+1`` (edge-clamped), via cumsums."""
    out = img
    for axis in (0, 1):
        pad = [(0, 0)] * 3
        pad[axis] = (k + 1, k)
        c = np.cumsum(np.pad(out, pad, mode="edge"), axis=axis, dtype=np.float32)
        n = out.shape[axis]
        hi = np.take(c, np.arange(2 * k + 1, 2 * k + 1 + n), axis=axis)
        lo = np.take(c, np.arange(0, n), axis=axis)
        out = (hi - lo) / (2 * k + 1)
    return out


def _shape_alpha(shape: str, dx: np.ndarray, dy: np.ndarray, radius: float) -> np.ndarray:
    """Anti-aliased coverage (T, H, W) in [0, 1] of a shape centred at offset (dx, dy) = (0, 0).

    ``dx`` is (T, 1, W) and ``dy`` is (T, H, 1) (pixel minus centre); ``radius`` sets the size.
    """
    if shape == "disk":
        d = np.sqrt(dx * dx + dy * dy) - radius
    elif shape == "square":
        d = np.maximum(np.abs(dx), np.abs(dy)) - 0.85 * radius
    elif shape == "diamond":
        d = (np.abs(dx) + np.abs(dy) - 1.2 * radius) * 0.7071
    elif shape == "triangle":  # pointing up, circumradius 1.25 * radius
        r = 1.25 * radius
        d = np.maximum(dy - 0.5 * r, 0.866 * np.abs(dx) - 0.5 * dy - 0.5 * r)
    else:
        raise ValueError(f"shape must be one of disk, square, diamond, triangle; got {shape!r}")
    return np.clip(0.5 - d, 0.0, 1.0).astype(np.float32)


def _draw(
    frames: np.ndarray, shape: str, cx: np.ndarray, cy: np.ndarray, radius: float, colour: np.ndarray
) -> None:
    """Blend a ``shape`` of ``colour`` (3,) centred at (cx[t], cy[t]) into ``frames`` (T, H, W, 3)
    float32 in place, touching only the box the shape covers over the clip (for speed)."""
    _, h, w, _ = frames.shape
    reach = 1.3 * radius + 2.0
    x0, x1 = max(int(np.floor(cx.min() - reach)), 0), min(int(np.ceil(cx.max() + reach)) + 1, w)
    y0, y1 = max(int(np.floor(cy.min() - reach)), 0), min(int(np.ceil(cy.max() + reach)) + 1, h)
    if x0 >= x1 or y0 >= y1:
        return
    xs = np.arange(x0, x1, dtype=np.float32)[None, None, :] - cx[:, None, None]  # (T, 1, w')
    ys = np.arange(y0, y1, dtype=np.float32)[None, :, None] - cy[:, None, None]  # (T, h', 1)
    a = _shape_alpha(shape, xs, ys, radius)[..., None]
    box = frames[:, y0:y1, x0:x1]
    box *= 1.0 - a
    box += a * colour
