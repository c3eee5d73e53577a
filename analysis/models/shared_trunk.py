"""One trunk, a tree of branches, K heads: the wiring of ONE, CL-ILR and MCL-OKD.

A :class:`SharedTrunkModel` is cut out of K independently initialised copies of any registered
:class:`~analysis.models.base.StagedNet`. A *split spec* ``[(stage, n), ...]`` says where the
graph forks: after ``stage`` every node splits into ``n`` children. ``[("layer1", 3)]`` is one
trunk with three branches (ONE, MCL-OKD); ``[("layer1", 2), ("layer2", 2)]`` is the binary tree
of Song & Chai's 4-head CL-ILR. The leaves (heads) are enumerated depth first, 0..K-1, with
K = the product of the ``n``.

Module paths stay readable for probes: ``trunk.layer1``, ``branches.0.layer2`` and, one level
down, ``branches.0.branches.1.layer3``; a leaf also owns ``dropout`` and ``fc``. The trunk comes
from copy 0, leaf h from copy h, and an inner node from the copy of its first leaf.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from analysis.errors import CollabError
from analysis.models.base import StagedNet
from analysis.models.collaborative import Normalize, PeerModule
from analysis.models.factory import create_model
from analysis.models.output import CollabOutput, combine_logits

SplitSpec = Sequence[tuple[str, int]]


class GradRescale(torch.autograd.Function):
    """Identity forward; backward multiplies the gradient by ``scale`` (Song & Chai 2018)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.scale, None


def rescale_grad(x: torch.Tensor, scale: float) -> torch.Tensor:
    """``x`` unchanged, but the gradient flowing back through it is multiplied by ``scale``."""
    return GradRescale.apply(x, scale)


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
    return [
        create_model(arch, num_classes=num_classes, in_chans=in_chans, **options)
        for _ in range(count)
    ]


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


def _leaf_paths(branches: nn.ModuleList, prefix: str = "branches") -> list[list[str]]:
    """Depth first, for each leaf the module paths of the branch nodes leading to it."""
    paths = []
    for i, node in enumerate(branches):
        here = f"{prefix}.{i}"
        below = [[]] if node.is_leaf else _leaf_paths(node.branches, f"{here}.branches")
        paths += [[here, *rest] for rest in below]
    return paths


class SharedTrunkModel(nn.Module):
    """A trunk, a tree of branches and K heads, returning :class:`CollabOutput`.

    Args:
        nets: K = prod(n) networks of the same architecture (their unused parts are dropped).
        splits: the tree spec ``[(stage, n), ...]``, see the module docstring.
        mean, std: per-channel input statistics (normalization happens inside the model).
        peer_names: display names of the K heads, default ``branch0..``.
        ensemble: ``logit_mean`` or ``prob_mean`` (subclasses may use a teacher instead).
        rescale_grad: Song & Chai's backprop rescaling: where the graph forks into n children
            the gradient flowing back into the parent is divided by n (forward unchanged).

    ``forward(x)``: images (B, C, H, W) in [0, 1] -> ``CollabOutput`` with ``peer_logits``
    (K, B, classes) and ``extras["features"]`` the pooled features of each head (K, B, D).
    """

    def __init__(
        self,
        nets: Sequence[StagedNet],
        *,
        splits: SplitSpec,
        mean: Sequence[float],
        std: Sequence[float],
        peer_names: Sequence[str] | None = None,
        ensemble: str = "logit_mean",
        rescale_grad: bool = False,
    ) -> None:
        super().__init__()
        cuts = check_splits(nets[0], splits)
        widths = [int(n) for _, n in splits]
        if len(nets) != math.prod(widths):
            raise ValueError(
                f"split spec {list(splits)} needs {math.prod(widths)} networks, got {len(nets)}"
            )
        self.splits = [(str(s), int(n)) for s, n in splits]
        self.normalize = Normalize(mean, std)
        self.trunk = Segment(_stages(nets[0], 0, cuts[0] + 1))
        self.branches = nn.ModuleList(_grow(nets, cuts, widths))
        self.leaf_paths = _leaf_paths(self.branches)
        self.net_probe_layers = list(nets[0].probe_layers)
        self.feature_dim = nets[0].feature_dim
        self.peer_names = list(peer_names or [f"branch{i}" for i in range(len(nets))])
        if len(self.peer_names) != len(nets):
            raise ValueError(f"got {len(self.peer_names)} peer names for {len(nets)} heads")
        self.ensemble = ensemble
        self.rescale_grad = rescale_grad
        combine_logits(torch.zeros(1, 1, 2), ensemble)  # validate the rule early

    @classmethod
    def from_registry(
        cls,
        arch: str,
        *,
        num_classes: int,
        in_chans: int,
        mean: Sequence[float],
        std: Sequence[float],
        peers: int | None = None,
        split_after: str = "layer1",
        splits: SplitSpec | None = None,
        peer_names: Sequence[str] | None = None,
        ensemble: str = "logit_mean",
        rescale_grad: bool = False,
        **options: Any,
    ) -> SharedTrunkModel:
        """Cut K copies of registered ``arch`` (built with ``options``) into a shared-trunk model.

        Either ``peers`` branches after ``split_after``, or a tree ``splits`` (then ``peers``,
        if given, must equal the number of leaves).
        """
        if splits is None:
            if peers is None:
                raise ValueError("pass peers (with split_after) or a splits tree")
            splits = [(split_after, peers)]
        count = math.prod(n for _, n in splits)
        if peers is not None and peers != count:
            raise CollabError(
                f"the split tree {list(splits)} has {count} heads but {peers} peers were "
                "asked for; make them agree"
            )
        nets = build_nets(arch, count=count, num_classes=num_classes, in_chans=in_chans, **options)
        names = peer_names or [f"{arch}:branch{i}" for i in range(count)]
        return cls(
            nets,
            splits=splits,
            mean=mean,
            std=std,
            peer_names=names,
            ensemble=ensemble,
            rescale_grad=rescale_grad,
        )

    @property
    def num_peers(self) -> int:
        return len(self.peer_names)

    def peer_path(self, i: int) -> list[str]:
        """Module paths of the nodes peer ``i`` runs through: ``["trunk", "branches.0", ...]``."""
        return ["trunk", *self.leaf_paths[i]]

    def peer_prefix(self, i: int) -> str:
        """Module-path prefix of the layers only head ``i`` owns, e.g. ``"branches.2."``."""
        return self.peer_path(i)[-1] + "."

    def peer_probe_layers(self, i: int) -> list[str]:
        """Module paths (in this model) of peer ``i``'s main stages, e.g. ``trunk.layer1``."""
        path = self.peer_path(i)
        return [
            f"{node_path}.{name}"
            for node_path in path
            for name in self.get_submodule(node_path).stage_names
            if name in self.net_probe_layers
        ]

    def peer(self, i: int) -> nn.Module:
        """Head ``i`` as a plain module (images in [0, 1] -> logits) sharing this model's weights.

        It is a :class:`StagedNet` of the original stage names (``net.layer1``, ...) behind the
        normalization, so single-network tools apply unchanged. It has no gradient rescaling.
        """
        nodes = [self.get_submodule(p) for p in self.peer_path(i)]
        stages = {name: node._modules[name] for node in nodes for name in node.stage_names}
        net = StagedNet(stages, nodes[-1].fc, probe_layers=self.net_probe_layers)
        net.dropout = nodes[-1].dropout
        return PeerModule(self.normalize, net)

    def forward_parts(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Trunk output map (B, C', H', W') and pooled head features (K, B, D) of images x."""
        if x.dim() != 4:
            raise ValueError(
                f"a shared-trunk model takes one batch (B, C, H, W), got shape {tuple(x.shape)}"
            )
        trunk = self.trunk(self.normalize(x))
        feats: list[torch.Tensor] = []
        self._descend(trunk, self.branches, feats)
        return trunk, torch.stack(feats)

    def _descend(self, h: torch.Tensor, children: nn.ModuleList, out: list[torch.Tensor]) -> None:
        if self.rescale_grad:
            h = rescale_grad(h, 1.0 / len(children))
        for child in children:
            y = child(h)
            if child.is_leaf:
                out.append(y)
            else:
                self._descend(y, child.branches, out)

    def classify(self, feats: torch.Tensor) -> torch.Tensor:
        """Pooled features (K, B, D) -> logits (K, B, classes), each head its own classifier."""
        leaves = [self.get_submodule(path[-1]) for path in self.leaf_paths]
        return torch.stack([leaf.fc(leaf.dropout(f)) for leaf, f in zip(leaves, feats)])

    def forward(self, x: torch.Tensor) -> CollabOutput:
        _, feats = self.forward_parts(x)
        logits = self.classify(feats)
        return CollabOutput(logits, combine_logits(logits, self.ensemble), {"features": feats})
