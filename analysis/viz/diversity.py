"""Figures for the diversity probe: pairwise measures, per-class agreement, and their course
over training."""

from __future__ import annotations

import math
from collections.abc import Sequence

import plotly.graph_objects as go

from analysis.probes.diversity_measures import MEASURES
from analysis.viz.agreement import ORACLE_COLOR
from analysis.viz.curves import ENSEMBLE_COLOR, peer_colors

MARGIN = {"l": 10, "r": 10, "t": 40, "b": 10}
DEFAULT_TREND = ("agreement", "kappa", "disagreement", "js_divergence")


def _clean(values) -> list:
    """Nested floats with NaN replaced by None (plotly draws None as a gap)."""
    values = values.tolist() if hasattr(values, "tolist") else values
    if isinstance(values, list):
        return [_clean(v) for v in values]
    return None if values is None or math.isnan(values) else float(values)


def _fmt(measure: str, value) -> str:
    if value is None:
        return "n/a"
    info = MEASURES[measure]
    return f"{value:.1%}" if (info.low, info.high) == (0.0, 1.0) else f"{value:.3f}"


def diversity_heatmap(report, measure: str) -> go.Figure:
    """One pairwise measure of a :class:`DiversityReport` as an annotated (K, K) heatmap.

    Args:
        report: a diversity report (``peer_names``, ``matrix(measure)``).
        measure: a key of :data:`analysis.probes.diversity_measures.MEASURES`, e.g. ``"kappa"``.

    Returns:
        One ``Heatmap`` trace with z the matrix (undefined entries as None, labelled "n/a"),
        the colour range fixed to the measure's range (diverging around 0 for measures in
        [-1, 1]) and the measure's label as the title; peer 0 is top-left.
    """
    if measure not in MEASURES:
        raise ValueError(f"unknown measure {measure!r}; choose one of {sorted(MEASURES)}")
    info = MEASURES[measure]
    z = _clean(report.matrix(measure))
    names = list(report.peer_names)
    signed = info.low < 0
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=names,
            y=names,
            zmin=info.low,
            zmax=info.high,
            zmid=0.0 if signed else None,
            colorscale="RdBu" if signed else "Blues",
            text=[[_fmt(measure, v) for v in row] for row in z],
            texttemplate="%{text}",
            hovertemplate="%{y} vs %{x}: %{text}<extra></extra>",
            colorbar={"title": measure},
        )
    )
    fig.update_layout(
        title=info.label,
        xaxis_title="peer",
        yaxis_title="peer",
        yaxis_autorange="reversed",
        margin=MARGIN,
    )
    return fig


def class_agreement_figure(
    report, *, class_names: Sequence[str] | None = None, kind: str = "bars"
) -> go.Figure:
    """Top-1 agreement of the peers on each true class.

    Args:
        report: a diversity report (``class_agreement`` (C, P), ``pairs``, ``peer_names``).
        class_names: C names (default the class indices).
        kind: ``"bars"`` -- one bar per class, the mean over peer pairs; ``"heatmap"`` -- the
            full (C, P) table, one column per pair ``"a-b"``.

    Returns:
        A figure with one ``Bar`` (y: C means) or one ``Heatmap`` (z: C rows of P values);
        classes without samples are None.
    """
    table = report.class_agreement
    num_classes = table.shape[0]
    names = [str(c) for c in (class_names if class_names is not None else range(num_classes))]
    if len(names) != num_classes:
        raise ValueError(f"got {len(names)} class names for {num_classes} classes")
    if kind == "bars":
        values = _clean(report.mean_class_agreement)
        trace = go.Bar(
            x=names,
            y=values,
            text=["n/a" if v is None else f"{v:.1%}" for v in values],
            textposition="outside",
            hovertemplate="class %{x}: %{text}<extra></extra>",
        )
        layout = {"yaxis_range": [0, 1.08], "yaxis_title": "mean pairwise agreement"}
    elif kind == "heatmap":
        pairs = [f"{report.peer_names[i]}-{report.peer_names[j]}" for i, j in report.pairs]
        z = _clean(table)
        trace = go.Heatmap(
            z=z,
            x=pairs,
            y=names,
            zmin=0.0,
            zmax=1.0,
            colorscale="Blues",
            hovertemplate="class %{y}, %{x}: %{z:.1%}<extra></extra>",
            colorbar={"title": "agreement"},
        )
        layout = {"xaxis_title": "peer pair", "yaxis_autorange": "reversed"}
    else:
        raise ValueError(f"kind must be 'bars' or 'heatmap', not {kind!r}")
    fig = go.Figure(trace)
    fig.update_layout(
        title="agreement per true class",
        margin=MARGIN,
        **layout,
        **({"xaxis_title": "class"} if kind == "bars" else {"yaxis_title": "class"}),
    )
    return fig


def dynamics_figure(dynamics, *, measures: Sequence[str] = DEFAULT_TREND) -> go.Figure:
    """Mean pairwise diversity measures over the saved epochs, one line per measure.

    Args:
        dynamics: a :class:`~analysis.probes.through_training.TrainingDynamics`.
        measures: keys of :data:`MEASURES` to draw.

    Returns:
        One ``Scatter`` per measure named by its label, x = epochs, y = the (E,) means.
    """
    fig = go.Figure()
    for measure in measures:
        if measure not in MEASURES:
            raise ValueError(f"unknown measure {measure!r}; choose among {sorted(MEASURES)}")
        fig.add_trace(
            go.Scatter(
                x=list(dynamics.epochs),
                y=_clean(dynamics.series(measure)),
                name=MEASURES[measure].label,
                mode="lines+markers",
            )
        )
    fig.update_layout(
        xaxis_title="epoch",
        yaxis_title="mean over peer pairs",
        margin=MARGIN,
        legend_title_text="measure",
    )
    return fig


def dynamics_accuracy_figure(dynamics) -> go.Figure:
    """Per-peer, ensemble and oracle accuracy over the saved epochs.

    Returns:
        K + 2 ``Scatter`` traces named ``peer_names + ["ensemble", "oracle"]``.
    """
    fig = go.Figure()
    epochs = list(dynamics.epochs)
    colors = peer_colors(len(dynamics.peer_names))
    for k, name in enumerate(dynamics.peer_names):
        fig.add_trace(
            go.Scatter(
                x=epochs,
                y=_clean(dynamics.peer_acc[:, k]),
                name=name,
                mode="lines+markers",
                line={"color": colors[k]},
            )
        )
    for name, series, color in (
        ("ensemble", dynamics.ensemble_acc, ENSEMBLE_COLOR),
        ("oracle", dynamics.oracle_acc, ORACLE_COLOR),
    ):
        fig.add_trace(
            go.Scatter(
                x=epochs,
                y=_clean(series),
                name=name,
                mode="lines+markers",
                line={"color": color, "width": 3, "dash": "dot" if name == "oracle" else "solid"},
            )
        )
    fig.update_layout(
        xaxis_title="epoch", yaxis_title="accuracy", yaxis_tickformat=".0%", margin=MARGIN
    )
    return fig
