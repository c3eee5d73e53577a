"""The run manifest: everything needed to rebuild and cite a run besides its config."""

from __future__ import annotations

import datetime as dt
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch
from torch import nn

from analysis.config import Config
from analysis.models import count_parameters
from analysis.version import __version__

PROVENANCE = ("method", "seed", "epochs", "versions", "git_sha", "created")


def provenance(config: Config) -> dict[str, Any]:
    """Who made the run, when and with what: written once, never changed by a resume."""
    return {
        "method": config.method.name,
        "seed": config.train.seed,
        "epochs": config.train.epochs,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torchvision": _version("torchvision"),
            "collablens": __version__,  # the source tree's (editable installs' metadata can lag)
        },
        "git_sha": git_sha(),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def build_manifest(
    config: Config,
    data: Any,
    model: nn.Module,
    *,
    status: str,
    origin: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The full manifest; ``origin`` (an earlier manifest) supplies the provenance to keep."""
    kept = {k: origin[k] for k in PROVENANCE if origin and k in origin}
    return {
        **provenance(config),
        **kept,
        "dataset": data.name,
        "data": {
            "num_classes": data.num_classes,
            "in_chans": data.in_chans,
            "image_size": data.image_size,
            "mean": list(data.mean),
            "std": list(data.std),
            "class_names": list(data.class_names),
        },
        "peer_names": list(getattr(model, "peer_names", [])),
        "param_counts": [count_parameters(model.peer(i)) for i in range(model.num_peers)],
        "total_params": sum(p.numel() for p in model.parameters()),
        "status": status,
        **extra,
    }


def git_sha() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        sha = out.stdout.strip()
        return sha if out.returncode == 0 and len(sha) == 40 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _version(package: str) -> str:
    """An installed package's version without importing it (torchvision takes seconds)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "dev"
