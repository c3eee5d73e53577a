"""CIFAR Wide-ResNets WRN-d-k (Zagoruyko & Komodakis 2016), pre- and post-activation.

``wrn`` (and ``wrn16_4``, ``wrn16_8``, ``wrn28_10``): 3x3 stem conv 3 -> 16 (fixed, whatever
k), three stages of (d - 4) / 6 pre-activation basic blocks with planes 16k, 32k, 64k and
strides 1, 2, 2, then BN -> ReLU -> global average pool -> fc. A block is BN -> ReLU -> 3x3 conv
-> BN -> ReLU -> dropout -> 3x3 conv, plus a shortcut; when the shape changes the shortcut is a
bias-free 1x1 conv (no BN) applied to the pre-activated input, as in the WRN authors' code.
WRN-28-10 for 100 classes has 36,536,884 parameters and WRN-16-8 has 11,007,540.

``dc_wrn``: the post-activation WRN of the Divide-and-Co-training authors (their
``model/resnet.py``: ``wide_resnet*`` = their CIFAR ``ResNet`` with ``BasicBlock``). Stem 3x3
conv 3 -> 16 -> BN -> ReLU; a block is 3x3 conv (stride here) -> BN -> ReLU -> [dropout] ->
3x3 conv -> BN, plus the shortcut, then ReLU; a shortcut that changes the shape is 1x1 conv +
BN, after AvgPool(2) when strided; no final BN; the last BN of every block starts at zero and
``fc`` ~ N(0, 1e-3) (:func:`~analysis.models.base.dc_init`). For 100 classes WRN-28-10 has
36,539,124 parameters and WRN-16-8 11,009,332 (their code counts the same). Block dropout is
this library's option (their blocks have none; default 0).
"""

from __future__ import annotations

import torch
from torch import nn

from analysis.errors import CollabError
from analysis.models.base import (
    CIFAR_PROBE_LAYERS,
    StagedNet,
    cifar_stem,
    dc_init,
    pooled_classifier,
    stage_widths,
)
from analysis.models.cifar_resnet import shortcut
from analysis.models.factory import register_variant
from analysis.models.residual import residual_relu

# (planes per unit of widen, stride) of the three stages.
WRN_STAGES = ((16, 1), (32, 2), (64, 2))


class WideBlock(nn.Module):
    """Pre-activation basic block: (B, in, H, W) -> (B, out, H/stride, W/stride)."""

    def __init__(self, in_chans: int, out_chans: int, *, stride: int = 1, dropout: float = 0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_chans)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(in_chans, out_chans, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chans)
        self.relu2 = nn.ReLU()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(out_chans, out_chans, 3, padding=1, bias=False)
        self.project = stride != 1 or in_chans != out_chans
        self.shortcut = (
            nn.Conv2d(in_chans, out_chans, 1, stride=stride, bias=False)
            if self.project
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = self.relu1(self.bn1(x))
        out = self.conv1(act)
        out = self.conv2(self.dropout(self.relu2(self.bn2(out))))
        # The projection sees the activated input; an identity shortcut keeps the raw input.
        return out + (self.shortcut(act) if self.project else x)


class PostActWideBlock(nn.Module):
    """Post-activation basic block (D&C authors): (B, in, H, W) -> (B, out, H/stride, W/stride)."""

    def __init__(self, in_chans: int, out_chans: int, *, stride: int = 1, dropout: float = 0.0):
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, out_chans, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_chans)
        self.relu1 = nn.ReLU()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(out_chans, out_chans, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chans)
        self.shortcut = shortcut(in_chans, out_chans, stride, avgpool=True)
        self.relu2 = nn.ReLU()

    @property
    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.dropout(self.relu1(self.bn1(self.conv1(x))))
        out = self.bn2(self.conv2(out))
        return residual_relu(out, self.shortcut(x), last=self.bn2, relu=self.relu2)


def wrn_net(
    *,
    num_classes: int,
    in_chans: int = 3,
    depth: int = 16,
    widen: int = 4,
    dropout: float = 0.0,
    fc_dropout: float = 0.0,
    post_activation: bool = False,
    widths: list[int] | None = None,
) -> StagedNet:
    """Build WRN-``depth``-``widen``: (B, in_chans, H, W) -> (B, num_classes).

    Args:
        depth: 6n + 4 for n blocks per stage (16, 22, 28, 40, ...).
        widen: the widening factor k; stage planes are 16k, 32k, 64k.
        dropout: dropout between the two convs of every block (the WRN paper's option).
        fc_dropout: dropout on the pooled features, before ``fc``.
        post_activation: the D&C authors' network (module doc) instead of the pre-activation
            one; fixed by the registered names (``dc_wrn``: True, the others False).
        widths: per-stage planes ``[w1, w2, w3]`` instead of ``16k, 32k, 64k`` (the stem stays
            at 16); None (default) keeps the ``widen`` rule.
    """
    if post_activation:
        features = cifar_stem(in_chans, 16)
    else:
        features = {"conv1": nn.Conv2d(in_chans, 16, 3, padding=1, bias=False)}
    block = PostActWideBlock if post_activation else WideBlock
    chans = _stages(features, block, depth=depth, widen=widen, dropout=dropout, widths=widths)
    if not post_activation:
        features.update({"bn": nn.BatchNorm2d(chans), "relu": nn.ReLU()})
    net = pooled_classifier(
        features,
        chans=chans,
        num_classes=num_classes,
        probe_layers=CIFAR_PROBE_LAYERS,
        dropout=fc_dropout,
    )
    return dc_init(net) if post_activation else net


def _stages(
    features: dict[str, nn.Module],
    block: type,
    *,
    depth: int,
    widen: int,
    dropout: float,
    widths: list[int] | None,
) -> int:
    """Add ``layer1..3`` of ``block`` after a 16-channel stem; returns the output channels."""
    n, rest = divmod(depth - 4, 6)
    if n < 1 or rest:
        raise CollabError(
            f"a Wide-ResNet cannot have depth {depth} (depth - 4 must be a positive multiple "
            "of 6); use e.g. 16, 22, 28 or 40"
        )
    if widen < 1:
        raise CollabError(f"Wide-ResNet widen must be a positive integer, got {widen}; use e.g. 4")
    planes = stage_widths(widths, [unit * widen for unit, _ in WRN_STAGES])
    chans = 16
    for i, ((_, stride), plane) in enumerate(zip(WRN_STAGES, planes), start=1):
        blocks = []
        for j in range(n):
            blocks.append(block(chans, plane, stride=stride if j == 0 else 1, dropout=dropout))
            chans = plane
        features[f"layer{i}"] = nn.Sequential(*blocks)
    return chans


wrn = register_variant(
    "wrn", wrn_net, doc="WRN-depth-widen; see :func:`wrn_net`.", fixed={"post_activation": False}
)
for _depth, _widen in ((16, 4), (16, 8), (28, 10)):
    register_variant(
        f"wrn{_depth}_{_widen}",
        wrn_net,
        doc=f"WRN-{_depth}-{_widen}; see wrn_net.",
        fixed={"depth": _depth, "widen": _widen, "post_activation": False},
    )
dc_wrn = register_variant(
    "dc_wrn",
    wrn_net,
    doc="The post-activation WRN-depth-widen of the D&C authors; see :func:`wrn_net`.",
    fixed={"post_activation": True},
)
