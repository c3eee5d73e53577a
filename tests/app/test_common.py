"""The download tables behind every figure: known answers for figure_table and tensor_table."""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from app.common import figure_table, tensor_table


def test_figure_table_flattens_heatmaps_lines_and_bars():
    fig = go.Figure()
    fig.add_trace(go.Heatmap(z=[[1.0, None], [3.0, 4.0]], x=["a", "b"], y=["p", "q"], name="hm"))
    fig.add_trace(go.Scatter(x=np.array([1, 2, 3]), y=np.array([0.5, 0.25, 0.125]), name="line"))
    fig.add_trace(go.Bar(x=["u", "v"], y=[7, 8]))
    fig.add_trace(go.Image(z=np.zeros((2, 2, 3), dtype=np.uint8)))  # pixels are left out
    table = figure_table(fig)
    assert list(table.columns) == ["trace", "name", "x", "y", "z"]
    heat = table[table.trace == 0]
    assert list(zip(heat.y, heat.x)) == [("p", "a"), ("p", "b"), ("q", "a"), ("q", "b")]
    assert (
        heat.z.iloc[0] == 1.0 and math.isnan(heat.z.iloc[1]) and list(heat.z.iloc[2:]) == [3.0, 4.0]
    )
    line = table[table.trace == 1]
    assert (
        list(line.x) == [1, 2, 3]
        and list(line.y) == [0.5, 0.25, 0.125]
        and set(line.name) == {"line"}
    )
    assert list(table[table.trace == 2].y) == [7, 8]
    assert 3 not in set(table.trace) and len(table) == 4 + 3 + 2


def test_figure_table_of_a_heatmap_without_axis_labels_and_of_an_empty_figure():
    table = figure_table(go.Figure(go.Heatmap(z=[[1, 2, 3]])))
    assert list(table.x) == [0, 1, 2] and list(table.y) == [0, 0, 0] and list(table.z) == [1, 2, 3]
    assert figure_table(go.Figure()).empty


def test_tensor_table_labels_every_axis():
    values = torch.arange(12.0).reshape(2, 3, 2)
    table = tensor_table(values, peer=["a", "b"], method=None, col=["l", "r"])
    assert list(table.columns) == ["peer", "method", "col", "value"]
    assert len(table) == 12
    row = table[(table.peer == "b") & (table.method == 2) & (table.col == "r")]
    assert row.value.item() == values[1, 2, 1].item() == 11.0
    with pytest.raises(ValueError, match="3-d"):
        tensor_table(values, peer=None)
