"""``--source state_dict``: plain state dicts of our registered networks (or any ``--arch``).

Reads ``torch.save(net.state_dict())`` files (``.pt``/``.pth``), the usual wrappers (a dict
with ``state_dict``, ``net`` or ``model``; a ``module.`` prefix from DataParallel) and
``.safetensors``. Keys are taken as they are: the file must hold exactly the tensors of
``--arch``.

Our own runs are read too: a run folder (its ``checkpoints/best.safetensors``) or any of its
checkpoint files (``model.`` keys; a resume file's optimizer state is left out). Each of its
peers ``peers.<i>.`` becomes a peer of the new run, and its ``normalize`` buffers give the
input normalisation, so separately trained single-network runs combine into one run with the
same per-peer accuracies. ``--arch``, the model options and the dataset default to the run's
own ``config.yaml``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from analysis.errors import CollabError
from analysis.runs.importers.base import Source, SourceFile, split_by_index
from analysis.runs.importers.reading import read_checkpoint, unwrap
from analysis.runs.layout import CONFIG, checkpoint_path, is_run

OUR_WEIGHTS = "model."
OUR_PEERS = re.compile(r"^peers\.\d+\.")
NORMALIZE = ("normalize.mean", "normalize.std")


class StateDictSource(Source):
    name = "state_dict"
    summary = "plain state dicts (.pt/.pth/.safetensors, wrapped or not) and our own run folders"
    layout = "torch.save(model.state_dict()) / safetensors; CollabLens run folders (README)"

    def read(self, path: Path, *, entry: str | None = None) -> SourceFile:
        run_config = None
        if path.is_dir():
            if not is_run(path):
                raise CollabError(
                    f"{path} is a folder but not a run folder; give a checkpoint file"
                )
            run_config = yaml.safe_load((path / CONFIG).read_text())
            path = checkpoint_path(path, "best")
        elif path.parent.name == "checkpoints" and is_run(path.parent.parent):
            run_config = yaml.safe_load((path.parent.parent / CONFIG).read_text())
        payload = read_checkpoint(path)
        if isinstance(payload, dict) and any(str(k).startswith(OUR_WEIGHTS) for k in payload):
            payload = {
                k[len(OUR_WEIGHTS) :]: v for k, v in payload.items() if k.startswith(OUR_WEIGHTS)
            }
        unwrapped = unwrap(payload, path, entry=entry)
        state = unwrapped.state
        normalization = None
        if all(k in state for k in NORMALIZE):
            mean, std = (tuple(state.pop(k).flatten().tolist()) for k in NORMALIZE)
            normalization = (mean, std)
        if state and all(OUR_PEERS.match(k) for k in state):
            nets = split_by_index(state, r"peers\.(\d+)\.")
        else:
            nets = [state]
        return SourceFile(path, unwrapped, nets, run_config, normalization)

    def model_section(self, arch: str | None, files: list[SourceFile]) -> dict[str, Any]:
        config_model = (files[0].run_config or {}).get("model") or {}
        if arch is None and isinstance(config_model.get("arch"), str):
            section = super().model_section(config_model["arch"], files)
            return {**section, "options": dict(config_model.get("options") or {})}
        return super().model_section(arch, files)

    def recognizes(self, keys: set[str]) -> bool:
        return any(k.startswith(OUR_WEIGHTS) or OUR_PEERS.match(k) for k in keys)
