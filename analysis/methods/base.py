"""What every collaborative method provides: its options, its model wiring and its loss."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from analysis.models import CollaborativeModel, CollabOutput, StagedNet, create_model
from analysis.models.branching import build_nets


class DataShape(Protocol):
    """The dataset facts a model needs: a ``DataBundle`` or the ``data`` record of a manifest."""

    num_classes: int
    in_chans: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


@dataclass
class MethodOptions:
    """Options every method has; subclasses add their own (temperature, weights, ...)."""

    name: str


LossParts = dict[str, torch.Tensor]


class Collective:
    """How a method's global state reaches the other processes of a distributed run.

    This one is a single process: both operations return their argument. Under torchrun the
    trainer gives the method one that gathers from and broadcasts to every rank.
    """

    world: int = 1

    def gather(self, tensor: torch.Tensor, dim: int = 0) -> torch.Tensor:
        """``tensor`` of every rank (detached), concatenated along ``dim`` in rank order."""
        return tensor

    def broadcast(self, tensor: torch.Tensor) -> torch.Tensor:
        """Rank 0's ``tensor`` on every rank (in place)."""
        return tensor


class Method:
    """Base class: K peers built from the model registry, trained side by side.

    Subclasses set ``Options`` and override :meth:`loss` (and :meth:`build_model` when the
    peers are wired differently, e.g. a shared trunk).

    Attributes:
        per_peer_views: if True the trainer builds independently augmented views of every
            image, :meth:`num_views` of them (one per peer unless a method says otherwise),
            i.e. the model receives (V, B, C, H, W) batches during training.
        weight_decay_scale: factor the trainer applies to ``optim.weight_decay`` (e.g. the
            divided weight decay of divide-and-co-training).
        collective: reaches the other ranks of a distributed run (see :class:`Collective`);
            methods whose state must be global (memory banks) use it.
        soft_targets: the loss reads the labels only through cross-entropy, so it also takes
            (B, C) class probabilities (MixUp and CutMix, ``data.mixup_alpha`` /
            ``data.cutmix_alpha``).
    """

    Options: type[MethodOptions] = MethodOptions
    per_peer_views: bool = False
    weight_decay_scale: float = 1.0
    collective: Collective = Collective()
    soft_targets: bool = False

    def __init__(self, options: MethodOptions) -> None:
        self.options = options

    def num_views(self, model: nn.Module) -> int:
        """Augmented views per image the trainer builds for ``model``: 1 without
        ``per_peer_views``, else one per peer (``model.num_peers``)."""
        return model.num_peers if self.per_peer_views else 1

    def build_model(self, model_cfg: Any, data: DataShape) -> nn.Module:
        """Build a :class:`CollaborativeModel` of ``model_cfg.peers`` registered networks."""
        names, peers = self.peer_networks(model_cfg, data)
        return CollaborativeModel(
            peers, mean=data.mean, std=data.std, peer_names=names, ensemble=model_cfg.ensemble
        )

    def peer_networks(self, model_cfg: Any, data: DataShape) -> tuple[list[str], list[nn.Module]]:
        """One registered network per peer, built in peer order, and their names ``<arch>#<i>``.

        ``model_cfg.arch`` is one name for all ``model_cfg.peers`` peers or a list, one per peer.
        """
        arch = model_cfg.arch
        archs = arch if isinstance(arch, list) else [arch] * model_cfg.peers
        nets = [
            create_model(
                name, num_classes=data.num_classes, in_chans=data.in_chans, **model_cfg.options
            )
            for name in archs
        ]
        return [f"{name}#{i}" for i, name in enumerate(archs)], nets

    def trunk_copies(self, model_cfg: Any, data: DataShape) -> list[StagedNet]:
        """``model_cfg.peers`` independently initialised copies of ``model_cfg.arch``, to be cut
        into a shared trunk and branches (:class:`~analysis.models.shared_trunk.SharedTrunkModel`).
        """
        return build_nets(
            model_cfg.arch,
            count=model_cfg.peers,
            num_classes=data.num_classes,
            in_chans=data.in_chans,
            **model_cfg.options,
        )

    def loss(
        self,
        out: CollabOutput,
        target: torch.Tensor,
        *,
        epoch: float,
        index: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, LossParts]:
        """Return the total training objective and its named parts (for logging).

        Args:
            out: the model output, ``peer_logits`` (K, B, C).
            target: (B,) class indices.
            epoch: fractional epoch (e.g. 2.5 = half-way through the third), for warm-ups.
            index: (B,) dataset indices of the samples during training (memory banks), else None.
        """
        raise NotImplementedError

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Training state the method keeps outside the model (e.g. memory banks), for resuming."""
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if state:
            raise ValueError(f"{type(self).__name__} keeps no state but got {sorted(state)}")


def peer_cross_entropy(peer_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each peer: (K, B, C), labels (B,) or class probabilities (B, C) -> (K,)."""
    k, b, c = peer_logits.shape
    target = target.repeat(k) if target.dim() == 1 else target.repeat(k, 1)
    ce = F.cross_entropy(peer_logits.reshape(k * b, c), target, reduction="none")
    return ce.view(k, b).mean(dim=1)
