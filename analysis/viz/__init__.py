"""Plotly figure builders over probe results. They return figures and never call ``.show()``."""

from analysis.viz.agreement import accuracy_bars, agreement_heatmap
from analysis.viz.curves import training_curves
from analysis.viz.gallery import image_gallery, prediction_captions, to_rgb_uint8

__all__ = [
    "accuracy_bars",
    "agreement_heatmap",
    "image_gallery",
    "prediction_captions",
    "to_rgb_uint8",
    "training_curves",
]
