"""``--source timm``: weights of networks timm builds (timm is an optional dependency).

A file holds one network under timm's own key names: a hub file (``pytorch_model.bin``,
``model.safetensors``) or a ``train.py`` checkpoint, a dict with ``state_dict``, ``arch``,
``epoch``, ``optimizer``, ``version`` and ``args`` (an ``argparse.Namespace``, the one class
the reader admits besides tensors). Our ``timm/NAME`` models keep timm's names, so the mapping
is the identity under ``peers.<i>.``. ``--arch NAME`` means ``timm/NAME``; a checkpoint that
names its ``arch`` needs no ``--arch``; the EMA weights are ``--set entry=state_dict_ema``.
The network is built with ``pretrained=False``: nothing is downloaded.
"""

from __future__ import annotations

from analysis.runs.importers.base import LibrarySource, SourceFile, arch_entry


class TimmSource(LibrarySource):
    name = library = "timm"
    summary = "timm networks' state dicts and timm train.py checkpoints (one network per file)"
    layout = (
        "huggingface/pytorch-image-models timm/utils/checkpoint_saver.py:99-121 (timm 1.0.31, _save: "
        "epoch, arch, optimizer, version, args, state_dict[, state_dict_ema], saver); hub files "
        "pytorch_model.bin / model.safetensors"
    )

    def file_arch(self, files: list[SourceFile]) -> str | None:
        return arch_entry(files)
