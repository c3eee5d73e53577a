"""Running per-peer and ensemble loss/accuracy over an epoch, and evaluation on a split."""

from __future__ import annotations

from collections.abc import Callable, Iterable
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
        self.parts: dict[str, torch.Tensor] = {}  # sample-weighted sums of the loss parts

    @torch.no_grad()
    def update(
        self,
        out: CollabOutput,
        target: torch.Tensor,
        loss: torch.Tensor,
        parts: dict[str, torch.Tensor] | None = None,
    ) -> None:
        b = target.shape[0]
        soft, target = target, (target.argmax(-1) if target.dim() == 2 else target)
        for name, value in (parts or {}).items():  # summed where they are: no extra device sync
            value = value.detach().float() * b
            self.parts[name] = self.parts[name] + value if name in self.parts else value
        ce = peer_cross_entropy(out.peer_logits, soft).double().cpu() * b
        correct = (out.peer_logits.argmax(dim=-1) == target).sum(dim=1).cpu()
        self.peer_loss = ce if self.peer_loss is None else self.peer_loss + ce
        self.peer_correct = correct if self.peer_correct is None else self.peer_correct + correct
        self.ens_loss += F.cross_entropy(out.ensemble_logits, soft).item() * b
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

    def part_means(self) -> dict[str, list[float]]:
        """Epoch means of the method's loss parts, each as a flat list (one value per peer)."""
        n = max(self.n, 1)
        return {
            k: [float(x) / n for x in v.cpu().double().flatten()] for k, v in self.parts.items()
        }

    def all_reduce(self, reduce: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Sum every count over the processes of a distributed run: ``reduce`` sums a float64
        vector in place over the ranks (the same layout on each, as they run the same code)."""
        if self.peer_loss is None:
            return
        names = sorted(self.parts)
        flat = torch.cat(
            [
                torch.tensor(
                    [self.n, self.loss, self.ens_loss, self.ens_correct], dtype=torch.float64
                ),
                self.peer_loss.double(),
                self.peer_correct.double(),
                *(self.parts[k].detach().cpu().double().flatten() for k in names),
            ]
        )
        flat = reduce(flat)
        k = len(self.peer_loss)
        self.n, self.ens_correct = int(flat[0]), int(flat[3])
        self.loss, self.ens_loss = float(flat[1]), float(flat[2])
        self.peer_loss = flat[4 : 4 + k].clone()
        self.peer_correct = flat[4 + k : 4 + 2 * k].round().long()
        at = 4 + 2 * k
        for name in names:
            size = self.parts[name].numel()
            self.parts[name] = flat[at : at + size].view_as(self.parts[name]).clone()
            at += size

    @property
    def running_acc(self) -> float:
        return self.ens_correct / max(self.n, 1)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader | Iterable,
    *,
    method: Method | None = None,
    device: torch.device,
    epoch: float = 0.0,
    forward: Callable[[nn.Module, torch.Tensor], CollabOutput] | None = None,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, Any]:
    """Per-peer and ensemble loss/accuracy of ``model`` over ``loader`` (restores train mode).

    ``forward(model, x)`` replaces ``model(x)`` (the trainer's mixed precision and memory
    format); ``reduce`` sums the counts over the ranks of a distributed run, each of which
    evaluated its own share of the split (see :meth:`EpochStats.all_reduce`).
    """
    was_training = model.training
    model.eval()
    stats = EpochStats()
    try:
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            out = model(x) if forward is None else forward(model, x)
            loss = method.loss(out, y, epoch=epoch)[0] if method is not None else torch.zeros(())
            stats.update(out, y, loss)
    finally:
        model.train(was_training)
    if reduce is not None:
        stats.all_reduce(reduce)
    return stats.summary()
