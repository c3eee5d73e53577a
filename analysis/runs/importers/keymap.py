"""Declarative key mappings from a foreign state dict to ours, applied strictly.

A :class:`KeyMap` is a short table of regular-expression renames applied in order to every
source key. A rename may offer several replacements (a tuple): each combination is tried in
order and the first that names a target tensor of the same shape wins, which lets one table
serve two layouts of our own networks (e.g. a shortcut with and without a pooling layer in
front of its convolution). The mapping is strict: every target tensor must be filled, every
source tensor used, and shapes must agree; otherwise one :class:`CollabError` lists what is
missing, unexpected and mis-shaped.

Two things are exempt, and recorded: target tensors matching ``absent`` (parts the authors'
files never store, e.g. a training-only embedding head kept in their loss module; they keep
their initialisation) and BN ``num_batches_tracked`` counters (PyTorch < 0.4.1 files have
none; they change nothing at inference).
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch

from analysis.errors import CollabError

Rule = tuple[str, str | tuple[str, ...]]
OPTIONAL = re.compile(r"(^|\.)num_batches_tracked$")
SHOWN = 3


@dataclass(frozen=True)
class KeyMap:
    """Ordered renames ``(pattern, replacement | (replacement, ...))`` plus declared gaps.

    Attributes:
        rules: applied in order with ``re.sub`` (``\\1`` etc. refer to the pattern's groups).
        absent: patterns of target keys the source never stores (left at initialisation).
        dropped: patterns of source keys with nothing to fill in our model (ignored).
    """

    rules: tuple[Rule, ...] = ()
    absent: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()
    peers: bool = False

    def per_peer(self) -> KeyMap:
        """This map (written for one network) for keys ``"<i>/<key>"``, landing in ``peers.<i>.``."""
        return dataclasses.replace(self, peers=True)

    def is_dropped(self, key: str) -> bool:
        local = key.split("/", 1)[1] if self.peers else key
        return any(re.search(p, local) for p in self.dropped)

    def candidates(self, key: str) -> list[str]:
        """Every renaming of ``key`` the rules allow, most preferred first (no duplicates)."""
        if self.peers:
            index, key = key.split("/", 1)
            return [f"peers.{index}.{name}" for name in self._renamed(key)]
        return self._renamed(key)

    def _renamed(self, key: str) -> list[str]:
        names = [key]
        for pattern, replacement in self.rules:
            options = replacement if isinstance(replacement, tuple) else (replacement,)
            names = [re.sub(pattern, r, n) for n, r in itertools.product(names, options)]
        return list(dict.fromkeys(names))

    def describe(self) -> dict:
        """A JSON-able record of the table (for the run's provenance)."""
        return {
            "rules": [[p, list(r) if isinstance(r, tuple) else r] for p, r in self.rules],
            "absent": list(self.absent),
            "dropped": list(self.dropped),
        }


@dataclass
class Mapped:
    """The result of :func:`apply_keymap`: our state dict and what was done to get it."""

    state: dict[str, torch.Tensor]
    pairs: dict[str, str]
    left_at_init: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)


def apply_keymap(
    source: Mapping[str, torch.Tensor],
    target: Mapping[str, torch.Tensor],
    keymap: KeyMap,
    *,
    what: str,
    hint: Callable[[], str] | None = None,
) -> Mapped:
    """Rename ``source`` into the keys of ``target`` by ``keymap``; strictly (see module doc).

    Args:
        source: the foreign tensors (already unwrapped, ``module.`` stripped).
        target: our model's state dict (the tensors to fill, for names and shapes).
        what: how to name the source in the error, e.g. ``"model_best.pth.tar (dc)"``.
        hint: called only on failure; returns advice such as "try --source mcl_okd".

    Raises:
        CollabError: one line naming the first few missing, unexpected and mis-shaped keys.
    """
    state: dict[str, torch.Tensor] = {}
    pairs: dict[str, str] = {}
    unexpected: list[str] = []
    misshaped: list[str] = []
    dropped: list[str] = []
    aimed: set[str] = set()  # targets of mis-shaped tensors: reported once, not as missing
    for key, tensor in source.items():
        if keymap.is_dropped(key):
            dropped.append(key)
            continue
        names = keymap.candidates(key)
        known = [n for n in names if n in target and n not in state]
        fits = [n for n in known if tuple(target[n].shape) == tuple(tensor.shape)]
        if fits:
            state[fits[0]] = tensor
            pairs[key] = fits[0]
        elif known:
            aimed.add(known[0])
            misshaped.append(
                f"{key} {tuple(tensor.shape)} -> {known[0]} {tuple(target[known[0]].shape)}"
            )
        else:
            unexpected.append(key if names[0] == key else f"{key} (-> {names[0]})")
    unfilled = [k for k in target if k not in state]
    left = [
        k for k in unfilled if any(re.search(p, k) for p in keymap.absent) or OPTIONAL.search(k)
    ]
    missing = [k for k in unfilled if k not in set(left) and k not in aimed]
    if missing or unexpected or misshaped:
        parts = []
        for label, items in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("mis-shaped", misshaped),
        ):
            if items:
                more = f", … {len(items) - SHOWN} more" if len(items) > SHOWN else ""
                parts.append(f"{label} {len(items)} ({'; '.join(items[:SHOWN])}{more})")
        advice = hint() if hint else ""
        raise CollabError(
            f"{what} does not fit the model: {', '.join(parts)}" + (f"; {advice}" if advice else "")
        )
    return Mapped(state=state, pairs=pairs, left_at_init=left, dropped=dropped)
