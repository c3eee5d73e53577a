"""What every checkpoint source provides: how to read its files and map their keys to ours.

A :class:`Source` is registered once in ``IMPORTERS`` under its ``--source`` name. Two kinds:

* peer sources (``whole_model = False``): every file holds one or more separate networks
  (:meth:`Source.networks`), and all the networks of all the files become the K peers
  ``peers.<i>.`` of one run; :meth:`Source.keymap` maps the keys of *one* network.
* whole-model sources (``whole_model = True``): one file holds the whole collaborative model
  (a trunk with branches, students with a teacher); the keymap maps the whole file.

Each source also names the method its files come from, the authors' input normalisation per
dataset (with the line of their code it was read from), and the authors' architecture names
(:meth:`Source.model_section` turns them into a registered name and options).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from analysis.config import Config
from analysis.errors import CollabError
from analysis.registry import Registry
from analysis.runs.importers.keymap import KeyMap
from analysis.runs.importers.reading import Unwrapped, read_checkpoint, unwrap

#: ``--source`` name -> :class:`Source` instance (registered in the package ``__init__``).
IMPORTERS = Registry("checkpoint source")
Normalization = tuple[tuple[float, ...], tuple[float, ...], str]  # mean, std, where read


@dataclass
class SourceFile:
    """One file given to ``collab import``, read and unwrapped.

    Attributes:
        path: the checkpoint file (a run folder's ``checkpoints/best.safetensors``).
        unwrapped: its state dict and how it was found.
        networks: the separate networks it holds (the whole state dict for whole-model files).
        run_config: the run's ``config.yaml`` when the path given was one of our run folders.
        normalization: input mean/std stored in the file itself (our runs store them).
    """

    path: Path
    unwrapped: Unwrapped
    networks: list[dict[str, torch.Tensor]] = field(default_factory=list)
    run_config: dict[str, Any] | None = None
    normalization: tuple[tuple[float, ...], tuple[float, ...]] | None = None


class Source:
    """Base class of the checkpoint sources; subclasses set the attributes and override."""

    name: str = ""
    summary: str = ""
    #: Where the layout was read: repository, file and line of the authors' save code.
    layout: str = ""
    method: str = "independent"
    whole_model: bool = False
    #: Dataset used when the user names none (the authors' code trains on one dataset only).
    default_data: str | None = None
    #: dataset name -> (mean, std, where in the authors' code).
    normalization: dict[str, Normalization] = {}
    #: The authors' architecture names -> (registered name, options).
    archs: dict[str, tuple[str, dict[str, Any]]] = {}

    def read(self, path: Path, *, entry: str | None = None) -> SourceFile:
        """Read and unwrap one file (``entry``: the dict entry holding the weights)."""
        unwrapped = unwrap(read_checkpoint(path), path, entry=entry)
        return SourceFile(path, unwrapped, self.networks(unwrapped, path))

    def networks(self, unwrapped: Unwrapped, path: Path) -> list[dict[str, torch.Tensor]]:
        """The separate networks in one file (default: the file's state dict is one network)."""
        return [unwrapped.state]

    def file_arch(self, files: list[SourceFile]) -> str | None:
        """The architecture the files name themselves, if they do (e.g. D&C's ``arch``)."""
        return None

    def model_section(self, arch: str | None, files: list[SourceFile]) -> dict[str, Any]:
        """The ``model`` config section (arch, peers, options) for these files."""
        name = arch or self.file_arch(files)
        if name is None:
            raise CollabError(
                f"--source {self.name} needs --arch (the files do not name their architecture)"
                + (f"; the authors' names are {', '.join(self.archs)}" if self.archs else "")
            )
        registered, options = self.resolve_arch(name)
        peers = len(files) if self.whole_model else sum(len(f.networks) for f in files)
        return {"arch": registered, "peers": peers, "options": options}

    def resolve_arch(self, name: str) -> tuple[str, dict[str, Any]]:
        """The registered name and options of ``name`` (an authors' name or a registered one)."""
        if name in self.archs:
            registered, options = self.archs[name]
            return registered, dict(options)
        return name, {}

    def keymap(self, config: Config) -> KeyMap:
        """The key mapping (of one network, or of the whole model for whole-model sources)."""
        return KeyMap()

    def recognizes(self, keys: set[str]) -> bool:
        """Whether a file with these (unwrapped) keys looks like this source's layout."""
        return False

    def absent_note(self) -> str:
        """Why the ``absent`` target tensors are not in the files (for the provenance)."""
        return ""


def arch_entry(files: list[SourceFile]) -> str | None:
    """The ``arch`` entry the files store beside their weights, when they all agree on one."""
    archs = {f.unwrapped.extras.get("arch") for f in files}
    return archs.pop() if len(archs) == 1 and None not in archs else None


def other_sources(keys: set[str], current: Source) -> str:
    """``"; the keys look like --source X"`` for the first other source recognising ``keys``."""
    names = [s.name for s in IMPORTERS.values() if s is not current and s.recognizes(keys)]
    return f"; the keys look like --source {names[0]}" if names else ""


def split_by_index(state: dict[str, torch.Tensor], pattern: str) -> list[dict[str, torch.Tensor]]:
    """Split ``state`` by the network index in ``pattern`` (a regex with one group, the index,
    matched at the start of the key); the rest of each key stays. Keys outside raise."""
    nets: dict[int, dict[str, torch.Tensor]] = {}
    rx = re.compile(pattern)
    for key, tensor in state.items():
        match = rx.match(key)
        if match is None:
            raise CollabError(f"key {key!r} belongs to no network (expected {pattern!r})")
        nets.setdefault(int(match.group(1)), {})[key[match.end() :]] = tensor
    if sorted(nets) != list(range(len(nets))):
        raise CollabError(f"the networks are numbered {sorted(nets)}, not 0..{len(nets) - 1}")
    return [nets[i] for i in range(len(nets))]


class LibrarySource(Source):
    """Weights of a ``library/NAME`` network (torchvision, timm): keys unchanged.

    ``--arch NAME`` means ``library/NAME``; ``library/NAME`` is accepted as it is.
    """

    library = ""

    def resolve_arch(self, name: str) -> tuple[str, dict[str, Any]]:
        if name.startswith(f"{self.library}/"):
            return name, {}
        return f"{self.library}/{name}", {}
