"""How different are the peers? Pairwise diversity measures, registered in :data:`MEASURES`.

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

Each measure registers itself in :data:`MEASURES` (name -> :class:`Measure`: its label, its
range, which end is diverse, and the function computing it), so the report, the dynamics
probe, the figures and the app all iterate over one table.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from analysis.probes.agreement import Predictions, pairwise_agreement
from analysis.registry import Registry

#: Upper bound of the Jensen-Shannon divergence in nats.
JS_MAX = math.log(2.0)


@dataclass(frozen=True)
class Measure:
    """How to compute and read one pairwise measure.

    Attributes:
        label: display label; low, high: the range of its values.
        diverse_when_high: whether high values mean diverse peers.
        fn: ``fn(peer_logits (K, N, C)[, labels (N,)]) -> (K, K)`` float64 matrix.
        uses_labels: whether ``fn`` takes the labels.
    """

    label: str
    low: float
    high: float
    diverse_when_high: bool
    fn: Callable[..., torch.Tensor] = field(repr=False)
    uses_labels: bool = True

    def __call__(self, preds: Predictions) -> torch.Tensor:
        """The (K, K) matrix of this measure over ``preds``."""
        if self.uses_labels:
            return self.fn(preds.peer_logits, preds.labels)
        return self.fn(preds.peer_logits)


#: measure name -> :class:`Measure`, in the order reports list them.
MEASURES = Registry("diversity measure")


def measure(
    name: str,
    label: str,
    low: float,
    high: float,
    *,
    diverse_when_high: bool = False,
    uses_labels: bool = True,
) -> Callable[[Callable[..., torch.Tensor]], Callable[..., torch.Tensor]]:
    """Decorator registering a pairwise measure function in :data:`MEASURES`."""

    def decorator(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        MEASURES.add(name, Measure(label, low, high, diverse_when_high, fn, uses_labels))
        return fn

    return decorator


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


MEASURES.add(
    "agreement", Measure("top-1 agreement", 0.0, 1.0, False, pairwise_agreement, uses_labels=False)
)


@measure("kappa", "Cohen's kappa", -1.0, 1.0, uses_labels=False)
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


@measure("disagreement", "disagreement (oracle)", 0.0, 1.0, diverse_when_high=True)
def disagreement_measure(peer_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(K, K) share of samples exactly one of the two peers gets right, (N10 + N01) / N.

    Unlike ``1 - agreement`` it does not count samples both peers get wrong with different
    classes.
    """
    c = oracle_counts(peer_logits, labels)
    return (c["n10"] + c["n01"]) / labels.shape[0]


@measure("double_fault", "double fault", 0.0, 1.0)
def double_fault(peer_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(K, K) share of samples both peers get wrong, N00 / N (the diagonal is each error rate)."""
    return oracle_counts(peer_logits, labels)["n00"] / labels.shape[0]


@measure("q_statistic", "Yule's Q", -1.0, 1.0)
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


@measure("error_correlation", "error correlation", -1.0, 1.0)
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


@measure(
    "js_divergence",
    "Jensen-Shannon divergence (nats)",
    0.0,
    JS_MAX,
    diverse_when_high=True,
    uses_labels=False,
)
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
    return {name: m(preds) for name, m in MEASURES.items()}


def mean_off_diagonal(matrix: torch.Tensor) -> float:
    """Mean of the off-diagonal entries, ignoring NaN (NaN for fewer than two peers)."""
    k = matrix.shape[0]
    off = matrix[~torch.eye(k, dtype=torch.bool)]
    off = off[~off.isnan()]
    return off.mean().item() if off.numel() else math.nan
