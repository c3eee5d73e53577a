"""A dataset restricted to some of its classes, relabelled 0..k-1 in the order given.

A reconstructed run (``collab reconstruct``) classifies only the classes it was built for; its
manifest records their original indices (``data.classes``) and loading the run restricts the
dataset with :func:`restrict_classes`, so that evaluation and probes see only those classes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

from analysis.data.bundle import DataBundle
from analysis.errors import CollabError


class ClassSubset(Dataset):
    """The items of ``dataset`` whose label is in ``classes``, labelled by position in it.

    Attributes:
        indices: (M,) positions in the parent split.
        labels: (M,) int64 new labels in ``[0, len(classes))``.
    """

    def __init__(self, dataset: Dataset, classes: Sequence[int]) -> None:
        original = torch.as_tensor(dataset.labels).long()
        lookup = torch.full((int(original.max()) + 1 if len(original) else 1,), -1)
        wanted = torch.as_tensor(list(classes)).long()
        lookup[wanted[wanted < len(lookup)]] = torch.arange(len(wanted))[wanted < len(lookup)]
        new = lookup[original]
        self.dataset = dataset
        self.indices = (new >= 0).nonzero().flatten()
        self.labels = new[self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int):
        item = self.dataset[int(self.indices[index])]
        return (item[0], int(self.labels[index]), *item[2:])


def check_classes(classes: Sequence[int], num_classes: int) -> list[int]:
    """``classes`` as a list of distinct ints in ``[0, num_classes)``; CollabError otherwise."""
    chosen = list(classes)
    bad = [c for c in chosen if isinstance(c, bool) or not isinstance(c, int)]
    bad += [c for c in chosen if c not in bad and not 0 <= c < num_classes]
    if not chosen or bad or len(set(chosen)) != len(chosen):
        raise CollabError(
            f"classes {chosen} must be distinct class indices among 0..{num_classes - 1}, "
            "e.g. 0,3,7"
        )
    return chosen


def restrict_classes(bundle: DataBundle, classes: Sequence[int]) -> DataBundle:
    """``bundle`` with both splits restricted to ``classes`` (relabelled 0..k-1, in that order)."""
    chosen = check_classes(classes, bundle.num_classes)
    return dataclasses.replace(
        bundle,
        train=ClassSubset(bundle.train, chosen),
        test=ClassSubset(bundle.test, chosen),
        num_classes=len(chosen),
        class_names=[bundle.class_names[c] for c in chosen],
    )
