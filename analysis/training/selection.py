"""Model selection on the validation split: which number chooses ``best.safetensors``.

Each paper reports one number, so each method selects on it by default (``train.select=auto``):
the deployed output (``ensemble``: DML, independent, D&C, ONE, CL-ILR's deployed head, intra_cl's
final exit) or, for online distillation with cheap convolutions, the best student
(``best_peer``). The test split is evaluated and reported every epoch but never consulted.
"""

from __future__ import annotations

from typing import Any

from analysis.errors import CollabError

METRICS = ("ensemble", "best_peer", "mean_peer")


def resolve_metric(select: str, method: Any) -> str:
    """The metric ``select`` names; ``auto`` takes the method's ``selection`` (else ensemble)."""
    metric = getattr(method, "selection", "ensemble") if select == "auto" else select
    if metric not in METRICS:
        raise CollabError(
            f"train.select must be auto or one of {', '.join(METRICS)}; got {metric!r}"
        )
    return metric


def score(record: dict[str, Any], metric: str) -> float:
    """The selection score of one evaluation record (accuracies in [0, 1])."""
    if metric == "ensemble":
        return float(record["ensemble_acc"])
    peers = [float(a) for a in record["peer_acc"]]
    return max(peers) if metric == "best_peer" else sum(peers) / len(peers)


def selection_record(metric: str, data: Any, *, train: Any, val: Any | None) -> dict[str, Any]:
    """The manifest's ``selection``: the split, metric, fraction, seed and sizes."""
    return {
        "split": "val" if val is not None else "none (the last epoch is best)",
        "metric": metric,
        "val_fraction": data.val_fraction,
        "val_seed": data.val_seed,
        "val_size": 0 if val is None else len(val),
        "train_size": len(train),
    }
