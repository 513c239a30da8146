"""The embedded synthetic dataset: 16 drawn object classes over clutter, MSCOCO-like labels.

Labels come from latent scene types: each image picks a scene, each class appears with the
scene's probability for it, and one common class (like MSCOCO's "person") appears in most
scenes. That gives strong, concentrated co-occurrence and imbalanced class frequencies, which is
what the confidence weights exploit. Every image carries at least `MIN_LABELS` labels.

`difficulty` (0 to 1; 0 draws today's images exactly) makes the task harder the way real
photographs are: smaller objects, lower contrast, more sensor noise, and confusers, objects
that carry one class's shape in another class's colour (a red square is no class: red discs and
blue squares are), drawn over the true objects and never labelled, so a model must bind shape
and colour instead of detecting either.

`write(root, n_images, seed, size, difficulty)` writes `images/%05d.png` (RGB, size x size) and
`labels.csv` (columns `path`, then one 0/1 column per class: the `csv` adapter's format).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

import artifacts

MIN_LABELS = 3

# (name, shape, colour RGB, texture): each class differs from the others in shape or colour
CLASSES = [
    ("red_disc", "disc", (220, 30, 30), "solid"),
    ("blue_square", "square", (30, 60, 220), "solid"),
    ("green_triangle", "triangle", (30, 170, 40), "solid"),
    ("yellow_cross", "cross", (240, 220, 20), "solid"),
    ("magenta_ring", "ring", (210, 40, 200), "solid"),
    ("cyan_x", "xshape", (20, 210, 220), "solid"),
    ("orange_diamond", "diamond", (250, 130, 10), "solid"),
    ("white_bar", "bar", (245, 245, 245), "solid"),
    ("striped_square", "square", (250, 250, 250), "stripes"),
    ("checkered_disc", "disc", (30, 30, 30), "checker"),
    ("purple_triangle", "triangle", (120, 30, 160), "solid"),
    ("dotted_diamond", "diamond", (30, 120, 250), "dots"),
    ("brown_bar", "bar", (120, 70, 20), "solid"),
    ("pink_cross", "cross", (255, 150, 190), "stripes"),
    ("black_ring", "ring", (10, 10, 10), "solid"),
    ("lime_x", "xshape", (160, 250, 60), "checker"),
]
CLASS_NAMES = [c[0] for c in CLASSES]

# scene weight, then {class index: probability of appearing}; class 0 is the common one
SCENES = [
    (0.34, {0: 0.95, 1: 0.85, 2: 0.75, 3: 0.55, 7: 0.45, 8: 0.15}),
    (0.24, {0: 0.90, 1: 0.55, 4: 0.85, 5: 0.70, 6: 0.50, 2: 0.30}),
    (0.16, {0: 0.70, 8: 0.85, 9: 0.75, 7: 0.60, 1: 0.45, 3: 0.30}),
    (0.12, {0: 0.80, 10: 0.80, 11: 0.65, 3: 0.50, 5: 0.35, 2: 0.30}),
    (0.08, {12: 0.85, 13: 0.75, 0: 0.60, 6: 0.45, 1: 0.40, 14: 0.25}),
    (0.06, {15: 0.80, 14: 0.70, 11: 0.55, 9: 0.45, 0: 0.40, 12: 0.20}),
]
# how often a class shows up outside its scenes: common classes stray more
STRAY = np.array([0.20, 0.08, 0.06, 0.04, 0.03, 0.03, 0.02, 0.02,
                  0.02, 0.015, 0.01, 0.01, 0.01, 0.005, 0.005, 0.003])


def sample_labels(n_images: int, rng: np.random.Generator) -> np.ndarray:
    """(n_images, 16) uint8 label matrix with at least MIN_LABELS positives per row."""
    weights = np.array([s[0] for s in SCENES])
    probs = np.zeros((len(SCENES), len(CLASSES)))
    for k, (_, table) in enumerate(SCENES):
        for c, p in table.items():
            probs[k, c] = p
    probs = np.maximum(probs, STRAY)
    scene = rng.choice(len(SCENES), size=n_images, p=weights / weights.sum())
    labels = (rng.random((n_images, len(CLASSES))) < probs[scene]).astype(np.uint8)
    for i in np.flatnonzero(labels.sum(1) < MIN_LABELS):
        # top up from the scene's likeliest absent classes, sampled by their probability
        absent = np.flatnonzero(labels[i] == 0)
        p = probs[scene[i], absent] ** 2
        need = MIN_LABELS - int(labels[i].sum())
        labels[i, rng.choice(absent, size=need, replace=False, p=p / p.sum())] = 1
    return labels


def _shape_mask(shape: str, xs: np.ndarray, ys: np.ndarray, r: float) -> np.ndarray:
    dist = np.hypot(xs, ys)
    if shape == "disc":
        return dist <= r
    if shape == "square":
        return (np.abs(xs) <= 0.8 * r) & (np.abs(ys) <= 0.8 * r)
    if shape == "triangle":
        return (ys <= 0.8 * r) & (np.abs(xs) <= 0.6 * (ys + 0.9 * r))
    if shape == "cross":
        arm = r / 3
        return ((np.abs(xs) < arm) & (np.abs(ys) < r)) | ((np.abs(ys) < arm) & (np.abs(xs) < r))
    if shape == "ring":
        return (dist <= r) & (dist >= 0.55 * r)
    if shape == "xshape":
        arm = r / 3.2
        return (dist <= r) & ((np.abs(xs - ys) < arm) | (np.abs(xs + ys) < arm))
    if shape == "diamond":
        return np.abs(xs) + np.abs(ys) <= r
    if shape == "bar":
        return (np.abs(ys) <= r / 4) & (np.abs(xs) <= r)
    raise ValueError(f"unknown shape {shape!r}")


def _texture(texture: str, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """1 where the object's colour shows, 0 where its dark pattern shows."""
    if texture == "solid":
        return np.ones_like(xs, dtype=bool)
    if texture == "stripes":
        return (np.floor((xs + ys) / 3) % 2) == 0
    if texture == "checker":
        return ((np.floor(xs / 4) + np.floor(ys / 4)) % 2) == 0
    if texture == "dots":
        return np.hypot((xs % 6) - 3, (ys % 6) - 3) > 1.5
    raise ValueError(f"unknown texture {texture!r}")


def _draw(image, xx, yy, shape, colour, texture, r, rng, shade_low):
    """One object of radius r at a random place (in place)."""
    cx, cy = rng.uniform(r, xx.shape[0] - r, 2)
    xs, ys = xx - cx, yy - cy
    mask = _shape_mask(shape, xs, ys, r)
    lit = _texture(texture, xs, ys)
    shade = rng.uniform(shade_low, 1.1)
    image[mask & lit] = np.clip(np.array(colour) * shade, 0, 255)
    image[mask & ~lit] = (40, 40, 40) if colour[0] > 128 else (230, 230, 230)


REAL_PAIRS = {(c[1], c[2]) for c in CLASSES}  # the (shape, colour) pairs that are classes


def confuser(rng: np.random.Generator) -> tuple:
    """(shape, colour): one class's shape in another class's colour, a pair no class has."""
    while True:
        a, b = rng.integers(0, len(CLASSES), 2)
        pair = (CLASSES[a][1], CLASSES[b][2])
        if pair not in REAL_PAIRS:
            return pair


def render(label_row: np.ndarray, size: int, rng: np.random.Generator, difficulty: float = 0.0) -> np.ndarray:
    """(size, size, 3) uint8 image of the row's objects over a cluttered background (with
    `difficulty` > 0: smaller, dimmer, noisier, and confusers on top)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    base = rng.uniform(60, 200, size=3)
    tilt = rng.uniform(-40, 40, size=(2, 3))
    image = base + (xx[..., None] / size - 0.5) * tilt[0] + (yy[..., None] / size - 0.5) * tilt[1]
    for _ in range(rng.integers(6, 14)):  # clutter: thin grey strokes and specks
        x0, y0 = rng.uniform(0, size, 2)
        angle = rng.uniform(0, np.pi)
        length = rng.uniform(4, 18)
        along = (xx - x0) * np.cos(angle) + (yy - y0) * np.sin(angle)
        across = -(xx - x0) * np.sin(angle) + (yy - y0) * np.cos(angle)
        stroke = (np.abs(across) < 0.8) & (along > 0) & (along < length)
        image[stroke] = rng.uniform(40, 220)
    scale, shade_low = 1.0 - 0.4 * difficulty, 0.85 - 0.35 * difficulty
    for c in rng.permutation(np.flatnonzero(label_row)):
        _, shape, colour, texture = CLASSES[c]
        _draw(image, xx, yy, shape, colour, texture, rng.uniform(0.09, 0.17) * scale * size, rng, shade_low)
    if difficulty > 0:
        for _ in range(rng.poisson(3.0 * difficulty)):
            shape, colour = confuser(rng)
            _draw(image, xx, yy, shape, colour, "solid", rng.uniform(0.09, 0.17) * scale * size,
                  rng, shade_low)
    image += rng.normal(0, 8 * (1 + 2 * difficulty), size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def write(root: str | Path, n_images: int = 2400, seed: int = 0, size: int = 96,
          difficulty: float = 0.0) -> Path:
    """Write the synthetic set under `root`; return the labels.csv path. Idempotent per content."""
    from PIL import Image

    root = Path(root)
    labels_csv = root / "labels.csv"
    stamp = f"n_images={n_images} seed={seed} size={size}" + (f" difficulty={difficulty:g}"
                                                              if difficulty else "")
    done = root / "COMPLETE"
    if labels_csv.is_file() and done.is_file() and done.read_text() == stamp:
        return labels_csv
    artifacts.writable(root / "images")
    rng = np.random.default_rng([seed, 7919])
    labels = sample_labels(n_images, rng)
    rows = []
    for i in range(n_images):
        rel = f"images/{i:05d}.png"
        try:
            Image.fromarray(render(labels[i], size, rng, difficulty)).save(root / rel, compress_level=1)
        except OSError as err:
            raise artifacts.write_failed(root / rel, err) from None
        rows.append(rel + "," + ",".join(map(str, labels[i])))
    artifacts.write_text(labels_csv, "path," + ",".join(CLASS_NAMES) + "\n" + "\n".join(rows) + "\n")
    artifacts.write_text(done, stamp)
    return labels_csv
