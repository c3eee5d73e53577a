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
   are -1, their scores NaN); the limit may also be one per box, as in the cascade;
5. position (i, j) -> input box through the receptive field of the stages before ``avgpool``
   (:func:`~analysis.models.receptive_field.receptive_field`): exact for AnchorNet (no padding:
   at 224 px position (i, j) is rows 8i..8i+94, cols 8j..8j+94); for padded CNNs the window
   overhangs the image near the edges and the box is clipped to the image.

The box geometry and the greedy selection are in :mod:`analysis.probes.box_selection`;
scoring the boxes against true boxes in :mod:`analysis.probes.localization`.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from analysis.errors import CollabError
from analysis.models.base import StagedNet
from analysis.models.receptive_field import ReceptiveField, receptive_field
from analysis.probes.box_selection import IOU_THRESHOLD, TOP_K, select_boxes
from analysis.probes.model_state import eval_mode

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
        top_k, iou_threshold: the selection parameters (one IoU limit, or one per box after
            the first).
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
    iou_threshold: float | list[float]


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


@torch.no_grad()
def localize(
    peer_module: nn.Module,
    images: torch.Tensor,
    *,
    top_k: int = TOP_K,
    iou_threshold: float | Sequence[float] = IOU_THRESHOLD,
    target: torch.Tensor | None = None,
) -> Localization:
    """Class map of the predicted class and up to ``top_k`` non-overlapping boxes per image.

    Args:
        peer_module: one peer, images in [0, 1] -> logits (e.g. ``model.peer(0)``); it is run in
            eval mode and left with its modes and hooks as found.
        images: (B, C, H, W) in [0, 1].
        top_k, iou_threshold: see :func:`~analysis.probes.box_selection.select_boxes`.
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
    try:
        with eval_mode(peer_module):
            logits = peer_module(images)
    finally:
        handle.remove()
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
        iou_threshold=(
            float(iou_threshold)
            if isinstance(iou_threshold, (int, float))
            else [float(v) for v in iou_threshold]
        ),
    )
