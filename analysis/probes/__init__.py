"""Probes: pure functions from (model, data) to tensors and small report dataclasses."""

from analysis.probes.agreement import (
    AgreementReport,
    Predictions,
    agreement_report,
    collect_predictions,
    disagreement_indices,
    ensemble_accuracy,
    ensemble_gain,
    oracle_accuracy,
    pairwise_agreement,
    peer_accuracy,
)
from analysis.probes.samples import gather_samples

__all__ = [
    "AgreementReport",
    "Predictions",
    "agreement_report",
    "collect_predictions",
    "disagreement_indices",
    "ensemble_accuracy",
    "ensemble_gain",
    "gather_samples",
    "oracle_accuracy",
    "pairwise_agreement",
    "peer_accuracy",
]
