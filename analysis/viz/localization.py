"""Figures for patch localization: boxes on the image, the class map, patches, scores, cascade.

Image coordinates: ``go.Image`` puts pixel (row r, col c) at the point (c, r), so a pixel covers
``[c - 0.5, c + 0.5]``; a box ``(x0, y0, x1, y1)`` (x1, y1 exclusive) is drawn as the rectangle
from ``(x0 - 0.5, y0 - 0.5)`` to ``(x1 - 0.5, y1 - 0.5)``, which covers exactly its pixels.
"""

from __future__ import annotations

import plotly.graph_objects as go
import torch

from analysis.probes.cascade_stages import crop_patches
from analysis.viz.curves import ENSEMBLE_COLOR, peer_colors
from analysis.viz.gallery import image_gallery, to_rgb_uint8

MARGIN = {"l": 10, "r": 10, "t": 40, "b": 10}
TRUTH_COLOR = "#2ca02c"
RANDOM_COLOR = "#aaaaaa"


def _box_shapes(boxes, *, colors, dash: str = "solid", width: int = 2) -> list[dict]:
    """One plotly rectangle per valid (x0, y0, x1, y1) box (boxes with -1 are skipped)."""
    shapes = []
    for k, (x0, y0, x1, y1) in enumerate(torch.as_tensor(boxes).reshape(-1, 4).tolist()):
        if x1 <= x0 or min(x0, y0) < 0:
            continue
        shapes.append(
            {
                "type": "rect",
                "x0": x0 - 0.5,
                "y0": y0 - 0.5,
                "x1": x1 - 0.5,
                "y1": y1 - 0.5,
                "line": {"color": colors[k % len(colors)], "width": width, "dash": dash},
            }
        )
    return shapes


def boxes_figure(
    image, boxes, *, scores=None, true_box=None, title: str | None = None
) -> go.Figure:
    """One image with its localized boxes (numbered by rank) and optionally the true box.

    Args:
        image: (C, H, W) in [0, 1]; boxes: (k, 4) ``(x0, y0, x1, y1)``, -1 = none.
        scores: (k,) class-map scores for the labels; true_box: (4,) ground truth (dashed green).

    Returns:
        A figure with one ``Image`` trace; ``layout.shapes`` holds the valid boxes in rank order
        (then the true box), ``layout.annotations`` the rank (and score) of each box.
    """
    pixels = to_rgb_uint8(torch.as_tensor(image)[None])[0]
    boxes = torch.as_tensor(boxes).reshape(-1, 4)
    colors = peer_colors(len(boxes))
    fig = go.Figure(go.Image(z=pixels, hoverinfo="skip"))
    shapes = _box_shapes(boxes, colors=colors)
    for k, (x0, y0, x1, _y1) in enumerate(boxes.tolist()):
        if x1 <= x0 or min(x0, y0) < 0:
            continue
        text = f"{k + 1}" if scores is None else f"{k + 1}: {float(scores[k]):.3g}"
        fig.add_annotation(
            x=x0 - 0.5,
            y=y0 - 0.5,
            text=text,
            showarrow=False,
            xanchor="left",
            yanchor="top",
            font={"color": "white", "size": 11},
            bgcolor=colors[k % len(colors)],
        )
    if true_box is not None:
        shapes += _box_shapes(torch.as_tensor(true_box)[None], colors=[TRUTH_COLOR], dash="dash")
    fig.update_layout(shapes=shapes, title=title, margin=MARGIN)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


def class_map_figure(loc, index: int = 0, *, image=None, opacity: float = 0.6) -> go.Figure:
    """The class map of image ``index`` at the centres of its positions' windows, in pixels.

    Args:
        loc: a :class:`~analysis.probes.Localization`.
        image: optional (C, H, W) image drawn under the map (with ``opacity`` on the map).

    Returns:
        A figure whose ``Heatmap`` has z = ``loc.class_map[index]`` (h, w), x / y the window
        centres ``offset + stride * j + (size - 1) / 2`` and, when ``image`` is given, an
        ``Image`` trace first; the selected boxes are drawn as shapes.
    """
    size, stride, offset = loc.receptive_field
    cmap = loc.class_map[index]
    h, w = cmap.shape
    centre = lambda n: [offset + stride * i + (size - 1) / 2 for i in range(n)]  # noqa: E731
    fig = go.Figure()
    if image is not None:
        fig.add_trace(go.Image(z=to_rgb_uint8(torch.as_tensor(image)[None])[0], hoverinfo="skip"))
    fig.add_trace(
        go.Heatmap(
            z=cmap.tolist(),
            x=centre(w),
            y=centre(h),
            colorscale="Inferno",
            opacity=opacity if image is not None else 1.0,
            colorbar={"title": "class map"},
            hovertemplate="centre (%{x}, %{y}): %{z:.3g}<extra></extra>",
        )
    )
    shapes = _box_shapes(loc.boxes[index], colors=peer_colors(loc.boxes.shape[1]))
    fig.update_layout(
        title=f"Class map of class {int(loc.predicted[index])}",
        shapes=shapes,
        yaxis_autorange="reversed",
        yaxis_scaleanchor="x",
        margin=MARGIN,
    )
    return fig


def patch_gallery(images, loc, *, size: int | None = None, class_names=None) -> go.Figure:
    """The localized patches of each image, one row per image, best box first.

    Args:
        images: (B, C, H, W) the localized images; loc: their :class:`Localization`.
        size: side of the shown patches (default: the receptive field, at most the image side).

    Returns:
        An :func:`~analysis.viz.gallery.image_gallery` of B x k patches (missing ones black,
        captioned "-"), captions ``"<class> #rank<br>score"``.
    """
    images = torch.as_tensor(images).float()
    size = size or min(loc.receptive_field[0], *images.shape[-2:])
    patches = crop_patches(images, loc.boxes, size=size)
    b, k = loc.boxes.shape[:2]
    captions = []
    for i in range(b):
        c = int(loc.predicted[i])
        name = str(class_names[c]) if class_names is not None else f"class {c}"
        for j in range(k):
            score = float(loc.scores[i, j])
            captions.append("-" if score != score else f"{name} #{j + 1}<br>{score:.3g}")
    return image_gallery(patches.flatten(0, 1), captions, cols=k)


def localization_scores_figure(score) -> go.Figure:
    """Pointing game, IoU >= 0.5 and mean best IoU: the class map's boxes vs random boxes.

    Returns:
        Two ``Bar`` traces, ``"class map"`` and ``"random boxes"``, over the three measures.
    """
    measures = ["pointing game", "top-1 IoU ≥ 0.5", "mean best IoU"]
    ours = [score.pointing, score.iou50, score.mean_best_iou]
    rand = [score.random_pointing, score.random_iou50, score.random_mean_best_iou]
    fig = go.Figure()
    for name, values, color in (
        ("class map", ours, "#1f77b4"),
        ("random boxes", rand, RANDOM_COLOR),
    ):
        fig.add_trace(
            go.Bar(
                x=measures,
                y=values,
                name=name,
                marker_color=color,
                text=[f"{v:.1%}" if i < 2 else f"{v:.2f}" for i, v in enumerate(values)],
                textposition="outside",
            )
        )
    fig.update_layout(
        title=f"Localization on {score.num_samples:,} images (top-{score.top_k} boxes)",
        barmode="group",
        yaxis_range=[0, 1.1],
        margin=MARGIN,
    )
    return fig


def cascade_figure(curve, *, tolerance: float = 0.01) -> go.Figure:
    """Early-exit cascade: accuracy against cost relative to the full model, one point per threshold.

    Returns:
        Traces ``"cascade"`` (x = relative cost, y = accuracy, text = thresholds), ``"full
        model"`` (x = 1, y = full accuracy) and a dashed line ``tolerance`` below the full model.
    """
    thresholds = curve.thresholds
    labels = [
        f"t = {float(t):.3g}"
        if thresholds.dim() == 1
        else "t = " + ", ".join(f"{v:.2g}" for v in t.tolist())
        for t in thresholds
    ]
    rel = (curve.cost / curve.full_cost).tolist()
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=rel,
            y=curve.accuracy.tolist(),
            mode="lines+markers",
            name="cascade",
            text=labels,
            hovertemplate="%{text}<br>cost %{x:.1%} of full<br>accuracy %{y:.1%}<extra></extra>",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=[1.0],
            y=[curve.full_accuracy],
            mode="markers",
            name="full model",
            marker={"color": ENSEMBLE_COLOR, "size": 11, "symbol": "star"},
        )
    )
    fig.add_hline(
        y=curve.full_accuracy - tolerance,
        line_dash="dash",
        line_color=RANDOM_COLOR,
        annotation_text=f"full − {tolerance:.0%}",
    )
    charged = " (localizer charged)" if curve.charge_localizer else ""
    fig.update_layout(
        title=f"Early-exit cascade, patches of {curve.patch_size} px{charged}",
        xaxis_title="cost relative to the full model (FLOPs)",
        yaxis_title="accuracy",
        xaxis_tickformat=".0%",
        yaxis_tickformat=".0%",
        margin=MARGIN,
    )
    return fig
