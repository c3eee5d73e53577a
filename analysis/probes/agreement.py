"""How much do the peers agree, and what does their ensemble gain over the best of them?

All functions are pure: they read a :class:`Predictions` (or raw logits) and return tensors or
floats. Only :func:`collect_predictions` touches a model, and it leaves the model exactly as it
found it (same device, same train/eval mode of every submodule, no gradients recorded).

Shapes: K peers, N samples, C classes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from analysis.errors import CollabError
from analysis.probes.model_state import eval_mode, on_device, probe_layout

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Predictions:
    """A collaborative model's outputs over a whole dataset, on the CPU.

    Attributes:
        peer_logits: (K, N, C) float logits of every peer.
        ensemble_logits: (N, C) float logits of the model's ensemble.
        labels: (N,) int64 ground-truth labels.
    """

    peer_logits: torch.Tensor
    ensemble_logits: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        shape = tuple(self.peer_logits.shape)
        if (
            len(shape) != 3
            or tuple(self.ensemble_logits.shape) != shape[1:]
            or tuple(self.labels.shape) != shape[1:2]
        ):
            raise ValueError(
                f"inconsistent shapes: peer_logits {tuple(self.peer_logits.shape)}, "
                f"ensemble_logits {tuple(self.ensemble_logits.shape)}, labels {tuple(self.labels.shape)}"
            )

    @property
    def num_peers(self) -> int:
        return self.peer_logits.shape[0]

    @property
    def num_samples(self) -> int:
        return self.peer_logits.shape[1]

    def peer_predictions(self) -> torch.Tensor:
        """(K, N) top-1 class of every peer."""
        return self.peer_logits.argmax(dim=-1)

    def ensemble_predictions(self) -> torch.Tensor:
        """(N,) top-1 class of the ensemble."""
        return self.ensemble_logits.argmax(dim=-1)


def collect_predictions(
    model: nn.Module, dataset: Dataset, *, batch_size: int = 256, device: str | torch.device = "cpu"
) -> Predictions:
    """Run a collaborative model over ``dataset`` once, in minibatches, without gradients.

    Args:
        model: returns a ``CollabOutput`` (``peer_logits`` (K, B, C), ``ensemble_logits`` (B, C))
            for images (B, C, H, W) in [0, 1].
        dataset: yields ``(image (C, H, W), int label)``; read in order, never shuffled.
        batch_size: samples per forward pass; bounds the memory used.
        device: where the forward passes run. The model is moved there for the call and moved
            back afterwards; its train/eval mode is restored module by module.

    Returns:
        The stacked outputs on the CPU, in dataset order.

    Raises:
        CollabError: if the dataset is empty.
    """
    if len(dataset) == 0:
        raise CollabError("the dataset has no samples; pick a split or dataset that is not empty")
    device = torch.device(device)
    peer_chunks, ensemble_chunks, label_chunks = [], [], []
    with (
        eval_mode(model),
        on_device(model, device),
        probe_layout(model, device) as lay,
        torch.no_grad(),
    ):
        for images, labels in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            out = model(lay(images.to(device)))
            peer_chunks.append(out.peer_logits.float().cpu())
            ensemble_chunks.append(out.ensemble_logits.float().cpu())
            label_chunks.append(torch.as_tensor(labels).long().cpu())
    preds = Predictions(
        torch.cat(peer_chunks, dim=1), torch.cat(ensemble_chunks), torch.cat(label_chunks)
    )
    log.debug("collected %d peers x %d samples x %d classes", *preds.peer_logits.shape)
    return preds


def _require_samples(preds: Predictions) -> None:
    if preds.num_samples == 0:
        raise ValueError("accuracy of an empty prediction set is undefined")


def peer_accuracy(preds: Predictions) -> torch.Tensor:
    """(K,) float64 share of samples each peer classifies correctly."""
    _require_samples(preds)
    return (preds.peer_predictions() == preds.labels).double().mean(dim=1)


def ensemble_accuracy(preds: Predictions) -> float:
    """Share of samples the ensemble classifies correctly."""
    _require_samples(preds)
    return (preds.ensemble_predictions() == preds.labels).double().mean().item()


def pairwise_agreement(peer_logits: torch.Tensor) -> torch.Tensor:
    """(K, K) share of samples on which peers i and j predict the same top-1 class.

    Args:
        peer_logits: (K, N, C) logits; N must be positive.

    Returns:
        A symmetric float64 matrix with ones on the diagonal.
    """
    if peer_logits.dim() != 3 or peer_logits.shape[1] == 0:
        raise ValueError(f"expected (K, N, C) logits with N > 0, got {tuple(peer_logits.shape)}")
    top1 = peer_logits.argmax(dim=-1)  # (K, N)
    # One (N,) comparison per pair keeps memory at O(K * N) rather than O(K^2 * N).
    k = top1.shape[0]
    matrix = torch.ones(k, k, dtype=torch.float64)
    for i in range(k):
        for j in range(i + 1, k):
            matrix[i, j] = matrix[j, i] = (top1[i] == top1[j]).double().mean()
    return matrix


def oracle_accuracy(preds: Predictions) -> float:
    """Share of samples that at least one peer classifies correctly (an upper bound for any
    rule that picks one peer's answer per sample)."""
    _require_samples(preds)
    return (preds.peer_predictions() == preds.labels).any(dim=0).double().mean().item()


def ensemble_gain(preds: Predictions) -> float:
    """Ensemble accuracy minus the best single peer's accuracy (negative if the ensemble loses)."""
    return ensemble_accuracy(preds) - peer_accuracy(preds).max().item()


def disagreement_indices(preds: Predictions) -> torch.Tensor:
    """(M,) int64 indices, ascending, of samples where the peers' top-1 classes are not all equal."""
    top1 = preds.peer_predictions()
    return (top1 != top1[:1]).any(dim=0).nonzero().flatten()


@dataclass(frozen=True)
class AgreementReport:
    """Everything the agreement probe says about one model on one dataset.

    Attributes:
        peer_names: K display names.
        peer_acc: K per-peer accuracies in [0, 1].
        ensemble_acc: accuracy of the ensemble.
        oracle_acc: share of samples some peer gets right.
        ensemble_gain: ensemble accuracy minus the best peer's.
        agreement: (K, K) pairwise top-1 agreement, ones on the diagonal.
        disagreements: (M,) indices of samples where the peers disagree.
        num_samples: N.
    """

    peer_names: list[str]
    peer_acc: list[float]
    ensemble_acc: float
    oracle_acc: float
    ensemble_gain: float
    agreement: torch.Tensor
    disagreements: torch.Tensor
    num_samples: int

    @property
    def best_peer(self) -> int:
        """Index of the most accurate peer (the first one on ties)."""
        return max(range(len(self.peer_acc)), key=lambda i: (self.peer_acc[i], -i))

    @property
    def mean_agreement(self) -> float:
        """Mean off-diagonal pairwise agreement (1.0 for a single peer)."""
        k = self.agreement.shape[0]
        if k < 2:
            return 1.0
        return ((self.agreement.sum() - k) / (k * (k - 1))).item()

    @property
    def disagreement_rate(self) -> float:
        """Share of samples on which the peers do not all agree."""
        return len(self.disagreements) / self.num_samples

    def to_dict(self) -> dict:
        """Plain-Python (JSON-serialisable) view of the report."""
        return {
            "peer_names": list(self.peer_names),
            "peer_acc": list(self.peer_acc),
            "ensemble_acc": self.ensemble_acc,
            "oracle_acc": self.oracle_acc,
            "ensemble_gain": self.ensemble_gain,
            "best_peer": self.best_peer,
            "mean_agreement": self.mean_agreement,
            "agreement": self.agreement.tolist(),
            "disagreements": self.disagreements.tolist(),
            "num_samples": self.num_samples,
        }


def agreement_report(
    preds: Predictions, *, peer_names: Sequence[str] | None = None
) -> AgreementReport:
    """Bundle every agreement statistic of ``preds`` into one report.

    Args:
        preds: outputs of :func:`collect_predictions` (K peers, N > 0 samples).
        peer_names: K display names; defaults to ``peer0..peerK-1``.
    """
    names = (
        list(peer_names) if peer_names is not None else [f"peer{i}" for i in range(preds.num_peers)]
    )
    if len(names) != preds.num_peers:
        raise ValueError(f"got {len(names)} peer names for {preds.num_peers} peers")
    return AgreementReport(
        peer_names=names,
        peer_acc=peer_accuracy(preds).tolist(),
        ensemble_acc=ensemble_accuracy(preds),
        oracle_acc=oracle_accuracy(preds),
        ensemble_gain=ensemble_gain(preds),
        agreement=pairwise_agreement(preds.peer_logits),
        disagreements=disagreement_indices(preds),
        num_samples=preds.num_samples,
    )
