"""Tiny registered members for tests, notebooks and quick demos (a few thousand parameters).

``test_cnn`` is the smallest network with the full :class:`StagedNet` contract (two conv
stages ``layer1``, ``layer2``, global pool, ``fc``); ``test_resnet`` is a CIFAR ResNet-8 of
width 4 (one basic block per stage), for code that needs residual stages and shortcuts;
``test_hcgnet`` is a CIFAR HCGNet of growth rate 4 with two SMG modules per hybrid block, for
code that needs gated, densely connected stages and separate ``transition`` stages.
"""

from __future__ import annotations

from torch import nn

from analysis.models.base import conv_bn_relu, pooled_classifier
from analysis.models.cifar_resnet import cifar_resnet_net
from analysis.models.factory import MODELS, register_variant
from analysis.models.hcgnet import hcgnet_net


@MODELS.register("test_cnn")
def test_cnn(*, num_classes: int, in_chans: int = 3, width: int = 16) -> nn.Module:
    """Two conv stages (width, 2*width channels): 5,466 parameters for 10 classes, RGB.

    (B, in_chans, H, W) -> (B, num_classes); ``layer1`` halves the resolution.
    """
    features: dict[str, nn.Module] = {
        "layer1": nn.Sequential(conv_bn_relu(in_chans, width), nn.MaxPool2d(2)),
        "layer2": conv_bn_relu(width, 2 * width, stride=2),
    }
    return pooled_classifier(
        features, chans=2 * width, num_classes=num_classes, probe_layers=["layer1", "layer2"]
    )


@MODELS.register("test_resnet")
def test_resnet(*, num_classes: int, in_chans: int = 3, width: int = 4) -> nn.Module:
    """CIFAR ResNet-8 with ``width`` 4: stages of 4, 8, 16 channels, one block each."""
    return cifar_resnet_net(depth=8, num_classes=num_classes, in_chans=in_chans, width=width)


register_variant(
    "test_hcgnet",
    hcgnet_net,
    doc="CIFAR HCGNet, growth 4, two SMG modules per block: 6,866 parameters for 10 classes.",
    fixed={"growth": (4, 4, 4), "blocks": (2, 2, 2), "imagenet_stem": False},
)
