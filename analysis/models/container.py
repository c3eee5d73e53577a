"""The one base of every peer container: normalization inside the model, K named peers, an ensemble.

Every collaborative model (:class:`~analysis.models.CollaborativeModel`,
:class:`~analysis.models.exits.MultiExitModel`,
:class:`~analysis.models.shared_trunk.SharedTrunkModel`,
:class:`~analysis.models.online_teacher.OnlineTeacherModel`) extends :class:`PeerContainer`,
which registers ``normalize`` as the model's first module and answers ``num_peers``,
``peer_names`` and ``ensemble``. Containers of separate peer networks (``peers.<i>.``) extend
:class:`SeparatePeers`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from analysis.models.output import combine_logits


class Normalize(nn.Module):
    """Per-channel ``(x - mean) / std`` with the statistics stored as buffers.

    Models take images in [0, 1]; keeping normalization inside the model means every probe,
    attribution method and uploaded image sees the same input space as training.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(list(mean)).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std)).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class PeerModule(nn.Module):
    """A single peer as a plain ``nn.Module``: images (B, C, H, W) in [0, 1] -> logits (B, C')."""

    def __init__(self, normalize: nn.Module, net: nn.Module) -> None:
        super().__init__()
        self.normalize = normalize
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))


class PeerContainer(nn.Module):
    """Base of the collaborative containers: K named peers behind one input normalization.

    Subclasses call ``super().__init__`` before registering their own modules (so that
    ``normalize`` comes first in the state dict) and implement ``peer``, ``peer_prefix`` and
    ``forward`` (images -> :class:`~analysis.models.CollabOutput`).

    Args:
        num_peers: K, the number of peers (networks, heads or exits).
        mean, std: per-channel input statistics applied inside the model.
        peer_names: display names, default ``<default_name>0..K-1``.
        default_name: stem of the default peer names.
        ensemble: the rule :meth:`combine` applies, checked by :meth:`check_ensemble`.
    """

    def __init__(
        self,
        *,
        num_peers: int,
        mean: Sequence[float],
        std: Sequence[float],
        peer_names: Sequence[str] | None = None,
        default_name: str = "peer",
        ensemble: str = "logit_mean",
    ) -> None:
        super().__init__()
        names = list(peer_names or [f"{default_name}{i}" for i in range(num_peers)])
        if len(names) != num_peers:
            raise ValueError(f"got {len(names)} peer names for {num_peers} peers")
        self.check_ensemble(ensemble)
        self.normalize = Normalize(mean, std)
        self.peer_names = names
        self.ensemble = ensemble

    def check_ensemble(self, rule: str) -> None:
        """Raise on an ensemble rule :meth:`combine` does not know."""
        combine_logits(torch.zeros(1, 1, 2), rule)

    @property
    def num_peers(self) -> int:
        return len(self.peer_names)

    def peer(self, i: int) -> nn.Module:
        """Peer ``i`` as a plain module sharing this model's weights: images in [0, 1] -> logits."""
        raise NotImplementedError

    def peer_prefix(self, i: int) -> str:
        """Module-path prefix of the layers peer ``i`` owns, e.g. ``"peers.0."``."""
        raise NotImplementedError

    def combine(self, peer_logits: torch.Tensor) -> torch.Tensor:
        """Ensemble logits (B, C) from peer logits (K, B, C) by ``self.ensemble``."""
        return combine_logits(peer_logits, self.ensemble)

    def check_batch(self, x: torch.Tensor) -> None:
        """Raise unless ``x`` is one batch of images (B, C, H, W)."""
        if x.dim() != 4:
            raise ValueError(
                f"{type(self).__name__} takes one batch (B, C, H, W), got shape {tuple(x.shape)}"
            )


class SeparatePeers(PeerContainer):
    """A container of K separate peer networks, under ``peers.<i>.``.

    Args:
        peers: the K networks, each mapping normalized images to logits.
        **kwargs: as :class:`PeerContainer` (less ``num_peers``).
    """

    def __init__(self, peers: Sequence[nn.Module], **kwargs: Any) -> None:
        super().__init__(num_peers=len(peers), **kwargs)
        self.peers = nn.ModuleList(peers)

    def peer(self, i: int) -> nn.Module:
        """Peer ``i`` as a plain module: images in [0, 1] -> logits."""
        return PeerModule(self.normalize, self.peers[i])

    def peer_prefix(self, i: int) -> str:
        return f"peers.{i}."
