"""``import_checkpoints``: checkpoints researchers already have -> a run folder like a trained one.

The folder gets ``config.yaml``, ``checkpoints/best.safetensors`` and ``last.safetensors``
(weights only, the same tensors), an empty ``metrics.jsonl`` (an imported run has no training
history) and a ``manifest.json`` whose ``provenance`` records the source format, every file's
name, path, size and sha256, the key mapping applied and where the input normalisation came
from. Everything is read and mapped in memory first; the folder is written only when the
mapping is complete, with the manifest last (until then the folder is not a run).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import inspect
from pathlib import Path
from typing import Any

from torch import nn

from analysis.config import Config, config_from_dict
from analysis.data import DataBundle, dataset_for
from analysis.errors import CollabError
from analysis.methods import create_method
from analysis.models import MODELS, model_options
from analysis.runs.checkpoint import file_digest
from analysis.runs.finished import write_finished_run
from analysis.runs.importers.advice import advice
from analysis.runs.importers.base import (
    IMPORTERS,
    Source,
    SourceFile,
)
from analysis.runs.importers.keymap import KeyMap, Mapped, apply_keymap
from analysis.runs.run import Run, load_run

SECTIONS = ("data", "model", "method", "optim", "schedule", "train")
IMPORT_KEYS = ("entry", "mean", "std")
SHOWN_PAIRS = 8


def import_checkpoints(
    paths: str | Path | list[str | Path],
    *,
    source: str,
    arch: str | None = None,
    out: str | Path,
    **options: Any,
) -> Run:
    """Import checkpoint files as the peers (or branches) of one new run folder.

    Args:
        paths: checkpoint files (``.pth``, ``.pth.tar``, ``.pt``, ``.safetensors``) or our own
            run folders (their ``best`` weights); several become the K peers of one run.
        source: how to read them, a name in ``IMPORTERS`` (``state_dict``, ``torchvision``,
            ``timm``, ``dc``, ``mcl_okd``, ``od_cheap``, ``anchornet``, ``hcgnet``).
        arch: a registered architecture, the authors' name under ``source``, or
            ``torchvision/NAME`` / ``timm/NAME``; may be left out where the files name it.
        out: the run folder to write; it must be new or empty.
        **options: config sections as dicts (``data={"name": "cifar100", "root": "data"}``,
            ``model={"options": {...}}``, ``method=``, ``train=`` ...) and the import keys
            ``entry`` (the dict entry holding the weights), ``mean`` and ``std`` (the input
            normalisation the networks were trained with; default the authors').

    Returns:
        The new run, loaded.

    Raises:
        CollabError: one line for a missing or refused file, an unknown option, or a mapping
            that does not fit (what is missing, unexpected, mis-shaped, and what might fit).
    """
    src: Source = IMPORTERS.get(source)
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if not paths:
        raise CollabError("collab import needs at least one checkpoint file")
    unknown = sorted(set(options) - set(SECTIONS) - set(IMPORT_KEYS))
    if unknown:
        raise CollabError(
            f"unknown import option {unknown[0]!r}; use config keys (data.name=..., "
            f"model.options.KEY=...) or one of: {', '.join(IMPORT_KEYS)}"
        )
    out = Path(out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CollabError(
            f"--out {out} is not a new or empty folder; collab import never writes over "
            "anything: choose another --out"
        )
    files = [src.read(Path(p).expanduser(), entry=options.get("entry")) for p in paths]
    if src.whole_model and len(files) != 1:
        raise CollabError(
            f"--source {src.name} reads one file holding the whole model; got {len(files)}"
        )
    config = _config(src, arch, files, options)
    data, norm_from = _data(src, config, files, options)
    model = create_method(config.method).build_model(config.model, data)
    keymap = src.keymap(config)
    mapped = _map(src, keymap, files, model, data)
    full = model.state_dict()
    full.update(mapped.state)
    model.load_state_dict(full)
    record = _provenance(src, files, keymap, mapped, data, norm_from)
    write_finished_run(
        out,
        config,
        data,
        model,
        weights_meta={"imported_from": record["source"]},
        provenance=record,
    )
    return load_run(out)


def _merge(base: dict, extra: dict) -> dict:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _config(src: Source, arch: str | None, files: list[SourceFile], options: dict) -> Config:
    """Source defaults (method, model from the files, a run folder's data) + the user's keys."""
    given = {k: v for k, v in options.items() if k in SECTIONS}
    for key, value in given.items():
        if not isinstance(value, dict):
            raise CollabError(f"import option {key!r} must be a mapping of config keys")
    base: dict[str, Any] = {"method": {"name": src.method}, "data": {}}
    run_data = (files[0].run_config or {}).get("data") or {}
    base["data"] = {k: run_data[k] for k in ("name", "root", "image_size") if k in run_data}
    if "name" not in base["data"] and src.default_data:
        base["data"]["name"] = src.default_data
    model = src.model_section(arch, files)
    user_model = given.get("model", {})
    if user_model.get("options") and model.get("options"):
        user_model = {**user_model, "options": {**model["options"], **user_model["options"]}}
    merged = _merge({**base, "model": model}, {**given, "model": user_model})
    if "name" not in merged["data"]:
        raise CollabError(
            "collab import needs the dataset the networks were trained on: "
            "--set data.name=cifar100 (and data.root=DIR for on-disk datasets)"
        )
    merged["model"]["options"] = _resolved_options(merged["model"])
    return config_from_dict(merged)


def _resolved_options(model: dict[str, Any]) -> dict[str, Any]:
    """Every option of a registered ``model.arch`` written out, defaults included, so that the
    imported run keeps building the network its weights belong to whatever defaults change."""
    arch, given = model.get("arch"), dict(model.get("options") or {})
    if not isinstance(arch, str) or arch not in MODELS:
        return given
    defaults = {k: v for k, v in model_options(arch).items() if v is not inspect.Parameter.empty}
    return {**defaults, **given}


def _data(
    src: Source, config: Config, files: list[SourceFile], options: dict
) -> tuple[DataBundle, str]:
    """The dataset with the input normalisation the networks were trained with, and its origin."""
    d = config.data
    bundle = dataset_for(d, seed=config.train.seed)
    stored = {f.normalization for f in files if f.normalization is not None}
    if "mean" in options or "std" in options:
        mean, std = options.get("mean", bundle.mean), options.get("std", bundle.std)
        where = "given (mean=, std=)"
    elif len(stored) == 1:
        mean, std = stored.pop()
        where = "the files' own normalize buffers"
    elif len(stored) > 1:
        raise CollabError(
            "the files were trained with different input normalisations; import them "
            "separately, or give the one to use with --set mean=[...] --set std=[...]"
        )
    elif d.name in src.normalization:
        mean, std, where = src.normalization[d.name]
        where = f"the authors' code: {where}"
    else:
        mean, std, where = bundle.mean, bundle.std, f"the {d.name} dataset's own statistics"
    mean, std = _floats("mean", mean), _floats("std", std)
    if len(mean) != bundle.in_chans or len(std) != bundle.in_chans:
        raise CollabError(
            f"mean and std need {bundle.in_chans} values (one per channel of {d.name}); "
            f"got {list(mean)} and {list(std)}"
        )
    return dataclasses.replace(bundle, mean=mean, std=std), where


def _floats(name: str, value: Any) -> tuple[float, ...]:
    values = value if isinstance(value, (list, tuple)) else [value]
    try:
        return tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise CollabError(f"{name} must be a list of numbers, e.g. {name}=[0.5,0.5,0.5]") from None


def _map(
    src: Source, keymap: KeyMap, files: list[SourceFile], model: nn.Module, data: DataBundle
) -> Mapped:
    target = {k: v for k, v in model.state_dict().items() if not k.startswith("normalize.")}
    names = ", ".join(f.path.name for f in files)
    if src.whole_model:
        source, peer_map = files[0].networks[0], keymap
    else:
        nets = [net for f in files for net in f.networks]
        source = {f"{i}/{k}": v for i, net in enumerate(nets) for k, v in net.items()}
        peer_map = keymap.per_peer()
    first = files[0].networks[0]
    return apply_keymap(
        source,
        target,
        peer_map,
        what=f"{names} (--source {src.name})",
        hint=lambda: advice(src, keymap, first, data),
    )


def _provenance(
    src: Source,
    files: list[SourceFile],
    keymap: KeyMap,
    mapped: Mapped,
    data: DataBundle,
    norm_from: str,
) -> dict[str, Any]:
    return {
        "source": src.name,
        "layout": src.layout,
        "imported": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "files": [
            {
                "name": f.path.name,
                "path": str(f.path.resolve()),
                "bytes": f.path.stat().st_size,
                "sha256": file_digest(f.path),
                "entry": f.unwrapped.entry,
                "stripped_prefix": f.unwrapped.stripped,
                "networks": len(f.networks),
                "file_entries": f.unwrapped.extras,
            }
            for f in files
        ],
        "mapping": {
            **keymap.describe(),
            "tensors": len(mapped.pairs),
            "examples": dict(list(mapped.pairs.items())[:SHOWN_PAIRS]),
            "left_at_init": mapped.left_at_init,
            "left_at_init_why": src.absent_note() if mapped.left_at_init else "",
            "dropped": mapped.dropped,
        },
        "normalization": {"mean": list(data.mean), "std": list(data.std), "from": norm_from},
    }
