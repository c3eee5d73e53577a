"""scikit-learn's bundled 8x8 hand-written digits: the dataset that needs no download."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from analysis.data.arrays import ArrayImageDataset, resize_square
from analysis.data.bundle import DataBundle

#: The split never depends on the training seed, so every run is scored on the same 360 images.
SPLIT_SEED = 0
TEST_FRACTION = 0.2


@lru_cache(maxsize=4)
def _split_tensors(
    image_size: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Load, scale to [0, 1], resize once and split; cached because it is the same every time.

    Returns:
        ``(x_train (N, 1, S, S), y_train (N,), x_test (M, 1, S, S), y_test (M,))``.
    """
    # scikit-learn is imported here, not at module level: it costs ~1 s at app start.
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    raw = load_digits()
    images = torch.from_numpy(raw.images.astype(np.float32) / 16.0).unsqueeze(1)
    images = resize_square(images, image_size)
    labels = torch.from_numpy(raw.target.astype(np.int64))
    index = np.arange(len(labels))
    train_idx, test_idx = train_test_split(
        index, test_size=TEST_FRACTION, stratify=raw.target, random_state=SPLIT_SEED
    )
    train_idx, test_idx = torch.from_numpy(np.sort(train_idx)), torch.from_numpy(np.sort(test_idx))
    return images[train_idx], labels[train_idx], images[test_idx], labels[test_idx]


def build_digits(*, image_size: int = 32, limit: tuple[int, int] | None = None) -> DataBundle:
    """Build the digits bundle (1 channel, 10 classes, ~1437 train / 360 test images).

    Args:
        image_size: Side of the (bilinearly up-sampled) images.
        limit: Optional ``(n_train, n_test)``: keep only the first images of each split
            (used by the tiny ``test_digits`` member).

    Returns:
        A :class:`DataBundle`; mean/std are measured on the training split.
    """
    x_train, y_train, x_test, y_test = _split_tensors(image_size)
    if limit is not None:
        x_train, y_train, x_test, y_test = (
            x_train[: limit[0]],
            y_train[: limit[0]],
            x_test[: limit[1]],
            y_test[: limit[1]],
        )
    mean, std = float(x_train.mean()), float(x_train.std())
    return DataBundle(
        name="digits",
        train=ArrayImageDataset(x_train, y_train, image_size=image_size),
        test=ArrayImageDataset(x_test, y_test, image_size=image_size),
        num_classes=10,
        in_chans=1,
        image_size=image_size,
        mean=(mean,),
        std=(std,),
        class_names=[str(d) for d in range(10)],
    )
