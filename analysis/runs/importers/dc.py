"""``--source dc``: Divide-and-Co-training checkpoints (FreeformRobotics/Divide-and-Co-training).

Layout, read from the authors' code (commit e8ff821):

* ``train_split.py:346-357`` saves ``{"epoch", "arch", "state_dict", "best_acc1",
  "optimizer"[, "scaler"]}`` as ``checkpoint_<epoch>.pth.tar`` (``model_best.pth.tar`` is a
  copy, ``utils/metric.py:9-14``); ``state_dict`` is that of the model wrapped in
  DataParallel / DistributedDataParallel (``train_split.py:167-186``): ``module.`` prefixes,
  as ``test.py:80`` strips them.
* ``model/splitnet.py:202`` keeps the S small networks in ``self.models = nn.ModuleList``:
  keys ``models.<i>.<network key>``; S is the number of networks (``arch`` names the large one).
* ``model/resnet.py`` (the CIFAR ResNets, WRNs and ResNeXts share one class): the stem is
  ``layer0 = Sequential(conv, BN, ReLU)`` (line 236), stages ``layer1..layer3`` of blocks with
  ``conv1, bn1, conv2, bn2[, conv3, bn3]`` and a ``downsample`` of 1x1 conv + BN at stride 1
  or AvgPool + 1x1 conv + BN at stride 2 (lines 332-347), then ``fc`` (line 296).

Our divided networks keep the block names, call the stem ``conv1, bn1`` and the projection
``shortcut``; whether our strided shortcut has the pooling layer in front of its conv or
not, each ``downsample`` tensor goes to the one ``shortcut`` tensor of its shape.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from analysis.config import Config
from analysis.errors import CollabError
from analysis.runs.importers.base import (
    Source,
    SourceFile,
    arch_entry,
    other_sources,
    split_by_index,
)
from analysis.runs.importers.keymap import KeyMap
from analysis.runs.importers.reading import Unwrapped

DC_NETWORKS = r"models\.(\d+)\."

DC_KEYMAP = KeyMap(
    rules=(
        (r"^layer0\.0\.", ("conv1.", "layer0.0.")),
        (r"^layer0\.1\.", ("bn1.", "layer0.1.")),
        (r"\.downsample\.\d\.", (".shortcut.0.", ".shortcut.1.", ".shortcut.2.")),
    )
)


class DivideCotrainSource(Source):
    name = "dc"
    summary = "Divide-and-Co-training checkpoints holding S networks under models.<i>."
    layout = (
        "FreeformRobotics/Divide-and-Co-training@e8ff821 train_split.py:346-357, "
        "model/splitnet.py:202, model/resnet.py:236,296,332-347"
    )
    method = "divide_cotrain"
    normalization = {
        "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010), "dataset/factory.py:52"),
        "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), "dataset/factory.py:107"),
        "svhn": ((0.4309, 0.4302, 0.4463), (0.1965, 0.1983, 0.1994), "dataset/factory.py:220"),
    }
    # The authors' CIFAR names (model/splitnet.py:48-56) -> the large network, registered.
    archs = {
        "resnet110": ("cifar_resnet", {"depth": 110, "block": "bottleneck"}),
        "resnet164": ("cifar_resnet", {"depth": 164, "block": "bottleneck"}),
        "wide_resnet16_8": ("wrn", {"depth": 16, "widen": 8}),
        "wide_resnet16_12": ("wrn", {"depth": 16, "widen": 12}),
        "wide_resnet28_10": ("wrn", {"depth": 28, "widen": 10}),
        "wide_resnet40_10": ("wrn", {"depth": 40, "widen": 10}),
        "wide_resnet52_8": ("wrn", {"depth": 52, "widen": 8}),
        "resnext29_8x64d": ("resnext29", {"cardinality": 8, "base_width": 64}),
        "resnext29_16x64d": ("resnext29", {"cardinality": 16, "base_width": 64}),
    }

    def networks(self, unwrapped: Unwrapped, path: Path) -> list[dict[str, torch.Tensor]]:
        """The S small networks; ``model.arch`` is the large one they divide (peers = S)."""
        if not any(re.match(DC_NETWORKS, k) for k in unwrapped.state):
            raise CollabError(
                f"{path} holds no Divide-and-Co-training networks (no keys models.<i>.…)"
                + other_sources(set(unwrapped.state), self)
            )
        return split_by_index(unwrapped.state, DC_NETWORKS)

    def file_arch(self, files: list[SourceFile]) -> str | None:
        return arch_entry(files)

    def keymap(self, config: Config) -> KeyMap:
        return DC_KEYMAP

    def recognizes(self, keys: set[str]) -> bool:
        return any(k.startswith("models.0.layer0.") for k in keys)
