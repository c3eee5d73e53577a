"""One trunk, a tree of branches, K heads: the wiring of ONE, CL-ILR and MCL-OKD.

A :class:`SharedTrunkModel` is cut out of K independently initialised copies of any registered
:class:`~analysis.models.base.StagedNet` by a *split spec* ``[(stage, n), ...]`` (see
:mod:`analysis.models.branching`): ``[("layer1", 3)]`` is one trunk with three branches (ONE,
MCL-OKD); ``[("layer1", 2), ("layer2", 2)]`` is the binary tree of Song & Chai's 4-head CL-ILR.
The heads are the leaves, enumerated depth first.

Module paths stay readable for probes: ``trunk.layer1``, ``branches.0.layer2`` and, one level
down, ``branches.0.branches.1.layer3``; a leaf also owns ``dropout`` and ``fc``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from analysis.errors import CollabError
from analysis.models.base import StagedNet
from analysis.models.branching import SplitSpec, build_nets, cut_tree, leaf_paths
from analysis.models.container import PeerContainer, PeerModule
from analysis.models.output import CollabOutput


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


class SharedTrunkModel(PeerContainer):
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
        trunk, branches = cut_tree(nets, splits)
        super().__init__(
            num_peers=len(nets),
            mean=mean,
            std=std,
            peer_names=peer_names,
            default_name="branch",
            ensemble=ensemble,
        )
        self.splits = [(str(s), int(n)) for s, n in splits]
        self.trunk = trunk
        self.branches = nn.ModuleList(branches)
        self.leaf_paths = leaf_paths(self.branches)
        self.net_probe_layers = list(nets[0].probe_layers)
        self.feature_dim = nets[0].feature_dim
        self.rescale_grad = rescale_grad

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
        self.check_batch(x)
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
        return CollabOutput(logits, self.combine(logits), {"features": feats})
