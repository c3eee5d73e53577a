"""The run folder's layout and its small files: config, manifest, metrics.

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
from pathlib import Path
from typing import Any

import yaml

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


def inside(path: Path, root: Path) -> bool:
    """Whether ``path``, with every symbolic link resolved, lies inside ``root`` (resolved)."""
    return Path(path).resolve().is_relative_to(Path(root).resolve())


def list_runs(root: str | Path) -> list[Path]:
    """Run folders directly under ``root`` (or one level deeper), sorted by path.

    Hidden folders (e.g. a zoo run being rebuilt, ``.NAME.building``) are not runs yet. A folder
    reached through a symbolic link that leads out of ``root`` (a link to a run elsewhere, a link
    to ``..``) is not listed: only what lies inside the root, resolved, can be opened from it.
    """
    root = Path(root)
    if not root.is_dir():
        return []
    real_root = root.resolve()

    def visible_dirs(folder: Path) -> list[Path]:
        return [
            p
            for p in folder.iterdir()
            if p.is_dir() and not p.name.startswith(".") and inside(p, real_root)
        ]

    found = [p for p in visible_dirs(root) if is_run(p)]
    found += [q for p in visible_dirs(root) if not is_run(p) for q in visible_dirs(p) if is_run(q)]
    return sorted(found)
