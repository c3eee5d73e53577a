"""A grid of small images with captions, e.g. the test samples on which the peers disagree."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

CELL_PX = 150  # height of one grid row in pixels, caption included


def to_rgb_uint8(images) -> np.ndarray:
    """(N, C, H, W) floats in [0, 1] with C = 1 (grey) or 3 (RGB) -> (N, H, W, 3) uint8.

    Values outside [0, 1] are clipped rather than wrapped around.
    """
    array = np.asarray(
        images.detach().cpu() if hasattr(images, "detach") else images, dtype=np.float32
    )
    if array.ndim != 4 or array.shape[1] not in (1, 3):
        raise ValueError(f"expected images (N, C, H, W) with C = 1 or 3, got shape {array.shape}")
    if array.shape[1] == 1:
        array = np.repeat(array, 3, axis=1)
    return np.round(np.clip(array, 0.0, 1.0) * 255).astype(np.uint8).transpose(0, 2, 3, 1)


def image_gallery(images, captions: Sequence[str], *, cols: int = 6) -> go.Figure:
    """Show N images in a grid of ``cols`` columns, each titled with its caption.

    Args:
        images: (N, C, H, W) tensor or array in [0, 1]; C = 1 is drawn grey, C = 3 as RGB.
        captions: N strings; ``<br>`` breaks a line.
        cols: images per row.

    Returns:
        A figure with one ``Image`` trace per image (z of shape (H, W, 3), uint8) and the
        captions as subplot titles. With N = 0 it holds no trace and a "no images" note.
    """
    if cols < 1:
        raise ValueError(f"cols must be at least 1, got {cols}")
    if len(images) == 0:
        fig = go.Figure()
        fig.add_annotation(
            text="no images", showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper"
        )
        fig.update_layout(xaxis_visible=False, yaxis_visible=False, height=CELL_PX)
        return fig
    pixels = to_rgb_uint8(images)
    if len(captions) != len(pixels):
        raise ValueError(f"got {len(captions)} captions for {len(pixels)} images")
    cols = min(cols, len(pixels))
    rows = math.ceil(len(pixels) / cols)
    fig = make_subplots(
        rows=rows,
        cols=cols,
        subplot_titles=list(captions),
        horizontal_spacing=0.02,
        vertical_spacing=min(0.3 / rows, 0.08),
    )
    for i, image in enumerate(pixels):
        fig.add_trace(go.Image(z=image, hoverinfo="skip"), row=i // cols + 1, col=i % cols + 1)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_annotations(font_size=11)
    fig.update_layout(height=rows * CELL_PX + 40, margin={"l": 5, "r": 5, "t": 40, "b": 5})
    return fig


def prediction_captions(
    peer_predictions,
    labels,
    *,
    peer_names: Sequence[str],
    class_names: Sequence[str] | None = None,
) -> list[str]:
    """One caption per sample: the label, then each peer's top-1 class.

    Args:
        peer_predictions: (K, M) predicted classes.
        labels: (M,) true classes.
        peer_names: the K peer names.
        class_names: optional names for the class indices.

    Returns:
        M strings like ``"label 3<br>a: 3 · b: 5"``.
    """
    preds = np.asarray(peer_predictions)
    truth = np.asarray(labels)
    if preds.ndim != 2 or preds.shape != (len(peer_names), len(truth)):
        raise ValueError(
            f"expected predictions of shape ({len(peer_names)}, {len(truth)}), got {preds.shape}"
        )

    def name(c: int) -> str:
        return str(class_names[c]) if class_names is not None else str(c)

    return [
        f"label {name(int(truth[m]))}<br>"
        + " · ".join(f"{peer}: {name(int(preds[k, m]))}" for k, peer in enumerate(peer_names))
        for m in range(len(truth))
    ]
