"""``--source hcgnet``: HCGNet checkpoints (winycg/HCGNet) — not available yet.

Importing them needs the HCGNet architecture (gated convolutions with hybrid connectivity,
METHODS.md), which CollabLens does not build yet; the source is registered so that the name
is known and answers with one line saying so.
"""

from __future__ import annotations

from pathlib import Path

from analysis.errors import CollabError
from analysis.runs.importers.base import Source, SourceFile


class HCGNetSource(Source):
    name = "hcgnet"
    summary = "HCGNet checkpoints (winycg/HCGNet): not available yet"
    layout = "winycg/HCGNet (not mapped yet: the HCGNet architecture is not built yet)"

    def read(self, path: Path, *, entry: str | None = None) -> SourceFile:
        raise CollabError(
            "--source hcgnet is not available yet: CollabLens does not build the HCGNet "
            "architecture yet, so its checkpoints have nothing to load into"
        )
