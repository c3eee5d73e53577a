"""The building blocks of AnchorNet (:mod:`analysis.models.anchornet`): unpadded MBConv blocks,
squeeze-excitation, and the :class:`StagedNet` that knows its receptive field."""

from __future__ import annotations

import torch
from torch import nn

from analysis.errors import CollabError
from analysis.models.base import StagedNet
from analysis.models.receptive_field import ReceptiveField, output_size, receptive_field

SE_RATIO = 0.25
CROPS = ("top_left", "centre")


def conv_bn_swish(
    in_chans: int, out_chans: int, kernel: int, *, stride: int = 1, groups: int = 1
) -> nn.Sequential:
    """Unpadded conv -> BN -> SiLU: (B, in, H, W) -> (B, out, (H - k) // s + 1, ...)."""
    return nn.Sequential(
        nn.Conv2d(in_chans, out_chans, kernel, stride=stride, groups=groups, bias=False),
        nn.BatchNorm2d(out_chans),
        nn.SiLU(),
    )


class SqueezeExcite(nn.Module):
    """Channel gates ``x * sigmoid(W2 swish(W1 s))``; ``s`` = per-position or global mean of x.

    Args:
        chans: channels of x; squeezed: hidden gate channels.
        mode: ``"pointwise"`` (s = x at each position) or ``"global"`` (s = spatial mean).
    """

    def __init__(self, chans: int, squeezed: int, *, mode: str) -> None:
        super().__init__()
        self.mode = mode
        self.reduce = nn.Conv2d(chans, squeezed, 1)
        self.act = nn.SiLU()
        self.expand = nn.Conv2d(squeezed, chans, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        s = x.mean((2, 3), keepdim=True) if self.mode == "global" else x
        return x * self.gate(self.expand(self.act(self.reduce(s))))


class MBConv(nn.Module):
    """Unpadded inverted residual: (B, in, H, W) -> (B, out, (H - 3) // s + 1, ...).

    expand (1x1, BN, swish; skipped at expansion 1) -> depthwise 3x3 (BN, swish) -> SE ->
    project (1x1, BN, linear); plus the input cropped to the output size when stride is 1 and
    channels match.

    Args:
        expansion: hidden channels = int(expansion * in_chans); SE squeezes to
            int(in_chans / 4) (at least 1).
        se: ``"global"``, ``"pointwise"`` or ``"none"``.
        crop: which part of the input the skip keeps: ``"top_left"`` (the authors' code:
            rows and columns 0..h-1) or ``"centre"`` (one pixel off each side for a 3x3).
    """

    def __init__(
        self, in_chans: int, out_chans: int, *, expansion: float, stride: int, se: str, crop: str
    ) -> None:
        super().__init__()
        if crop not in CROPS:
            raise ValueError(f"unknown crop {crop!r}; use one of {CROPS}")
        hidden = int(expansion * in_chans)
        self.expand = conv_bn_swish(in_chans, hidden, 1) if expansion != 1 else nn.Identity()
        self.depthwise = conv_bn_swish(hidden, hidden, 3, stride=stride, groups=hidden)
        squeezed = max(1, int(in_chans * SE_RATIO))
        self.se = SqueezeExcite(hidden, squeezed, mode=se) if se != "none" else nn.Identity()
        self.project = nn.Sequential(
            nn.Conv2d(hidden, out_chans, 1, bias=False), nn.BatchNorm2d(out_chans)
        )
        self.residual = stride == 1 and in_chans == out_chans
        self.crop = crop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.se(self.depthwise(self.expand(x))))
        if not self.residual:
            return out
        h, w = out.shape[-2:]
        if self.crop == "top_left":
            return out + x[..., :h, :w]
        dy, dx = (x.shape[-2] - h) // 2, (x.shape[-1] - w) // 2
        return out + x[..., dy : dy + h, dx : dx + w]


class AnchorNet(StagedNet):
    """:class:`StagedNet` with stages ``stem, layer1..layer7, features_map, avgpool, flatten``.

    Attributes:
        rf: :class:`ReceptiveField` of ``features_map`` (``rf.box(i, j)`` is position (i, j)'s box).
        receptive_field, stride, offset: ``rf``'s size, stride and offset as ints.
        map_layers: the feature stages up to and including ``features_map``.
    """

    map_layers = ("stem", *(f"layer{i}" for i in range(1, 8)), "features_map")

    def finish_geometry(self) -> None:
        """Compute ``rf`` and friends from the layers (call once the stages exist)."""
        self.rf: ReceptiveField = receptive_field(self._map_modules())
        self.receptive_field, self.stride, self.offset = (
            self.rf.size,
            self.rf.stride,
            self.rf.offset,
        )

    def _map_modules(self) -> list[nn.Module]:
        return [self._modules[name] for name in self.map_layers]

    def map_size(self, input_size: int) -> int:
        """Side of ``features_map`` for a square input of ``input_size`` pixels (0: too small)."""
        return output_size(self._map_modules(), input_size)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The map before pooling: (B, in_chans, H, W) -> (B, 512, h, w), the CAM's input."""
        self._check_size(x)
        for module in self._map_modules():
            x = module(x)
        return x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features: (B, in_chans, H, W) -> (B, 512)."""
        self._check_size(x)
        return super().forward_features(x)

    def _check_size(self, x: torch.Tensor) -> None:
        if min(x.shape[-2:]) < self.receptive_field:
            raise CollabError(
                f"AnchorNet (receptive field {self.receptive_field}) got a "
                f"{x.shape[-2]}x{x.shape[-1]} input; use images of at least "
                f"{self.receptive_field} pixels or layout='small'"
            )
