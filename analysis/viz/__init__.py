"""Plotly figure builders over probe results. They return figures and never call ``.show()``.

Every builder loads on first use (see :mod:`analysis.lazy`): a page that draws training curves
imports plotly only, not torch and the probes behind the other figures.
"""

from typing import TYPE_CHECKING

from analysis.lazy import lazy_exports

if TYPE_CHECKING:
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

__getattr__, __dir__ = lazy_exports(
    __name__,
    globals(),
    {
        "accuracy_bars": "analysis.viz.agreement",
        "agreement_heatmap": "analysis.viz.agreement",
        "attribution_grid": "analysis.viz.attributions",
        "deletion_figure": "analysis.viz.attributions",
        "normalize_maps": "analysis.viz.attributions",
        "training_curves": "analysis.viz.curves",
        "class_agreement_figure": "analysis.viz.diversity",
        "diversity_heatmap": "analysis.viz.diversity",
        "dynamics_accuracy_figure": "analysis.viz.diversity",
        "dynamics_figure": "analysis.viz.diversity",
        "image_gallery": "analysis.viz.gallery",
        "prediction_captions": "analysis.viz.gallery",
        "to_rgb_uint8": "analysis.viz.gallery",
        "boxes_figure": "analysis.viz.localization",
        "cascade_figure": "analysis.viz.localization",
        "class_map_figure": "analysis.viz.localization",
        "localization_scores_figure": "analysis.viz.localization",
        "patch_gallery": "analysis.viz.localization",
        "cka_heatmap": "analysis.viz.similarity",
        "filter_redundancy_lines": "analysis.viz.similarity",
        "kernel_matching_lines": "analysis.viz.similarity",
        "peer_cka_heatmap": "analysis.viz.similarity",
        "cooccurrence_heatmap": "analysis.viz.vocabulary",
        "vocabulary_usage": "analysis.viz.vocabulary",
        "word_gallery": "analysis.viz.vocabulary",
    },
)
