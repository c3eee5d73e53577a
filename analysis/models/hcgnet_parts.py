"""The building blocks of HCGNet (Yang et al., AAAI 2020): SMG modules, gated transitions, gates.

Read from the authors' code (winycg/HCGNet@229ad0b ``models/HCGNet_CIFAR.py`` and
``models/HCGNet_ImageNet.py``; the two define the same blocks). Every convolution of a block is
pre-activated, BN -> ReLU -> conv (their ``BasicConv``). A *gated unit* is

    h = conv3x3(reduce1x1(x));   out = h * forget(h) + update(h)

* ``forget`` (their "SE layers"): a 1x1 conv scores every position, softmax over positions,
  the attention-weighted **sum** of h per channel, 1x1 conv to C/r -> BN1d -> tanh -> 1x1 conv
  to C -> sigmoid: a channel gate (B, C, 1, 1) in (0, 1).
* ``update`` (their "GTSK layers"): two depthwise pre-activated 3x3 convs of h (dilation 1 and
  2), each pooled to (B, C, 1, 1) by the same attention-weighted sum; the two pooled vectors
  are concatenated, 1x1 conv to 2C/r -> BN1d -> tanh, two 1x1 convs back to C and a softmax
  across the two choose per channel between them. The result is a global vector (B, C, 1, 1)
  broadcast over h: the authors pool before mixing, so the update carries no spatial detail.

An :class:`SMG` (r = 2 for both gates) has h = ``growth`` channels from a 1x1 bottleneck of
``bn_size * growth`` and a 3x3 conv in 4 groups, and returns ``cat([x, out])`` (dense
connectivity across a hybrid block, residual-like gating inside). A :class:`Transition`
(r = 4) compresses to ``out_chans`` with a 1x1 conv to ``in - (in - out) // 2`` channels and a
strided 3x3 conv, and returns ``out`` (after DropBlock in the CIFAR networks).

Differences from the authors' code, none of which changes the output of their networks on
square inputs: the positions are H x W, not ``x.size(-1)`` squared (they assume square maps);
ReLUs are not in place; sums over positions are sums, not ``mean * H * W``. The BN1d layers of
the gates need more than one image per batch in training mode, as theirs do.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

# The two gate reduction ratios of an SMG module and of a transition (their defaults).
SMG_REDUCTION, TRANSITION_REDUCTION = 2, 4
# Groups of the SMG 3x3 conv and the DropBlock block size (their defaults).
SMG_GROUPS, DROP_BLOCK_SIZE = 4, 2


class PreActConv(nn.Sequential):
    """BN -> ReLU -> conv (no bias): (B, in, H, W) -> (B, out, H', W'); their ``BasicConv``."""

    def __init__(self, in_chans: int, out_chans: int, kernel: int, **conv: int) -> None:
        super().__init__(
            OrderedDict(
                bn=nn.BatchNorm2d(in_chans),
                relu=nn.ReLU(),
                conv=nn.Conv2d(in_chans, out_chans, kernel, bias=False, **conv),
            )
        )


class AttentionPool(nn.Module):
    """Per channel, the sum of ``x`` weighted by softmax(scores) over positions.

    A module (no parameters) so that cost counters see it, as the authors' global pooling.
    ``forward(x, scores)``: x (B, C, H, W), scores (B, 1, H, W), one per position ->
    (B, C, 1, 1).
    """

    def forward(self, x: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        weights = F.softmax(scores.flatten(1), dim=1).view_as(scores)
        return (x * weights).sum(dim=(2, 3), keepdim=True)


class ForgetGate(nn.Module):
    """Channel gate (B, C, H, W) -> (B, C, 1, 1) in (0, 1); see the module docstring."""

    def __init__(self, chans: int, reduction: int) -> None:
        super().__init__()
        hidden = chans // reduction
        self.context = nn.Conv2d(chans, 1, 1)
        self.pool = AttentionPool()
        self.squeeze = nn.Conv2d(chans, hidden, 1)
        self.bn = nn.BatchNorm1d(hidden)
        self.excite = nn.Conv2d(hidden, chans, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        pooled = self.pool(h, self.context(h))
        hidden = torch.tanh(self.bn(self.squeeze(pooled).flatten(1)))
        return torch.sigmoid(self.excite(hidden[:, :, None, None]))


class UpdateGate(nn.Module):
    """Global update (B, C, H, W) -> (B, C, 1, 1) from two depthwise views; see module doc."""

    def __init__(self, chans: int, reduction: int) -> None:
        super().__init__()
        hidden = 2 * chans // reduction
        self.dw3 = PreActConv(chans, chans, 3, padding=1, groups=chans)
        self.dw5 = PreActConv(chans, chans, 3, padding=2, dilation=2, groups=chans)
        self.context3 = nn.Conv2d(chans, 1, 1)
        self.context5 = nn.Conv2d(chans, 1, 1)
        self.pool = AttentionPool()
        self.squeeze = nn.Conv2d(2 * chans, hidden, 1)
        self.bn = nn.BatchNorm1d(hidden)
        self.excite3 = nn.Conv2d(hidden, chans, 1)
        self.excite5 = nn.Conv2d(hidden, chans, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        near, far = self.dw3(h), self.dw5(h)
        near = self.pool(near, self.context3(near))
        far = self.pool(far, self.context5(far))
        hidden = torch.tanh(self.bn(self.squeeze(torch.cat([near, far], 1)).flatten(1)))
        hidden = hidden[:, :, None, None]
        # Per channel, a softmax over the two views (the authors' "selective kernel" choice).
        choice = torch.stack([self.excite3(hidden), self.excite5(hidden)]).softmax(dim=0)
        return choice[0] * near + choice[1] * far


class GatedUnit(nn.Module):
    """``reduce`` -> ``conv`` -> h; ``gated(x)`` = h * forget(h) + update(h) (module doc)."""

    def __init__(self, reduce: nn.Module, conv: nn.Module, chans: int, *, reduction: int) -> None:
        super().__init__()
        self.reduce = reduce
        self.conv = conv
        self.forget = ForgetGate(chans, reduction)
        self.update = UpdateGate(chans, reduction)

    def receptive_path(self) -> list[nn.Module]:
        """The main path for receptive fields: the gates pool the whole map (a global gate)."""
        return [self.reduce, self.conv]

    def gated(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(self.reduce(x))
        return h * self.forget(h) + self.update(h)


class SMG(GatedUnit):
    """SMG module: (B, in, H, W) -> (B, in + growth, H, W), the input and ``growth`` new maps."""

    def __init__(self, in_chans: int, growth: int, *, bn_size: int = 4) -> None:
        wide = bn_size * growth
        super().__init__(
            PreActConv(in_chans, wide, 1),
            PreActConv(wide, growth, 3, padding=1, groups=SMG_GROUPS),
            growth,
            reduction=SMG_REDUCTION,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.gated(x)], 1)


def hybrid_block(in_chans: int, growth: int, layers: int, *, bn_size: int = 4) -> nn.Sequential:
    """``layers`` SMG modules ``smg1 .. smgN``: (B, in, H, W) -> (B, in + layers * growth, H, W)."""
    return nn.Sequential(
        OrderedDict(
            (f"smg{i + 1}", SMG(in_chans + i * growth, growth, bn_size=bn_size))
            for i in range(layers)
        )
    )


class DropBlock(nn.Module):
    """DropBlock (Ghiasi et al. 2018) as the authors' ``regularization/dropblock``: in training,
    every position starts a 2 x 2 block of zeros (all channels) with probability p / 4, and the
    rest is rescaled by (positions / kept positions). Identity in eval mode."""

    def __init__(self, p: float, block_size: int = DROP_BLOCK_SIZE) -> None:
        super().__init__()
        self.p, self.block_size = p, block_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        b, _, h, w = x.shape
        seeds = (torch.rand(b, 1, h, w, device=x.device) < self.p / self.block_size**2).to(x)
        size = self.block_size
        dropped = F.max_pool2d(seeds, size, stride=1, padding=size // 2)[:, :, :h, :w]
        keep = 1 - dropped
        return x * keep * (keep.numel() / keep.sum())


class Transition(GatedUnit):
    """Gated transition: (B, in, H, W) -> (B, out, H/stride, W/stride), then DropBlock(p)."""

    def __init__(
        self, in_chans: int, out_chans: int, *, stride: int = 2, drop_block: float = 0.0
    ) -> None:
        middle = in_chans - (in_chans - out_chans) // 2
        super().__init__(
            PreActConv(in_chans, middle, 1),
            PreActConv(middle, out_chans, 3, stride=stride, padding=1),
            out_chans,
            reduction=TRANSITION_REDUCTION,
        )
        self.drop_block = DropBlock(drop_block) if drop_block > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop_block(self.gated(x))
