"""The one output contract every collaborative model returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class CollabOutput:
    """What a collaborative model's ``forward`` returns.

    Attributes:
        peer_logits: (K, B, C) logits of each of the K peers (or heads).
        ensemble_logits: (B, C) logits of the model's ensemble prediction.
        extras: optional named tensors (teacher logits, embeddings, gates, ...).
    """

    peer_logits: torch.Tensor
    ensemble_logits: torch.Tensor
    extras: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def num_peers(self) -> int:
        return self.peer_logits.shape[0]


def combine_logits(peer_logits: torch.Tensor, rule: str = "logit_mean") -> torch.Tensor:
    """Ensemble (K, B, C) peer logits into (B, C) logits.

    ``logit_mean`` averages logits; ``prob_mean`` averages probabilities and returns their log,
    so that ``softmax`` of the result is the mean probability.
    """
    if rule == "logit_mean":
        return peer_logits.mean(dim=0)
    if rule == "prob_mean":
        k = peer_logits.shape[0]
        return torch.logsumexp(peer_logits.log_softmax(dim=-1), dim=0) - torch.log(
            torch.tensor(float(k), dtype=peer_logits.dtype, device=peer_logits.device)
        )
    raise ValueError(f"unknown ensemble rule {rule!r}; use 'logit_mean' or 'prob_mean'")
