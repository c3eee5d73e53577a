"""The common shape of every registered classifier: named feature stages, then a linear head.

Every network in the registry is a :class:`StagedNet`. Its feature modules are registered as
attributes in the order ``forward`` runs them (e.g. ``conv1, bn1, relu, layer1, layer2, layer3,
avgpool, flatten``), followed by ``dropout`` and the classifier ``fc``. Keeping ``forward`` a
plain composition of named attributes is what lets later code

* address stages by module path (``probe_layers``) for hooks and CKA, and
* cut a network into a shared trunk (``feature_names`` up to ``layer1``) and per-peer branches
  (the remaining feature modules, ``dropout`` and ``fc``) without rewriting its forward.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from analysis.errors import CollabError


class StagedNet(nn.Module):
    """A classifier whose forward is ``fc(dropout(features(x)))`` over named stages.

    Args:
        features: ordered mapping name -> module; applied in order they turn images
            (B, in_chans, H, W) into pooled features (B, feature_dim). The last entries are
            normally ``avgpool`` (global pooling) and ``flatten``.
        fc: the classifier, ``nn.Linear(feature_dim, num_classes)``.
        probe_layers: module paths of the main stages, e.g. ``["conv1", "layer1", ...]``.
        dropout: dropout probability applied to the pooled features before ``fc``.

    Attributes:
        feature_names: the names of ``features`` in forward order.
        feature_dim: size of the pooled feature vector (``fc.in_features``).
        probe_layers: module paths (relative to this network) of its main stages.
    """

    def __init__(
        self,
        features: Mapping[str, nn.Module],
        fc: nn.Linear,
        *,
        probe_layers: Sequence[str],
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        reserved = {"dropout", "fc"} & set(features)
        if reserved:
            raise ValueError(f"feature stage names {sorted(reserved)} are reserved for the head")
        for name, module in features.items():
            self.add_module(name, module)
        self.feature_names: tuple[str, ...] = tuple(features)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = fc
        self.feature_dim: int = fc.in_features
        self.probe_layers: list[str] = list(probe_layers)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features: (B, in_chans, H, W) -> (B, feature_dim)."""
        for name in self.feature_names:
            x = self._modules[name](x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits: (B, in_chans, H, W) -> (B, num_classes)."""
        return self.fc(self.dropout(self.forward_features(x)))


# The main stages of the three-stage CIFAR networks (ResNet, cheap ResNet, WRN, ResNeXt).
CIFAR_PROBE_LAYERS = ("conv1", "layer1", "layer2", "layer3")
# (width multiplier, stride) of the three stages of a CIFAR ResNet (He et al. 2016, 4.2).
CIFAR_STAGE_PLAN = ((1, 1), (2, 2), (4, 2))


def stage_widths(widths: Sequence[int] | None, default: Sequence[int]) -> list[int]:
    """The planes of the three stages: ``widths`` ([w1, w2, w3], each a positive integer) when
    given, else ``default``; a one-line CollabError names a malformed ``widths``."""
    if widths is None:
        return list(default)
    ok = isinstance(widths, (list, tuple)) and len(widths) == len(default)
    if not ok or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
        raise CollabError(
            f"model option 'widths' must list {len(default)} positive integers, one per stage, "
            f"got {widths!r}; e.g. widths=[16, 32, 64]"
        )
    return list(widths)


def cifar_stem(in_chans: int, width: int) -> dict[str, nn.Module]:
    """The stages ``conv1`` (3x3, no bias), ``bn1``, ``relu``: (B, in, H, W) -> (B, width, H, W)."""
    return {
        "conv1": nn.Conv2d(in_chans, width, 3, padding=1, bias=False),
        "bn1": nn.BatchNorm2d(width),
        "relu": nn.ReLU(),
    }


def pooled_classifier(
    features: Mapping[str, nn.Module],
    *,
    chans: int,
    num_classes: int,
    probe_layers: Sequence[str],
    dropout: float = 0.0,
) -> StagedNet:
    """``features`` (ending in ``chans`` channels), global pooling and a linear ``fc``, with
    :func:`init_weights` applied: a :class:`StagedNet` (B, in_chans, H, W) -> (B, num_classes)."""
    net = StagedNet(
        {**features, **global_pool()},
        nn.Linear(chans, num_classes),
        probe_layers=probe_layers,
        dropout=dropout,
    )
    init_weights(net)
    return net


def global_pool() -> dict[str, nn.Module]:
    """The ``avgpool`` + ``flatten`` tail shared by all families: (B, C, H, W) -> (B, C)."""
    return {"avgpool": nn.AdaptiveAvgPool2d(1), "flatten": nn.Flatten(1)}


def conv_bn_relu(in_chans: int, out_chans: int, *, stride: int = 1) -> nn.Sequential:
    """3x3 conv (no bias, padding 1) -> BN -> ReLU: (B, in, H, W) -> (B, out, H/s, W/s)."""
    return nn.Sequential(
        nn.Conv2d(in_chans, out_chans, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_chans),
        nn.ReLU(),
    )


def init_weights(module: nn.Module) -> None:
    """He-normal convolutions (fan-out, as in He et al. 2015), unit BN, zero biases.

    Linear layers keep PyTorch's default initialisation.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)) and m.weight is not None:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def dc_init(net: StagedNet) -> StagedNet:
    """The Divide-and-Co-training authors' initialisation, applied after :func:`init_weights`.

    As their ``model/resnet.py`` (``ResNet.__init__``, the init loop and ``zero_init_residual``):
    the classifier ``fc`` gets weights ~ N(0, 0.001²) and a zero bias, and the last BN of every
    residual block (a module with a ``last_bn`` attribute) gets weight 0, so that each block
    starts as its shortcut. Convolutions and the other BNs keep :func:`init_weights`.
    """
    nn.init.normal_(net.fc.weight, std=1e-3)
    nn.init.zeros_(net.fc.bias)
    for module in net.modules():
        last_bn = getattr(module, "last_bn", None)
        if isinstance(last_bn, nn.BatchNorm2d):
            nn.init.zeros_(last_bn.weight)
    return net
