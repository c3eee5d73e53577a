"""Advice for a mapping that failed: another source, the dataset, a fitting architecture."""

from __future__ import annotations

import torch

from analysis.data import DataBundle
from analysis.models import MODELS, create_model
from analysis.runs.importers.base import LibrarySource, Source, other_sources
from analysis.runs.importers.keymap import KeyMap


def advice(src: Source, keymap: KeyMap, state: dict[str, torch.Tensor], data: DataBundle) -> str:
    """Advice for a mapping that failed: another source, a fitting architecture, the classes."""
    keys = set(state)
    tips = [other_sources(keys, src)[2:]] if other_sources(keys, src) else []
    for key, tensor in state.items():
        if key.rsplit(".", 2)[-2:] in (["fc", "weight"], ["classifier", "weight"]):
            if tensor.dim() == 2 and tensor.shape[0] != data.num_classes:
                tips.append(
                    f"its classifier has {tensor.shape[0]} outputs but {data.name} has "
                    f"{data.num_classes} classes: set data.name"
                )
                break
    if not src.whole_model:
        fits = fitting_archs({keymap.candidates(k)[0]: t.shape for k, t in state.items()}, data)
        if fits:
            switch = "--source state_dict " if isinstance(src, LibrarySource) else ""
            tips.append(f"the tensors fit {switch}--arch {' or --arch '.join(fits)}")
    return "; ".join(tips) or f"check --arch (--source {src.name} reads {src.summary})"


def fitting_archs(shapes: dict[str, torch.Size], data: DataBundle, limit: int = 3) -> list[str]:
    """Registered models (default options) with exactly these tensors: same names and shapes,
    or, when none has, the same names (the classifier may be another dataset's)."""

    def wanted(items) -> dict[str, tuple]:
        return {k: tuple(v) for k, v in items if not k.endswith("num_batches_tracked")}

    goal = wanted(shapes.items())
    exact, named = [], []
    for name in MODELS.list():
        try:
            with torch.device("meta"):
                net = create_model(name, num_classes=data.num_classes, in_chans=data.in_chans)
        except Exception:  # a builder that cannot run on the meta device: skip it
            continue
        have = wanted((k, v.shape) for k, v in net.state_dict().items())
        if have == goal:
            exact.append(name)
        elif have.keys() == goal.keys():
            named.append(name)
    return (exact or named)[:limit]
