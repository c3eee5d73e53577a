"""A loaded run folder: ``load_run`` is the only way a trained model is loaded.

Reading a run's config, manifest and metrics needs no torch: the modules that build its model
and data are imported when first needed, so an app page that shows only metadata stays light.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import yaml

from analysis.errors import CollabError
from analysis.runs.layout import (
    CHECKPOINTS,
    CONFIG,
    MANIFEST,
    checkpoint_path,
    is_run,
    read_metrics,
)
from analysis.runs.legacy import restore_defaults

if TYPE_CHECKING:
    from torch import nn
    from torch.utils.data import Dataset


@dataclass
class Run:
    """A loaded run: its config, manifest, metrics and model (eval mode, CPU).

    ``model`` is built on first use when the run was loaded with ``lazy_model=True``.
    """

    path: Path
    config: dict[str, Any]
    manifest: dict[str, Any]
    checkpoint: str
    metrics: list[dict[str, Any]] = field(default_factory=list)
    built: nn.Module | None = field(default=None, repr=False)

    @property
    def model(self) -> nn.Module:
        if self.built is None:
            self.built = build_run_model(self.config, self.manifest, self.path, self.checkpoint)
        return self.built

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def peer_names(self) -> list[str]:
        return list(self.manifest["peer_names"])

    @cached_property
    def data(self):
        """The run's dataset bundle (built on first use; may need the dataset root)."""
        from analysis.data import build_dataset
        from analysis.data.subset import restrict_classes

        cfg = self.config["data"]
        bundle = build_dataset(
            cfg["name"],
            root=cfg.get("root"),
            download=False,
            image_size=cfg.get("image_size"),
            seed=self.config["train"]["seed"],
            transforms=cfg.get("transforms"),
            eval_transforms=cfg.get("eval_transforms"),
        )
        classes = self.manifest["data"].get("classes")  # a reconstructed run's class subset
        return bundle if classes is None else restrict_classes(bundle, classes)

    def use_data(self, overrides: list[str] | tuple[str, ...]) -> None:
        """Point the run at its data on this machine: ``data.KEY=VALUE`` overrides (e.g.
        ``data.root=~/data``) of the recorded config, before the dataset is first built."""
        from analysis.config import apply_override, config_from_dict

        for assignment in overrides:
            if not assignment.startswith("data."):
                raise CollabError(
                    f"--set {assignment!r}: only data.* keys (data.root=DIR) can change for an "
                    "existing run; its model and training are fixed"
                )
            apply_override(self.config, assignment)
        if overrides:
            config_from_dict(self.config)  # a bad value is named now, not mid-way
            self.__dict__.pop("data", None)

    def dataset(self, split: str = "test") -> Dataset:
        if split not in ("train", "test"):
            raise CollabError(f"unknown split {split!r}; use 'train' or 'test'")
        return getattr(self.data, split)

    @property
    def checkpoints(self) -> list[str]:
        """Checkpoint names available in this run (``best``, ``last``, ``epoch_001``, ...)."""
        return sorted(
            p.name[: -len(".safetensors")] for p in (self.path / CHECKPOINTS).glob("*.safetensors")
        )

    def load_checkpoint(self, name: str) -> nn.Module:
        """A fresh copy of the model with checkpoint ``name`` loaded (eval mode, CPU)."""
        return build_run_model(self.config, self.manifest, self.path, name)


def build_run_model(
    config: dict[str, Any], manifest: dict[str, Any], run_dir: Path, name: str
) -> nn.Module:
    from analysis.config import config_from_dict
    from analysis.methods import create_method
    from analysis.runs.checkpoint import load_weights

    cfg = config_from_dict(restore_defaults(config, manifest))
    model = create_method(cfg.method).build_model(cfg.model, SimpleNamespace(**manifest["data"]))
    load_weights(model, checkpoint_path(run_dir, name))
    return model.eval()


CHECKPOINT_NAME = re.compile(r"[A-Za-z0-9_-]+")


def load_run(path: str | Path, checkpoint: str = "best", *, lazy_model: bool = False) -> Run:
    """Load a run folder; ``checkpoint`` is ``best``, ``last`` or ``epoch_NNN``.

    With ``lazy_model`` the model (and torch) is loaded on the first read of ``run.model``, and
    a damaged checkpoint is reported then; by default it is loaded, and checked, here.
    """
    path = Path(path).expanduser().resolve()
    if not path.is_dir():
        raise CollabError(f"run folder {path} does not exist; list runs with `collab runs`")
    if not is_run(path):
        raise CollabError(
            f"{path} is not a run folder (no {MANIFEST} or {CONFIG}); train one with `collab train`"
        )
    if not CHECKPOINT_NAME.fullmatch(checkpoint):
        raise CollabError(
            f"checkpoint {checkpoint!r} is not a checkpoint name; use best, last or epoch_NNN "
            "(checkpoints are read only from the run's own checkpoints/ folder)"
        )
    try:
        config = yaml.safe_load((path / CONFIG).read_text())
        manifest = json.loads((path / MANIFEST).read_text())
    except (yaml.YAMLError, json.JSONDecodeError, UnicodeDecodeError):
        raise CollabError(
            f"{path} has an unreadable {CONFIG} or {MANIFEST}; retrain the run"
        ) from None
    if not isinstance(config, dict) or not isinstance(manifest, dict):
        raise CollabError(
            f"{path} has a {CONFIG} or {MANIFEST} that is not a mapping; retrain the run"
        )
    if not isinstance(manifest.get("data"), dict) or "peer_names" not in manifest:
        status = manifest.get("status", "unknown")
        raise CollabError(
            f"{path} has no trained model yet (status {status}); resume it with "
            f"`collab train --out {path} --resume`"
        )
    run = Run(path=path, config=config, manifest=manifest, checkpoint=checkpoint)
    if not lazy_model:
        run.model  # noqa: B018 -- build it now: load_run reports a damaged checkpoint
    run.metrics = read_metrics(path)
    return run
