"""``--source anchornet``: AnchorNet checkpoints (winycg/AnchorNet), one network per file.

Layout, read from the authors' code (commit 21169f7):

* ``train_anchornet.py:238-253`` saves ``{"net", "acc", "epoch", "optimizer"}`` as
  ``<checkpoint-dir>/anchornet.pth.tar`` (and ``anchornet_best.pth.tar``); ``net`` is
  ``net.module.state_dict()``, so no ``module.`` prefix. Line 265 then saves the best ``net``
  alone as ``anchornet.pth``, the released file that ``predict.py:171-172`` loads directly.
* ``models/anchornet.py:100-116``: stem ``conv1, bn1``; ``bneck.0 .. bneck.6`` blocks
  (lines 33-95) with ``conv1, bn1`` (1x1 expansion), ``conv2, bn2`` (depthwise),
  ``se.se1, se.se2`` (squeeze-excitation), ``conv3, bn3`` (projection); ``exp_conv`` (1x1 conv
  with bias) and ``fc`` (always 1000 outputs, line 116).
* Block 0 has expansion 1: it still builds ``conv1, bn1`` but its forward skips them
  (line 83), so those tensors carry nothing and are dropped (recorded in the provenance).

Ours is ``anchornet`` with ``layout="reference"``: ``stem.0/1``, ``layer1..layer7`` with
``expand.0/1``, ``depthwise.0/1``, ``se.reduce``, ``se.expand``, ``project.0/1``,
``features_map`` and ``fc``. Input normalisation: ImageNet's (``train_anchornet.py:81``),
used for ``imagefolder`` data (ImageNet is read as an image folder).
"""

from __future__ import annotations

from typing import Any

from analysis.config import Config
from analysis.runs.importers.base import Source, SourceFile
from analysis.runs.importers.keymap import KeyMap

_IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "train_anchornet.py:81")

ANCHORNET_KEYMAP = KeyMap(
    rules=(
        (r"^conv1\.", "stem.0."),
        (r"^bn1\.", "stem.1."),
        *((rf"^bneck\.{i}\.", f"layer{i + 1}.") for i in range(7)),
        (r"\.conv1\.", ".expand.0."),
        (r"\.bn1\.", ".expand.1."),
        (r"\.conv2\.", ".depthwise.0."),
        (r"\.bn2\.", ".depthwise.1."),
        (r"\.se\.se1\.", ".se.reduce."),
        (r"\.se\.se2\.", ".se.expand."),
        (r"\.conv3\.", ".project.0."),
        (r"\.bn3\.", ".project.1."),
        (r"^exp_conv\.", "features_map."),
    ),
    dropped=(r"^bneck\.0\.(conv1|bn1)\.",),
)


class AnchorNetSource(Source):
    name = "anchornet"
    summary = "AnchorNet checkpoints: conv1/bn1, bneck.<i>, exp_conv, fc (one network per file)"
    layout = (
        "winycg/AnchorNet@21169f7 train_anchornet.py:238-253,265, models/anchornet.py:33-95,100-116"
    )
    normalization = {"imagefolder": _IMAGENET}
    archs = {"anchornet": ("anchornet", {"layout": "reference"})}

    def model_section(self, arch: str | None, files: list[SourceFile]) -> dict[str, Any]:
        return super().model_section(arch or "anchornet", files)

    def keymap(self, config: Config) -> KeyMap:
        return ANCHORNET_KEYMAP

    def recognizes(self, keys: set[str]) -> bool:
        return any(k.startswith("bneck.") for k in keys) and "exp_conv.weight" in keys
