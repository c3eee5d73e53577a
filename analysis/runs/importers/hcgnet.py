"""``--source hcgnet``: HCGNet checkpoints (winycg/HCGNet), one network per file.

Layout, read from the authors' code (commit 229ad0b):

* CIFAR, ``main_cifar.py:236-253``: ``{"net", "acc", "epoch", "optimizer"}`` saved as
  ``checkpoint/HCGNet_A1.pth.tar`` (and ``HCGNet_A1_best.pth.tar``); ``net`` is the state dict
  of the ``DataParallel`` model (line 109): every key starts with ``module.``.
* ImageNet, ``main_imagenet.py:396-408``: ``{"net", "epoch", "optimizer", "best_acc"}`` as
  ``checkpoint/HCGNet_B.pth.tar`` / ``HCGNet_B_best.pth.tar`` (the released files);
  ``DistributedDataParallel`` (line 93): ``module.`` again.
* ``models/HCGNet_CIFAR.py:191-215``: ``features.conv0``, ``features.HybridBlock<i>.SMG<j>``,
  ``features.Transition<i>``, ``features.norm5``, ``classifier``.
  ``models/HCGNet_ImageNet.py:177-214``: ``features.conv0/norm0/conv1/norm1/conv2/norm2``
  (the stem), ``features.hybridblock<i>.SMG<j>``, ``features.transition<i>``, ``norm5``,
  ``classifier``. Inside an SMG (lines 23-53 of both) and a transition (CIFAR 111-143,
  ImageNet 103-135): ``conv1_1x1``, ``conv2_3x3`` (BasicConv: ``norm``, ``conv``), the update
  gate ``conv_3x3``, ``conv_5x5``, ``global_context3x3/5x5``, ``fcall``, ``bn_attention``,
  ``fc3x3``, ``fc5x5`` and the forget gate ``global_forget_context``, ``fc1``, ``bn_forget``,
  ``fc2``. Their DropBlock and ``fc_drop`` hold no tensors.

Ours are the registered ``hcgnet_a1..a3``, ``hcgnet_b``, ``hcgnet_c`` (see
:mod:`analysis.models.hcgnet`); the files do not name their network, so it is read from the
tensors (stem, growth rates, SMG modules per block) unless ``--arch`` names it. Input
normalisation: the authors' per dataset (``main_cifar.py:67,83``, ``main_imagenet.py:163``).
"""

from __future__ import annotations

import re
from typing import Any

import torch

from analysis.config import Config
from analysis.errors import CollabError
from analysis.models.hcgnet import LAYOUTS
from analysis.runs.importers.base import Source, SourceFile, other_sources
from analysis.runs.importers.keymap import KeyMap

_SMG = re.compile(
    r"^features\.(?:HybridBlock|hybridblock)(\d+)\.SMG(\d+)\.conv2_3x3\.conv\.weight$"
)

HCGNET_KEYMAP = KeyMap(
    rules=(
        # The CIFAR stem is one conv; the ImageNet stem three conv -> BN (-> ReLU).
        (r"^features\.conv0\.", ("conv1.", "stem.conv1.")),
        (r"^features\.norm0\.", "stem.bn1."),
        (r"^features\.conv1\.", "stem.conv2."),
        (r"^features\.norm1\.", "stem.bn2."),
        (r"^features\.conv2\.", "stem.conv3."),
        (r"^features\.norm2\.", "stem.bn3."),
        (r"^features\.(?:HybridBlock|hybridblock)(\d+)\.SMG(\d+)\.", r"layer\1.smg\2."),
        (r"^features\.(?:Transition|transition)(\d+)\.", r"transition\1."),
        (r"^features\.norm5\.", "bn."),
        (r"^classifier\.", "fc."),
        (r"\.conv1_1x1\.", ".reduce."),
        (r"\.conv2_3x3\.", ".conv."),
        (r"\.conv_3x3\.", ".update.dw3."),
        (r"\.conv_5x5\.", ".update.dw5."),
        (r"\.global_context3x3\.", ".update.context3."),
        (r"\.global_context5x5\.", ".update.context5."),
        (r"\.fcall\.", ".update.squeeze."),
        (r"\.bn_attention\.", ".update.bn."),
        (r"\.fc3x3\.", ".update.excite3."),
        (r"\.fc5x5\.", ".update.excite5."),
        (r"\.global_forget_context\.", ".forget.context."),
        (r"\.fc1\.", ".forget.squeeze."),
        (r"\.bn_forget\.", ".forget.bn."),
        (r"\.fc2\.", ".forget.excite."),
        (r"\.norm\.", ".bn."),  # inside a BasicConv (BN -> ReLU -> conv)
    )
)


def hcgnet_from_keys(state: dict[str, torch.Tensor]) -> str | None:
    """The registered HCGNet whose stem, growth rates and SMG counts these tensors have."""
    blocks: dict[int, int] = {}
    growth: dict[int, int] = {}
    for key, tensor in state.items():
        match = _SMG.match(key)
        if match:
            block = int(match.group(1))
            blocks[block] = max(blocks.get(block, 0), int(match.group(2)))
            growth[block] = tensor.shape[0]
    found = (
        tuple(growth[b] for b in sorted(growth)),
        tuple(blocks[b] for b in sorted(blocks)),
        "features.norm0.weight" in state,
    )
    return next((name for name, layout in LAYOUTS.items() if layout == found), None)


class HCGNetSource(Source):
    name = "hcgnet"
    summary = "HCGNet checkpoints: features.conv0, HybridBlock<i>.SMG<j>, Transition<i>, classifier"
    layout = (
        "winycg/HCGNet@229ad0b main_cifar.py:109,236-253, main_imagenet.py:93,396-408, "
        "models/HCGNet_CIFAR.py:10-215, models/HCGNet_ImageNet.py:7-214"
    )
    normalization = {
        "cifar10": (
            (0.49139968, 0.48215827, 0.44653124),
            (0.24703233, 0.24348505, 0.26158768),
            "main_cifar.py:67-68",
        ),
        "cifar100": ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761), "main_cifar.py:83-84"),
        "imagefolder": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "main_imagenet.py:163-164"),
    }
    archs = {f"HCGNet_{name[7:].upper()}": (name, {}) for name in LAYOUTS}

    def model_section(self, arch: str | None, files: list[SourceFile]) -> dict[str, Any]:
        if arch is None:
            found = {hcgnet_from_keys(net) for f in files for net in f.networks}
            if len(found) != 1 or None in found:
                keys = set(files[0].networks[0])
                raise CollabError(
                    f"--source hcgnet cannot tell which HCGNet {files[0].path} holds; pass "
                    f"--arch ({', '.join(self.archs)} or a registered name)"
                    + other_sources(keys, self)
                )
            arch = found.pop()
        return super().model_section(arch, files)

    def keymap(self, config: Config) -> KeyMap:
        return HCGNET_KEYMAP

    def recognizes(self, keys: set[str]) -> bool:
        return any(_SMG.match(k) for k in keys)
