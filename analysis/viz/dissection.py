"""Figures for the class-wise dissection: mask sizes, class overlaps, and peers' shared parts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go

from analysis.probes.dissection import Dissection
from analysis.viz.report import Section
from analysis.viz.unit_heatmap import unit_heatmap

_MARGIN = {"l": 10, "r": 10, "t": 40, "b": 10}


def _labels(result: Dissection, class_names: Sequence[str] | None) -> list[str]:
    if class_names is None:
        return [str(c) for c in result.classes]
    return [str(class_names[c]) for c in result.classes]


def mask_size_heatmap(
    result: Dissection, *, peer: int = 0, class_names: Sequence[str] | None = None
) -> go.Figure:
    """Class x unit heatmap of the share of a unit's channels in the class's mask, for the peer
    at position ``peer`` of ``result.peers``; the hover gives the channel counts."""
    sizes = result.sizes[peer].double()  # (n, U)
    share = (sizes / sizes.new_tensor(result.widths)).tolist()
    text = [[f"{int(k)}/{w}" for k, w in zip(row, result.widths)] for row in sizes.tolist()]
    fig = go.Figure(
        unit_heatmap(
            share,
            result.units,
            _labels(result, class_names),
            hover="class %{y}, %{x}: %{text} channels kept",
            title="kept",
            text=text,
        )
    )
    fig.update_layout(
        title=f"Class-wise masks of {result.peer_names[peer]}",
        xaxis_title="channel unit",
        yaxis={"title": "class", "autorange": "reversed", "type": "category"},
        margin=_MARGIN,
    )
    return fig


def class_overlap_heatmap(
    result: Dissection, *, peer: int = 0, class_names: Sequence[str] | None = None
) -> go.Figure:
    """Class x class Jaccard overlap of the whole-network masks of the peer at ``peer``."""
    labels = _labels(result, class_names)
    z = result.class_overlap[peer].tolist()
    fig = go.Figure(
        unit_heatmap(
            z, labels, labels, hover="classes %{y} and %{x}: Jaccard %{text}", title="Jaccard"
        )
    )
    fig.update_layout(
        title=f"Shared parts between classes in {result.peer_names[peer]}",
        xaxis={"type": "category"},
        yaxis={"autorange": "reversed", "type": "category"},
        margin=_MARGIN,
    )
    return fig


def peer_parts_figure(result: Dissection) -> go.Figure:
    """Per unit, the mean mask overlap between peers (over pairs and classes): after matching
    channels by activation correlation, under a random matching, and index by index."""
    fig = go.Figure()
    if not result.pairs:
        fig.update_layout(title="Fewer than two comparable peers", margin=_MARGIN)
        return fig
    for name, values in (
        ("matched channels", result.matched_overlap),
        ("chance (random matching)", result.chance_overlap),
        ("index by index", result.raw_overlap),
    ):
        fig.add_trace(go.Bar(name=name, x=result.units, y=values.mean((0, 1)).tolist()))
    fig.update_layout(
        title="Do the peers dissect into the same class-wise parts?",
        barmode="group",
        xaxis_title="channel unit",
        yaxis={"title": "mask overlap (Jaccard)", "range": [0, 1]},
        margin=_MARGIN,
    )
    return fig


def dissection_section(run: Any, result: Dissection) -> Section:
    """The report section of a dissection result (for ``collab analyze --probe dissection``)."""
    numbers = {"time": f"{result.seconds:.1f}s", "classes": str(len(result.classes))}
    if result.pairs:
        numbers["matched mask overlap"] = f"{result.matched_overlap.mean().item():.3f}"
        numbers["chance level"] = f"{result.chance_overlap.mean().item():.3f}"
        numbers["class-overlap agreement"] = f"{result.overlap_agreement.nanmean().item():.3f}"
    names = run.manifest["data"].get("class_names")
    figures = [mask_size_heatmap(result, class_names=names)]
    figures += [class_overlap_heatmap(result, class_names=names), peer_parts_figure(result)]
    text = "Class-wise channel masks (DRNet gates); peers compared after matching channels."
    return Section("Class-wise dissection", text, numbers, figures)
