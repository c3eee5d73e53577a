"""Safetensors checkpoints: atomic writes, strict reads, no pickle anywhere.

A *weights* file holds ``model.*`` tensors. A *resume* file additionally holds the optimizer
state (``optim.*``), the torch RNG state and the epoch, so training can continue bit-identically.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from analysis.errors import CollabError

_MODEL = "model."
_OPTIM = "optim."
_METHOD = "method."


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB blocks (checkpoints: milliseconds)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_save(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Write a safetensors file via a temporary file + rename, so a kill never tears it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    save_file(tensors, str(tmp), metadata=metadata)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read every tensor and the metadata of a safetensors file; any damage is a CollabError."""
    path = Path(path)
    if not path.is_file():
        raise CollabError(f"checkpoint {path} does not exist; check the run folder or retrain it")
    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = dict(fh.metadata() or {})
            tensors = {key: fh.get_tensor(key) for key in fh.keys()}
    except Exception as exc:  # safetensors raises several types for bad headers and short files
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise CollabError(
            f"checkpoint {path} is corrupt, truncated or not a safetensors file ({reason}); "
            "restore it or retrain the run"
        ) from None
    return tensors, metadata


def save_weights(path: Path, model: nn.Module, metadata: dict[str, str] | None = None) -> None:
    tensors = {_MODEL + k: v for k, v in model.state_dict().items()}
    atomic_save(path, tensors, dict(metadata or {}))


def load_weights(model: nn.Module, path: Path) -> dict[str, str]:
    """Load ``model.*`` tensors into ``model`` strictly; returns the file's metadata."""
    tensors, metadata = read_tensors(path)
    state = {k[len(_MODEL) :]: v for k, v in tensors.items() if k.startswith(_MODEL)}
    check_compatible(model, state, path)
    model.load_state_dict(state)
    return metadata


def check_compatible(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """Raise a one-line CollabError if ``state`` is not a state dict of ``model``'s architecture."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    problem = None
    if missing:
        problem = f"it lacks {len(missing)} tensors such as {missing[0]!r}"
    elif unexpected:
        problem = f"it has {len(unexpected)} unknown tensors such as {unexpected[0]!r}"
    else:
        for key, tensor in expected.items():
            if tuple(state[key].shape) != tuple(tensor.shape):
                problem = f"{key!r} has shape {tuple(state[key].shape)}, the model expects {tuple(tensor.shape)}"
                break
    if problem:
        raise CollabError(
            f"checkpoint {path} does not match this model's architecture ({problem}); "
            "load it with the config it was trained with"
        )


def save_resume(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    epoch: int,
    extra: dict | None = None,
    method_state: dict[str, torch.Tensor] | None = None,
) -> None:
    """Everything needed to continue after ``epoch`` epochs, bit-identically on CPU.

    ``method_state`` holds tensors a method keeps outside the model (e.g. memory banks).
    """
    tensors = {_MODEL + k: v for k, v in model.state_dict().items()}
    tensors.update({_METHOD + k: v for k, v in (method_state or {}).items()})
    opt_state = optimizer.state_dict()
    scalars: dict[str, dict] = {}
    for idx, entries in opt_state["state"].items():
        for key, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"{_OPTIM}{idx}.{key}"] = value
            else:
                scalars.setdefault(str(idx), {})[key] = value
    tensors["rng.torch"] = torch.get_rng_state()
    metadata = {
        "epoch": str(epoch),
        "optim.param_groups": json.dumps(opt_state["param_groups"]),
        "optim.scalars": json.dumps(scalars),
        "extra": json.dumps(extra or {}),
    }
    atomic_save(path, tensors, metadata)


def load_resume(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[int, dict, dict[str, torch.Tensor]]:
    """Restore model, optimizer and RNG from a resume file; returns (epoch, extra, method_state)."""
    tensors, metadata = read_tensors(path)
    if "epoch" not in metadata or "rng.torch" not in tensors:
        raise CollabError(
            f"checkpoint {path} holds weights only, not a training state; it cannot resume"
        )
    state = {k[len(_MODEL) :]: v for k, v in tensors.items() if k.startswith(_MODEL)}
    check_compatible(model, state, path)
    model.load_state_dict(state)
    opt_state: dict = {"state": {}, "param_groups": json.loads(metadata["optim.param_groups"])}
    for key, value in tensors.items():
        if key.startswith(_OPTIM):
            idx, name = key[len(_OPTIM) :].split(".", 1)
            opt_state["state"].setdefault(int(idx), {})[name] = value
    for idx, entries in json.loads(metadata["optim.scalars"]).items():
        opt_state["state"].setdefault(int(idx), {}).update(entries)
    try:
        optimizer.load_state_dict(opt_state)
    except (ValueError, KeyError) as exc:
        raise CollabError(
            f"checkpoint {path} has an optimizer state of another setup ({exc}); start afresh"
        ) from None
    torch.set_rng_state(tensors["rng.torch"])
    method_state = {k[len(_METHOD) :]: v for k, v in tensors.items() if k.startswith(_METHOD)}
    return int(metadata["epoch"]), json.loads(metadata["extra"]), method_state
