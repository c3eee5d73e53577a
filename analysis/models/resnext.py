"""CIFAR ResNeXt-29 (Xie, Girshick, Dollár, Tu & He, "Aggregated Residual Transformations", 2017).

Layout (the paper's CIFAR template, section 5.2): 3x3 stem conv to 64 channels -> BN -> ReLU,
three stages of three bottleneck blocks (29 = 3 x 3 x 3 + 2 weighted layers) with output
channels 256, 512, 1024 and strides 1, 2, 2, global average pool, fc. Each block is

    1x1 conv (in -> C*d) -> BN -> ReLU -> grouped 3x3 conv (C groups, stride here) -> BN -> ReLU
    -> 1x1 conv (C*d -> out) -> BN, plus the shortcut, then ReLU,

where C is the ``cardinality`` and d the width per group: ``base_width`` in stage 1, doubled in
every later stage (d = 64, 128, 256 for the paper's "C x 64d" networks).

Conventions (they fix the parameter counts the tests check):

* every convolution is bias-free and followed by its own BN; ReLUs are separate modules;
* a block whose input and output shapes differ gets a 1x1 conv + BN projection shortcut
  (including stage 1's first block, 64 -> 256 channels).

With these rules ResNeXt-29 8x64d for 10 classes has 34,426,698 parameters (the paper's
34.4M) and 16x64d has 68,155,210 (68.1M).

Default cardinality is 8 (the 8x64d network Divide-and-Co-training divides on CIFAR); dividing
by S keeps ``base_width`` and divides ``cardinality`` (see :mod:`analysis.models.division`).

``dc_resnext29`` is the same network as the D&C authors build it (``resnext29_8x64d`` in their
``model/resnet.py``: their ``ResNet`` with grouped ``Bottleneck`` blocks): a strided shortcut
is AvgPool(2) -> 1x1 conv -> BN, the last BN of every block starts at zero and ``fc`` ~
N(0, 1e-3) (:func:`~analysis.models.base.dc_init`); same parameters and options.
"""

from __future__ import annotations

import torch
from torch import nn

from analysis.errors import CollabError
from analysis.models.base import CIFAR_PROBE_LAYERS, StagedNet, dc_init, pooled_classifier
from analysis.models.cifar_resnet import shortcut
from analysis.models.factory import register_variant
from analysis.models.residual import residual_relu

STAGE_OUT = (256, 512, 1024)


def _conv_bn(
    in_chans: int, out_chans: int, kernel: int, *, stride: int = 1, groups: int = 1
) -> list[nn.Module]:
    conv = nn.Conv2d(
        in_chans, out_chans, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False
    )
    return [conv, nn.BatchNorm2d(out_chans)]


class ResNeXtBlock(nn.Module):
    """Aggregated bottleneck: (B, in, H, W) -> (B, out, H/stride, W/stride)."""

    def __init__(
        self,
        in_chans: int,
        out_chans: int,
        *,
        cardinality: int,
        group_width: int,
        stride: int = 1,
        avgpool_shortcut: bool = False,
    ):
        super().__init__()
        inner = cardinality * group_width
        self.conv1, self.bn1 = _conv_bn(in_chans, inner, 1)
        self.relu1 = nn.ReLU()
        self.conv2, self.bn2 = _conv_bn(inner, inner, 3, stride=stride, groups=cardinality)
        self.relu2 = nn.ReLU()
        self.conv3, self.bn3 = _conv_bn(inner, out_chans, 1)
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


def resnext_net(
    *,
    depth: int = 29,
    num_classes: int,
    in_chans: int = 3,
    cardinality: int = 8,
    base_width: int = 64,
    dropout: float = 0.0,
    dc_style: bool = False,
) -> StagedNet:
    """Build a CIFAR ResNeXt: (B, in_chans, H, W) -> (B, num_classes), H, W >= 4.

    Args:
        depth: 9n + 2 for n blocks per stage (29 in the paper).
        cardinality: number of groups C of every 3x3 conv.
        base_width: width per group d in stage 1 (2d and 4d in stages 2 and 3).
        dropout: dropout probability on the pooled features, before ``fc``.
        dc_style: build it as the D&C authors do (module doc); fixed by the registered names.
    """
    n, rest = divmod(depth - 2, 9)
    if n < 1 or rest:
        raise CollabError(
            f"a CIFAR ResNeXt cannot have depth {depth} "
            "(depth - 2 must be a positive multiple of 9); use 29"
        )
    if cardinality < 1 or base_width < 1:
        raise CollabError(
            f"ResNeXt cardinality and base_width must be positive, got {cardinality} and "
            f"{base_width}; use e.g. 8 and 64"
        )
    stem = _conv_bn(in_chans, 64, 3)
    features: dict[str, nn.Module] = {"conv1": stem[0], "bn1": stem[1], "relu": nn.ReLU()}
    chans = 64
    for i, (out_chans, stride) in enumerate(zip(STAGE_OUT, (1, 2, 2)), start=1):
        group_width = base_width * 2 ** (i - 1)
        blocks = []
        for j in range(n):
            blocks.append(
                ResNeXtBlock(
                    chans,
                    out_chans,
                    cardinality=cardinality,
                    group_width=group_width,
                    stride=stride if j == 0 else 1,
                    avgpool_shortcut=dc_style,
                )
            )
            chans = out_chans
        features[f"layer{i}"] = nn.Sequential(*blocks)
    net = pooled_classifier(
        features,
        chans=chans,
        num_classes=num_classes,
        probe_layers=CIFAR_PROBE_LAYERS,
        dropout=dropout,
    )
    return dc_init(net) if dc_style else net


resnext29 = register_variant(
    "resnext29",
    resnext_net,
    doc="ResNeXt-29 ``cardinality`` x ``base_width``d (default 8x64d, 34.4M parameters).",
    fixed={"depth": 29, "dc_style": False},
)
dc_resnext29 = register_variant(
    "dc_resnext29",
    resnext_net,
    doc="ResNeXt-29 as the Divide-and-Co-training authors build it; see resnext_net.",
    fixed={"depth": 29, "dc_style": True},
)
