"""Containers that turn plain classifiers into one collaborative model."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from analysis.models.output import CollabOutput, combine_logits


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


class CollaborativeModel(nn.Module):
    """K independent peer networks trained together.

    ``forward(x)`` accepts either one batch (B, C, H, W) that every peer sees, or one view per
    peer stacked as (K, B, C, H, W), and runs exactly one forward pass per peer.

    Args:
        peers: the K peer networks, each mapping normalized images to logits.
        mean, std: per-channel input statistics applied inside the model.
        peer_names: display names, default ``peer0..peerK-1``.
        ensemble: ``logit_mean`` or ``prob_mean`` (see :func:`combine_logits`).
    """

    def __init__(
        self,
        peers: Sequence[nn.Module],
        *,
        mean: Sequence[float],
        std: Sequence[float],
        peer_names: Sequence[str] | None = None,
        ensemble: str = "logit_mean",
    ) -> None:
        super().__init__()
        if len(peers) < 1:
            raise ValueError("a collaborative model needs at least one peer")
        self.normalize = Normalize(mean, std)
        self.peers = nn.ModuleList(peers)
        self.peer_names = list(peer_names or [f"peer{i}" for i in range(len(peers))])
        self.ensemble = ensemble
        combine_logits(torch.zeros(1, 1, 2), ensemble)  # validate the rule early

    @property
    def num_peers(self) -> int:
        return len(self.peers)

    def peer(self, i: int) -> nn.Module:
        """Peer ``i`` as a plain module: images in [0, 1] -> logits."""
        return PeerModule(self.normalize, self.peers[i])

    def peer_prefix(self, i: int) -> str:
        """Module-path prefix of peer ``i``'s own layers, e.g. ``"peers.0."``."""
        return f"peers.{i}."

    def peer_probe_layers(self, i: int) -> list[str]:
        """Module paths (in this model) of peer ``i``'s main stages, e.g. ``peers.0.layer1``."""
        return [
            f"{self.peer_prefix(i)}{name}" for name in getattr(self.peers[i], "probe_layers", [])
        ]

    def forward(self, x: torch.Tensor) -> CollabOutput:
        if x.dim() == 5:
            if x.shape[0] != self.num_peers:
                raise ValueError(f"got {x.shape[0]} views for {self.num_peers} peers")
            views = [x[k] for k in range(self.num_peers)]
        else:
            views = [x] * self.num_peers
        logits = torch.stack([net(self.normalize(v)) for net, v in zip(self.peers, views)])
        return CollabOutput(logits, combine_logits(logits, self.ensemble))
