"""AnchorNet: a light CNN with no padding anywhere, so every map position sees an exact window.

From the patch-localisation paper of seed 002 (*localize multi-scale semantic patches ... due
to the linearly spatial aggregation before the softmax layer*). Layout of the reference:
stem 3x3 stride 2 (in -> 16), seven MBConv blocks (Tan & Le 2019: 1x1 expansion, depthwise
3x3, squeeze-excitation, 1x1 projection, swish), 1x1 conv to 512 (``features_map``), global
average pool, linear classifier. No layer pads, so map position (i, j) sees exactly input rows
``offset + stride*i ... + receptive_field - 1`` (columns likewise); residuals exist only where
the block keeps the channel count at stride 1, the skip cropped by one pixel per side to match.

Layouts (option ``layout``; block strides, everything else equal):

* ``"reference"`` -- strides 2, 2, 1, 1, 1, 1, 1: 224 px -> 17 x 17 map, receptive field 95,
  stride 8, box (i, j) = rows 8i..8i+94, cols 8j..8j+94 (the paper's numbers). Needs >= 95 px.
* ``"small"`` (default, for 32-64 px data such as ``shapes``) -- all strides 1: receptive field
  31, stride 2; 64 px -> 17 x 17 map (box = rows 2i..2i+30), 32 px -> 1 x 1.

Squeeze-excitation (option ``se``; a choice, the paper's block uses global SE):

* ``"pointwise"`` (default) -- the gate of a position is computed from that position's own
  channels (the same two 1x1 convs as SE, applied without the global pool), which keeps the
  exact-window property: a map position does not depend on pixels outside its box at all.
* ``"global"`` -- standard SE (global average pool first): same parameters, but every position
  then depends on the whole image through the channel gates (the window is exact only for the
  geometry, not for the values).
* ``"none"`` -- no SE.

Parameter count: the channel plan below gives 674,504 parameters for 1000 classes (RGB), the
paper's "about 0.675M"; 513,000 of them are the 512 -> 1000 classifier. (The paper gives no
channel plan: this one, stem 16 and blocks 16, 16, 16, 32, 32, 64, 64 with expansion 1 then 6,
is a choice that reproduces the count.)

Cost knobs (not in the paper): ``width`` scales the stem and block channels (``width / 16``);
``expansion`` is the hidden-channel factor of blocks 2-7. With the "small" layout every block
runs at half the input resolution, so ``configs/anchornet_shapes.yaml`` uses width 8 and
expansion 3 (38,790 parameters for 6 classes) to train on CPU.
"""

from __future__ import annotations

import torch
from torch import nn

from analysis.errors import CollabError
from analysis.models.base import StagedNet, global_pool, init_weights
from analysis.models.factory import MODELS
from analysis.models.receptive_field import ReceptiveField, output_size, receptive_field

#: (output channels at width 16, expansion) of the seven blocks; the map always has 512 channels.
BLOCKS: tuple[tuple[int, int], ...] = (
    (16, 1),
    (16, 6),
    (16, 6),
    (32, 6),
    (32, 6),
    (64, 6),
    (64, 6),
)
STEM_CHANS, MAP_CHANS, SE_RATIO = 16, 512, 0.25
LAYOUTS: dict[str, tuple[int, ...]] = {
    "reference": (2, 2, 1, 1, 1, 1, 1),
    "small": (1, 1, 1, 1, 1, 1, 1),
}
SE_MODES = ("pointwise", "global", "none")


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

    expand (1x1, skipped at expansion 1) -> depthwise 3x3 -> SE -> project (1x1, BN, linear);
    plus the input cropped to the output size when stride is 1 and channels match.
    """

    def __init__(
        self, in_chans: int, out_chans: int, *, expansion: int, stride: int, se: str
    ) -> None:
        super().__init__()
        hidden = in_chans * expansion
        self.expand = conv_bn_swish(in_chans, hidden, 1) if expansion != 1 else nn.Identity()
        self.depthwise = conv_bn_swish(hidden, hidden, 3, stride=stride, groups=hidden)
        squeezed = max(1, int(in_chans * SE_RATIO))
        self.se = SqueezeExcite(hidden, squeezed, mode=se) if se != "none" else nn.Identity()
        self.project = nn.Sequential(
            nn.Conv2d(hidden, out_chans, 1, bias=False), nn.BatchNorm2d(out_chans)
        )
        self.residual = stride == 1 and in_chans == out_chans

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.se(self.depthwise(self.expand(x))))
        if not self.residual:
            return out
        dy, dx = (x.shape[-2] - out.shape[-2]) // 2, (x.shape[-1] - out.shape[-1]) // 2
        return out + x[..., dy : dy + out.shape[-2], dx : dx + out.shape[-1]]


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


@MODELS.register("anchornet")
def anchornet(
    *,
    num_classes: int,
    in_chans: int = 3,
    layout: str = "small",
    se: str = "pointwise",
    width: int = 16,
    expansion: int = 6,
    dropout: float = 0.0,
) -> nn.Module:
    """AnchorNet (see the module docstring); ``layout="reference"`` is the paper's 224 px net.

    Args:
        layout: ``"small"`` (receptive field 31, stride 2) or ``"reference"`` (95, stride 8).
        se: ``"pointwise"``, ``"global"`` or ``"none"`` squeeze-excitation.
        width: stem channels; block channels scale with it (16: 16, 16, 16, 32, 32, 64, 64).
        expansion: hidden-channel factor of blocks 2-7 (block 1 never expands).
        dropout: dropout probability on the pooled features, before ``fc``.
    """
    if layout not in LAYOUTS:
        raise CollabError(f"unknown AnchorNet layout {layout!r}; use one of: {', '.join(LAYOUTS)}")
    if se not in SE_MODES:
        raise CollabError(f"unknown AnchorNet se {se!r}; use one of: {', '.join(SE_MODES)}")
    if width < 1 or expansion < 1:
        raise CollabError(
            f"AnchorNet needs width >= 1 and expansion >= 1, got {width} and {expansion}; "
            "use e.g. width=16, expansion=6"
        )
    features: dict[str, nn.Module] = {"stem": conv_bn_swish(in_chans, width, 3, stride=2)}
    chans = width
    for i, ((out, expand), stride) in enumerate(zip(BLOCKS, LAYOUTS[layout]), start=1):
        out = out * width // STEM_CHANS
        expand = expansion if expand > 1 else 1
        features[f"layer{i}"] = MBConv(chans, out, expansion=expand, stride=stride, se=se)
        chans = out
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
    return net
