"""A seeded validation split carved out of the training data: models are chosen on it, never
on the test split.

The split is stratified: ``round(fraction * N)`` training items go to validation, shared out over
the classes in proportion to their sizes, chosen by a generator seeded with ``seed`` alone. It therefore does not depend on the training seed, so runs that differ only in
their training seed train and select on the same items.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from analysis.errors import CollabError


class LabelledSubset(Dataset):
    """Items ``indices`` of ``dataset``, keeping a ``labels`` tensor like every CollabLens split.

    Attributes:
        dataset: the parent split.
        indices: (M,) int64 positions in the parent.
        labels: (M,) int64 labels of those items.
    """

    def __init__(self, dataset: Dataset, indices: torch.Tensor) -> None:
        self.dataset = dataset
        self.indices = indices.long()
        self.labels = torch.as_tensor(dataset.labels)[self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int):
        return self.dataset[int(self.indices[index])]


def validation_indices(labels: torch.Tensor, *, fraction: float, seed: int) -> torch.Tensor:
    """Sorted positions of the validation items.

    ``round(fraction * N)`` items in all, shared out over the classes in proportion to their
    sizes (largest remainders first, then the lower class id), each class's items drawn in one
    seeded random order.
    """
    if not 0.0 <= fraction < 1.0:
        raise CollabError(f"data.val_fraction must be in [0, 1), got {fraction}; 0.1 is usual")
    labels = torch.as_tensor(labels).long()
    classes, counts = torch.unique(labels, return_counts=True)
    quota = fraction * counts.double()
    take = quota.floor().long()
    short = int(fraction * len(labels) + 0.5) - int(take.sum())
    if short > 0:  # largest remainder; argsort is stable, so ties go to the lower class id
        take[torch.argsort(quota - take, descending=True, stable=True)[:short]] += 1
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    chosen = [order[labels[order] == c][:k] for c, k in zip(classes.tolist(), take.tolist())]
    picked = torch.cat(chosen) if chosen else torch.empty(0, dtype=torch.long)
    return picked.sort().values


def split_validation(
    train: Dataset, *, fraction: float, seed: int
) -> tuple[LabelledSubset, LabelledSubset | None]:
    """``(train part, validation part)``; with ``fraction == 0`` the validation part is None.

    Raises:
        CollabError: the fraction is out of range, or leaves no training or no validation item.
    """
    labels = getattr(train, "labels", None)
    if labels is None:
        raise CollabError(
            f"the {type(train).__name__} training split has no labels attribute, so no "
            "stratified validation split can be drawn; set data.val_fraction=0"
        )
    val = validation_indices(labels, fraction=fraction, seed=seed)
    keep = torch.ones(len(labels), dtype=torch.bool)
    keep[val] = False
    rest = keep.nonzero().flatten()
    if fraction > 0 and len(val) == 0:
        raise CollabError(
            f"data.val_fraction={fraction} selects no validation item from {len(labels)} "
            "training items; raise it, or set 0 to keep the last epoch instead of selecting"
        )
    if len(rest) == 0:
        raise CollabError(f"data.val_fraction={fraction} leaves no training item; lower it")
    return LabelledSubset(train, rest), (LabelledSubset(train, val) if fraction > 0 else None)
