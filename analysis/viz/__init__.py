"""Plotly figure builders over probe results. They return figures and never call ``.show()``."""

from analysis.viz.agreement import accuracy_bars, agreement_heatmap
from analysis.viz.attributions import attribution_grid, deletion_figure, normalize_maps
from analysis.viz.curves import training_curves
from analysis.viz.diversity import (
    class_agreement_figure,
    diversity_heatmap,
    dynamics_accuracy_figure,
    dynamics_figure,
)
from analysis.viz.gallery import image_gallery, prediction_captions, to_rgb_uint8
from analysis.viz.localization import (
    boxes_figure,
    cascade_figure,
    class_map_figure,
    localization_scores_figure,
    patch_gallery,
)
from analysis.viz.similarity import (
    cka_heatmap,
    filter_redundancy_lines,
    kernel_matching_lines,
    peer_cka_heatmap,
)
from analysis.viz.vocabulary import cooccurrence_heatmap, vocabulary_usage, word_gallery

__all__ = [
    "boxes_figure",
    "cascade_figure",
    "class_map_figure",
    "cooccurrence_heatmap",
    "localization_scores_figure",
    "patch_gallery",
    "vocabulary_usage",
    "word_gallery",
    "cka_heatmap",
    "filter_redundancy_lines",
    "kernel_matching_lines",
    "peer_cka_heatmap",
    "attribution_grid",
    "class_agreement_figure",
    "deletion_figure",
    "diversity_heatmap",
    "dynamics_accuracy_figure",
    "dynamics_figure",
    "normalize_maps",
    "accuracy_bars",
    "agreement_heatmap",
    "image_gallery",
    "prediction_captions",
    "to_rgb_uint8",
    "training_curves",
]
