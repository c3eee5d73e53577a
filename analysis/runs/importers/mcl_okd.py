"""``--source mcl_okd``: MCL-OKD checkpoints (winycg/MCL-OKD), one file = trunk + K branches.

Layout, read from the authors' code (commit 5de042a):

* ``main_cifar_mcl_okd.py:290-307`` saves ``{"net", "acc", "epoch", "optimizer"}`` as
  ``checkpoint/<arch>.pth.tar`` (and a ``_best`` copy); ``net`` is the state dict of the model
  wrapped in DataParallel (line 88): ``module.`` prefixes.
* ``models/mcl_okd_resnet.py:132-144``: the shared ``conv1, bn1, layer1``, then per branch i
  ``layer2_<i>``, ``layer3_<i>`` and ``classifier_<i>`` (set with ``setattr``); blocks
  ``conv1, bn1, conv2, bn2[, conv3, bn3]`` with a ``downsample`` of 1x1 conv + BN (line 170).
* The embedding heads are not in the file: they live in the loss module
  (``mcl/criterion.py:11-14``, ``MCL_Loss.embed_list``), outside ``net``. Ours (``embed.<i>``,
  used only by the training loss, never by the logits) keep their initialisation.

The architecture is read from the keys (blocks per stage, basic or bottleneck) and the number
of branches from the classifiers, so ``--arch`` may be left out (the authors' names are
``mcl_okd_resnet32`` and ``mcl_okd_resnet110``).
"""

from __future__ import annotations

import re
from typing import Any

from analysis.config import Config
from analysis.errors import CollabError
from analysis.runs.importers.base import Source, SourceFile, other_sources
from analysis.runs.importers.keymap import KeyMap

MCL_KEYMAP = KeyMap(
    rules=(
        (r"^(conv1|bn1|layer1)\.", r"trunk.\1."),
        (r"^layer([23])_(\d+)\.", r"branches.\2.layer\1."),
        (r"^classifier_(\d+)\.", r"branches.\1.fc."),
        (r"\.downsample\.\d\.", (".shortcut.0.", ".shortcut.1.", ".shortcut.2.")),
    ),
    absent=(r"^embed\.\d+\.",),
)
_BRANCH = re.compile(r"^classifier_(\d+)\.weight$")
_BLOCK = re.compile(r"^layer1\.(\d+)\.conv1\.weight$")


def resnet_from_keys(keys: set[str]) -> tuple[int, str] | None:
    """(depth, block) of a CIFAR ResNet from its ``layer1`` keys, or None."""
    blocks = [int(m.group(1)) for k in keys if (m := _BLOCK.match(k))]
    if not blocks:
        return None
    bottleneck = any(k.startswith("layer1.0.conv3.") for k in keys)
    n = max(blocks) + 1
    return (9 * n + 2, "bottleneck") if bottleneck else (6 * n + 2, "basic")


class MCLOKDSource(Source):
    name = "mcl_okd"
    summary = "MCL-OKD checkpoints: a shared conv1/bn1/layer1 and branches layer2_<i>, layer3_<i>"
    layout = (
        "winycg/MCL-OKD@5de042a main_cifar_mcl_okd.py:88,290-307, "
        "models/mcl_okd_resnet.py:132-144,170, mcl/criterion.py:11-14"
    )
    method = "mcl_okd"
    whole_model = True
    default_data = "cifar100"  # main_cifar_mcl_okd.py:71 (CIFAR-100 only)
    normalization = {
        "cifar100": ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761), "dataset/cifar100.py:42"),
    }
    archs = {
        "mcl_okd_resnet32": ("cifar_resnet", {"depth": 32, "block": "basic"}),
        "mcl_okd_resnet110": ("cifar_resnet", {"depth": 110, "block": "bottleneck"}),
    }

    def model_section(self, arch: str | None, files: list[SourceFile]) -> dict[str, Any]:
        keys = set(files[0].networks[0])
        branches = sorted(int(m.group(1)) for k in keys if (m := _BRANCH.match(k)))
        if not branches:
            raise CollabError(
                f"{files[0].path} has no MCL-OKD branches (no classifier_<i> keys)"
                + other_sources(keys, self)
            )
        if arch is not None:
            registered, options = self.resolve_arch(arch)
        elif resnet_from_keys(keys):
            depth, block = resnet_from_keys(keys)
            registered, options = "cifar_resnet", {"depth": depth, "block": block}
        else:
            raise CollabError(
                f"--source mcl_okd cannot tell the architecture of {files[0].path}; pass --arch "
                f"({', '.join(self.archs)} or a registered name)"
            )
        return {"arch": registered, "peers": len(branches), "options": options}

    def keymap(self, config: Config) -> KeyMap:
        return MCL_KEYMAP

    def recognizes(self, keys: set[str]) -> bool:
        return any(_BRANCH.match(k) for k in keys) and any(k.startswith("layer2_") for k in keys)

    def absent_note(self) -> str:
        return (
            "the authors keep the embedding heads in their loss module (mcl/criterion.py:11-14), "
            "not in the saved net; they are used only by the training loss"
        )
