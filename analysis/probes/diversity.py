"""How different are the peers? Pairwise diversity measures over a :class:`Predictions`.

The oracle-output measures follow Kuncheva & Whitaker (2003, *Measures of diversity in
classifier ensembles*): for peers i and j, N11 counts the samples both classify correctly, N00
those both get wrong, N10 those only i gets right, N01 those only j gets right
(N = N11 + N10 + N01 + N00). Every measure is a symmetric (K, K) float64 matrix; the diagonal
compares a peer with itself. Shapes: K peers, N samples, C classes.

Degenerate cases (documented choices, so every matrix is defined):

* kappa: when chance agreement p_e is 1 (both peers always predict the same single class),
  the observed agreement is 1 as well and kappa is set to 1.
* Q-statistic: 1 whenever the two peers are right on exactly the same samples
  (N10 = N01 = 0); NaN when N11 N00 + N10 N01 = 0 otherwise (undefined).
* error correlation: 1 when the peers err on exactly the same samples; 0 when one of the two
  error indicators is constant (zero variance) and they differ.
"""

from __future__ import annotations

import math
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
    pairwise_agreement,
    peer_accuracy,
)
from analysis.probes.shared_pass import run_pass

#: Upper bound of the Jensen-Shannon divergence in nats.
JS_MAX = math.log(2.0)


@dataclass(frozen=True)
class Measure:
    """How to read one pairwise measure: display label, value range, and which end is diverse."""

    label: str
    low: float
    high: float
    diverse_when_high: bool


MEASURES: dict[str, Measure] = {
    "agreement": Measure("top-1 agreement", 0.0, 1.0, False),
    "kappa": Measure("Cohen's kappa", -1.0, 1.0, False),
    "disagreement": Measure("disagreement (oracle)", 0.0, 1.0, True),
    "double_fault": Measure("double fault", 0.0, 1.0, False),
    "q_statistic": Measure("Yule's Q", -1.0, 1.0, False),
    "error_correlation": Measure("error correlation", -1.0, 1.0, False),
    "js_divergence": Measure("Jensen-Shannon divergence (nats)", 0.0, JS_MAX, True),
}


def _check(peer_logits: torch.Tensor, labels: torch.Tensor | None = None) -> None:
    n = peer_logits.shape[1] if peer_logits.dim() == 3 else 0
    if n == 0 or (labels is not None and tuple(labels.shape) != (n,)):
        got = "" if labels is None else f" and labels {tuple(labels.shape)}"
        raise ValueError(
            f"expected (K, N, C) logits with N > 0, got {tuple(peer_logits.shape)}{got}"
        )


def _correct(peer_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(K, N) float64 oracle outputs: 1 where the peer's top-1 class is the label."""
    _check(peer_logits, labels)
    return (peer_logits.argmax(dim=-1) == labels).double()


def oracle_counts(peer_logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """The Kuncheva-Whitaker 2x2 table of every pair.

    Args:
        peer_logits: (K, N, C) logits.
        labels: (N,) true classes.

    Returns:
        ``{"n11", "n10", "n01", "n00"}`` -> (K, K) float64 counts; ``n10[i, j]`` counts the
        samples peer i gets right and peer j gets wrong, so ``n01 = n10.T``.
    """
    right = _correct(peer_logits, labels)
    wrong = 1.0 - right
    n10 = right @ wrong.T
    return {"n11": right @ right.T, "n10": n10, "n01": n10.T.clone(), "n00": wrong @ wrong.T}


def cohen_kappa(peer_logits: torch.Tensor) -> torch.Tensor:
    """(K, K) Cohen's kappa between the peers' top-1 predictions (labels not needed).

    kappa = (p_o - p_e) / (1 - p_e) with p_o the observed agreement and
    p_e = sum_c P_i(c) P_j(c) the agreement expected from the peers' class frequencies.
    """
    p_o = pairwise_agreement(peer_logits)
    onehot = torch.nn.functional.one_hot(peer_logits.argmax(-1), peer_logits.shape[-1]).double()
    freq = onehot.mean(dim=1)  # (K, C) how often each peer predicts each class
    p_e = freq @ freq.T
    chance_is_certain = (1.0 - p_e) <= 1e-12
    kappa = (p_o - p_e) / torch.where(chance_is_certain, torch.ones_like(p_e), 1.0 - p_e)
    return torch.where(chance_is_certain, torch.ones_like(kappa), kappa)


def disagreement_measure(peer_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(K, K) share of samples exactly one of the two peers gets right, (N10 + N01) / N.

    Unlike ``1 - agreement`` it does not count samples both peers get wrong with different
    classes.
    """
    c = oracle_counts(peer_logits, labels)
    return (c["n10"] + c["n01"]) / labels.shape[0]


def double_fault(peer_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(K, K) share of samples both peers get wrong, N00 / N (the diagonal is each error rate)."""
    return oracle_counts(peer_logits, labels)["n00"] / labels.shape[0]


def q_statistic(peer_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(K, K) Yule's Q = (N11 N00 - N01 N10) / (N11 N00 + N01 N10), in [-1, 1].

    1 when the peers are right on the same samples; NaN where otherwise undefined.
    """
    c = oracle_counts(peer_logits, labels)
    same, cross = c["n11"] * c["n00"], c["n01"] * c["n10"]
    denom = same + cross
    q = (same - cross) / torch.where(denom > 0, denom, torch.ones_like(denom))
    q = torch.where(denom > 0, q, torch.full_like(q, math.nan))
    identical = (c["n10"] + c["n01"]) == 0
    return torch.where(identical, torch.ones_like(q), q)


def error_correlation(peer_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(K, K) Pearson correlation of the peers' 0/1 error indicators, in [-1, 1].

    Equals (N11 N00 - N01 N10) / sqrt((N11 + N10)(N01 + N00)(N11 + N01)(N10 + N00)). With a
    zero-variance indicator it is 1 if the peers err on the same samples and 0 otherwise.
    """
    c = oracle_counts(peer_logits, labels)
    n11, n10, n01, n00 = c["n11"], c["n10"], c["n01"], c["n00"]
    var = (n11 + n10) * (n01 + n00) * (n11 + n01) * (n10 + n00)
    rho = (n11 * n00 - n01 * n10) / torch.where(var > 0, var, torch.ones_like(var)).sqrt()
    identical = (n10 + n01) == 0
    return torch.where(var > 0, rho, identical.double()).clamp(-1.0, 1.0)


def js_divergence(peer_logits: torch.Tensor) -> torch.Tensor:
    """(K, K) mean over samples of the Jensen-Shannon divergence of the peers' softmax outputs.

    JS(p, q) = (KL(p || m) + KL(q || m)) / 2 with m = (p + q) / 2, in nats, so every entry lies
    in [0, ln 2] (:data:`JS_MAX`); 0 on the diagonal. Computed in float64.
    """
    _check(peer_logits)
    probs = peer_logits.double().softmax(dim=-1)
    k = probs.shape[0]
    matrix = torch.zeros(k, k, dtype=torch.float64)
    for i in range(k):
        for j in range(i + 1, k):
            p, q = probs[i], probs[j]
            m = (p + q) / 2
            kl_pm = (torch.xlogy(p, p) - torch.xlogy(p, m)).sum(-1)
            kl_qm = (torch.xlogy(q, q) - torch.xlogy(q, m)).sum(-1)
            matrix[i, j] = matrix[j, i] = ((kl_pm + kl_qm) / 2).mean().clamp(0.0, JS_MAX)
    return matrix


def peer_pairs(k: int) -> list[tuple[int, int]]:
    """The K (K - 1) / 2 pairs (i, j), i < j, in row-major order (the columns of class tables)."""
    return [(i, j) for i in range(k) for j in range(i + 1, k)]


def per_class_agreement(peer_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(C, P) top-1 agreement of each pair on the samples of each *true* class.

    Columns follow :func:`peer_pairs`; a class with no samples has a row of NaN. Average over
    the columns for one number per class (:attr:`DiversityReport.mean_class_agreement`).
    """
    top1 = peer_logits.argmax(dim=-1)  # (K, N)
    num_classes = peer_logits.shape[-1]
    counts = torch.bincount(labels, minlength=num_classes).double()
    columns = []
    for i, j in peer_pairs(top1.shape[0]):
        same = (top1[i] == top1[j]).double()
        hits = torch.bincount(labels, weights=same, minlength=num_classes)
        columns.append(hits / counts)  # 0 / 0 -> NaN for absent classes
    if not columns:
        return torch.zeros(num_classes, 0, dtype=torch.float64)
    return torch.stack(columns, dim=1)


def pairwise_measures(preds: Predictions) -> dict[str, torch.Tensor]:
    """Every measure of :data:`MEASURES` as ``name -> (K, K)`` float64 matrix."""
    logits, labels = preds.peer_logits, preds.labels
    return {
        "agreement": pairwise_agreement(logits),
        "kappa": cohen_kappa(logits),
        "disagreement": disagreement_measure(logits, labels),
        "double_fault": double_fault(logits, labels),
        "q_statistic": q_statistic(logits, labels),
        "error_correlation": error_correlation(logits, labels),
        "js_divergence": js_divergence(logits),
    }


def mean_off_diagonal(matrix: torch.Tensor) -> float:
    """Mean of the off-diagonal entries, ignoring NaN (NaN for fewer than two peers)."""
    k = matrix.shape[0]
    off = matrix[~torch.eye(k, dtype=torch.bool)]
    off = off[~off.isnan()]
    return off.mean().item() if off.numel() else math.nan


@dataclass(frozen=True)
class DiversityReport:
    """Every diversity statistic of one model on one dataset (cacheable with ``cached``).

    Attributes:
        peer_names: K display names.
        matrices: measure name (see :data:`MEASURES`) -> (K, K) float64 matrix.
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


def probe_diversity(
    model: nn.Module,
    dataset: Dataset,
    *,
    peer_names: Sequence[str] | None = None,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    limit: int | None = None,
) -> DiversityReport:
    """One pass of ``model`` over ``dataset`` (first ``limit`` samples) -> its diversity report.

    ``peer_names`` defaults to the model's ``peer_names`` when it has them.
    """
    names = peer_names if peer_names is not None else getattr(model, "peer_names", None)
    consumer = DiversityConsumer(peer_names=names)
    (report,) = run_pass(
        model, dataset, [consumer], batch_size=batch_size, device=device, limit=limit
    )
    return report
