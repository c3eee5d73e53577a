"""Probes: pure functions from (model, data) to tensors and small result dataclasses.

Every probe registers itself in :data:`PROBES` with its contract (what it reads and needs, its
options and result dataclasses; see :mod:`analysis.probes.contract`). :func:`compute` runs one
on a loaded run through the run-folder cache; :func:`run_suite` runs all that apply, sharing
one pass over the data.
"""

# Importing a family registers its probes; the suite, and its report, follow this order.
# isort: off
from analysis.probes import (  # noqa: F401
    diversity,
    cka,
    kernels,
    through_training,
    attribution_summary,
    vocabulary,
    peer_words,
    localization,
    cascade,
    dissection,
)

# isort: on
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
from analysis.probes.attribution_summary import (
    AttributionOptions,
    AttributionSummary,
    run_attributions,
    summarize_attributions,
)
from analysis.probes.attributions import ATTRIBUTIONS, attribute, attribute_all_peers
from analysis.probes.box_selection import select_boxes
from analysis.probes.cascade import CascadeCurve, CascadeOptions, cascade_curve, run_cascade
from analysis.probes.cascade_stages import crop_patches, resize_images, stage_logits
from analysis.probes.cka import CKAConsumer, CKAOptions, CKAResult, cka_layers, cka_probe
from analysis.probes.class_map import Localization, localize
from analysis.probes.contract import (
    ACTIVATIONS,
    CHECKPOINTS,
    DATA,
    PROBES,
    WEIGHTS,
    PassOptions,
    ProbeSpec,
    activation_probe,
    as_kwargs,
    forwarding_probe,
    register_probe,
    spec,
)
from analysis.probes.dcl_layers import dcl_layer_paths
from analysis.probes.diversity import (
    DiversityConsumer,
    DiversityOptions,
    DiversityReport,
    diversity_report,
    probe_diversity,
)
from analysis.probes.diversity_measures import (
    MEASURES,
    Measure,
    cohen_kappa,
    disagreement_measure,
    double_fault,
    error_correlation,
    js_divergence,
    oracle_counts,
    pairwise_measures,
    per_class_agreement,
    q_statistic,
)
from analysis.probes.faithfulness import deletion_by_peer, deletion_curve, insertion_curve
from analysis.probes.flops import count_flops
from analysis.probes.hsic import MinibatchCKA, linear_cka, minibatch_cka, unbiased_hsic
from analysis.probes.kernels import (
    KernelOptions,
    KernelSimilarity,
    filter_redundancy,
    kernel_similarity,
    match_filters,
    run_kernels,
)
from analysis.probes.localization import (
    LocalizationOptions,
    LocalizationScore,
    run_localization,
    score_localization,
)
from analysis.probes.model_state import eval_mode, on_device
from analysis.probes.needs import NEEDS, unmet
from analysis.probes.peer_words import (
    PeerCooccurrence,
    PeerCooccurrenceConsumer,
    PeerWordsOptions,
    peer_cooccurrence,
)
from analysis.probes.samples import gather_samples
from analysis.probes.suite import compute, run_suite
from analysis.probes.through_training import (
    DynamicsOptions,
    TrainingDynamics,
    dynamics_from_reports,
    run_dynamics,
    training_dynamics,
)
from analysis.probes.vocabulary import (
    Vocabulary,
    VocabularyConsumer,
    VocabularyOptions,
    probe_vocabulary,
)
from analysis.probes.word_patches import word_patches

__all__ = [
    # the contract, the registries and the cached entry points
    "PROBES",
    "ACTIVATIONS",
    "DATA",
    "WEIGHTS",
    "CHECKPOINTS",
    "NEEDS",
    "MEASURES",
    "ATTRIBUTIONS",
    "PassOptions",
    "ProbeSpec",
    "activation_probe",
    "register_probe",
    "spec",
    "as_kwargs",
    "forwarding_probe",
    "unmet",
    "compute",
    "run_suite",
    "eval_mode",
    "on_device",
    # the registered probes, their options and results
    "run_attributions",
    "run_cascade",
    "run_dynamics",
    "run_kernels",
    "run_localization",
    "AttributionOptions",
    "CascadeOptions",
    "CKAOptions",
    "DiversityOptions",
    "DynamicsOptions",
    "KernelOptions",
    "LocalizationOptions",
    "PeerWordsOptions",
    "VocabularyOptions",
    "AttributionSummary",
    "CascadeCurve",
    "CKAResult",
    "DiversityReport",
    "KernelSimilarity",
    "LocalizationScore",
    "PeerCooccurrence",
    "TrainingDynamics",
    "Vocabulary",
    # convenience functions and building blocks
    "AgreementReport",
    "CKAConsumer",
    "DiversityConsumer",
    "Localization",
    "Measure",
    "MinibatchCKA",
    "PeerCooccurrenceConsumer",
    "Predictions",
    "VocabularyConsumer",
    "agreement_report",
    "attribute",
    "attribute_all_peers",
    "cascade_curve",
    "cka_layers",
    "cka_probe",
    "cohen_kappa",
    "collect_predictions",
    "count_flops",
    "crop_patches",
    "dcl_layer_paths",
    "deletion_by_peer",
    "deletion_curve",
    "disagreement_indices",
    "disagreement_measure",
    "diversity_report",
    "double_fault",
    "dynamics_from_reports",
    "ensemble_accuracy",
    "ensemble_gain",
    "error_correlation",
    "filter_redundancy",
    "gather_samples",
    "insertion_curve",
    "js_divergence",
    "kernel_similarity",
    "linear_cka",
    "localize",
    "match_filters",
    "minibatch_cka",
    "oracle_accuracy",
    "oracle_counts",
    "pairwise_agreement",
    "pairwise_measures",
    "peer_accuracy",
    "peer_cooccurrence",
    "per_class_agreement",
    "probe_diversity",
    "probe_vocabulary",
    "q_statistic",
    "resize_images",
    "score_localization",
    "select_boxes",
    "stage_logits",
    "summarize_attributions",
    "training_dynamics",
    "unbiased_hsic",
    "word_patches",
]
