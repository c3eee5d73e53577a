"""Reading foreign checkpoint files safely, and unwrapping the state dict inside them.

Files are read with ``torch.load(..., weights_only=True)`` (PyTorch's restricted unpickler:
tensors, containers, numbers, strings) or with safetensors; nothing else is ever unpickled.
The one class admitted beyond PyTorch's own list is ``argparse.Namespace`` (timm's
``train.py`` stores its arguments in every checkpoint): building one sets attributes and runs
no code. A file that needs anything else is refused with one line, before any of it runs.

A checkpoint is usually a dict holding the weights under ``state_dict``, ``net`` or
``model`` (next to ``epoch``, ``optimizer`` ...), with a ``module.`` prefix on every key when
it was saved from ``DataParallel``; :func:`unwrap` finds the weights and strips the prefix.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from analysis.errors import CollabError
from analysis.runs.checkpoint import read_tensors

#: Dict entries that hold the weights in the checkpoints researchers save, most usual first.
WEIGHT_ENTRIES = ("state_dict", "net", "model", "model_state_dict", "state_dict_ema", "weights")
DATA_PARALLEL = "module."
SAFETENSORS = (".safetensors",)


@dataclass
class Unwrapped:
    """The flat state dict found in a checkpoint and how it was found.

    Attributes:
        state: key -> tensor, with any ``module.`` prefix removed.
        entry: the dict entry that held it (``""`` when the file is the state dict itself).
        stripped: the prefix removed from every key (``""`` if none).
        extras: the other top-level entries that are plain values (``arch``, ``epoch`` ...).
    """

    state: dict[str, torch.Tensor]
    entry: str = ""
    stripped: str = ""
    extras: dict[str, Any] = field(default_factory=dict)


def read_checkpoint(path: str | Path) -> Any:
    """The content of a checkpoint file, read without running any code from it.

    ``.safetensors`` files give a dict of tensors; anything else goes through
    ``torch.load(weights_only=True)`` on the CPU.

    Raises:
        CollabError: missing file, or a file that is not a weights-only checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CollabError(f"checkpoint {path} does not exist; check the path")
    if path.suffix in SAFETENSORS:
        return read_tensors(path)[0]
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, RuntimeError, EOFError, ... all mean "refused"
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if "Weights only load failed" in first or "Unsupported global" in str(exc):
            raise CollabError(
                f"{path} needs arbitrary unpickling (it stores Python objects, not only "
                "tensors), so it is refused: re-save its state_dict with torch.save or "
                "safetensors in a trusted environment"
            ) from None
        raise CollabError(
            f"{path} is not a readable PyTorch checkpoint ({first[:100]}); check the file"
        ) from None


def is_state_dict(value: Any) -> bool:
    """A non-empty mapping of string keys to tensors."""
    return (
        isinstance(value, Mapping)
        and len(value) > 0
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())
    )


def unwrap(payload: Any, path: Path, *, entry: str | None = None) -> Unwrapped:
    """Find the state dict in ``payload`` and strip a ``module.`` prefix from its keys.

    Args:
        payload: what :func:`read_checkpoint` returned.
        path: the file, for messages.
        entry: the dict entry holding the weights; default the first of :data:`WEIGHT_ENTRIES`
            that holds a state dict, or the payload itself when it is one.
    """
    extras: dict[str, Any] = {}
    if isinstance(payload, Mapping):
        extras = {
            k: v
            for k, v in payload.items()
            if isinstance(v, (str, int, float, bool)) and k != entry
        }
    if entry is not None:
        if not isinstance(payload, Mapping) or entry not in payload:
            keys = ", ".join(map(str, list(payload)[:6])) if isinstance(payload, Mapping) else ""
            raise CollabError(f"{path} has no entry {entry!r} (it has: {keys}); fix entry=")
        state, found = payload[entry], entry
    elif is_state_dict(payload):
        state, found = payload, ""
    else:
        found = next(
            (k for k in WEIGHT_ENTRIES if isinstance(payload, Mapping) and k in payload), None
        )
        if found is None:
            what = type(payload).__name__
            keys = ", ".join(map(str, list(payload)[:6])) if isinstance(payload, Mapping) else ""
            raise CollabError(
                f"{path} holds a {what} ({keys}) with no weights under "
                f"{', '.join(WEIGHT_ENTRIES[:3])}; name the entry with --set entry=NAME"
            )
        state = payload[found]
    state = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)} if state else {}
    if not is_state_dict(state):
        raise CollabError(f"{path} entry {found or '(top level)'!r} holds no tensors")
    stripped = ""
    if all(k.startswith(DATA_PARALLEL) for k in state):
        state = {k[len(DATA_PARALLEL) :]: v for k, v in state.items()}
        stripped = DATA_PARALLEL
    return Unwrapped(state=dict(state), entry=found, stripped=stripped, extras=extras)
