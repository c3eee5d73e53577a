"""Procedural shapes on cluttered backgrounds, each with a ground-truth box.

Every item is drawn on the fly from its own RNG seeded by (split, seed, index), so an item
is the same whatever the worker, order or process, and no global RNG is touched. The
background holds soft blobs and line segments of random colours: clutter that is not a
shape of any class, so the class can only be read inside the box. Shapes are never
rotated (a 45-degree square would be a diamond) and lie fully inside the image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from analysis.data.bundle import DataBundle
from analysis.errors import CollabError

CLASS_NAMES = ["circle", "square", "triangle", "cross", "ring", "diamond"]
_SPLIT_TAG = {"train": 1, "test": 2}
#: The test split ignores the training seed, so every run is scored on the same images.
TEST_SEED = 0
#: Per-channel statistics measured on 1000 images (channels are symmetric by construction).
MEAN, STD = (0.5, 0.5, 0.5), (0.28, 0.28, 0.28)
#: Below this side the thinnest strokes (cross arms, ring) can miss every pixel centre.
MIN_SIZE = 16


@dataclass(frozen=True)
class Geometry:
    """Centre (cx, cy) and half-extent r in pixels; each shape fits in [c - r, c + r]."""

    cx: float
    cy: float
    r: float


def shape_mask(label: int, g: Geometry, coords: np.ndarray) -> np.ndarray:
    """Boolean (S, S) mask of shape ``label``, evaluated at pixel centres ``coords`` (S,)."""
    dx = np.abs(coords[None, :] - g.cx)
    dy = coords[:, None] - g.cy
    ady = np.abs(dy)
    if label == 0:  # circle
        return dx**2 + dy**2 <= g.r**2
    if label == 1:  # axis-aligned square
        return (dx <= g.r) & (ady <= g.r)
    if label == 2:  # triangle, apex up: half-width grows from 0 at the top to r at the base
        return (ady <= g.r) & (dx <= (dy + g.r) / 2)
    if label == 3:  # plus-shaped cross with arms a third of the extent thick
        t = g.r / 3
        return ((dx <= t) & (ady <= g.r)) | ((ady <= t) & (dx <= g.r))
    if label == 4:  # ring
        d2 = dx**2 + dy**2
        return (d2 <= g.r**2) & (d2 >= (0.55 * g.r) ** 2)
    if label == 5:  # diamond
        return dx + ady <= g.r
    raise ValueError(f"no shape class {label}")


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Tight (x0, y0, x1, y1) box of a non-empty mask, x1/y1 exclusive."""
    rows, cols = mask.any(axis=1), mask.any(axis=0)
    y0, x0 = int(rows.argmax()), int(cols.argmax())
    y1, x1 = len(rows) - int(rows[::-1].argmax()), len(cols) - int(cols[::-1].argmax())
    return x0, y0, x1, y1


class ShapesDataset(Dataset):
    """``length`` images of 6 shape classes, 3 x S x S, float32 in [0, 1].

    Args:
        length: Number of items.
        seed: Seed of this split; (split, seed, index) fixes each item.
        split: ``"train"`` or ``"test"``; the two never share an RNG stream.
        image_size: Side S in pixels (default 64).

    Labels cycle through the classes (``index % 6``), so classes are exactly balanced.

    A family of datasets built on these shapes (``textured_shapes``) subclasses it, setting the
    class attributes below and overriding :meth:`shape_of` and ``__getitem__``.
    """

    NAME = "shapes"
    CLASS_NAMES = CLASS_NAMES
    MEAN, STD = MEAN, STD
    #: Leading entries of every item's RNG seed: a family's own stream, apart from these items.
    STREAM: tuple[int, ...] = ()
    #: Range of a shape's half-extent, as a fraction of the image side.
    RADIUS = (0.14, 0.26)

    def __init__(
        self, length: int, *, seed: int, split: str = "train", image_size: int = 64
    ) -> None:
        if split not in _SPLIT_TAG:
            raise ValueError(f"split must be one of {sorted(_SPLIT_TAG)}")
        self.length, self.seed, self.split, self.image_size = length, seed, split, image_size
        self._coords = np.arange(image_size, dtype=np.float32) + 0.5
        self.labels = torch.arange(length) % len(self.CLASS_NAMES)

    def __len__(self) -> int:
        return self.length

    def _rng(self, index: int) -> np.random.Generator:
        if not 0 <= index < self.length:
            raise IndexError(index)
        return np.random.default_rng([*self.STREAM, _SPLIT_TAG[self.split], self.seed, index])

    def _geometry(self, rng: np.random.Generator) -> Geometry:
        s = self.image_size
        r = rng.uniform(*self.RADIUS) * s
        cx, cy = rng.uniform(r + 1, s - r - 1, size=2)
        return Geometry(float(cx), float(cy), float(r))

    def shape_of(self, label: int) -> int:
        """The shape (an index into this module's ``CLASS_NAMES``) drawn for class ``label``."""
        return label

    def mask(self, index: int) -> torch.Tensor:
        """Bool (S, S) tensor: the pixels painted with item ``index``'s shape."""
        shape = self.shape_of(int(self.labels[index]))
        return torch.from_numpy(shape_mask(shape, self._geometry(self._rng(index)), self._coords))

    def box(self, index: int) -> tuple[int, int, int, int]:
        """Tight pixel box ``(x0, y0, x1, y1)`` (x1, y1 exclusive) of item ``index``'s shape."""
        return mask_box(self.mask(index).numpy())

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        rng = self._rng(index)
        label = int(self.labels[index])
        mask = shape_mask(self.shape_of(label), self._geometry(rng), self._coords)
        base = rng.random(3, dtype=np.float32)
        img = base[:, None, None] + 0.3 * (
            rng.random((3, self.image_size, self.image_size), dtype=np.float32) - 0.5
        )
        self._draw_blobs(img, rng)
        self._draw_lines(img, rng)
        # Guarantee contrast: one channel of the shape colour sits 0.4-0.6 away from the background.
        colour = rng.random(3, dtype=np.float32)
        k = rng.integers(3)
        colour[k] = (base[k] + rng.uniform(0.4, 0.6)) % 1.0
        img = np.where(mask[None], colour[:, None, None], img)
        return torch.from_numpy(np.clip(img, 0.0, 1.0, dtype=np.float32)), label

    def _draw_blobs(self, img: np.ndarray, rng: np.random.Generator) -> None:
        """Alpha-blend 1-3 soft Gaussian blobs of random colour into ``img`` (3, S, S) in place."""
        s, c = self.image_size, self._coords
        for _ in range(rng.integers(1, 4)):
            bx, by = rng.uniform(0, s, size=2)
            sigma = rng.uniform(0.05, 0.12) * s
            # A Gaussian is separable: an outer product of two 1-D profiles is much cheaper.
            gx = np.exp(-((c - bx) ** 2) / (2 * sigma**2))
            gy = np.exp(-((c - by) ** 2) / (2 * sigma**2)) * rng.uniform(0.5, 0.9)
            alpha = (gy[:, None] * gx[None, :]).astype(np.float32)
            img += alpha * (rng.random(3, dtype=np.float32)[:, None, None] - img)

    def _draw_lines(self, img: np.ndarray, rng: np.random.Generator) -> None:
        """Alpha-blend 2-4 anti-aliased line segments of random colour into ``img`` in place."""
        s, c = self.image_size, self._coords
        n = int(rng.integers(2, 5))
        ends = rng.uniform(0, s, size=(n, 4)).astype(np.float32)
        width = rng.uniform(0.6, 1.4, size=n).astype(np.float32)
        colours = rng.random((n, 3), dtype=np.float32)
        ax, ay, vx, vy = ends[:, 0], ends[:, 1], ends[:, 2] - ends[:, 0], ends[:, 3] - ends[:, 1]
        px = c[None, None, :] - ax[:, None, None]  # (n, 1, S)
        py = c[None, :, None] - ay[:, None, None]  # (n, S, 1)
        vv = (vx**2 + vy**2 + 1e-6)[:, None, None]
        t = np.clip((px * vx[:, None, None] + py * vy[:, None, None]) / vv, 0.0, 1.0)
        dist = np.hypot(px - t * vx[:, None, None], py - t * vy[:, None, None])  # (n, S, S)
        alpha = np.clip(width[:, None, None] + 0.5 - dist, 0.0, 1.0)
        for i in range(n):
            img += alpha[i] * (colours[i][:, None, None] - img)


def build_shapes(
    *,
    image_size: int = 64,
    n_train: int = 4000,
    n_test: int = 1000,
    seed: int = 0,
    family: type[ShapesDataset] = ShapesDataset,
) -> DataBundle:
    """Build the shapes bundle: 6 classes, 3 channels, boxes via ``bundle.test.box(i)``.

    Args:
        image_size: Side of the images in pixels.
        n_train: Training items, drawn from ``seed`` (a new seed gives new training images).
        n_test: Test items, always drawn from :data:`TEST_SEED`.
        seed: The training seed.
        family: The dataset class (a subclass builds its own bundle, e.g. ``textured_shapes``).

    Returns:
        A :class:`DataBundle` named ``family.NAME`` whose splits are ``family`` datasets.
    """
    if image_size < MIN_SIZE:
        raise CollabError(
            f"{family.NAME} needs image_size of at least {MIN_SIZE}, got {image_size}; set data.image_size={MIN_SIZE} or more"
        )
    return DataBundle(
        name=family.NAME,
        train=family(n_train, seed=seed, split="train", image_size=image_size),
        test=family(n_test, seed=TEST_SEED, split="test", image_size=image_size),
        num_classes=len(family.CLASS_NAMES),
        in_chans=3,
        image_size=image_size,
        mean=family.MEAN,
        std=family.STD,
        class_names=list(family.CLASS_NAMES),
    )
