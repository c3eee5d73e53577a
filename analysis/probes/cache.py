"""Probe results cached in the run folder, keyed by probe, arguments and checkpoint contents.

A result is a dataclass whose fields are tensors, dicts of tensors, or JSON values; it is stored
as one safetensors file (tensors) with the JSON fields in its metadata — no pickle. A second call
with the same probe, arguments and checkpoint returns the stored result at once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch

from analysis.errors import CollabError
from analysis.runs import PROBES, atomic_save, checkpoint_path, read_tensors
from analysis.runs.checkpoint import file_digest

log = logging.getLogger(__name__)
R = TypeVar("R")
_SEP = "/"


def cache_key(probe: str, args: dict[str, Any], checkpoint_digest: str) -> str:
    blob = json.dumps(
        {"probe": probe, "args": args, "checkpoint": checkpoint_digest}, sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def save_result(path: Path, result: Any) -> None:
    """Store a dataclass result: tensor (and dict-of-tensor) fields as tensors, the rest as JSON."""
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, Any] = {}
    for f in dataclasses.fields(result):
        value = getattr(result, f.name)
        if torch.is_tensor(value):
            tensors[f.name] = value
        elif isinstance(value, dict) and value and all(torch.is_tensor(v) for v in value.values()):
            tensors.update({f"{f.name}{_SEP}{k}": v for k, v in value.items()})
            plain[f.name] = {"__tensor_keys__": list(value)}
        else:
            plain[f.name] = value
    try:
        metadata = {"json": json.dumps(plain), "class": type(result).__name__}
    except TypeError as exc:
        raise TypeError(
            f"{type(result).__name__} has a field that is neither a tensor nor JSON: {exc}"
        ) from None
    atomic_save(path, tensors, metadata)


def load_result(path: Path, cls: type[R]) -> R:
    """Read a cached result; any damage (bad JSON, missing or foreign fields) is a CollabError."""
    tensors, metadata = read_tensors(path)
    if metadata.get("class") != cls.__name__:
        raise CollabError(f"cached result {path} is not a {cls.__name__}; delete it to recompute")
    try:
        values = json.loads(metadata["json"])
        if not isinstance(values, dict):
            raise TypeError("the JSON fields are not a mapping")
        for name, value in list(values.items()):
            if isinstance(value, dict) and "__tensor_keys__" in value:
                values[name] = {k: tensors[f"{name}{_SEP}{k}"] for k in value["__tensor_keys__"]}
        values.update({k: v for k, v in tensors.items() if _SEP not in k})
        return cls(**values)
    except (KeyError, TypeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        raise CollabError(f"cached result {path} is damaged ({exc}); it is recomputed") from None


def cache_path(run: Any, probe: str, args: dict[str, Any]) -> Path:
    """Where ``probe(args)`` of ``run``'s checkpoint is cached (the key hashes the weights)."""
    digest = file_digest(checkpoint_path(run.path, run.checkpoint))
    return Path(run.path) / PROBES / probe / f"{cache_key(probe, args, digest)}.safetensors"


def lookup(run: Any, probe: str, args: dict[str, Any], cls: type[R]) -> R | None:
    """The cached result, or None when there is none (or it is unreadable)."""
    path = cache_path(run, probe, args)
    if not path.exists():
        return None
    try:
        return load_result(path, cls)
    except CollabError as exc:
        log.warning("recomputing %s: %s", probe, exc)
        return None


def store(run: Any, probe: str, args: dict[str, Any], result: Any) -> None:
    """Cache ``result``; a read-only run folder only loses the cache, not the result."""
    path = cache_path(run, probe, args)
    try:
        save_result(path, result)
    except OSError as exc:
        log.warning("could not cache %s in %s: %s", probe, path.parent, exc)


def cached(
    run: Any,
    probe: str,
    args: dict[str, Any],
    cls: type[R],
    compute: Callable[[], R],
    *,
    refresh: bool = False,
) -> R:
    """Return the cached ``probe(args)`` result of ``run``'s checkpoint, computing it if needed.

    Args:
        run: a loaded :class:`analysis.Run` (its folder and checkpoint name key the cache).
        probe: the probe's name, e.g. ``"cka"``.
        args: the probe's arguments (JSON values) — every argument that changes the result.
        cls: the result dataclass.
        compute: produces the result when it is not cached (or ``refresh`` is set).
    """
    result = None if refresh else lookup(run, probe, args, cls)
    if result is None:
        result = compute()
        store(run, probe, args, result)
    return result
