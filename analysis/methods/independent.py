"""Independent training: the no-collaboration baseline every comparison needs."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from analysis.methods.base import LossParts, Method, MethodOptions, peer_cross_entropy
from analysis.models import CollabOutput


@dataclass
class IndependentOptions(MethodOptions):
    name: str = "independent"


class Independent(Method):
    """K peers, each trained with its own cross-entropy only; ensemble = mean of logits.

    The summed loss gives each peer exactly the gradient of its own cross-entropy, so this is
    the same as K separate runs that share data order.
    """

    Options = IndependentOptions
    soft_targets = True

    def loss(
        self,
        out: CollabOutput,
        target: torch.Tensor,
        *,
        epoch: float,
        index: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, LossParts]:
        ce = peer_cross_entropy(out.peer_logits, target)
        return ce.sum(), {"ce": ce.detach()}
