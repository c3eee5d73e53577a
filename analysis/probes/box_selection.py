"""Boxes of class-map positions, and the greedy selection of non-overlapping ones."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import torch

from analysis.errors import CollabError
from analysis.models.receptive_field import ReceptiveField

TOP_K, IOU_THRESHOLD = 4, 0.3


@lru_cache(maxsize=64)
def _geometry(field: ReceptiveField, h: int, w: int, height: int, width: int):
    """(h*w, 4) clipped boxes of all positions and their (h*w, h*w) IoU matrix."""
    from torchvision.ops import box_iou  # importing torchvision costs ~1 s: only when used

    rows = torch.arange(h).repeat_interleave(w)
    cols = torch.arange(w).repeat(h)
    y0 = field.offset + field.stride * rows
    x0 = field.offset + field.stride * cols
    boxes = torch.stack(
        [
            x0.clamp(0, width),
            y0.clamp(0, height),
            (x0 + field.size).clamp(0, width),
            (y0 + field.size).clamp(0, height),
        ],
        dim=1,
    )
    return boxes, box_iou(boxes.float(), boxes.float())


def position_boxes(field: ReceptiveField, map_size, image_size) -> torch.Tensor:
    """(h, w, 4) int64 boxes of every map position, clipped to the image.

    Args:
        field: the map's receptive field; map_size: (h, w); image_size: (H, W).
    """
    h, w = (int(v) for v in map_size)
    boxes, _ = _geometry(field, h, w, int(image_size[0]), int(image_size[1]))
    return boxes.view(h, w, 4).clone()


def stage_limits(iou_threshold: float | Sequence[float], top_k: int) -> list[float]:
    """The IoU limit each box after the first must meet: ``top_k - 1`` floats in [0, 1].

    Args:
        iou_threshold: one limit for every box, or one per box after the first (the AnchorNet
            authors' cascade: ``(0, 0.1, 0.2)`` for boxes 2, 3 and 4); extra values are unused.
        top_k: boxes kept at most.
    """
    if isinstance(iou_threshold, (int, float)):
        limits = [float(iou_threshold)] * (top_k - 1)
    else:
        limits = [float(v) for v in iou_threshold]
        if len(limits) < top_k - 1:
            raise CollabError(
                f"{len(limits)} per-stage IoU thresholds cannot select top_k={top_k} boxes; "
                f"give {top_k - 1} (one per box after the first) or one number for all"
            )
        limits = limits[: top_k - 1]
    if top_k < 1 or not all(0.0 <= v <= 1.0 for v in limits):
        raise CollabError(
            f"need top_k >= 1 and 0 <= iou_threshold <= 1, got {top_k}, {iou_threshold}"
        )
    return limits


def select_boxes(
    class_map: torch.Tensor,
    field: ReceptiveField,
    *,
    image_size,
    top_k: int = TOP_K,
    iou_threshold: float | Sequence[float] = IOU_THRESHOLD,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Greedy selection of up to ``top_k`` boxes by class-map score under IoU limits.

    One pass over the positions in score order (ties: the lower flat index first), as in the
    authors' ``localize_bbox``: a position is kept if its IoU with every kept box is at most the
    limit of the box it would become (:func:`stage_limits`); a position passed over is never
    revisited, even when a later limit is looser. With one limit for all boxes this is the
    same as picking, k times, the best position not yet suppressed.

    Args:
        class_map: (B, h, w) scores.
        field: receptive field of the map; image_size: (H, W) of the input.
        iou_threshold: one limit, or one per box after the first.

    Returns:
        boxes (B, k, 4) int64, scores (B, k) float32 and positions (B, k, 2) int64; -1 / NaN
        where fewer than k boxes survive.
    """
    limits = stage_limits(iou_threshold, top_k)
    b, h, w = class_map.shape
    all_boxes, iou = _geometry(field, h, w, int(image_size[0]), int(image_size[1]))
    iou = iou.to(class_map.device)
    flat = class_map.reshape(b, -1).float()
    n = flat.shape[1]
    order = torch.sort(flat, dim=1, descending=True, stable=True).indices
    rank = torch.empty_like(order).scatter_(
        1, order, torch.arange(n, device=flat.device).expand(b, n)
    )
    unvisited = torch.ones_like(flat, dtype=torch.bool)
    worst = torch.zeros_like(flat)  # the largest IoU of each position with a kept box
    rows = torch.arange(b, device=flat.device)
    picks, scores = [], []
    for t in range(top_k):
        ok = unvisited if t == 0 else unvisited & (worst <= limits[t - 1])
        best = rank.masked_fill(~ok, n).argmin(1)
        found = ok[rows, best]
        picks.append(torch.where(found, best, -1))
        scores.append(torch.where(found, flat[rows, best], float("nan")))
        worst = torch.maximum(worst, iou[best])
        # the pass moves on past the kept position; once nothing is kept it is over
        unvisited &= (rank > rank[rows, best][:, None]) & found[:, None]
    pick = torch.stack(picks, 1).cpu()
    missing = (pick < 0)[..., None]
    boxes = all_boxes[pick.clamp_min(0)].masked_fill(missing, -1)
    positions = torch.stack([pick // w, pick % w], -1).masked_fill(missing, -1)
    return boxes, torch.stack(scores, 1).cpu(), positions
