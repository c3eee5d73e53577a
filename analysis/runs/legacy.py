"""Runs made by an older CollabLens load as they were trained.

Release 0.2 made the authors' networks the defaults (see the README's methods table); release
0.3 trains in NHWC memory order on the CPU (``train.channels_last=auto``). A run folder
records its config, but an option the older release did not have, or left out at its default,
is absent from it, and absent means "today's default" — which would build a different network
for the same weights, or continue a run in another memory order.
:func:`restore_defaults` fills each such absent option with the value the older release used,
for runs whose manifest names an older ``collablens`` version.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from analysis.runs.claim import read_manifest
from analysis.runs.layout import CONFIG

#: (first release with the new default, config section, key, the old behaviour, applies-to test)
CHANGED: tuple[tuple[tuple[int, ...], str, str, Any, Any], ...] = (
    (
        (0, 2),
        "method",
        "authors_networks",
        False,
        lambda c: c["method"]["name"] == "divide_cotrain",
    ),
    ((0, 2), "method", "gate", "linear", lambda c: c["method"]["name"] == "one"),
    ((0, 2), "method", "kl_reduction", "batchmean", lambda c: c["method"]["name"] == "od_cheap"),
    ((0, 2), "method", "negatives_from", "seen", lambda c: c["method"]["name"] == "mcl_okd"),
    ((0, 2), "model.options", "shift_layout", "grouped", lambda c: _arch_has(c, "cheap_")),
    ((0, 3), "train", "channels_last", False, lambda c: True),
)
#: Renamed option values: (release, section, key, old value, value meaning the same thing now).
RENAMED = (((0, 2), "model.options", "layout", "reference", "exact"),)


def _arch_has(config: dict[str, Any], prefix: str) -> bool:
    arch = config.get("model", {}).get("arch", "")
    names = arch if isinstance(arch, list) else [arch]
    return any(str(name).startswith(prefix) for name in names)


def release(manifest: dict[str, Any]) -> tuple[int, ...]:
    """The CollabLens release that wrote ``manifest`` ((0, 1) when unknown or unparsable)."""
    text = str(manifest.get("versions", {}).get("collablens", "0.1"))
    parts = []
    for piece in text.split("."):
        if not piece.isdigit():
            break
        parts.append(int(piece))
    return tuple(parts) or (0, 1)


def _section(config: dict[str, Any], path: str) -> dict[str, Any]:
    node = config
    for name in path.split("."):
        node = node.setdefault(name, {})
    return node


def restore_defaults(config: dict[str, Any], manifest: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``config`` with the options that older release left implicit made explicit."""
    made_by = release(manifest)
    out = copy.deepcopy(config)
    for since, path, key, old, applies in CHANGED:
        if made_by < since and applies(out) and key not in _section(out, path):
            _section(out, path)[key] = old
    for since, path, key, old, new in RENAMED:
        section = _section(out, path)
        if made_by < since and section.get(key) == old:
            section[key] = new
    return out


def as_trained(config: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """``config`` (a run's saved config, or one that should equal it) with the options that the
    release which made ``run_dir`` left implicit made explicit; unchanged while the folder has
    no readable manifest yet (nothing trained: today's defaults apply)."""
    manifest = read_manifest(run_dir)
    return config if manifest is None else restore_defaults(config, manifest)


def continued_config(config: dict[str, Any], run_dir: Path) -> dict[str, Any] | None:
    """The config to continue the run in ``run_dir`` with when a sweep or search meant to train
    it with ``config``: ``config`` itself while the folder holds no saved config, the saved one as
    its release trained it (:func:`as_trained`) when the two agree, None when they differ."""
    saved = Path(run_dir) / CONFIG
    if not saved.is_file():
        return config
    trained = as_trained(yaml.safe_load(saved.read_text()), run_dir)
    return trained if trained == as_trained(config, run_dir) else None
