"""torchvision's ResNet-18, re-housed as a :class:`StagedNet` with the same module names.

The torchvision model's children are registered under their own names (``conv1, bn1, relu,
maxpool, layer1..layer4, avgpool, fc``), so state-dict keys and probe paths match
torchvision's. For small images (``cifar_stem=True``, the default) the 7x7 stride-2 stem and
the max-pool are replaced by a 3x3 stride-1 conv and an identity, the usual CIFAR adaptation.
ReLUs are switched to out-of-place so that activations captured by hooks stay intact
(torchvision still calls each block's ``relu`` module twice).
"""

from __future__ import annotations

from torch import nn

from analysis.models.base import StagedNet
from analysis.models.factory import MODELS


def _stem_conv(in_chans: int, *, cifar_stem: bool) -> nn.Conv2d:
    if cifar_stem:
        conv = nn.Conv2d(in_chans, 64, 3, stride=1, padding=1, bias=False)
    else:
        conv = nn.Conv2d(in_chans, 64, 7, stride=2, padding=3, bias=False)
    # Same initialisation torchvision gives its own stem.
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return conv


def resnet18_net(*, num_classes: int, in_chans: int = 3, cifar_stem: bool = True) -> StagedNet:
    """Build ResNet-18: (B, in_chans, H, W) -> (B, num_classes); feature_dim 512."""
    # Deferred: importing torchvision costs about a second that most users never need.
    from torchvision.models import resnet18 as tv_resnet18

    tv = tv_resnet18(weights=None, num_classes=num_classes)
    if cifar_stem or in_chans != 3:
        tv.conv1 = _stem_conv(in_chans, cifar_stem=cifar_stem)
    if cifar_stem:
        tv.maxpool = nn.Identity()
    names = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool"]
    features: dict[str, nn.Module] = {name: getattr(tv, name) for name in names}
    features["flatten"] = nn.Flatten(1)
    for module in tv.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False  # an in-place ReLU would rewrite tensors a hook has captured
    return StagedNet(
        features, tv.fc, probe_layers=["conv1", "layer1", "layer2", "layer3", "layer4"]
    )


@MODELS.register("resnet18")
def resnet18(*, num_classes: int, in_chans: int = 3, cifar_stem: bool = True) -> nn.Module:
    """torchvision ResNet-18; ``cifar_stem`` swaps in a 3x3 stride-1 stem and drops the max-pool."""
    return resnet18_net(num_classes=num_classes, in_chans=in_chans, cifar_stem=cifar_stem)
