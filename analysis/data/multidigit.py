"""Multi-digit numbers: k hand-written digits side by side, the label is the number they spell.

The multi-digit classification task of Deep Collaborative Learning (Wang et al. 2017), built
from scikit-learn's digits (``digits.py``, reused, not copied): a k-digit number has 10 ** k
classes (k = 2: labels 0..99, class names "00".."99").

Layout (a choice; the bundle contract is square images): a 1-channel ``S x S`` black canvas,
each digit resized to ``d x d`` with ``d = S // k`` and the k digits placed left to right as a
horizontally and vertically centred row (k = 2, S = 32: two 16 x 16 digits in rows 8..23).
The most significant digit is on the left.

Determinism: item ``i`` is the number ``i % 10 ** k`` (classes exactly balanced); the image of
each of its digits is drawn uniformly among that digit's images with an RNG seeded by
(split, seed, i) only. Training items use training-split digits and the training seed; test
items use test-split digits and :data:`TEST_SEED`, so every run is scored on the same images
and no test digit image ever appears in training.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch.utils.data import Dataset

from analysis.data.bundle import DataBundle
from analysis.data.digits import build_digits
from analysis.errors import CollabError

_SPLIT_TAG = {"train": 1, "test": 2}
#: The test split ignores the training seed.
TEST_SEED = 0
#: Smallest digit side in pixels (the source digits are 8 x 8).
MIN_DIGIT = 4
#: Items measured for the normalisation statistics (from seed 0's training split).
STATS_ITEMS = 500


class MultiDigitDataset(Dataset):
    """``length`` images of ``num_digits``-digit numbers, 1 x S x S float32 in [0, 1].

    Args:
        length: Number of items.
        num_digits: k, digits per number.
        split: ``"train"`` or ``"test"``: which digits split the digit images come from.
        seed: Seed of this split; (split, seed, index) fixes each item.
        image_size: Side S of the square canvas; each digit is ``S // k`` pixels wide.

    Attributes:
        labels: (length,) int64 numbers, ``index % 10 ** k``.
    """

    def __init__(
        self,
        length: int,
        *,
        num_digits: int = 2,
        split: str = "train",
        seed: int = 0,
        image_size: int = 32,
    ) -> None:
        if split not in _SPLIT_TAG:
            raise ValueError(f"split must be one of {sorted(_SPLIT_TAG)}")
        self.length, self.num_digits, self.split, self.seed = length, num_digits, split, seed
        self.image_size = image_size
        self.digit_size = image_size // num_digits
        source = build_digits(image_size=self.digit_size)
        part = source.train if split == "train" else source.test
        self._images = part.images  # (N, 1, d, d) float in [0, 1]
        self._by_class = [torch.nonzero(part.labels == c).flatten() for c in range(10)]
        self.labels = torch.arange(length) % 10**num_digits

    def __len__(self) -> int:
        return self.length

    def digits(self, index: int) -> list[int]:
        """The digits of item ``index``'s number, most significant first."""
        number = int(self.labels[index])
        return [int(c) for c in f"{number:0{self.num_digits}d}"]

    def sources(self, index: int) -> list[int]:
        """Indices into the digits split of the k digit images item ``index`` is made of."""
        if not 0 <= index < self.length:
            raise IndexError(index)
        rng = np.random.default_rng([_SPLIT_TAG[self.split], self.seed, index])
        pools = [self._by_class[digit] for digit in self.digits(index)]
        return [int(pool[rng.integers(len(pool))]) for pool in pools]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        s, d, k = self.image_size, self.digit_size, self.num_digits
        canvas = torch.zeros(1, s, s)
        top, left = (s - d) // 2, (s - k * d) // 2
        for j, src in enumerate(self.sources(index)):
            x0 = left + j * d
            canvas[:, top : top + d, x0 : x0 + d] = self._images[src]
        return canvas, int(self.labels[index])


@lru_cache(maxsize=8)
def _stats(num_digits: int, image_size: int) -> tuple[float, float]:
    """Mean and std of the first :data:`STATS_ITEMS` training images of seed 0."""
    sample = MultiDigitDataset(STATS_ITEMS, num_digits=num_digits, image_size=image_size)
    images = torch.stack([sample[i][0] for i in range(len(sample))])
    return float(images.mean()), float(images.std())


def build_multidigit(
    *,
    num_digits: int = 2,
    image_size: int = 32,
    n_train: int = 6000,
    n_test: int = 1000,
    seed: int = 0,
) -> DataBundle:
    """Build the multi-digit bundle: 1 channel, ``10 ** num_digits`` classes.

    Args:
        num_digits: k, digits per number (k = 2: 100 classes).
        image_size: Side S of the square images; each digit is ``S // k`` pixels.
        n_train: Training items (their digit images depend on ``seed``).
        n_test: Test items (always drawn with :data:`TEST_SEED`).
        seed: The training seed.

    Returns:
        A :class:`DataBundle` of :class:`MultiDigitDataset` splits; mean/std measured on
        :data:`STATS_ITEMS` training images of seed 0 (the same for every seed).
    """
    if num_digits < 1 or image_size // num_digits < MIN_DIGIT:
        raise CollabError(
            f"{num_digits} digits in {image_size} pixels leaves digits narrower than {MIN_DIGIT} "
            f"pixels; set data.image_size to at least {MIN_DIGIT * max(num_digits, 1)}"
        )
    mean, std = _stats(num_digits, image_size)
    kw = {"num_digits": num_digits, "image_size": image_size}
    classes = 10**num_digits
    return DataBundle(
        name="multidigit",
        train=MultiDigitDataset(n_train, split="train", seed=seed, **kw),
        test=MultiDigitDataset(n_test, split="test", seed=TEST_SEED, **kw),
        num_classes=classes,
        in_chans=1,
        image_size=image_size,
        mean=(mean,),
        std=(std,),
        class_names=[f"{n:0{num_digits}d}" for n in range(classes)],
    )
