"""CIFAR-style ResNets (He et al. 2016, section 4.2) with basic or bottleneck blocks.

Layout: 3x3 stem conv to ``width`` channels -> BN -> ReLU, three stages of planes
``width, 2*width, 4*width`` with strides 1, 2, 2 (no fourth stage), global average pool, fc.
The option ``widths=[w1, w2, w3]`` sets the planes of each stage instead (stem ``w1``).
A ResNet-d has (d - 2) / 6 basic blocks or (d - 2) / 9 bottleneck blocks per stage.

Conventions (they fix the parameter counts the tests check):

* every convolution is bias-free and followed by its own BN (post-activation ResNet v1);
* ReLUs are separate, non-inplace modules, so a hook on any module sees exactly its output
  (a block forms its residual sum in place only while no hook watches its last BN or ReLU:
  :func:`~analysis.models.residual.residual_relu`);
* a block whose input and output shapes differ gets a projection shortcut, 1x1 conv + BN
  ("option B"). For bottleneck networks this includes the first block of stage 1, whose
  input has ``width`` channels and output ``4 * width``;
* the stem has ``width`` channels, so dividing the width (Divide-and-Co-training) shrinks the
  stem too. With these rules a bottleneck ResNet-110 for 100 classes has 1,170,868
  parameters at width 16, 666,736 at width 12 and 303,564 at width 8 (x S = the paper's totals).

Names. ``resnetD`` takes a ``block`` option whose default is He et al.'s (basic up to 110,
bottleneck for 164). ResNet-110 is the one depth two literatures build differently: He et al.'s
basic-block network (1,736,564 parameters for 100 classes) and the bottleneck network of
Divide-and-Co-training and MCL-OKD (1,170,868). It is registered only as ``resnet110_basic``
and ``resnet110_bottleneck``; a bare ``resnet110`` is refused with a one-line error naming both
(``cifar_resnet`` with ``depth=110, block=...`` builds either as well).

``dc_resnet`` is the same network as the D&C authors build it (``model/resnet.py``): a strided
projection shortcut is AvgPool(2, ceil_mode, count_include_pad=False) -> 1x1 conv (stride 1)
-> BN (``_make_layer``), the last BN of every block starts at zero and ``fc`` ~ N(0, 1e-3)
(:func:`~analysis.models.base.dc_init`). Same parameters as ``cifar_resnet``, same options.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from analysis.errors import CollabError
from analysis.models.base import (
    CIFAR_PROBE_LAYERS,
    CIFAR_STAGE_PLAN,
    StagedNet,
    cifar_stem,
    dc_init,
    pooled_classifier,
    stage_widths,
)
from analysis.models.factory import MODELS, register_variant
from analysis.models.residual import residual_relu

BLOCK_TYPES = ("basic", "bottleneck")


def shortcut(in_chans: int, out_chans: int, stride: int, *, avgpool: bool = False) -> nn.Module:
    """Identity, or 1x1 conv + BN when the block changes the shape.

    With ``avgpool`` a strided shortcut is AvgPool(2) -> 1x1 conv (stride 1) -> BN instead,
    as the D&C authors' ``_make_layer`` builds it (same parameters).
    """
    if stride == 1 and in_chans == out_chans:
        return nn.Identity()
    if avgpool and stride != 1:
        return nn.Sequential(
            nn.AvgPool2d(2, stride=stride, ceil_mode=True, count_include_pad=False),
            nn.Conv2d(in_chans, out_chans, 1, bias=False),
            nn.BatchNorm2d(out_chans),
        )
    return nn.Sequential(
        nn.Conv2d(in_chans, out_chans, 1, stride=stride, bias=False), nn.BatchNorm2d(out_chans)
    )


class BasicBlock(nn.Module):
    """Two 3x3 convs: (B, in, H, W) -> (B, planes, H/stride, W/stride)."""

    expansion = 1

    def __init__(
        self, in_chans: int, planes: int, *, stride: int = 1, avgpool_shortcut: bool = False
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.shortcut = shortcut(in_chans, planes, stride, avgpool=avgpool_shortcut)
        self.relu2 = nn.ReLU()

    @property
    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return residual_relu(out, self.shortcut(x), last=self.bn2, relu=self.relu2)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 with the stride, 1x1 expand: (B, in, H, W) -> (B, 4*planes, H/s, W/s)."""

    expansion = 4

    def __init__(
        self, in_chans: int, planes: int, *, stride: int = 1, avgpool_shortcut: bool = False
    ) -> None:
        super().__init__()
        out_chans = planes * self.expansion
        self.conv1 = nn.Conv2d(in_chans, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_chans, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_chans)
        self.relu1 = nn.ReLU()
        self.relu2 = nn.ReLU()
        self.shortcut = shortcut(in_chans, out_chans, stride, avgpool=avgpool_shortcut)
        self.relu3 = nn.ReLU()

    @property
    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return residual_relu(out, self.shortcut(x), last=self.bn3, relu=self.relu3)


def blocks_per_stage(depth: int, block: str) -> int:
    """(depth - 2) / 6 for basic blocks, (depth - 2) / 9 for bottlenecks; CollabError otherwise."""
    if block not in BLOCK_TYPES:
        raise CollabError(f"unknown ResNet block {block!r}; use block='basic' or 'bottleneck'")
    per_block = 2 if block == "basic" else 3
    n, rest = divmod(depth - 2, 3 * per_block)
    if n < 1 or rest:
        hint = "8, 20, 32, 44, 56, 110" if block == "basic" else "11, 20, 29, 110, 164"
        raise CollabError(
            f"a CIFAR ResNet with {block} blocks cannot have depth {depth} "
            f"(depth - 2 must be a positive multiple of {3 * per_block}); use e.g. {hint}"
        )
    return n


def _stage(
    block_cls: type, in_chans: int, planes: int, n: int, stride: int, avgpool: bool = False
) -> nn.Sequential:
    blocks = []
    for i in range(n):
        blocks.append(
            block_cls(in_chans, planes, stride=stride if i == 0 else 1, avgpool_shortcut=avgpool)
        )
        in_chans = planes * block_cls.expansion
    return nn.Sequential(*blocks)


def cifar_resnet_net(
    *,
    num_classes: int,
    in_chans: int = 3,
    depth: int = 20,
    width: int = 16,
    block: str = "basic",
    dropout: float = 0.0,
    dc_style: bool = False,
    widths: list[int] | None = None,
) -> StagedNet:
    """Build a CIFAR ResNet-``depth``: (B, in_chans, H, W) -> (B, num_classes), H, W >= 8.

    Args:
        depth: total number of weighted layers (convs on the main path + fc).
        width: stem channels and stage-1 planes; stages use width, 2*width, 4*width.
        block: ``"basic"`` or ``"bottleneck"`` (expansion 4).
        dropout: dropout probability on the pooled features, before ``fc``.
        dc_style: build it as the D&C authors do (module doc); fixed by every registered name
            (False, ``dc_resnet``: True).
        widths: per-stage planes ``[w1, w2, w3]`` instead of ``width, 2*width, 4*width``
            (the stem has ``w1`` channels); None (default) keeps the ``width`` rule. Width
            search (:mod:`analysis.models.widen`) writes this option.
    """
    n = blocks_per_stage(depth, block)
    if width < 1:
        raise CollabError(f"ResNet width must be a positive integer, got {width}; use e.g. 16")
    planes = stage_widths(widths, [width * mult for mult, _ in CIFAR_STAGE_PLAN])
    block_cls = BasicBlock if block == "basic" else Bottleneck
    features = cifar_stem(in_chans, planes[0])
    chans = planes[0]
    for i, ((_, stride), plane) in enumerate(zip(CIFAR_STAGE_PLAN, planes), start=1):
        features[f"layer{i}"] = _stage(block_cls, chans, plane, n, stride, dc_style)
        chans = plane * block_cls.expansion
    net = pooled_classifier(
        features,
        chans=chans,
        num_classes=num_classes,
        probe_layers=CIFAR_PROBE_LAYERS,
        dropout=dropout,
    )
    return dc_init(net) if dc_style else net


# The registered depths and their default block: ResNet-164 is He et al.'s bottleneck network.
DEPTH_BLOCKS = {8: "basic", 20: "basic", 32: "basic", 44: "basic", 56: "basic", 164: "bottleneck"}
AMBIGUOUS_RESNET110 = (
    "model 'resnet110' is ambiguous: use resnet110_basic (He et al., basic blocks, 1.7M "
    "parameters) or resnet110_bottleneck (Divide-and-Co-training / MCL-OKD, 1.2M)"
)
# The depth and block each registered CIFAR ResNet name stands for (options may change a
# ``resnetD``'s block); ``analysis.models.division`` rebuilds them as ``dc_resnet``.
RESNET_NAMES: dict[str, dict[str, Any]] = {
    **{f"resnet{d}": {"depth": d, "block": b} for d, b in DEPTH_BLOCKS.items()},
    **{f"resnet110_{b}": {"depth": 110, "block": b} for b in BLOCK_TYPES},
    "cifar_resnet": {},
}
for _depth, _block in DEPTH_BLOCKS.items():
    register_variant(
        f"resnet{_depth}",
        cifar_resnet_net,
        doc=f"CIFAR ResNet-{_depth} ({_block} blocks by default); see cifar_resnet_net.",
        fixed={"depth": _depth, "dc_style": False},
        defaults={"block": _block},
    )
for _block in BLOCK_TYPES:
    register_variant(
        f"resnet110_{_block}",
        cifar_resnet_net,
        doc=f"CIFAR ResNet-110 with {_block} blocks; see cifar_resnet_net.",
        fixed={"depth": 110, "block": _block, "dc_style": False},
    )
MODELS.refuse("resnet110", AMBIGUOUS_RESNET110)
# Registered after its variants (the registry iterates in registration order).
cifar_resnet = register_variant(
    "cifar_resnet",
    cifar_resnet_net,
    doc='A CIFAR ResNet of any valid depth, e.g. ``depth=110, block="bottleneck"``.',
    fixed={"dc_style": False},
)
dc_resnet = register_variant(
    "dc_resnet",
    cifar_resnet_net,
    doc="A CIFAR ResNet as the Divide-and-Co-training authors build it; see cifar_resnet_net.",
    fixed={"dc_style": True},
)
