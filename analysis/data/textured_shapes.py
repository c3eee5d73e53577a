"""Textured shapes: a harder procedural task than ``shapes``, with confusable classes.

Twelve classes: each of the six shapes of :mod:`analysis.data.shapes` (circle, square,
triangle, cross, ring, diamond) filled with stripes that run either horizontally or
vertically. The two classes of a shape differ *only* in the direction of their stripes (a
texture detail a few pixels across), and circle / ring differ only by the ring's hole, which
the stripes make hard to see at 32 pixels. Colours, stripe period and phase, size and position
are random. The background is cluttered as in ``shapes`` (noise, soft blobs, thin lines) and
also holds one or two soft patches of *oblique* stripes: texture that belongs to no class, so
stripes must be read on the shape, inside its box. Every class is mirror-symmetric, so a
left-right flip keeps the label (the augmentation preset uses it).

Reused from ``shapes`` (subclassed, not copied): the shape masks and tight boxes, the per-item
RNG seeded by (stream, split, seed, index), the blob and line clutter, the bundle builder. Item
``i`` has label ``i % 12`` (classes exactly balanced); the test split ignores the training seed.
"""

from __future__ import annotations

import numpy as np
import torch

from analysis.data.bundle import DataBundle
from analysis.data.shapes import CLASS_NAMES as SHAPE_NAMES
from analysis.data.shapes import ShapesDataset, build_shapes, shape_mask

STRIPES = ("horizontal", "vertical")
CLASS_NAMES = [f"{shape}, {stripes} stripes" for shape in SHAPE_NAMES for stripes in STRIPES]
#: Per-channel statistics measured on 1000 training images of seed 0 at 32 pixels.
MEAN, STD = (0.5, 0.5, 0.5), (0.27, 0.27, 0.27)
#: Stripe period in pixels at 32 pixels (scaled with the image size).
PERIOD = (3.0, 4.5)
#: Amplitude of the uniform pixel noise of the background.
NOISE = 0.5
#: Amplitude of the uniform pixel noise on the shape (it blurs the stripes' direction).
FILL_NOISE = 0.2
#: How far (on one channel) the second stripe colour sits from the first.
STRIPE_CONTRAST = (0.2, 0.35)


class TexturedShapesDataset(ShapesDataset):
    """``length`` images of 12 textured-shape classes, 3 x S x S, float32 in [0, 1].

    Args:
        length: Number of items.
        seed: Seed of this split; (split, seed, index) fixes each item.
        split: ``"train"`` or ``"test"``; the two never share an RNG stream.
        image_size: Side S in pixels (64 unless given; the registered datasets use 32).

    Attributes:
        labels: (length,) int64, ``index % 12``; label ``l`` is shape ``l // 2`` of
            ``shapes`` with stripes ``STRIPES[l % 2]``.
    """

    NAME = "textured_shapes"
    CLASS_NAMES = CLASS_NAMES
    MEAN, STD = MEAN, STD
    STREAM = (7,)  # apart from the ``shapes`` item of the same (split, seed, index)
    RADIUS = (0.2, 0.3)  # larger than the plain shapes': stripes need room

    def shape_of(self, label: int) -> int:
        return label // len(STRIPES)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        rng = self._rng(index)
        label = int(self.labels[index])
        mask = shape_mask(self.shape_of(label), self._geometry(rng), self._coords)
        s = self.image_size
        base = rng.random(3, dtype=np.float32)
        img = base[:, None, None] + NOISE * (rng.random((3, s, s), dtype=np.float32) - 0.5)
        self._draw_blobs(img, rng)
        self._draw_oblique_patches(img, rng)
        self._draw_lines(img, rng)
        # The shape's two stripe colours: one channel of the first sits 0.4-0.6 away from the
        # background, one channel of the second 0.35-0.55 away from the first.
        first = rng.random(3, dtype=np.float32)
        k = rng.integers(3)
        first[k] = (base[k] + rng.uniform(0.4, 0.6)) % 1.0
        second = rng.random(3, dtype=np.float32)
        j = rng.integers(3)
        second[j] = (first[j] + rng.uniform(*STRIPE_CONTRAST)) % 1.0
        wave = self._grating(rng, angle=0.0 if STRIPES[label % 2] == "horizontal" else np.pi / 2)
        fill = first[:, None, None] + (second - first)[:, None, None] * wave[None]
        fill = fill + FILL_NOISE * (rng.random((3, s, s), dtype=np.float32) - 0.5)
        img = np.where(mask[None], fill, img)
        return torch.from_numpy(np.clip(img, 0.0, 1.0, dtype=np.float32)), label

    def _grating(self, rng: np.random.Generator, *, angle: float) -> np.ndarray:
        """(S, S) stripes in [0, 1], constant along direction ``angle`` (0: horizontal)."""
        scale = self.image_size / 32
        period = rng.uniform(*PERIOD) * scale
        phase = rng.uniform(0.0, period)
        c = self._coords
        # Distance across the stripes: along y for horizontal stripes, along x for vertical.
        across = np.cos(angle) * c[:, None] - np.sin(angle) * c[None, :]
        return (0.5 + 0.5 * np.cos(2 * np.pi * (across - phase) / period)).astype(np.float32)

    def _draw_oblique_patches(self, img: np.ndarray, rng: np.random.Generator) -> None:
        """Alpha-blend 1-2 soft round patches of oblique stripes (25-65 degrees off the axes)
        into ``img`` (3, S, S) in place: texture that is no class's."""
        s, c = self.image_size, self._coords
        for _ in range(rng.integers(1, 3)):
            px, py = rng.uniform(0, s, size=2)
            sigma = rng.uniform(0.1, 0.18) * s
            angle = np.deg2rad(rng.uniform(25, 65) + 90 * rng.integers(2))
            wave = self._grating(rng, angle=float(angle))
            gx = np.exp(-((c - px) ** 2) / (2 * sigma**2))
            gy = np.exp(-((c - py) ** 2) / (2 * sigma**2))
            alpha = (0.9 * gy[:, None] * gx[None, :]).astype(np.float32)
            a, b = rng.random((2, 3), dtype=np.float32)
            patch = a[:, None, None] + (b - a)[:, None, None] * wave[None]
            img += alpha * (patch - img)


def build_textured_shapes(
    *, image_size: int = 32, n_train: int = 3000, n_test: int = 1200, seed: int = 0
) -> DataBundle:
    """Build the textured-shapes bundle: 12 classes, 3 channels, boxes via ``split.box(i)``.

    Args:
        image_size: Side of the images in pixels (at least ``shapes.MIN_SIZE``).
        n_train: Training items, drawn from ``seed`` (a new seed gives new training images).
        n_test: Test items, always drawn from ``shapes.TEST_SEED``.
        seed: The training seed.

    Returns:
        A :class:`DataBundle` whose splits are :class:`TexturedShapesDataset`.
    """
    return build_shapes(
        image_size=image_size,
        n_train=n_train,
        n_test=n_test,
        seed=seed,
        family=TexturedShapesDataset,
    )
