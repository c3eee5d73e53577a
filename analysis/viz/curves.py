"""Training curves from a run's metrics lines."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import plotly.graph_objects as go
from plotly.colors import qualitative

# Dash style tells the splits apart; colour tells the peers apart.
SPLIT_DASH = {"train": "dash", "val": "dot", "test": "solid"}
ENSEMBLE_COLOR = "#222222"
METRIC_LABELS = {"acc": "accuracy", "loss": "loss"}


def peer_colors(count: int) -> list[str]:
    """``count`` distinct colours, cycling through plotly's qualitative palette."""
    palette = qualitative.Plotly
    return [palette[i % len(palette)] for i in range(count)]


def _series(lines: Sequence[Mapping], key: str, index: int | None) -> tuple[list[int], list[float]]:
    """Epochs and values of ``line[key]`` (or ``line[key][index]``) for lines that have it."""
    xs, ys = [], []
    for line in sorted(lines, key=lambda line: line["epoch"]):
        value = line.get(key)
        if value is None:
            continue
        xs.append(line["epoch"])
        ys.append(float(value if index is None else value[index]))
    return xs, ys


def training_curves(
    metrics: Sequence[Mapping], *, peer_names: Sequence[str], metric: str = "acc"
) -> go.Figure:
    """One line per peer plus one for the ensemble, for every split present in ``metrics``.

    Args:
        metrics: lines of ``metrics.jsonl``, each with ``epoch``, ``split`` ("train", "val", "test"),
            ``peer_<metric>`` (a K-list) and ``ensemble_<metric>``; lines or keys that are
            missing are skipped.
        peer_names: the K peer names, in the order of the ``peer_<metric>`` lists.
        metric: ``"acc"`` (fractions, shown as percentages) or ``"loss"``.

    Returns:
        A figure with traces named ``"<peer> (<split>)"`` and ``"ensemble (<split>)"``; train
        lines are dashed, test lines solid; peers share a colour across splits.
    """
    if metric not in METRIC_LABELS:
        raise ValueError(f"unknown metric {metric!r}; use 'acc' or 'loss'")
    known = list(SPLIT_DASH)  # train before test, any other split after them
    splits = sorted(
        {line["split"] for line in metrics},
        key=lambda s: (known.index(s) if s in known else len(known), s),
    )
    colors = peer_colors(len(peer_names))
    fig = go.Figure()
    for split in splits:
        lines = [line for line in metrics if line["split"] == split]
        dash = SPLIT_DASH.get(split, "dot")
        for k, name in enumerate(peer_names):
            xs, ys = _series(lines, f"peer_{metric}", k)
            fig.add_trace(_line(xs, ys, f"{name} ({split})", colors[k], dash, group=name))
        xs, ys = _series(lines, f"ensemble_{metric}", None)
        if xs:
            fig.add_trace(
                _line(xs, ys, f"ensemble ({split})", ENSEMBLE_COLOR, dash, group="ensemble")
            )
    fig.update_layout(
        xaxis_title="epoch",
        yaxis_title=METRIC_LABELS[metric],
        legend_title_text="line (split)",
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
    )
    if metric == "acc":
        fig.update_yaxes(tickformat=".0%")
    return fig


def _line(xs: list, ys: list, name: str, color: str, dash: str, *, group: str) -> go.Scatter:
    return go.Scatter(
        x=xs,
        y=ys,
        name=name,
        mode="lines+markers" if len(xs) < 2 else "lines",
        line={"color": color, "dash": dash, "width": 3 if group == "ensemble" else 2},
        legendgroup=group,
    )
