"""Cheap 3x3 operations and the cheap CIFAR ResNets built from them.

Source: the student networks of online distillation with cheap convolutions (Xie et al.,
arXiv 1909.13063; METHODS.md, seed 004): the teacher architecture with every 3x3
convolution replaced by a cheap spatial op followed by a 1x1 convolution. The cheap ops are

* ``shift`` -- the channels are split into 9 groups, each moved one pixel in one of the 9
  directions (including "stay"), zero fill, no parameters (Wu et al., "Shift", 2018);
* ``depthwise`` -- a bias-free depthwise 3x3 convolution (9 weights per channel);
* ``group`` -- a bias-free 3x3 convolution with ``groups`` groups (set explicitly).

A cheap basic block (the reference ResNet-56 student) is

    cheap op -> 1x1 conv (in -> planes) -> BN -> ReLU -> cheap op -> 1x1 conv (stride here)
    -> BN -> ReLU, then the shortcut is added (after the last ReLU, no ReLU after the sum).

Conventions (they reproduce the reference counts; the tests check them exactly):

* the stem stays an ordinary 3x3 conv (width channels) + BN + ReLU;
* no BN after a cheap op; a block that changes the shape gets a 1x1 conv + BN projection
  shortcut ("option B"), as in :mod:`analysis.models.cifar_resnet`.

Then for CIFAR-10 the shift ResNet-56 student has 102,106 parameters (reference ~0.102M) and
the depthwise one 119,818 (~0.120M); with option-A (parameter-free) shortcuts they would be
99,354 and 117,066, which is how the projection convention was settled.

The shift is the reference code's kernel (``shift_layout="modulo"``; its
``shiftnet_cuda_v2`` ``moduloshiftgeneric`` kernel with kernel size 3, dilation 1): channel c
of the first 9·⌊C/9⌋ reads the input at (y + (⌊c/3⌋ mod 3) − 1, x + (c mod 3) − 1), zero
outside the image, so its direction is set by c mod 9 (c mod 9 = 4 stays); the C mod 9
remaining channels pass through unchanged. Fewer than 9 channels are not shifted at all.
``shift_layout="grouped"`` is this library's former layout: 9 contiguous groups in
:data:`SHIFT_DIRECTIONS` order, ``C // 9`` channels each and the ``C % 9`` extra ones to the
moving groups first (the "stay" group is last), so that fewer than 9 channels still shift.

[open] ``groups`` defaults to 4.
"""

from __future__ import annotations

import torch
from torch import nn

from analysis.errors import CollabError
from analysis.models.base import (
    CIFAR_PROBE_LAYERS,
    CIFAR_STAGE_PLAN,
    StagedNet,
    cifar_stem,
    pooled_classifier,
)
from analysis.models.cifar_resnet import blocks_per_stage, shortcut
from analysis.models.factory import register_variant

CHEAP_OPS = ("shift", "depthwise", "group")
SHIFT_LAYOUTS = ("modulo", "grouped")
# (dy, dx) moves of the 9 groups of the "grouped" layout; group i's content moves dy down, dx right.
SHIFT_DIRECTIONS = ((-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1), (0, 0))
# A shift plan: (channels, (dy, dx)) pairs; the channels' content moves dy down and dx right.
ShiftPlan = list[tuple[slice, tuple[int, int]]]


def shift_group_sizes(channels: int) -> list[int]:
    """Channels per group of the "grouped" layout, in :data:`SHIFT_DIRECTIONS` order."""
    base, extra = divmod(channels, len(SHIFT_DIRECTIONS))
    return [base + (1 if i < extra else 0) for i in range(len(SHIFT_DIRECTIONS))]


def modulo_shift_move(channel: int) -> tuple[int, int]:
    """(dy, dx) move of ``channel`` in the reference kernel (one of its first 9·⌊C/9⌋)."""
    return 1 - (channel // 3) % 3, 1 - channel % 3


def shift_plan(channels: int, layout: str = "modulo") -> ShiftPlan:
    """Which channels move where, for ``layout`` ``"modulo"`` or ``"grouped"`` (module doc)."""
    if layout == "modulo":
        moved = channels - channels % 9
        plan = [(slice(k, moved, 9), modulo_shift_move(k)) for k in range(9)]
        return [*plan, (slice(moved, channels), (0, 0))]
    if layout == "grouped":
        starts = [0]
        for size in shift_group_sizes(channels):
            starts.append(starts[-1] + size)
        return [(slice(a, b), d) for a, b, d in zip(starts, starts[1:], SHIFT_DIRECTIONS)]
    raise CollabError(f"unknown shift layout {layout!r}; use 'modulo' or 'grouped'")


def shift_channels(x: torch.Tensor, plan: ShiftPlan, *, sign: int = 1) -> torch.Tensor:
    """Move the channels of (B, C, H, W) as ``plan`` says, times ``sign``, zero fill.

    ``out[:, c, y, x] = x[:, c, y - dy, x - dx]`` where the source is inside the image.
    """
    out = torch.zeros_like(x)
    h, w = x.shape[-2:]
    for c, (dy, dx) in plan:
        dy, dx = sign * dy, sign * dx
        if len(range(x.shape[1])[c]):
            out[:, c, max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = x[
                :, c, max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
            ]
    return out


class _ShiftFunction(torch.autograd.Function):
    """The shift and its adjoint (the opposite shift): one buffer per pass instead of 9 slices."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, plan: ShiftPlan) -> torch.Tensor:
        ctx.plan = plan
        return shift_channels(x, plan)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return shift_channels(grad, ctx.plan, sign=-1), None


class Shift(nn.Module):
    """Parameter-free shift: (B, C, H, W) -> (B, C, H, W), channels moved one pixel, zero fill."""

    def __init__(self, channels: int, *, layout: str = "modulo") -> None:
        super().__init__()
        self.channels = channels
        self.layout = layout
        self.plan = shift_plan(channels, layout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _ShiftFunction.apply(x, self.plan)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, layout={self.layout}"


def cheap_op(op: str, channels: int, *, groups: int = 4, shift_layout: str = "modulo") -> nn.Module:
    """The cheap replacement of a 3x3 conv on ``channels`` channels: (B, C, H, W) -> same shape."""
    if op == "shift":
        return Shift(channels, layout=shift_layout)
    if op == "depthwise":
        return nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
    if op == "group":
        if groups < 1 or channels % groups:
            raise CollabError(
                f"a group 3x3 conv with {groups} groups cannot split {channels} channels; "
                "pass groups= a divisor of every stage width (e.g. 2 or 4)"
            )
        return nn.Conv2d(channels, channels, 3, padding=1, groups=groups, bias=False)
    raise CollabError(f"unknown cheap op {op!r}; use op='shift', 'depthwise' or 'group'")


class CheapBlock(nn.Module):
    """Cheap basic block: (B, in, H, W) -> (B, planes, H/stride, W/stride)."""

    def __init__(
        self,
        in_chans: int,
        planes: int,
        *,
        stride: int = 1,
        op: str = "shift",
        groups: int = 4,
        shift_layout: str = "modulo",
    ):
        super().__init__()
        self.op1 = cheap_op(op, in_chans, groups=groups, shift_layout=shift_layout)
        self.conv1 = nn.Conv2d(in_chans, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.op2 = cheap_op(op, planes, groups=groups, shift_layout=shift_layout)
        self.conv2 = nn.Conv2d(planes, planes, 1, stride=stride, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU()
        self.shortcut = shortcut(in_chans, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(self.op1(x))))
        out = self.relu2(self.bn2(self.conv2(self.op2(out))))
        return out + self.shortcut(x)


def cheap_resnet_net(
    *,
    num_classes: int,
    in_chans: int = 3,
    depth: int = 20,
    width: int = 16,
    op: str = "shift",
    groups: int = 4,
    dropout: float = 0.0,
    shift_layout: str = "modulo",
) -> StagedNet:
    """Build a cheap CIFAR ResNet-``depth``: (B, in_chans, H, W) -> (B, num_classes).

    Args:
        depth: 6n + 2 for n cheap blocks per stage (same depths as the basic ResNets).
        width: stem channels and stage-1 planes; stages use width, 2*width, 4*width.
        op: ``"shift"``, ``"depthwise"`` or ``"group"``.
        groups: number of groups of the ``"group"`` op (ignored by the others).
        dropout: dropout probability on the pooled features, before ``fc``.
        shift_layout: ``"modulo"`` (the reference kernel) or ``"grouped"`` (module doc).
    """
    n = blocks_per_stage(depth, "basic")
    if width < 1:
        raise CollabError(
            f"cheap ResNet width must be a positive integer, got {width}; use e.g. 16"
        )
    if op not in CHEAP_OPS:
        raise CollabError(f"unknown cheap op {op!r}; use op='shift', 'depthwise' or 'group'")
    if shift_layout not in SHIFT_LAYOUTS:
        raise CollabError(
            f"unknown shift layout {shift_layout!r}; use shift_layout='modulo' or 'grouped'"
        )
    features = cifar_stem(in_chans, width)
    chans = width
    for i, (mult, stride) in enumerate(CIFAR_STAGE_PLAN, start=1):
        blocks = []
        for j in range(n):
            blocks.append(
                CheapBlock(
                    chans,
                    width * mult,
                    stride=stride if j == 0 else 1,
                    op=op,
                    groups=groups,
                    shift_layout=shift_layout,
                )
            )
            chans = width * mult
        features[f"layer{i}"] = nn.Sequential(*blocks)
    return pooled_classifier(
        features,
        chans=chans,
        num_classes=num_classes,
        probe_layers=CIFAR_PROBE_LAYERS,
        dropout=dropout,
    )


for _depth in (8, 20, 56):
    register_variant(
        f"cheap_resnet{_depth}",
        cheap_resnet_net,
        doc=f"Cheap CIFAR ResNet-{_depth} (shift / depthwise / group 3x3); see cheap_resnet_net.",
        fixed={"depth": _depth},
    )
# Registered after its variants (the registry iterates in registration order).
cheap_resnet = register_variant(
    "cheap_resnet",
    cheap_resnet_net,
    doc='A cheap CIFAR ResNet of any valid depth, e.g. ``depth=110, op="depthwise"``.',
)
