"""The run folder: the only way a trained model is saved or loaded.

Layout::

    RUN/
      config.yaml          fully resolved training config
      manifest.json        versions, seed, git sha, data shape, peer names, parameter counts
      metrics.jsonl        one line per (epoch, split)
      checkpoints/         epoch_NNN / best .safetensors (weights), last.safetensors (resume state)
      probes/              cached probe results
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml
from torch import nn
from torch.utils.data import Dataset

from analysis.errors import CollabError

CONFIG, MANIFEST, METRICS = "config.yaml", "manifest.json", "metrics.jsonl"
CHECKPOINTS, PROBES = "checkpoints", "probes"


def checkpoint_path(run_dir: Path, name: str) -> Path:
    return Path(run_dir) / CHECKPOINTS / f"{name}.safetensors"


def write_json(path: Path, data: Any) -> None:
    """Atomically write JSON (temporary file + rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def write_config(run_dir: Path, config: dict[str, Any]) -> None:
    tmp = Path(run_dir) / f".{CONFIG}.tmp"
    tmp.write_text(yaml.safe_dump(config, sort_keys=False))
    os.replace(tmp, Path(run_dir) / CONFIG)


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """All complete lines of metrics.jsonl (a line torn by a kill is ignored)."""
    path = Path(run_dir) / METRICS
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return records


def append_metrics(run_dir: Path, records: list[dict[str, Any]]) -> None:
    with open(Path(run_dir) / METRICS, "a") as fh:
        fh.writelines(json.dumps(record) + "\n" for record in records)
        fh.flush()
        os.fsync(fh.fileno())


def keep_metrics_through(run_dir: Path, epoch: int) -> None:
    """Drop metric lines after ``epoch`` (those of an epoch whose checkpoint was never written)."""
    kept = [r for r in read_metrics(run_dir) if r.get("epoch", 0) <= epoch]
    tmp = Path(run_dir) / f".{METRICS}.tmp"
    tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
    os.replace(tmp, Path(run_dir) / METRICS)


def is_run(path: Path) -> bool:
    return (Path(path) / MANIFEST).is_file() and (Path(path) / CONFIG).is_file()


def list_runs(root: str | Path) -> list[Path]:
    """Run folders directly under ``root`` (or one level deeper), sorted by path.

    Hidden folders (e.g. a zoo run being rebuilt, ``.NAME.building``) are not runs yet.
    """
    root = Path(root)
    if not root.is_dir():
        return []

    def visible_dirs(folder: Path) -> list[Path]:
        return [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]

    found = [p for p in visible_dirs(root) if is_run(p)]
    found += [q for p in visible_dirs(root) if not is_run(p) for q in visible_dirs(p) if is_run(q)]
    return sorted(found)


@dataclass
class Run:
    """A loaded run: its config, manifest, metrics and model (eval mode, CPU)."""

    path: Path
    config: dict[str, Any]
    manifest: dict[str, Any]
    model: nn.Module
    checkpoint: str
    metrics: list[dict[str, Any]] = field(default_factory=list)

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

        cfg = self.config["data"]
        return build_dataset(
            cfg["name"],
            root=cfg.get("root"),
            download=False,
            image_size=cfg.get("image_size"),
            seed=self.config["train"]["seed"],
        )

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
    from analysis.methods import create_method
    from analysis.training.checkpoint import load_weights
    from analysis.training.config import config_from_dict

    cfg = config_from_dict(config)
    model = create_method(cfg.method).build_model(cfg.model, SimpleNamespace(**manifest["data"]))
    load_weights(model, checkpoint_path(run_dir, name))
    return model.eval()


def load_run(path: str | Path, checkpoint: str = "best") -> Run:
    """Load a run folder; ``checkpoint`` is ``best``, ``last`` or ``epoch_NNN``."""
    path = Path(path).expanduser().resolve()
    if not path.is_dir():
        raise CollabError(f"run folder {path} does not exist; list runs with `collab runs`")
    if not is_run(path):
        raise CollabError(
            f"{path} is not a run folder (no {MANIFEST} or {CONFIG}); train one with `collab train`"
        )
    try:
        config = yaml.safe_load((path / CONFIG).read_text())
        manifest = json.loads((path / MANIFEST).read_text())
    except (yaml.YAMLError, json.JSONDecodeError):
        raise CollabError(
            f"{path} has an unreadable {CONFIG} or {MANIFEST}; retrain the run"
        ) from None
    model = build_run_model(config, manifest, path, checkpoint)
    return Run(
        path=path,
        config=config,
        manifest=manifest,
        model=model,
        checkpoint=checkpoint,
        metrics=read_metrics(path),
    )
