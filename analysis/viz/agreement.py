"""Figures for the agreement probe: who agrees with whom, and who is right how often."""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go

from analysis.viz.curves import ENSEMBLE_COLOR, peer_colors

ORACLE_COLOR = "#9e9e9e"


def _as_list(values) -> list:
    """Tensors and arrays via ``tolist``; anything else iterable as a list."""
    return values.tolist() if hasattr(values, "tolist") else list(values)


def agreement_heatmap(matrix, names: Sequence[str]) -> go.Figure:
    """Pairwise top-1 agreement as an annotated heatmap.

    Args:
        matrix: (K, K) agreement shares in [0, 1] (tensor, array or nested lists).
        names: the K peer names, used for both axes.

    Returns:
        One ``Heatmap`` trace, colour scale fixed to [0, 1], each cell labelled with its value;
        peer 0 is in the top-left corner.
    """
    z = _as_list(matrix)
    if len(z) != len(names) or any(len(row) != len(names) for row in z):
        raise ValueError(
            f"agreement matrix must be {len(names)}x{len(names)} for {len(names)} names"
        )
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=list(names),
            y=list(names),
            zmin=0.0,
            zmax=1.0,
            colorscale="Blues",
            text=[[f"{v:.1%}" for v in row] for row in z],
            texttemplate="%{text}",
            hovertemplate="%{y} vs %{x}: %{text}<extra></extra>",
            colorbar={"title": "agreement", "tickformat": ".0%"},
        )
    )
    fig.update_layout(
        xaxis_title="peer",
        yaxis_title="peer",
        yaxis_autorange="reversed",
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
    )
    return fig


def accuracy_bars(
    peer_acc, ensemble_acc: float, oracle_acc: float, names: Sequence[str]
) -> go.Figure:
    """Bars for each peer's accuracy, then the ensemble's and the oracle's.

    Args:
        peer_acc: (K,) accuracies in [0, 1].
        ensemble_acc: the ensemble's accuracy.
        oracle_acc: share of samples at least one peer gets right.
        names: the K peer names.

    Returns:
        One ``Bar`` trace with K + 2 bars labelled ``names + ["ensemble", "oracle"]``.
    """
    values = [float(v) for v in _as_list(peer_acc)]
    if len(values) != len(names):
        raise ValueError(f"got {len(values)} accuracies for {len(names)} peer names")
    values += [float(ensemble_acc), float(oracle_acc)]
    labels = list(names) + ["ensemble", "oracle"]
    fig = go.Figure(
        go.Bar(
            x=labels,
            y=values,
            marker_color=peer_colors(len(names)) + [ENSEMBLE_COLOR, ORACLE_COLOR],
            text=[f"{v:.1%}" for v in values],
            textposition="outside",
            hovertemplate="%{x}: %{text}<extra></extra>",
        )
    )
    fig.update_layout(
        xaxis_title="predictor",
        yaxis_title="accuracy",
        yaxis_range=[0, 1.08],
        yaxis_tickformat=".0%",
        showlegend=False,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
    )
    return fig
