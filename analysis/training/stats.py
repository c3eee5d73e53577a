"""Running per-peer and ensemble loss/accuracy over an epoch, and evaluation on a split."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from analysis.methods import Method, peer_cross_entropy
from analysis.models import CollabOutput


class EpochStats:
    """Sample-weighted sums of the objective, per-peer CE/accuracy and ensemble CE/accuracy."""

    def __init__(self) -> None:
        self.n = 0
        self.loss = 0.0
        self.peer_loss: torch.Tensor | None = None
        self.peer_correct: torch.Tensor | None = None
        self.ens_loss = 0.0
        self.ens_correct = 0

    @torch.no_grad()
    def update(self, out: CollabOutput, target: torch.Tensor, loss: torch.Tensor) -> None:
        b = target.shape[0]
        ce = peer_cross_entropy(out.peer_logits, target).double().cpu() * b
        correct = (out.peer_logits.argmax(dim=-1) == target).sum(dim=1).cpu()
        self.peer_loss = ce if self.peer_loss is None else self.peer_loss + ce
        self.peer_correct = correct if self.peer_correct is None else self.peer_correct + correct
        self.ens_loss += F.cross_entropy(out.ensemble_logits, target).item() * b
        self.ens_correct += int((out.ensemble_logits.argmax(dim=-1) == target).sum())
        self.loss += float(loss) * b
        self.n += b

    def summary(self) -> dict[str, Any]:
        n = max(self.n, 1)
        return {
            "loss": self.loss / n,
            "peer_loss": [float(v) / n for v in self.peer_loss]
            if self.peer_loss is not None
            else [],
            "peer_acc": [int(v) / n for v in self.peer_correct]
            if self.peer_correct is not None
            else [],
            "ensemble_loss": self.ens_loss / n,
            "ensemble_acc": self.ens_correct / n,
            "samples": self.n,
        }

    @property
    def running_acc(self) -> float:
        return self.ens_correct / max(self.n, 1)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    *,
    method: Method | None = None,
    device: torch.device,
    epoch: float = 0.0,
) -> dict[str, Any]:
    """Per-peer and ensemble loss/accuracy of ``model`` over ``loader`` (restores train mode)."""
    was_training = model.training
    model.eval()
    stats = EpochStats()
    try:
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            out = model(x)
            loss = method.loss(out, y, epoch=epoch)[0] if method is not None else torch.zeros(())
            stats.update(out, y, loss)
    finally:
        model.train(was_training)
    return stats.summary()
