"""Deep mutual learning (Zhang, Xiang, Hospedales & Lu, CVPR 2018)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from analysis.methods.base import LossParts, Method, MethodOptions, peer_cross_entropy
from analysis.models import CollabOutput


@dataclass
class DMLOptions(MethodOptions):
    """Attributes:
    temperature: softening temperature T; the KL terms are multiplied by T².
    kl_weight: weight of the mimicry term (1 in the paper).
    """

    name: str = "dml"
    temperature: float = 1.0
    kl_weight: float = 1.0


class DML(Method):
    """L_k = CE(z_k, y) + w/(K-1) · Σ_{j≠k} T²·KL(p_j ‖ p_k), with every p_j detached.

    One forward pass per peer per batch; because the targets p_j are detached, the summed
    objective gives peer k exactly the gradient of its own L_k and no peer receives gradient
    through another peer's loss.
    """

    Options = DMLOptions
    soft_targets = True

    def loss(
        self,
        out: CollabOutput,
        target: torch.Tensor,
        *,
        epoch: float,
        index: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, LossParts]:
        opts: DMLOptions = self.options
        ce = peer_cross_entropy(out.peer_logits, target)
        kl = mutual_kl(out.peer_logits, temperature=opts.temperature)
        return (ce + opts.kl_weight * kl).sum(), {"ce": ce.detach(), "kl": kl.detach()}


def mutual_kl(peer_logits: torch.Tensor, *, temperature: float) -> torch.Tensor:
    """Mean over the other peers of T²·KL(p_j/T ‖ p_k/T), targets detached: (K, B, C) -> (K,).

    Batch-mean reduction. The j = k term is zero in value and in gradient (its target is the
    detached p_k itself), so summing over all j and dividing by K-1 is exact.
    """
    k, batch = peer_logits.shape[:2]
    if k < 2:
        return peer_logits.new_zeros(k)
    log_p = (peer_logits / temperature).log_softmax(dim=-1)  # (K, B, C)
    log_q = log_p.detach()
    # Pairwise differences (j, k, B, C) rather than Σ q log q − Σ q log p: the latter cancels
    # badly in float32, the former is exactly zero for identical peers.
    diff = log_q.unsqueeze(1) - log_p.unsqueeze(0)
    kl = (log_q.exp().unsqueeze(1) * diff).sum(dim=(0, 2, 3))
    return kl / batch * temperature**2 / (k - 1)
