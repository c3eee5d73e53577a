"""Fetch a handful of samples from a dataset by index, e.g. to show the ones a probe picked."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import Dataset


def gather_samples(
    dataset: Dataset, indices: Sequence[int] | torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack the images and labels of ``dataset[i]`` for each ``i`` in ``indices``.

    Args:
        dataset: yields ``(image (C, H, W), int label)``.
        indices: M sample indices, in the order wanted.

    Returns:
        ``images`` (M, C, H, W) float and ``labels`` (M,) int64. For M = 0 the images tensor
        has shape (0, 0, 0, 0).
    """
    items = [dataset[int(i)] for i in indices]
    if not items:
        return torch.zeros(0, 0, 0, 0), torch.zeros(0, dtype=torch.long)
    images = torch.stack([torch.as_tensor(image, dtype=torch.float32) for image, _ in items])
    labels = torch.tensor([int(label) for _, label in items], dtype=torch.long)
    return images, labels
