"""Cutting K copies of a network into a trunk and a tree of branches.

A *split spec* ``[(stage, n), ...]`` says where the graph forks: after ``stage`` every node
splits into ``n`` children. ``[("layer1", 3)]`` is one trunk with three branches;
``[("layer1", 2), ("layer2", 2)]`` is a binary tree with four leaves (heads). The leaves are
enumerated depth first, 0..K-1, with K = the product of the ``n``. The trunk comes from copy 0,
leaf h from copy h, and an inner node from the copy of its first leaf; every node keeps the
original stage names (``layer2``, ...), and a leaf also owns the copy's ``dropout`` and ``fc``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from analysis.errors import CollabError
from analysis.models.base import StagedNet
from analysis.models.external import require_staged
from analysis.models.factory import create_model

SplitSpec = Sequence[tuple[str, int]]


class Segment(nn.Module):
    """Consecutive feature stages of one network copy, under their original names.

    Args:
        stages: ordered name -> module (e.g. ``{"layer2": ...}``), applied in order.
    """

    def __init__(self, stages: Mapping[str, nn.Module]) -> None:
        super().__init__()
        for name, module in stages.items():
            self.add_module(name, module)
        self.stage_names: tuple[str, ...] = tuple(stages)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.stage_names:
            x = self._modules[name](x)
        return x


class Branch(Segment):
    """A tree node: its own stages, then child ``branches`` or a head (``dropout``, ``fc``)."""

    def __init__(
        self,
        stages: Mapping[str, nn.Module],
        *,
        children: Sequence[Branch] = (),
        head: StagedNet | None = None,
    ) -> None:
        super().__init__(stages)
        if (head is None) == (not children):
            raise ValueError("a branch has either child branches or a head, not both or neither")
        if children:
            self.branches = nn.ModuleList(children)
        else:
            self.dropout, self.fc = head.dropout, head.fc

    @property
    def is_leaf(self) -> bool:
        return "fc" in self._modules


def build_nets(
    arch: str, *, count: int, num_classes: int, in_chans: int, **options: Any
) -> list[StagedNet]:
    """``count`` independently initialised copies of registered network ``arch``."""
    if not isinstance(arch, str):
        raise CollabError(
            f"a shared-trunk model is cut from one architecture, got model.arch={arch!r}; "
            "set model.arch to a single registered name"
        )
    nets = [
        create_model(arch, num_classes=num_classes, in_chans=in_chans, **options)
        for _ in range(count)
    ]
    require_staged(nets, what="a shared trunk cut into branches")
    return nets


def check_splits(net: StagedNet, splits: SplitSpec) -> list[int]:
    """Positions (in ``net.feature_names``) after which the graph forks; CollabError if invalid."""
    names = list(net.feature_names)
    last_probe = max(names.index(p) for p in net.probe_layers if p in names)
    cuts = []
    for stage, n in splits:
        if stage not in names or names.index(stage) >= last_probe:
            usable = ", ".join(names[:last_probe])
            raise CollabError(
                f"cannot split {type(net).__name__} after stage {stage!r} (branches must keep at "
                f"least one stage); split after one of: {usable}"
            )
        if n < 1:
            raise CollabError(
                f"a split after {stage!r} needs at least 1 branch, got {n}; use e.g. 2"
            )
        cuts.append(names.index(stage))
    if not cuts or cuts != sorted(set(cuts)):
        raise CollabError(
            f"split stages {[s for s, _ in splits]} must be distinct and in forward order"
        )
    return cuts


def _stages(net: StagedNet, start: int, stop: int) -> dict[str, nn.Module]:
    return {name: net._modules[name] for name in net.feature_names[start:stop]}


def _grow(
    nets: Sequence[StagedNet], cuts: list[int], widths: list[int], *, first: int = 0
) -> list[Branch]:
    """The ``widths[0]`` children (with their subtrees) of a node whose first leaf is ``first``."""
    leaves_each = math.prod(widths[1:])
    children = []
    for c in range(widths[0]):
        leaf0 = first + c * leaves_each
        net = nets[leaf0]
        if len(cuts) == 1:
            children.append(Branch(_stages(net, cuts[0] + 1, len(net.feature_names)), head=net))
        else:
            grand = _grow(nets, cuts[1:], widths[1:], first=leaf0)
            children.append(Branch(_stages(net, cuts[0] + 1, cuts[1] + 1), children=grand))
    return children


def leaf_paths(branches: nn.ModuleList, prefix: str = "branches") -> list[list[str]]:
    """Depth first, for each leaf the module paths of the branch nodes leading to it."""
    paths = []
    for i, node in enumerate(branches):
        here = f"{prefix}.{i}"
        below = [[]] if node.is_leaf else leaf_paths(node.branches, f"{here}.branches")
        paths += [[here, *rest] for rest in below]
    return paths


def cut_tree(nets: Sequence[StagedNet], splits: SplitSpec) -> tuple[Segment, list[Branch]]:
    """The trunk (stages of copy 0 up to the first split) and the top-level branches."""
    cuts = check_splits(nets[0], splits)
    widths = [int(n) for _, n in splits]
    if len(nets) != math.prod(widths):
        raise ValueError(
            f"split spec {list(splits)} needs {math.prod(widths)} networks, got {len(nets)}"
        )
    return Segment(_stages(nets[0], 0, cuts[0] + 1)), _grow(nets, cuts, widths)
