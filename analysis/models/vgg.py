"""Small CIFAR VGG networks (Simonyan & Zisserman 2015) with BatchNorm and one linear head.

The 3x3 convs are grouped into stages ``layer1..layerN`` (one stage per resolution, each but
the last ending in a 2x2 max-pool), followed by global average pooling and ``fc`` instead of
the ImageNet model's three fully connected layers. Names keep the original VGG depth count
(convs + 3 FC layers): ``vgg11`` is configuration A's eight convs, ``vgg8`` has five.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from analysis.models.base import StagedNet, conv_bn_relu, pooled_classifier
from analysis.models.factory import MODELS

# Output channels of each conv, one inner list per stage (= per resolution).
CONFIGS: dict[str, list[list[int]]] = {
    "vgg8": [[64], [128], [256], [512, 512]],
    "vgg11": [[64], [128], [256, 256], [512, 512], [512, 512]],
}


def vgg_net(
    stages: Sequence[Sequence[int]], *, num_classes: int, in_chans: int = 3, dropout: float = 0.0
) -> StagedNet:
    """Build a VGG: (B, in_chans, H, W) -> (B, num_classes); H, W >= 2 ** (len(stages) - 1).

    Args:
        stages: output channels of every conv, grouped by stage.
        dropout: dropout probability on the pooled features, before ``fc``.
    """
    features: dict[str, nn.Module] = {}
    chans = in_chans
    for i, widths in enumerate(stages, start=1):
        layers: list[nn.Module] = []
        for width in widths:
            layers.append(conv_bn_relu(chans, width))
            chans = width
        if i < len(stages):
            layers.append(nn.MaxPool2d(2))
        features[f"layer{i}"] = nn.Sequential(*layers)
    return pooled_classifier(
        features,
        chans=chans,
        num_classes=num_classes,
        probe_layers=[f"layer{i}" for i in range(1, len(stages) + 1)],
        dropout=dropout,
    )


@MODELS.register("vgg8")
def vgg8(*, num_classes: int, in_chans: int = 3, dropout: float = 0.0) -> nn.Module:
    """VGG-8: stages [64], [128], [256], [512, 512]; about 3.9M parameters."""
    return vgg_net(CONFIGS["vgg8"], num_classes=num_classes, in_chans=in_chans, dropout=dropout)


@MODELS.register("vgg11")
def vgg11(*, num_classes: int, in_chans: int = 3, dropout: float = 0.0) -> nn.Module:
    """VGG-11 (configuration A) for CIFAR: eight convs in five stages; about 9.2M parameters."""
    return vgg_net(CONFIGS["vgg11"], num_classes=num_classes, in_chans=in_chans, dropout=dropout)
