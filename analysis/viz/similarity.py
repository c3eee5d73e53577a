"""Figures for representation similarity (CKA) and kernel similarity between peers."""

from __future__ import annotations

import re
from collections.abc import Sequence

import plotly.graph_objects as go

from analysis.probes.cka import CKAResult
from analysis.probes.kernels import KernelSimilarity
from analysis.viz.curves import peer_colors
from analysis.viz.unit_heatmap import unit_heatmap

_PEER_PREFIX = re.compile(r"^[A-Za-z_]+\.\d+\.")
_MARGIN = {"l": 10, "r": 10, "t": 30, "b": 10}


def short_layer_name(path: str) -> str:
    """``"peers.0.layer1.0"`` -> ``"layer1.0"``: drop a leading container prefix like ``peers.<i>.``."""
    return _PEER_PREFIX.sub("", path, count=1)


def _names(count: int, peer_names: Sequence[str] | None) -> list[str]:
    names = list(peer_names) if peer_names is not None else [f"peer{i}" for i in range(count)]
    if len(names) < count:
        raise ValueError(f"got {len(names)} peer names for {count} peers")
    return names


def _heatmap(z: list[list[float]], x: list[str], y: list[str], hover: str) -> go.Heatmap:
    return unit_heatmap(z, x, y, hover=hover + ": CKA %{text}", title="CKA")


def cka_heatmap(
    result: CKAResult, *, peers: tuple[int, int] = (0, 1), peer_names: Sequence[str] | None = None
) -> go.Figure:
    """Layer x layer CKA between two peers (or one peer with itself).

    Args:
        result: a :class:`CKAResult`.
        peers: ``(a, b)``: rows are peer ``a``'s layers (top = first), columns peer ``b``'s.
        peer_names: display names of the peers (default ``peer0``, ...).

    Returns:
        One ``Heatmap`` with z = ``result.block(a, b)`` (L_a, L_b), colour scale fixed to [0, 1].
    """
    a, b = peers
    names = _names(result.num_peers, peer_names)
    z = result.block(a, b).tolist()
    rows = [short_layer_name(p) for p in result.layers_of(a)]
    cols = [short_layer_name(p) for p in result.layers_of(b)]
    fig = go.Figure(_heatmap(z, cols, rows, f"{names[a]} %{{y}} vs {names[b]} %{{x}}"))
    fig.update_layout(
        title=f"CKA: {names[a]} vs {names[b]}",
        xaxis_title=f"{names[b]} layer",
        yaxis_title=f"{names[a]} layer",
        yaxis_autorange="reversed",
        margin=_MARGIN,
    )
    return fig


def peer_cka_heatmap(
    result: CKAResult, *, depth: int = -1, peer_names: Sequence[str] | None = None
) -> go.Figure:
    """Peer x peer CKA at one layer depth (default: each peer's last probed layer).

    Returns:
        One ``Heatmap`` with z = ``result.peer_matrix(depth)`` (K, K); peer 0 top-left.
    """
    names = _names(result.num_peers, peer_names)[: result.num_peers]
    z = result.peer_matrix(depth).tolist()
    layer = short_layer_name(result.layers_of(0)[depth])
    fig = go.Figure(_heatmap(z, names, names, "%{y} vs %{x}"))
    fig.update_layout(
        title=f"CKA between peers at layer {layer}",
        xaxis_title="peer",
        yaxis_title="peer",
        yaxis_autorange="reversed",
        margin=_MARGIN,
    )
    return fig


def kernel_matching_lines(sim: KernelSimilarity) -> go.Figure:
    """Mean matched-filter cosine similarity per conv layer, one line per peer pair."""
    colors = peer_colors(len(sim.pairs))
    fig = go.Figure()
    for row, label in enumerate(sim.pair_labels()):
        fig.add_trace(
            go.Scatter(
                x=sim.layers,
                y=sim.matched[row].tolist(),
                mode="lines+markers",
                name=label,
                line={"color": colors[row]},
                hovertemplate=label + " %{x}: %{y:.3f}<extra></extra>",
            )
        )
    fig.update_layout(
        title="Filter similarity after optimal matching",
        xaxis_title="conv layer",
        yaxis_title="mean matched cosine similarity",
        yaxis_range=[
            min(0.0, float(sim.matched.min()) - 0.05) if sim.matched.numel() else 0.0,
            1.05,
        ],
        margin=_MARGIN,
    )
    return fig


def filter_redundancy_lines(sim: KernelSimilarity) -> go.Figure:
    """Mean absolute cosine similarity between a layer's own filters, one line per peer."""
    colors = peer_colors(len(sim.peer_names))
    fig = go.Figure()
    for k, name in enumerate(sim.peer_names):
        fig.add_trace(
            go.Scatter(
                x=sim.layers,
                y=sim.redundancy[k].tolist(),
                mode="lines+markers",
                name=name,
                line={"color": colors[k]},
                hovertemplate=name + " %{x}: %{y:.3f}<extra></extra>",
            )
        )
    fig.update_layout(
        title="Filter redundancy within each layer",
        xaxis_title="conv layer",
        yaxis_title="mean |cosine| between filters",
        yaxis_range=[0, 1.05],
        margin=_MARGIN,
    )
    return fig
