"""Downstream use of localized patches: the early-exit cascade, accuracy against cost.

The AnchorNet paper (seed 002) classifies the image resized to the patch size first, then adds
the logits of the localized patches one at a time, best patch first, until the softmax
confidence passes a per-stage threshold; sweeping the threshold traces accuracy against cost.

Choices made here (the paper fine-tunes two separate classifiers, one on resized images and one
on patches):

* both classifiers default to the run's peer itself (``classifier``), applied to inputs of
  ``patch_size`` pixels; pass ``patch_classifier`` (and ``localizer``) to use others;
* the boxes come from :func:`~analysis.probes.class_map.localize` with ``localizer``
  (default: the classifier) on the full image; the full model is ``classifier`` on the full
  image (with the default localizer its logits come from the same forward pass);
* the boxes follow the authors' cascade (winycg/AnchorNet ``make_table.py``,
  ``--iou-thresholds 0 0.1 0.2``): patch 2 may not overlap patch 1 at all, patch 3 overlaps
  every kept patch by IoU <= 0.1, patch 4 by <= 0.2 (``iou_threshold``; a single number, e.g.
  the localization probe's 0.3 used here before, applies to every patch);
* stage s combines the logits of stages 0..s by their **sum** (``combine="sum"``, "add patch
  logits") or their mean (``"mean"``); a missing patch (fewer than k boxes survived) adds
  nothing and costs nothing; the last stage always answers;
* **cost** = FLOPs per image, counted by :func:`~analysis.probes.flops.count_flops` (2 x the
  multiply-accumulates of every ``Conv2d`` and ``Linear``). The localizer runs on the full image, so with the peer as its own localizer
  charging it would make every cascade that uses a patch dearer than the full model; it is
  therefore reported apart (``localizer_cost``) and added to ``cost`` for the samples that go
  past stage 0 only when ``charge_localizer=True`` (as a separate light AnchorNet would be).

The stages themselves are in :mod:`analysis.probes.cascade_stages`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from analysis.errors import CollabError
from analysis.probes.box_selection import TOP_K
from analysis.probes.cascade_stages import combine_stages, exit_stages, stage_logits
from analysis.probes.class_map import cam_field, find_network, localize
from analysis.probes.contract import DATA, forwarding_probe, setting
from analysis.probes.flops import count_flops
from analysis.probes.model_state import eval_mode

DEFAULT_THRESHOLDS = (0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999, 1.01)
#: IoU limit of patch 2, 3 and 4 against the patches kept before it (the authors' defaults).
STAGE_IOU_THRESHOLDS = (0.0, 0.1, 0.2)


@dataclass
class CascadeCurve:
    """Accuracy against cost of the early-exit cascade, one point per threshold.

    Attributes:
        thresholds: (T,) or (T, S - 1) confidence thresholds (per stage when 2-D).
        accuracy: (T,) accuracy of the cascade; cost: (T,) mean FLOPs per image.
        full_accuracy: accuracy of ``classifier`` on the full images; full_cost: its FLOPs/image.
        stage_costs: (S,) FLOPs of each stage (the resized image, then each patch).
        stage_accuracy: (S,) accuracy when every sample answers after stage s.
        exit_fraction: (T, S) share of samples answering at each stage.
        localizer_cost: FLOPs/image of the localizer on the full image; charge_localizer:
            whether ``cost`` includes it (for samples going past stage 0).
        patch_size, top_k, combine, num_samples: the setup.
    """

    thresholds: torch.Tensor
    accuracy: torch.Tensor
    cost: torch.Tensor
    full_accuracy: float
    full_cost: float
    stage_costs: torch.Tensor
    stage_accuracy: torch.Tensor
    exit_fraction: torch.Tensor
    localizer_cost: float
    charge_localizer: bool
    patch_size: int
    top_k: int
    combine: str
    num_samples: int

    @property
    def relative_cost(self) -> torch.Tensor:
        """(T,) cost as a fraction of the full model's."""
        return self.cost / self.full_cost


def _setup(classifier, localizer, patch_classifier, x, patch_size, top_k) -> dict:
    """Patch size and the FLOPs of the full model, the localizer and every stage."""
    size = patch_size or min(cam_field(find_network(localizer)).size, *x.shape[-2:])
    small = torch.zeros(1, x.shape[1], size, size)
    full = count_flops(classifier, x[:1])
    first = count_flops(classifier, small)
    patch = first if patch_classifier is None else count_flops(patch_classifier, small)
    return {
        "size": int(size),
        "full": full,
        "localizer": full if localizer is classifier else count_flops(localizer, x[:1]),
        "stage_costs": torch.tensor([first] + [patch] * top_k, dtype=torch.float64),
    }


def cascade_curve(
    classifier: nn.Module,
    dataset: Dataset,
    *,
    thresholds: Sequence[float] | torch.Tensor = DEFAULT_THRESHOLDS,
    localizer: nn.Module | None = None,
    patch_classifier: nn.Module | None = None,
    top_k: int = TOP_K,
    iou_threshold: float | Sequence[float] = STAGE_IOU_THRESHOLDS,
    patch_size: int | None = None,
    combine: str = "sum",
    charge_localizer: bool = False,
    batch_size: int = 64,
    limit: int | None = None,
) -> CascadeCurve:
    """Accuracy vs cost of the early-exit cascade over ``thresholds`` (see the module docstring).

    Args:
        classifier: a peer (``model.peer(i)``): images in [0, 1] -> logits.
        dataset: yields ``(image (C, H, W) in [0, 1], label)``; limit: first ``limit`` items.
        thresholds: (T,) or (T, S - 1) softmax-confidence thresholds; 0 -> every sample stops
            after stage 0, > 1 -> every sample uses all stages.
        localizer, patch_classifier: default ``classifier``.
        top_k, iou_threshold: box selection (S = 1 + top_k stages): the IoU limit of each
            patch after the first (default the authors' 0, 0.1, 0.2), or one for all.
        patch_size: side of the classifier inputs (default: the localizer's receptive field,
            at most the image side).
        combine: ``"sum"`` or ``"mean"`` of the stage logits; charge_localizer: add the
            localizer's FLOPs to the cost of samples that go past stage 0.
    """
    n = len(dataset) if limit is None else min(limit, len(dataset))
    if n == 0:
        raise CollabError("the dataset is empty; the cascade needs at least one image")
    localizer = localizer or classifier
    thr = torch.as_tensor(thresholds, dtype=torch.float64)
    stats: dict = {"correct": 0, "cost": 0, "exits": 0, "full": 0, "stage": 0}
    setup: dict = {}
    for x, y in DataLoader(Subset(dataset, range(n)), batch_size=batch_size):
        y = torch.as_tensor(y)
        setup = setup or _setup(classifier, localizer, patch_classifier, x, patch_size, top_k)
        loc = localize(localizer, x, top_k=top_k, iou_threshold=iou_threshold)
        if localizer is classifier:
            full = loc.logits
        else:
            with torch.no_grad(), eval_mode(classifier):
                full = classifier(x)
        logits = stage_logits(
            classifier, x, loc.boxes, patch_size=setup["size"], patch_classifier=patch_classifier
        )
        available = torch.cat([torch.ones(1, len(x), dtype=torch.bool), (loc.boxes >= 0).all(-1).T])
        conf, pred = combine_stages(logits, available, combine=combine)
        exits = exit_stages(conf, thr)  # (T, B)
        cols = torch.arange(len(x))
        cost = (setup["stage_costs"][:, None] * available).cumsum(0)[exits, cols]
        if charge_localizer:
            cost = cost + setup["localizer"] * (exits > 0)
        stats["correct"] += (pred[exits, cols] == y).sum(1)
        stats["cost"] += cost.sum(1)
        stats["exits"] += F.one_hot(exits, len(logits)).sum(1)
        stats["full"] += int((full.argmax(1) == y).sum())
        stats["stage"] += (pred == y).sum(1)
    return CascadeCurve(
        thresholds=thr,
        accuracy=stats["correct"].double() / n,
        cost=stats["cost"].double() / n,
        full_accuracy=stats["full"] / n,
        full_cost=float(setup["full"]),
        stage_costs=setup["stage_costs"],
        stage_accuracy=stats["stage"].double() / n,
        exit_fraction=stats["exits"].double() / n,
        localizer_cost=float(setup["localizer"]),
        charge_localizer=charge_localizer,
        patch_size=setup["size"],
        top_k=top_k,
        combine=combine,
        num_samples=n,
    )


@dataclass(frozen=True)
class CascadeOptions:
    """Options of the cascade probe: the peer that classifies (and localizes), the first
    ``limit`` images, and the arguments of :func:`cascade_curve`."""

    peer: int = 0
    limit: int | None = None
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS
    top_k: int = TOP_K
    iou_threshold: float | Sequence[float] = STAGE_IOU_THRESHOLDS
    patch_size: int | None = None
    combine: str = "sum"
    charge_localizer: bool = False
    batch_size: int = setting(64)


run_cascade = forwarding_probe(
    "cascade",
    cascade_curve,
    reads=DATA,
    on_peer=True,
    options=CascadeOptions,
    result=CascadeCurve,
    needs=("localizer",),
    report_needs=("boxes",),
    about="early-exit cascade over the image and its patches: accuracy vs cost",
)
