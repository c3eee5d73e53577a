"""K independent peer networks trained together: the container of DML-like methods."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from analysis.models.container import Normalize, PeerModule, SeparatePeers
from analysis.models.output import CollabOutput

__all__ = ["CollaborativeModel", "Normalize", "PeerModule"]  # the last two: former home


class CollaborativeModel(SeparatePeers):
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
        if len(peers) < 1:
            raise ValueError("a collaborative model needs at least one peer")
        super().__init__(peers, mean=mean, std=std, peer_names=peer_names, ensemble=ensemble)

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
        return CollabOutput(logits, self.combine(logits))
