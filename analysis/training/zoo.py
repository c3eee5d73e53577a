"""The embedded default runs shipped in ``runs/``, rebuilt deterministically by ``collab zoo``."""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from analysis.config import load_config
from analysis.errors import CollabError
from analysis.training.trainer import Trainer

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class ZooEntry:
    name: str
    preset: str
    overrides: tuple[str, ...] = ()
    about: str = ""


ZOO = (
    ZooEntry("dml-digits", "configs/dml_digits.yaml", about="DML, 3 ResNet-8 peers on digits"),
    ZooEntry(
        "independent-digits",
        "configs/independent_digits.yaml",
        about="the same 3 peers trained independently (the control for dml-digits)",
    ),
    ZooEntry(
        "divide-cotrain-digits",
        "configs/divide_cotrain_digits.yaml",
        about="a ResNet-8 of width 16 divided into 2 of width 12, co-trained on 2 views",
    ),
    ZooEntry(
        "dcl-multidigit", "configs/dcl_multidigit.yaml", about="a DCL ResNet-8 on two-digit numbers"
    ),
    ZooEntry(
        "anchornet-shapes",
        "configs/anchornet_shapes.yaml",
        about="AnchorNet (padding-free) on shapes",
    ),
)


def build_zoo(
    root: str | Path, *, only: list[str] | None = None, progress: bool = True
) -> list[Path]:
    """Train every zoo entry (or those in ``only``) into ``root/NAME``.

    Each run is trained into a temporary sibling folder and swapped in only when complete, so
    a failure or a kill never loses the run already shipped.
    """
    root = Path(root)
    names = {e.name for e in ZOO}
    for name in only or []:
        if name not in names:
            raise CollabError(f"unknown zoo run {name!r}; choose from: {', '.join(sorted(names))}")
    built = []
    for entry in ZOO:
        if only and entry.name not in only:
            continue
        # One thread: float reductions then do not depend on the machine's core count.
        config = load_config(REPO / entry.preset, (*entry.overrides, "train.threads=1"))
        final, tmp = root / entry.name, root / f".{entry.name}.building"
        shutil.rmtree(tmp, ignore_errors=True)
        log.info("building %s from %s", entry.name, entry.preset)
        Trainer(config, tmp, progress=progress).fit()
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        built.append(final)
    return built
