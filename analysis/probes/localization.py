"""How well do the class-map boxes localize the object? Scored against true boxes.

The boxes of :func:`~analysis.probes.class_map.localize` (the AnchorNet procedure) are scored
against ground-truth boxes (:func:`score_localization`, e.g. on ``shapes``): the pointing game
(the centre of the top-1 box, i.e. of the class map's maximum, lies in the true box), the share
of top-1 boxes with IoU >= 0.5 and the mean best IoU over the k boxes, next to a random
baseline: every predicted box moved to a uniformly random position inside the image (same width
and height, seeded).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from analysis.errors import CollabError
from analysis.probes.box_selection import IOU_THRESHOLD, TOP_K
from analysis.probes.class_map import Localization, localize
from analysis.probes.contract import DATA, forwarding_probe, setting
from analysis.probes.model_state import on_device


@dataclass
class LocalizationScore:
    """Localization quality against true boxes, and the same for random boxes.

    Attributes:
        num_samples: images scored; accuracy: share whose predicted class is the label.
        pointing: share whose top-1 box centre lies in the true box; iou50: share of top-1
            boxes with IoU >= 0.5; mean_best_iou: mean over images of the best IoU of the k boxes.
        random_pointing, random_iou50, random_mean_best_iou: the same for the random baseline.
        top1_iou, best_iou, random_best_iou: (N,) float32 per image; hits: (N,) bool pointing.
        top_k, iou_threshold, seed: the parameters.
    """

    num_samples: int
    accuracy: float
    pointing: float
    iou50: float
    mean_best_iou: float
    random_pointing: float
    random_iou50: float
    random_mean_best_iou: float
    top1_iou: torch.Tensor
    best_iou: torch.Tensor
    random_best_iou: torch.Tensor
    hits: torch.Tensor
    top_k: int
    iou_threshold: float
    seed: int


def box_metrics(boxes: torch.Tensor, true_boxes: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image scores of (N, k, 4) boxes (-1 = none) against (N, 4) true boxes.

    Returns:
        ``hit`` (N,) bool (top-1 centre inside the true box, edges included), ``top1_iou`` and
        ``best_iou`` (N,) float32 (missing boxes count as IoU 0).
    """
    b, t = boxes.float(), true_boxes.float()
    valid = boxes[..., 2] > boxes[..., 0]
    lo, hi = torch.maximum(b[..., :2], t[:, None, :2]), torch.minimum(b[..., 2:], t[:, None, 2:])
    inter = (hi - lo).clamp_min(0).prod(-1)
    area = (b[..., 2:] - b[..., :2]).prod(-1) + (t[:, None, 2:] - t[:, None, :2]).prod(-1)
    iou = torch.where(valid, inter / (area - inter).clamp_min(1e-9), 0.0)
    centre = (b[:, 0, :2] + b[:, 0, 2:]) / 2
    hit = valid[:, 0] & ((centre >= t[:, :2]) & (centre <= t[:, 2:])).all(-1)
    return {"hit": hit, "top1_iou": iou[:, 0], "best_iou": iou.max(1).values}


def random_boxes(boxes: torch.Tensor, image_size, *, generator: torch.Generator) -> torch.Tensor:
    """Each (N, k, 4) box moved to a uniformly random integer position inside the image."""
    height, width = (int(v) for v in image_size)
    size = boxes[..., 2:] - boxes[..., :2]  # (N, k, 2) width, height
    room = torch.stack([width - size[..., 0], height - size[..., 1]], -1).clamp_min(0)
    start = (torch.rand(room.shape, generator=generator) * (room + 1)).floor().long()
    out = torch.cat([start, start + size], -1)
    return out.masked_fill((boxes < 0).any(-1, keepdim=True), -1)


def _true_boxes(dataset: Dataset, indices: list[int]) -> torch.Tensor:
    base = dataset
    if isinstance(base, Subset):
        indices = [base.indices[i] for i in indices]
        base = base.dataset
    if not hasattr(base, "box"):
        raise CollabError(
            f"{type(base).__name__} has no ground-truth boxes (box(i)); score on the shapes data"
        )
    return torch.tensor([base.box(i) for i in indices], dtype=torch.int64)


def _fold(parts: dict, loc: Localization, truth: torch.Tensor, labels, generator) -> None:
    """Append one batch's per-image metrics (and the random baseline's) to ``parts``."""
    metrics = box_metrics(loc.boxes, truth)
    rand = box_metrics(random_boxes(loc.boxes, loc.image_size, generator=generator), truth)
    metrics.update({f"random_{name}": value for name, value in rand.items()})
    metrics["correct"] = loc.predicted == torch.as_tensor(labels)
    for name, value in metrics.items():
        parts.setdefault(name, []).append(value)


def score_localization(
    peer_module: nn.Module,
    dataset: Dataset,
    *,
    top_k: int = TOP_K,
    iou_threshold: float = IOU_THRESHOLD,
    batch_size: int = 64,
    limit: int | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> LocalizationScore:
    """Localize every image of ``dataset`` and score the boxes against ``dataset.box(i)``.

    Args:
        peer_module: one peer (``model.peer(i)``); dataset: yields ``(image, label)`` and has
            ``box(i)`` (e.g. ``ShapesDataset``); limit: score only the first ``limit`` images.
        seed: seed of the random-box baseline.
    """
    n = len(dataset) if limit is None else min(limit, len(dataset))
    if n == 0:
        raise CollabError("the dataset is empty; localization needs at least one image")
    generator = torch.Generator().manual_seed(seed)
    parts: dict[str, list[torch.Tensor]] = {}
    start = 0
    with on_device(peer_module, device):
        for x, y in DataLoader(Subset(dataset, range(n)), batch_size=batch_size):
            loc = localize(peer_module, x.to(device), top_k=top_k, iou_threshold=iou_threshold)
            _fold(
                parts, loc, _true_boxes(dataset, list(range(start, start + len(x)))), y, generator
            )
            start += len(x)
    cat = {name: torch.cat(values) for name, values in parts.items()}

    def share(t: torch.Tensor) -> float:
        return float(t.float().mean())

    return LocalizationScore(
        num_samples=n,
        accuracy=share(cat["correct"]),
        pointing=share(cat["hit"]),
        iou50=share(cat["top1_iou"] >= 0.5),
        mean_best_iou=share(cat["best_iou"]),
        random_pointing=share(cat["random_hit"]),
        random_iou50=share(cat["random_top1_iou"] >= 0.5),
        random_mean_best_iou=share(cat["random_best_iou"]),
        top1_iou=cat["top1_iou"],
        best_iou=cat["best_iou"],
        random_best_iou=cat["random_best_iou"],
        hits=cat["hit"],
        top_k=top_k,
        iou_threshold=float(iou_threshold),
        seed=seed,
    )


@dataclass(frozen=True)
class LocalizationOptions:
    """Options of the localization probe: the peer whose boxes are scored, the first ``limit``
    images, and the arguments of :func:`score_localization`."""

    peer: int = 0
    limit: int | None = None
    top_k: int = TOP_K
    iou_threshold: float = IOU_THRESHOLD
    seed: int = 0
    batch_size: int = setting(64)
    device: str = setting("cpu")


run_localization = forwarding_probe(
    "localization",
    score_localization,
    reads=DATA,
    on_peer=True,
    options=LocalizationOptions,
    result=LocalizationScore,
    needs=("boxes", "localizer"),
    about="class-map boxes scored against the true boxes, vs random boxes",
)
