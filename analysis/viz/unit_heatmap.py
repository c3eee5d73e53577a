"""The annotated heatmap of values in [0, 1] (CKA, Jaccard overlaps, shares of channels)."""

from __future__ import annotations

import plotly.graph_objects as go


def unit_heatmap(
    z: list[list[float]],
    x: list[str],
    y: list[str],
    *,
    hover: str,
    title: str,
    text: list[list[str]] | None = None,
) -> go.Heatmap:
    """A Viridis heatmap on [0, 1], each cell labelled (``text``, default the value to 2
    decimals); ``hover`` is the plotly hover template, ``title`` the colour bar's."""
    return go.Heatmap(
        z=z,
        x=x,
        y=y,
        zmin=0.0,
        zmax=1.0,
        colorscale="Viridis",
        text=text if text is not None else [[f"{v:.2f}" for v in row] for row in z],
        texttemplate="%{text}",
        hovertemplate=hover + "<extra></extra>",
        colorbar={"title": title},
    )
