"""Figures for attributions: peers' maps side by side, and their deletion/insertion curves."""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from analysis.viz.curves import peer_colors
from analysis.viz.gallery import to_rgb_uint8

CELL_PX = 130  # height of one grid row in pixels


def normalize_maps(maps: torch.Tensor) -> torch.Tensor:
    """(..., H, W) maps each divided by its largest absolute value (all-zero maps stay 0).

    The result lies in [-1, 1] (in [0, 1] for non-negative maps), so one colour scale fits all.
    """
    maps = torch.as_tensor(maps).detach().float().cpu()
    scale = maps.abs().amax(dim=(-2, -1), keepdim=True)
    return maps / torch.where(scale > 0, scale, torch.ones_like(scale))


def attribution_grid(
    images,
    maps,
    *,
    peer_names: Sequence[str],
    captions: Sequence[str] | None = None,
    overlay: bool = True,
    opacity: float = 0.6,
) -> go.Figure:
    """Rows = images, columns = the image then one attribution map per peer.

    Args:
        images: (B, C, H, W) images in [0, 1] (C = 1 or 3).
        maps: (K, B, H, W) attribution maps (e.g. :func:`attribute_all_peers`).
        peer_names: the K peer names (column titles).
        captions: B row titles (e.g. the label), optional.
        overlay: draw each map over the (greyed-out) image; otherwise the map alone.
        opacity: opacity of an overlaid map.

    Returns:
        A figure with one ``Image`` trace per row for the image column and, per (row, peer),
        one ``Heatmap`` whose z is the map scaled by :func:`normalize_maps` (preceded by an
        ``Image`` when ``overlay``). All heatmaps share one colour axis: [-1, 1] diverging if
        any map is negative, else [0, 1].
    """
    maps = normalize_maps(maps)
    pixels = to_rgb_uint8(images)
    k = len(peer_names)
    if maps.dim() != 4 or maps.shape[:2] != (k, len(pixels)):
        raise ValueError(
            f"expected maps ({k}, {len(pixels)}, H, W) for {k} peers, got {tuple(maps.shape)}"
        )
    if captions is not None and len(captions) != len(pixels):
        raise ValueError(f"got {len(captions)} captions for {len(pixels)} images")
    rows = len(pixels)
    fig = make_subplots(
        rows=rows,
        cols=k + 1,
        column_titles=["image", *peer_names],
        row_titles=list(captions) if captions is not None else None,
        horizontal_spacing=0.01,
        vertical_spacing=min(0.2 / max(rows, 1), 0.03),
    )
    faded = (pixels * 0.5 + 127).astype(pixels.dtype) if overlay else pixels
    for b in range(rows):
        fig.add_trace(go.Image(z=pixels[b], hoverinfo="skip"), row=b + 1, col=1)
        for j in range(k):
            if overlay:
                fig.add_trace(go.Image(z=faded[b], hoverinfo="skip"), row=b + 1, col=j + 2)
            fig.add_trace(
                go.Heatmap(
                    z=maps[j, b].tolist(),
                    coloraxis="coloraxis",
                    opacity=opacity if overlay else 1.0,
                    name=peer_names[j],
                    hovertemplate=f"{peer_names[j]} (%{{x}}, %{{y}}): %{{z:.2f}}<extra></extra>",
                ),
                row=b + 1,
                col=j + 2,
            )
    signed = bool((maps < 0).any())
    fig.update_layout(
        coloraxis={
            "colorscale": "RdBu_r" if signed else "Inferno",
            "cmin": -1.0 if signed else 0.0,
            "cmax": 1.0,
            "colorbar": {"title": "attribution"},
        },
        height=rows * CELL_PX + 60,
        margin={"l": 5, "r": 5, "t": 40, "b": 5},
    )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, autorange="reversed")
    return fig


def deletion_figure(
    curves,
    auc,
    *,
    peer_names: Sequence[str],
    fractions=None,
    kind: str = "deletion",
) -> go.Figure:
    """Mean deletion (or insertion) curve of each peer, its mean AUC in the legend.

    Args:
        curves: (K, B, S + 1) or (K, S + 1) target-class probabilities per step.
        auc: (K, B) or (K,) areas under the curves.
        peer_names: the K peer names.
        fractions: (S + 1,) fraction of pixels replaced at each step (default evenly spaced).
        kind: ``"deletion"`` (lower AUC = more faithful) or ``"insertion"`` (higher is).

    Returns:
        K ``Scatter`` traces named ``"<peer> (AUC 0.123)"``, y = the curve averaged over images.
    """
    if kind not in ("deletion", "insertion"):
        raise ValueError(f"kind must be 'deletion' or 'insertion', not {kind!r}")
    curves = torch.as_tensor(curves).float()
    auc = torch.as_tensor(auc).float()
    if curves.dim() == 3:
        curves, auc = curves.mean(dim=1), auc.reshape(len(auc), -1).mean(dim=1)
    if curves.dim() != 2 or len(curves) != len(peer_names) or auc.shape != (len(peer_names),):
        raise ValueError(
            f"expected curves (K, [B,] S+1) and auc (K, [B]) for {len(peer_names)} peers, "
            f"got {tuple(curves.shape)} and {tuple(auc.shape)}"
        )
    steps = curves.shape[1] - 1
    xs = torch.as_tensor(fractions).tolist() if fractions is not None else None
    xs = xs or [t / steps for t in range(steps + 1)]
    colors = peer_colors(len(peer_names))
    fig = go.Figure()
    for k, name in enumerate(peer_names):
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=curves[k].tolist(),
                name=f"{name} (AUC {auc[k].item():.3f})",
                mode="lines",
                line={"color": colors[k], "width": 2},
            )
        )
    better = "lower" if kind == "deletion" else "higher"
    fig.update_layout(
        title=f"{kind} curves ({better} AUC = more faithful)",
        xaxis_title="fraction of pixels " + ("deleted" if kind == "deletion" else "inserted"),
        yaxis_title="probability of the target class",
        yaxis_range=[0, 1.02],
        xaxis_tickformat=".0%",
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
    )
    return fig
