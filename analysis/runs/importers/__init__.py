"""Importers of foreign checkpoints: ``collab import`` / :func:`import_checkpoints`.

One file per ``--source``; each is registered here in ``IMPORTERS`` (name -> :class:`Source`).
The mapping of every author source is a small declarative :class:`KeyMap` table in its file,
read from the authors' save code (the file's docstring names repository, commit and lines).
"""

from analysis.runs.importers.anchornet import AnchorNetSource
from analysis.runs.importers.base import IMPORTERS, LibrarySource, Source, SourceFile
from analysis.runs.importers.core import import_checkpoints
from analysis.runs.importers.dc import DivideCotrainSource
from analysis.runs.importers.hcgnet import HCGNetSource
from analysis.runs.importers.keymap import KeyMap, Mapped, apply_keymap
from analysis.runs.importers.mcl_okd import MCLOKDSource
from analysis.runs.importers.od_cheap import ODCheapSource
from analysis.runs.importers.reading import read_checkpoint, unwrap
from analysis.runs.importers.state_dict import StateDictSource
from analysis.runs.importers.timm_source import TimmSource
from analysis.runs.importers.torchvision_source import TorchvisionSource

for _source in (
    StateDictSource(),
    TorchvisionSource(),
    TimmSource(),
    DivideCotrainSource(),
    MCLOKDSource(),
    ODCheapSource(),
    AnchorNetSource(),
    HCGNetSource(),
):
    IMPORTERS.add(_source.name, _source)

__all__ = [
    "IMPORTERS",
    "KeyMap",
    "LibrarySource",
    "Mapped",
    "Source",
    "SourceFile",
    "apply_keymap",
    "import_checkpoints",
    "read_checkpoint",
    "unwrap",
]
