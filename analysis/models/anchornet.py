"""AnchorNet: a light CNN with no padding anywhere, so every map position sees a known window.

From the patch-localisation paper of seed 002 (*localize multi-scale semantic patches ... due
to the linearly spatial aggregation before the softmax layer*). Every layout has a stem 3x3
stride 2 (in -> 16, BN, swish), seven MBConv blocks (Tan & Le 2019: 1x1 expansion, depthwise
3x3, squeeze-excitation, 1x1 projection + BN, swish after the expansion and the depthwise
conv), a 1x1 conv to 512 (``features_map``), global average pool and a linear ``fc``. No layer
pads, so map position (i, j) sees input rows ``offset + stride*i ... + receptive_field - 1``
(columns likewise); a block adds its input (cropped to the output size) only where it keeps
the channel count at stride 1.

Layouts (option ``layout``):

* ``"reference"`` -- the authors' network (winycg/AnchorNet ``models/anchornet.py``): blocks
  16->16 (expansion 1, stride 2), 16->24 (e3, s2), 24->24 (e4), 24->48 (e4), 48->96 (e2),
  96->96 (e1.5) x 2; **global** squeeze-excitation with int(block input channels / 4) hidden
  channels (1x1 convs with bias, swish, sigmoid) on the expanded channels; the skip cropped
  **top-left**; ``features_map`` a plain 1x1 conv with bias (no BN, no activation); fc weights
  N(0, 0.001). 224 px -> 17 x 17 map, receptive field 95, stride 8, box (i, j) = rows
  8i..8i+94, cols 8j..8j+94. 674,696 parameters for 1000 classes; the authors' code counts
  674,984 because its block 1 also builds a 16->16 expansion conv + BN (288 parameters) that
  its forward never uses (expansion 1), which is left out here. Needs >= 95 px.
* ``"exact"`` -- our earlier variant with the same geometry: blocks 16, 16, 16, 32, 32, 64, 64
  (expansion 1 then 6), **pointwise** SE, the skip cropped **centred** (one pixel per side),
  ``features_map`` conv -> BN -> swish, PyTorch's default fc init; 674,504 parameters for
  1000 classes. With pointwise SE a map position depends on nothing outside its box.
* ``"small"`` (default, for 32-64 px data such as ``shapes``) -- ``"exact"`` with every block
  at stride 1 (not the reference made smaller): receptive field 31, stride 2; 64 px -> 17 x 17
  map (box = rows 2i..2i+30), 32 px -> 1 x 1.

Squeeze-excitation (option ``se``; default: the layout's):

* ``"global"`` -- standard SE (global average pool first), as the authors: every position then
  depends on the whole image through the channel gates (the window is exact for the geometry,
  not for the values).
* ``"pointwise"`` -- the gate of a position is computed from that position's own channels (the
  same two 1x1 convs without the pool), which keeps the exact-window property.
* ``"none"`` -- no SE.

Cost knobs (not in the paper): ``width`` scales the stem and block channels (``width / 16``);
``expansion`` replaces the hidden-channel factor of every block that expands (default: the
layout's). ``configs/anchornet_shapes.yaml`` uses the small layout with width 8 and expansion 3
(38,790 parameters for 6 classes) to train on CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from analysis.errors import CollabError
from analysis.models.anchornet_parts import AnchorNet, MBConv, conv_bn_swish
from analysis.models.base import global_pool, init_weights
from analysis.models.factory import MODELS

STEM_CHANS, MAP_CHANS = 16, 512
SE_MODES = ("global", "pointwise", "none")


@dataclass(frozen=True)
class Layout:
    """One AnchorNet layout: per block (output channels at width 16, expansion) and stride,
    the default SE, the skip crop, and whether ``features_map`` and ``fc`` follow the authors."""

    blocks: tuple[tuple[int, float], ...]
    strides: tuple[int, ...]
    se: str
    crop: str
    authors_head: bool


AUTHORS_BLOCKS = ((16, 1), (24, 3), (24, 4), (48, 4), (96, 2), (96, 1.5), (96, 1.5))
OUR_BLOCKS = ((16, 1), (16, 6), (16, 6), (32, 6), (32, 6), (64, 6), (64, 6))
LAYOUTS: dict[str, Layout] = {
    "reference": Layout(AUTHORS_BLOCKS, (2, 2, 1, 1, 1, 1, 1), "global", "top_left", True),
    "exact": Layout(OUR_BLOCKS, (2, 2, 1, 1, 1, 1, 1), "pointwise", "centre", False),
    "small": Layout(OUR_BLOCKS, (1, 1, 1, 1, 1, 1, 1), "pointwise", "centre", False),
}


def _check(layout: str, se: str | None, width: int, expansion: float | None) -> Layout:
    if layout not in LAYOUTS:
        raise CollabError(f"unknown AnchorNet layout {layout!r}; use one of: {', '.join(LAYOUTS)}")
    if se is not None and se not in SE_MODES:
        raise CollabError(f"unknown AnchorNet se {se!r}; use one of: {', '.join(SE_MODES)}")
    if width < 1 or (expansion is not None and expansion < 1):
        raise CollabError(
            f"AnchorNet needs width >= 1 and expansion >= 1, got {width} and {expansion}; "
            "use e.g. width=16 and leave expansion unset (the layout's)"
        )
    return LAYOUTS[layout]


@MODELS.register("anchornet")
def anchornet(
    *,
    num_classes: int,
    in_chans: int = 3,
    layout: str = "small",
    se: str | None = None,
    width: int = 16,
    expansion: float | None = None,
    dropout: float = 0.0,
) -> nn.Module:
    """AnchorNet (see the module docstring); ``layout="reference"`` is the authors' 224 px net.

    Args:
        layout: ``"small"`` (receptive field 31, stride 2), ``"reference"`` (the authors'
            network, 95, stride 8) or ``"exact"`` (our variant of it, same geometry).
        se: ``"global"``, ``"pointwise"`` or ``"none"`` squeeze-excitation (None: the layout's).
        width: stem channels; block channels scale with it (``width / 16``).
        expansion: hidden-channel factor of every expanding block (None: the layout's).
        dropout: dropout probability on the pooled features, before ``fc``.
    """
    plan = _check(layout, se, width, expansion)
    se = se or plan.se
    features: dict[str, nn.Module] = {"stem": conv_bn_swish(in_chans, width, 3, stride=2)}
    chans = width
    for i, ((out, expand), stride) in enumerate(zip(plan.blocks, plan.strides), start=1):
        out = out * width // STEM_CHANS
        expand = expansion if expansion is not None and expand != 1 else expand
        features[f"layer{i}"] = MBConv(
            chans, out, expansion=expand, stride=stride, se=se, crop=plan.crop
        )
        chans = out
    if plan.authors_head:
        features["features_map"] = nn.Conv2d(chans, MAP_CHANS, 1)
    else:
        features["features_map"] = conv_bn_swish(chans, MAP_CHANS, 1)
    features.update(global_pool())
    net = AnchorNet(
        features,
        nn.Linear(MAP_CHANS, num_classes),
        probe_layers=list(AnchorNet.map_layers),
        dropout=dropout,
    )
    net.finish_geometry()
    init_weights(net)
    if plan.authors_head:
        with torch.no_grad():  # the authors' classifier init
            net.fc.weight.normal_(0.0, 0.001)
            net.fc.bias.zero_()
    return net
