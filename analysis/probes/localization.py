"""Patch localization with class activation maps: the AnchorNet procedure (seed 002).

For one peer (``model.peer(i)``, a plain module whose network is a :class:`StagedNet`):

1. one forward pass gives the logits and, through a forward pre-hook on the network's
   ``avgpool``, the last feature map F (B, C, h, w) before global pooling;
2. predicted class c* = argmax of the logits (or a given target);
3. **class map** ``M = sum_c W_fc[c*, c] F[c]`` (B, h, w): a CAM, linear before the softmax, so
   the logit of c* is exactly ``mean_hw(M) + b[c*]``. (The paper says "mean over channels of
   F * W_fc[c*]"; that is this map divided by C, which changes neither the order of positions
   nor the boxes. The channel sum is kept so the logit identity holds without a factor.)
4. positions sorted by score; greedily keep the next position whose box has IoU <= 0.3 with every
   box kept so far, up to top-k = 4 (fewer when everything else is suppressed: missing boxes
   are -1, their scores NaN);
5. position (i, j) -> input box through the receptive field of the stages before ``avgpool``
   (:func:`~analysis.models.receptive_field.receptive_field`): exact for AnchorNet (no padding:
   at 224 px position (i, j) is rows 8i..8i+94, cols 8j..8j+94); for padded CNNs the window
   overhangs the image near the edges and the box is clipped to the image.

Scoring against ground-truth boxes (:func:`score_localization`, e.g. on ``shapes``): the pointing
game (the centre of the top-1 box, i.e. of the class map's maximum, lies in the true box), the
share of top-1 boxes with IoU >= 0.5 and the mean best IoU over the k boxes, next to a random
baseline: every predicted box moved to a uniformly random position inside the image (same width
and height, seeded).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision.ops import box_iou

from analysis.errors import CollabError
from analysis.models.base import StagedNet
from analysis.models.receptive_field import ReceptiveField, receptive_field

TOP_K, IOU_THRESHOLD = 4, 0.3
_FIELDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@dataclass
class Localization:
    """Boxes localized by the class map of each image's predicted class.

    Attributes:
        boxes: (B, k, 4) int64 ``(x0, y0, x1, y1)`` (x1, y1 exclusive), best first; -1 = none.
        scores: (B, k) float32 class-map values of the kept positions (NaN = none).
        positions: (B, k, 2) int64 map (row, col) of the kept positions (-1 = none).
        class_map: (B, h, w) float32 class map of the explained class.
        predicted: (B,) int64 the explained class (the peer's top-1 unless a target was given).
        logits: (B, num_classes) float32 the peer's logits on the full images.
        receptive_field: [size, stride, offset] of the map; image_size: [H, W].
        top_k, iou_threshold: the selection parameters.
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    positions: torch.Tensor
    class_map: torch.Tensor
    predicted: torch.Tensor
    logits: torch.Tensor
    receptive_field: list[int]
    image_size: list[int]
    top_k: int
    iou_threshold: float


def find_network(module: nn.Module) -> StagedNet:
    """The :class:`StagedNet` inside a peer module (the module itself, or its first such child)."""
    for m in module.modules():
        if isinstance(m, StagedNet):
            return m
    raise CollabError(
        f"{type(module).__name__} contains no StagedNet; localize a peer such as model.peer(0)"
    )


def cam_field(net: StagedNet) -> ReceptiveField:
    """Receptive field of the map entering ``net.avgpool`` (``net.rf`` when the net has one).

    Computed once per network object (the layers' geometry does not change with the weights).
    """
    if isinstance(getattr(net, "rf", None), ReceptiveField):
        return net.rf
    if net not in _FIELDS:
        names = list(net.feature_names)
        if "avgpool" not in names:
            raise CollabError(
                f"{type(net).__name__} has no avgpool stage to read the class map from"
            )
        _FIELDS[net] = receptive_field([net._modules[n] for n in names[: names.index("avgpool")]])
    return _FIELDS[net]


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


@torch.no_grad()
def localize(
    peer_module: nn.Module,
    images: torch.Tensor,
    *,
    top_k: int = TOP_K,
    iou_threshold: float = IOU_THRESHOLD,
    target: torch.Tensor | None = None,
) -> Localization:
    """Class map of the predicted class and up to ``top_k`` non-overlapping boxes per image.

    Args:
        peer_module: one peer, images in [0, 1] -> logits (e.g. ``model.peer(0)``); it is run in
            eval mode and left with its modes and hooks as found.
        images: (B, C, H, W) in [0, 1].
        target: optional (B,) classes to explain instead of the predicted ones.

    Returns:
        A :class:`Localization`.
    """
    net = find_network(peer_module)
    pool = net._modules.get("avgpool")
    if pool is None:
        raise CollabError(f"{type(net).__name__} has no avgpool stage to read the class map from")
    store: dict[str, torch.Tensor] = {}
    handle = pool.register_forward_pre_hook(lambda _m, inputs: store.__setitem__("f", inputs[0]))
    training = [m for m in peer_module.modules() if m.training]
    try:
        for m in training:
            m.training = False
        logits = peer_module(images)
    finally:
        handle.remove()
        for m in training:
            m.training = True
    classes = logits.argmax(1) if target is None else torch.as_tensor(target, device=logits.device)
    features = store["f"]  # (B, C, h, w); bmm is several times faster than einsum here
    weights = net.fc.weight[classes].unsqueeze(1)  # (B, 1, C)
    class_map = torch.bmm(weights, features.flatten(2)).view(len(features), *features.shape[-2:])
    field = cam_field(net)
    size = list(images.shape[-2:])
    boxes, scores, positions = select_boxes(
        class_map, field, image_size=size, top_k=top_k, iou_threshold=iou_threshold
    )
    return Localization(
        boxes=boxes,
        scores=scores,
        positions=positions,
        class_map=class_map.float().cpu(),
        predicted=classes.cpu(),
        logits=logits.float().cpu(),
        receptive_field=[field.size, field.stride, field.offset],
        image_size=size,
        top_k=top_k,
        iou_threshold=float(iou_threshold),
    )


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
    original = next((p.device for p in peer_module.parameters()), torch.device("cpu"))
    peer_module.to(device)
    try:
        for x, y in DataLoader(Subset(dataset, range(n)), batch_size=batch_size):
            loc = localize(peer_module, x.to(device), top_k=top_k, iou_threshold=iou_threshold)
            _fold(
                parts, loc, _true_boxes(dataset, list(range(start, start + len(x)))), y, generator
            )
            start += len(x)
    finally:
        peer_module.to(original)
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
