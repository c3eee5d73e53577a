"""Boxes of class-map positions, and the greedy selection of non-overlapping ones."""

from __future__ import annotations

from functools import lru_cache

import torch
from torchvision.ops import box_iou

from analysis.errors import CollabError
from analysis.models.receptive_field import ReceptiveField

TOP_K, IOU_THRESHOLD = 4, 0.3


@lru_cache(maxsize=64)
def _geometry(field: ReceptiveField, h: int, w: int, height: int, width: int):
    """(h*w, 4) clipped boxes of all positions and their (h*w, h*w) IoU matrix."""
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


def select_boxes(
    class_map: torch.Tensor,
    field: ReceptiveField,
    *,
    image_size,
    top_k: int = TOP_K,
    iou_threshold: float = IOU_THRESHOLD,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Greedy selection of up to ``top_k`` boxes by class-map score with IoU <= threshold.

    Picking, k times, the best position not yet suppressed is exactly the greedy pass over
    positions in score order (ties: the lower flat index first).

    Args:
        class_map: (B, h, w) scores.
        field: receptive field of the map; image_size: (H, W) of the input.

    Returns:
        boxes (B, k, 4) int64, scores (B, k) float32 and positions (B, k, 2) int64; -1 / NaN
        where fewer than k boxes survive.
    """
    if top_k < 1 or not 0.0 <= iou_threshold <= 1.0:
        raise CollabError(
            f"need top_k >= 1 and 0 <= iou_threshold <= 1, got {top_k}, {iou_threshold}"
        )
    b, h, w = class_map.shape
    all_boxes, iou = _geometry(field, h, w, int(image_size[0]), int(image_size[1]))
    iou = iou.to(class_map.device)
    flat = class_map.reshape(b, -1).float()
    avail = torch.ones_like(flat, dtype=torch.bool)
    rows = torch.arange(b, device=flat.device)
    picks, scores = [], []
    for _ in range(top_k):
        best = flat.masked_fill(~avail, float("-inf")).argmax(1)
        found = avail[rows, best]
        picks.append(torch.where(found, best, -1))
        scores.append(torch.where(found, flat[rows, best], float("nan")))
        avail &= iou[best] <= iou_threshold
        avail[rows, best] = False
    pick = torch.stack(picks, 1).cpu()
    missing = (pick < 0)[..., None]
    boxes = all_boxes[pick.clamp_min(0)].masked_fill(missing, -1)
    positions = torch.stack([pick // w, pick % w], -1).masked_fill(missing, -1)
    return boxes, torch.stack(scores, 1).cpu(), positions
