"""Width search: validation accuracy against parameters, for the search and for comparisons."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import plotly.graph_objects as go
from plotly.colors import qualitative


def _widths(widths: Sequence[int]) -> str:
    return "[" + ", ".join(str(w) for w in widths) + "]"


def search_figure(
    log: Sequence[Mapping],
    *,
    compared: Mapping[str, tuple[int, float]] | None = None,
    y_label: str = "validation accuracy",
) -> go.Figure:
    """The path of a width search and, optionally, networks trained otherwise.

    Args:
        log: the lines of ``search.jsonl`` (step records; a ``done`` line is skipped).
        compared: name -> (parameters, accuracy) of other networks, e.g. the searched and the
            uniform widths trained from scratch; one marker each.
        y_label: what the accuracies are (the search's own are validation scores).

    Returns:
        A figure: the accepted steps as a line ("search (kept)"), every trained proposal of
        every step as grey points ("proposals"), and one marker per ``compared`` entry.
        Accuracies are fractions, shown as percentages.
    """
    steps = [r for r in log if "step" in r]
    fig = go.Figure()
    tried = [c for r in steps for c in r.get("candidates", []) if c.get("val_acc") is not None]
    fig.add_trace(
        go.Scatter(
            x=[c["params"] for c in tried],
            y=[c["val_acc"] for c in tried],
            mode="markers",
            name="proposals",
            marker={"color": "#bbbbbb", "size": 7},
            text=[_widths(c["widths"]) for c in tried],
            hovertemplate="%{text}: %{x:,} parameters, %{y:.1%}<extra>proposal</extra>",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=[r["params"] for r in steps],
            y=[r["val_acc"] for r in steps],
            mode="lines+markers",
            name="search (kept)",
            line={"color": "#222222"},
            text=[_widths(r["widths"]) for r in steps],
            hovertemplate="step %{customdata}: %{text}, %{x:,} parameters, %{y:.1%}<extra></extra>",
            customdata=[r["step"] for r in steps],
        )
    )
    palette = qualitative.Plotly
    for i, (name, (params, acc)) in enumerate((compared or {}).items()):
        fig.add_trace(
            go.Scatter(
                x=[params],
                y=[acc],
                mode="markers",
                name=name,
                marker={"color": palette[i % len(palette)], "size": 12, "symbol": "diamond"},
                hovertemplate=f"{name}: %{{x:,}} parameters, %{{y:.1%}}<extra></extra>",
            )
        )
    fig.update_layout(
        xaxis_title="parameters (all peers)",
        yaxis_title=y_label,
        yaxis_tickformat=".0%",
        legend={"orientation": "h", "y": -0.2},
        margin={"t": 30},
    )
    return fig
