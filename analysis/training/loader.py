"""Data loading for training: each epoch's seeded order, cut into global batches and shared
among the ranks, with the epoch travelling alongside every index.

The sampler yields keys ``(epoch, index)``, so a worker process builds the views of epoch e
whether it was started this epoch or kept alive from an earlier one (``persistent_workers``):
view ``v`` of item ``i`` depends only on ``(seed, e, i, v)`` (see
:class:`~analysis.data.MultiView`), never on which process or rank built it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from analysis.config import Config, DataConfig
from analysis.data import MultiView
from analysis.data.mixing import BatchMix
from analysis.errors import CollabError


class EpochItems(Dataset):
    """Items keyed by ``(epoch, index)``: ``(views of image index at epoch, label, index)``.

    The index comes back for the methods that keep per-sample state (memory banks).
    """

    def __init__(self, views: MultiView) -> None:
        self.views = views

    def __len__(self) -> int:
        return len(self.views)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int, int]:
        epoch, index = key
        self.views.set_epoch(epoch)
        x, label = self.views[index]
        return x, label, index


class EpochBatches(Sampler):
    """This rank's share of every global batch of an epoch, as lists of ``(epoch, index)``.

    Epoch e's order is ``randperm(n)`` drawn from a generator seeded by ``(seed, e)``; it is cut
    into consecutive batches of ``batch_size`` (the global batch; an incomplete last one is
    dropped unless it is the only one), and rank r of W takes the r-th of W equal consecutive
    slices of each. With W = 1 these are exactly the batches of a single process.

    Args:
        size: the number of training items n.
        batch_size: the global batch, divisible by ``world``.
        seed: ``train.seed``.
        rank, world: this process's rank and the number of processes.
    """

    def __init__(self, size: int, *, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.rank, self.world = rank, world
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    @property
    def drop_last(self) -> bool:
        return self.size > self.batch_size

    def __len__(self) -> int:
        if self.drop_last:
            return self.size // self.batch_size
        return math.ceil(self.size / self.batch_size)

    def order(self) -> torch.Tensor:
        """The epoch's permutation of the n items (the same on every rank)."""
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return torch.randperm(self.size, generator=gen)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order = self.order().tolist()
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            if len(batch) < self.batch_size and self.drop_last:
                return
            share = len(batch) // self.world  # equal shares: a lone small batch loses its tail
            mine = batch[self.rank * share : (self.rank + 1) * share]
            yield [(self.epoch, i) for i in mine]


def epoch_iter(loader: DataLoader) -> Iterator:
    """``iter(loader)``, drawing from the global RNG as a new loader iterator would.

    A new iterator draws its workers' base seed from the torch RNG; the kept iterator of
    persistent workers does not. Drawing the same number here keeps the RNG stream (dropout,
    memory-bank sampling) identical with and without persistent workers, and across resumes.
    """
    reused = loader.persistent_workers and getattr(loader, "_iterator", None) is not None
    if reused:
        torch.empty((), dtype=torch.int64).random_(generator=loader.generator)
    return iter(loader)


def shard(dataset: Dataset, *, rank: int, world: int) -> Dataset:
    """Every ``world``-th item from ``rank`` on (evaluation), or the whole set for one process
    or too few items to give every rank one."""
    if world == 1 or len(dataset) < world:
        return dataset
    return Subset(dataset, range(rank, len(dataset), world))


def pin_memory(data: DataConfig, device: torch.device) -> bool:
    """``data.pin_memory``: ``auto`` pins host batches when training on CUDA."""
    return device.type == "cuda" if data.pin_memory == "auto" else bool(data.pin_memory)


def build_loaders(
    config: Config, views: MultiView, val: Dataset | None, test: Dataset, *, dist, pin: bool
) -> tuple[EpochBatches, DataLoader, dict[str, tuple[DataLoader, Any]]]:
    """The training sampler and loader, and the evaluation loaders of ``val`` and ``test``.

    Each evaluation loader comes with the reduction that sums its counts over the ranks
    (``dist.sum``), or None where every rank evaluates the whole split.
    """
    data = config.data
    workers = {
        "num_workers": data.num_workers,
        "pin_memory": pin,
        "persistent_workers": data.persistent_workers,
    }
    batches = EpochBatches(
        len(views),
        batch_size=data.batch_size,
        seed=config.train.seed,
        rank=dist.rank,
        world=dist.world,
    )
    train = DataLoader(EpochItems(views), batch_sampler=batches, **workers)
    evals = {}
    for split, part in (("val", val), ("test", test)):
        if part is not None:
            mine = shard(part, rank=dist.rank, world=dist.world)
            loader = DataLoader(mine, batch_size=data.eval_batch_size, **workers)
            evals[split] = (loader, dist.sum if mine is not part else None)
    return batches, train, evals


def batch_mix(data: DataConfig, method: Any, num_classes: int) -> BatchMix | None:
    """The run's MixUp/CutMix (``data.mixup_alpha``, ``data.cutmix_alpha``), or None when both
    are 0; a one-line error for a method whose loss cannot take soft targets."""
    if not (data.mixup_alpha or data.cutmix_alpha):
        return None
    if not method.soft_targets:
        raise CollabError(
            f"data.mixup_alpha / data.cutmix_alpha need soft targets, which method "
            f"{method.options.name!r} does not take; use independent, dml or divide_cotrain, or "
            "set both to 0"
        )
    return BatchMix(
        mixup_alpha=data.mixup_alpha, cutmix_alpha=data.cutmix_alpha, num_classes=num_classes
    )
