"""DCL variants of the small CIFAR networks: ``dcl_vgg8`` and ``dcl_resnet8``.

Each is the plain network (``vgg8``, ``resnet8``; see ``vgg.py``, ``cifar_resnet.py``) with the
conv -> BN -> ReLU units of the chosen stages replaced by :class:`~analysis.models.dcl.DCLConv`
modules (Wang et al. 2017, *Deep Collaborative Learning for Visual Recognition*):

* ``dcl_vgg8``: every conv of a chosen stage; DCL paths ``layer{s}.{i}``.
* ``dcl_resnet8``: the first conv (conv1 -> bn1 -> relu1) of every basic block of a chosen
  stage, the block's second conv then reads the fused channels; DCL paths ``layer{s}.{b}.dcl``.

Options shared by both (the paper leaves them [open]; defaults are choices):

* ``branches`` K (2), ``fusion`` (``product``; see ``dcl.py``),
* ``branch_width`` M; 0 = automatic (``auto_branch_width``: N // K for a conv of N filters,
  or the largest M with M ** K <= N for ``outer``),
* ``dcl_stages``: ``"last"`` (default, the last conv stage), ``"all"``, a stage number or a
  comma-separated list such as ``"2,3"``.

The networks carry ``dcl_layers`` (module paths of the DCL modules, for the vocabulary probe);
their ``probe_layers`` list the stages followed by the DCL layers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from analysis.errors import CollabError
from analysis.models.base import (
    CIFAR_PROBE_LAYERS,
    CIFAR_STAGE_PLAN,
    StagedNet,
    cifar_stem,
    conv_bn_relu,
    pooled_classifier,
)
from analysis.models.cifar_resnet import BasicBlock, shortcut
from analysis.models.dcl import DCLConv, auto_branch_width, check_fusion
from analysis.models.factory import register_variant
from analysis.models.residual import residual_relu
from analysis.models.vgg import CONFIGS


@dataclass(frozen=True)
class DCLSpec:
    """How to build the DCL modules of a network (see the module docstring)."""

    branches: int = 2
    fusion: str = "product"
    branch_width: int = 0

    def module(self, in_chans: int, filters: int, *, stride: int = 1) -> DCLConv:
        """A DCL module standing in for a 3x3 conv of ``filters`` filters."""
        width = self.branch_width or auto_branch_width(
            filters, branches=self.branches, fusion=self.fusion
        )
        return DCLConv(in_chans, width, branches=self.branches, fusion=self.fusion, stride=stride)


def parse_stages(dcl_stages: str | int, num_stages: int) -> set[int]:
    """Stage numbers (1-based) named by ``dcl_stages``: "last", "all", 3 or "2,3"."""
    text = str(dcl_stages).strip().lower()
    if text == "last":
        return {num_stages}
    if text == "all":
        return set(range(1, num_stages + 1))
    try:
        stages = {int(part) for part in text.split(",")}
    except ValueError:
        stages = set()
    if not stages or not stages <= set(range(1, num_stages + 1)):
        raise CollabError(
            f"dcl_stages={dcl_stages!r} does not name stages of a {num_stages}-stage network; "
            f"use 'last', 'all' or numbers between 1 and {num_stages} such as '2,3'"
        )
    return stages


def _spec(branches: int, fusion: str, branch_width: int) -> DCLSpec:
    check_fusion(fusion)
    if branches < 1 or branch_width < 0:
        raise CollabError(
            f"DCL needs branches >= 1 and branch_width >= 0 (0 = automatic), got {branches} "
            f"and {branch_width}; use e.g. branches=2, branch_width=0"
        )
    return DCLSpec(branches=branches, fusion=fusion, branch_width=branch_width)


def _finish(
    features: dict[str, nn.Module],
    chans: int,
    num_classes: int,
    *,
    stages: list[str],
    dropout: float,
) -> StagedNet:
    """Global pool + fc, ``dcl_layers`` found by type, probe layers = stages + DCL layers."""
    net = pooled_classifier(
        features, chans=chans, num_classes=num_classes, probe_layers=stages, dropout=dropout
    )
    net.dcl_layers = [name for name, m in net.named_modules() if isinstance(m, DCLConv)]
    net.probe_layers = [*stages, *net.dcl_layers]
    return net


def dcl_vgg_net(
    stages: list[list[int]],
    *,
    num_classes: int,
    in_chans: int,
    spec: DCLSpec,
    dcl_stages: str | int,
    dropout: float,
) -> StagedNet:
    """VGG (as ``vgg.vgg_net``) whose convs in ``dcl_stages`` are DCL modules."""
    chosen = parse_stages(dcl_stages, len(stages))
    features: dict[str, nn.Module] = {}
    chans = in_chans
    for i, widths in enumerate(stages, start=1):
        layers: list[nn.Module] = []
        for width in widths:
            unit = spec.module(chans, width) if i in chosen else conv_bn_relu(chans, width)
            chans = unit.out_chans if isinstance(unit, DCLConv) else width
            layers.append(unit)
        if i < len(stages):
            layers.append(nn.MaxPool2d(2))
        features[f"layer{i}"] = nn.Sequential(*layers)
    names = [f"layer{i}" for i in range(1, len(stages) + 1)]
    return _finish(features, chans, num_classes, stages=names, dropout=dropout)


class DCLBasicBlock(nn.Module):
    """Basic block whose first conv is a DCL module: (B, in, H, W) -> (B, planes, H/s, W/s)."""

    def __init__(self, in_chans: int, planes: int, *, stride: int, spec: DCLSpec) -> None:
        super().__init__()
        self.dcl = spec.module(in_chans, planes, stride=stride)
        self.conv2 = nn.Conv2d(self.dcl.out_chans, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = shortcut(in_chans, planes, stride)
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.dcl(x)))
        return residual_relu(out, self.shortcut(x), last=self.bn2, relu=self.relu2)


def dcl_resnet8_net(
    *,
    num_classes: int,
    in_chans: int,
    width: int,
    spec: DCLSpec,
    dcl_stages: str | int,
    dropout: float,
) -> StagedNet:
    """CIFAR ResNet-8 (one basic block per stage) with DCL blocks in ``dcl_stages``."""
    if width < 1:
        raise CollabError(f"ResNet width must be a positive integer, got {width}; use e.g. 16")
    chosen = parse_stages(dcl_stages, 3)
    features = cifar_stem(in_chans, width)
    chans = width
    for i, (mult, stride) in enumerate(CIFAR_STAGE_PLAN, start=1):
        planes = width * mult
        block = (
            DCLBasicBlock(chans, planes, stride=stride, spec=spec)
            if i in chosen
            else BasicBlock(chans, planes, stride=stride)
        )
        features[f"layer{i}"] = nn.Sequential(block)
        chans = planes
    stages = list(CIFAR_PROBE_LAYERS)
    return _finish(features, chans, num_classes, stages=stages, dropout=dropout)


def dcl_net(
    *,
    base: str,
    num_classes: int,
    in_chans: int = 3,
    width: int = 16,
    branches: int = 2,
    fusion: str = "product",
    branch_width: int = 0,
    dcl_stages: str | int = "last",
    dropout: float = 0.0,
) -> nn.Module:
    """Network ``base`` (``vgg8`` or ``resnet8``) with DCL modules in ``dcl_stages``.

    The options are those of the module docstring; ``width`` is VGG's first-stage width
    (64 in ``vgg8``) or the ResNet's stem width (16 in ``resnet8``).
    """
    if base == "vgg8":
        if width < 1:
            raise CollabError(f"VGG width must be a positive integer, got {width}; use e.g. 64")
        stages = [[max(1, c * width // 64) for c in stage] for stage in CONFIGS["vgg8"]]
        return dcl_vgg_net(
            stages,
            num_classes=num_classes,
            in_chans=in_chans,
            spec=_spec(branches, fusion, branch_width),
            dcl_stages=dcl_stages,
            dropout=dropout,
        )
    if base == "resnet8":
        return dcl_resnet8_net(
            num_classes=num_classes,
            in_chans=in_chans,
            width=width,
            spec=_spec(branches, fusion, branch_width),
            dcl_stages=dcl_stages,
            dropout=dropout,
        )
    raise CollabError(f"no DCL variant of {base!r}; use base='vgg8' or 'resnet8'")


dcl_vgg8 = register_variant(
    "dcl_vgg8",
    dcl_net,
    doc="""VGG-8 (stages width x [1], [2], [4], [8, 8]) with DCL convs in the last stage by default.

    At width 64, K = 2, ``product``: 2,735,178 parameters for 10 classes, RGB (vgg8: 3,917,386).
    """,
    fixed={"base": "vgg8"},
    defaults={"width": 64},
)
dcl_resnet8 = register_variant(
    "dcl_resnet8",
    dcl_net,
    doc="""CIFAR ResNet-8 (stages width, 2*width, 4*width) whose last block's first conv is DCL.

    At width 16, K = 2, ``product``: 59,610 parameters for 10 classes, RGB (resnet8: 78,042).
    """,
    fixed={"base": "resnet8"},
)
