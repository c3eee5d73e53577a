"""The diversity probe: every pairwise measure of the peers, with accuracy, in one report.

The measures themselves (Kuncheva & Whitaker's oracle-output statistics, kappa, Jensen-Shannon
divergence) are defined and registered in :mod:`analysis.probes.diversity_measures`; this module
bundles them into a :class:`DiversityReport` and folds the logits of a pass into one
(:class:`DiversityConsumer`). Shapes: K peers, N samples, C classes, P = K (K - 1) / 2 pairs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import Dataset

from analysis.probes.agreement import (
    Predictions,
    ensemble_accuracy,
    ensemble_gain,
    oracle_accuracy,
    peer_accuracy,
)
from analysis.probes.contract import PassOptions, activation_probe, setting
from analysis.probes.diversity_measures import (
    MEASURES as MEASURES,  # re-exported: the measures a report holds
)
from analysis.probes.diversity_measures import (
    mean_off_diagonal,
    pairwise_measures,
    peer_pairs,
    per_class_agreement,
)


@dataclass(frozen=True)
class DiversityReport:
    """Every diversity statistic of one model on one dataset (cacheable with ``cached``).

    Attributes:
        peer_names: K display names.
        matrices: measure name (see :data:`~analysis.probes.diversity_measures.MEASURES`) -> (K, K) float64 matrix.
        class_agreement: (C, P) per-true-class agreement of each pair (columns: ``pairs``).
        pairs: the P = K (K - 1) / 2 pairs ``[i, j]``.
        peer_acc: K accuracies; ensemble_acc, oracle_acc, ensemble_gain: as in agreement.
        num_samples: N.
    """

    peer_names: list[str]
    matrices: dict[str, torch.Tensor]
    class_agreement: torch.Tensor
    pairs: list[list[int]]
    peer_acc: list[float]
    ensemble_acc: float
    oracle_acc: float
    ensemble_gain: float
    num_samples: int

    def matrix(self, measure: str) -> torch.Tensor:
        """The (K, K) matrix of ``measure``; unknown names raise ``KeyError`` listing the known."""
        if measure not in self.matrices:
            raise KeyError(f"unknown measure {measure!r}; choose one of {sorted(self.matrices)}")
        return self.matrices[measure]

    def mean(self, measure: str) -> float:
        """Mean over peer pairs (off-diagonal, NaN ignored) of ``measure``."""
        return mean_off_diagonal(self.matrix(measure))

    @property
    def mean_class_agreement(self) -> torch.Tensor:
        """(C,) agreement per true class averaged over pairs (1 for a single peer)."""
        if self.class_agreement.shape[1] == 0:
            return torch.ones(self.class_agreement.shape[0], dtype=torch.float64)
        return self.class_agreement.mean(dim=1)

    def to_dict(self) -> dict:
        """Plain-Python (JSON-serialisable; NaN stays float NaN) view of the report."""
        return {
            "peer_names": list(self.peer_names),
            "matrices": {k: v.tolist() for k, v in self.matrices.items()},
            "means": {k: self.mean(k) for k in self.matrices},
            "class_agreement": self.class_agreement.tolist(),
            "pairs": [list(p) for p in self.pairs],
            "peer_acc": list(self.peer_acc),
            "ensemble_acc": self.ensemble_acc,
            "oracle_acc": self.oracle_acc,
            "ensemble_gain": self.ensemble_gain,
            "num_samples": self.num_samples,
        }


def diversity_report(
    preds: Predictions, *, peer_names: Sequence[str] | None = None
) -> DiversityReport:
    """Bundle every diversity measure of ``preds`` (K peers, N > 0 samples) into one report.

    Args:
        preds: outputs of :func:`analysis.probes.collect_predictions`.
        peer_names: K display names; defaults to ``peer0..peerK-1``.
    """
    k = preds.num_peers
    names = list(peer_names) if peer_names is not None else [f"peer{i}" for i in range(k)]
    if len(names) != k:
        raise ValueError(f"got {len(names)} peer names for {k} peers")
    return DiversityReport(
        peer_names=names,
        matrices=pairwise_measures(preds),
        class_agreement=per_class_agreement(preds.peer_logits, preds.labels),
        pairs=[list(p) for p in peer_pairs(k)],
        peer_acc=peer_accuracy(preds).tolist(),
        ensemble_acc=ensemble_accuracy(preds),
        oracle_acc=oracle_accuracy(preds),
        ensemble_gain=ensemble_gain(preds),
        num_samples=preds.num_samples,
    )


class DiversityConsumer:
    """Keeps the (K, N, C) logits seen in a shared pass (:func:`run_pass`; no activations
    needed) and reports their diversity."""

    layers: Sequence[str] = ()

    def __init__(self, *, peer_names: Sequence[str] | None = None) -> None:
        self.peer_names = peer_names
        self._peer, self._ensemble, self._labels = [], [], []

    def update(self, acts: dict[str, torch.Tensor], batch) -> None:
        self._peer.append(batch.out.peer_logits.detach().float().cpu())
        self._ensemble.append(batch.out.ensemble_logits.detach().float().cpu())
        self._labels.append(torch.as_tensor(batch.y).long().cpu())

    def result(self) -> DiversityReport:
        preds = Predictions(
            torch.cat(self._peer, dim=1), torch.cat(self._ensemble), torch.cat(self._labels)
        )
        return diversity_report(preds, peer_names=self.peer_names)


@dataclass(frozen=True)
class DiversityOptions(PassOptions):
    """Options of the diversity probe: the pass (see :class:`PassOptions`) and the K display
    names of the peers (default: the model's ``peer_names``)."""

    peer_names: Sequence[str] | None = setting(None)


def _diversity_consumer(model: nn.Module, dataset: Dataset, o: DiversityOptions):
    names = o.peer_names if o.peer_names is not None else getattr(model, "peer_names", None)
    return DiversityConsumer(peer_names=names)


probe_diversity = activation_probe(
    "diversity",
    consumer=_diversity_consumer,
    options=DiversityOptions,
    result=DiversityReport,
    about="agreement and diversity of the peers' predictions",
)
