"""Per-peer views: each peer sees its own independently augmented copy of the same image."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.data import Dataset

from analysis.data.seeding import torch_generator
from analysis.errors import CollabError


class MultiView(Dataset):
    """Wrap a dataset so that item ``i`` carries ``views`` augmented copies of image ``i``.

    View ``v`` of item ``i`` at epoch ``e`` is augmented with a generator seeded from
    ``(seed, e, i, v)`` alone, so it is the same whatever the DataLoader workers or order.
    Call :meth:`set_epoch` before each epoch. Workers kept alive between epochs
    (``persistent_workers=True``) hold their own copy, which this call does not reach: the
    trainer sends the epoch with every index instead (``analysis.training.loader``).

    Args:
        dataset: Yields ``(image (C, H, W), label)``.
        views: Number of views K >= 1 (one per peer for divide-and-co-training).
        augment: ``augment(img, gen) -> img`` or ``None`` (then all views are the image).
        seed: The training seed.

    Items are ``(x, label)`` with ``x`` of shape (K, C, H, W) when K > 1, else (C, H, W).
    """

    def __init__(
        self, dataset: Dataset, *, views: int, augment: Callable | None, seed: int
    ) -> None:
        if views < 1:
            raise CollabError(
                f"views must be at least 1, got {views}; set data.views to the number of peers or 1"
            )
        self.dataset, self.views, self.augment, self.seed = dataset, views, augment, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose augmentations the next items get."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        img, label = self.dataset[index]
        if self.augment is None:
            out = [img] * self.views
        else:
            out = [
                self.augment(img, torch_generator(self.seed, self.epoch, index, v))
                for v in range(self.views)
            ]
        return (torch.stack(out) if self.views > 1 else out[0]), label


class WithIndex(Dataset):
    """Items ``(x, label, index)``: methods with per-sample state (memory banks) need the index."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        x, label = self.dataset[index]
        return x, label, index
