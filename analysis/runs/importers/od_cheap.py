"""``--source od_cheap``: online distillation with cheap convolutions (EthanZhangYC/OD-cheap-
convolution); one file = 4 students + the fusion teacher.

Layout, read from the authors' code (commit a405c9e):

* ``main_teacher.py:104-114`` saves ``{"state_dict", "test_prec", "best_prec", "optimizer",
  "scheduler", "epoch"}`` with ``utils/common.py:68-74`` as ``model_<epoch>_<prec>.pt`` (and
  ``model_best_<prec>.pt``); with several GPUs the model is wrapped in DataParallel
  (``main_teacher.py:51``): ``module.`` prefixes (their resume strips them, line 73).
* ``model/cifar10/shiftresnet.py:216-233``: ``ResNetEnsemble_concat_4`` holds the students
  ``resnet_m1 .. resnet_m4`` and the teacher ``norm`` (BN over the concatenated maps) and
  ``fc``; each student (line 156-) has ``conv1, bn1, layer1..layer3, fc``; a block (lines 9-
  140) is ``dw1 | group1 | shift1`` (the cheap op; the shift has no weights), ``conv1, bn1``,
  ``dw2 | group2 | shift2``, ``conv2, bn2`` and a ``shortcut`` of 1x1 conv + BN.

Ours: students ``peers.<i>`` (``resnet_m<i+1>``) with the cheap ops named ``op1``/``op2``,
teacher ``teacher.bn`` / ``teacher.fc``. The cheap op (depthwise, group with its number of
groups, or shift), the depth and the width are read from the keys, so ``--arch`` may be left
out (the authors' names: ``ShiftResNet56_od``, ``DWResNet56_od``, ``GroupResNet56_od``).
"""

from __future__ import annotations

import re
from typing import Any

from analysis.config import Config
from analysis.errors import CollabError
from analysis.runs.importers.base import Source, SourceFile, other_sources
from analysis.runs.importers.keymap import KeyMap

OD_KEYMAP = KeyMap(
    rules=(
        *((rf"^resnet_m{i + 1}\.", f"peers.{i}.") for i in range(4)),
        (r"\.(dw|group)1\.", ".op1."),
        (r"\.(dw|group)2\.", ".op2."),
        (r"\.shortcut\.\d\.", (".shortcut.0.", ".shortcut.1.", ".shortcut.2.")),
        (r"^norm\.", "teacher.bn."),
        (r"^fc\.", "teacher.fc."),
    )
)
_STUDENT = re.compile(r"^resnet_m(\d)\.conv1\.weight$")
_BLOCK = re.compile(r"^resnet_m1\.layer1\.(\d+)\.conv1\.weight$")
AUTHORS_OPS = {
    "ShiftResNet56_od": "shift",
    "DWResNet56_od": "depthwise",
    "GroupResNet56_od": "group",
}


class ODCheapSource(Source):
    name = "od_cheap"
    summary = "OD-cheap checkpoints: students resnet_m1..resnet_m4 and a teacher norm/fc"
    layout = (
        "EthanZhangYC/OD-cheap-convolution@a405c9e main_teacher.py:51,104-114, "
        "utils/common.py:68-74, model/cifar10/shiftresnet.py:9-140,156,216-233"
    )
    method = "od_cheap"
    whole_model = True
    default_data = "cifar10"  # main_teacher.py:41-42 (CIFAR-10 only)
    normalization = {
        "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010), "data/cifar10.py:16"),
    }

    def model_section(self, arch: str | None, files: list[SourceFile]) -> dict[str, Any]:
        state = files[0].networks[0]
        students = [m.group(1) for k in state if (m := _STUDENT.match(k))]
        if not students:
            raise CollabError(
                f"{files[0].path} has no OD-cheap students (no keys resnet_m<i>.…)"
                + other_sources(set(state), self)
            )
        if arch is not None and arch not in AUTHORS_OPS:
            registered, options = self.resolve_arch(arch)
            return {"arch": registered, "peers": len(students), "options": options}
        blocks = 1 + max(int(m.group(1)) for k in state if (m := _BLOCK.match(k)))
        options: dict[str, Any] = {
            "depth": 6 * blocks + 2,
            "width": int(state["resnet_m1.conv1.weight"].shape[0]),
            "op": "shift",
        }
        if "resnet_m1.layer1.0.dw1.weight" in state:
            options["op"] = "depthwise"
        elif "resnet_m1.layer1.0.group1.weight" in state:
            weight = state["resnet_m1.layer1.0.group1.weight"]
            options.update(op="group", groups=int(weight.shape[0] // weight.shape[1]))
        if arch is not None and AUTHORS_OPS[arch] != options["op"]:
            raise CollabError(
                f"{files[0].path} holds {options['op']} students, not those of {arch}; "
                "leave --arch out to read the architecture from the file"
            )
        return {"arch": "cheap_resnet", "peers": len(students), "options": options}

    def keymap(self, config: Config) -> KeyMap:
        return OD_KEYMAP

    def recognizes(self, keys: set[str]) -> bool:
        return any(_STUDENT.match(k) for k in keys)
