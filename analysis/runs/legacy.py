"""Runs made by an older CollabLens load as they were trained.

Release 0.2 made the authors' networks the defaults (see the README's methods table). A run
folder records its config, but an option the older release did not have is absent from it, and
absent means "today's default" — which would build a different network for the same weights.
:func:`restore_defaults` fills each such absent option with the value the older release used,
for runs whose manifest names an older ``collablens`` version.
"""

from __future__ import annotations

import copy
from typing import Any

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
