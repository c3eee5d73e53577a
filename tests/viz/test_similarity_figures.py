"""The similarity figures carry exactly the probe results they are given."""

from __future__ import annotations

import copy

import plotly.graph_objects as go
import pytest
import torch

from analysis.models import CollaborativeModel, create_model
from analysis.probes.cka import CKAResult
from analysis.probes.kernels import KernelSimilarity, kernel_similarity
from analysis.viz import (
    cka_heatmap,
    filter_redundancy_lines,
    kernel_matching_lines,
    peer_cka_heatmap,
)
from analysis.viz.similarity import short_layer_name


def toy_cka() -> CKAResult:
    """3 peers with 2 layers each; a symmetric matrix with 1 on the diagonal and distinct entries."""
    layers = [f"peers.{k}.layer{d}" for k in range(3) for d in (1, 2)]
    matrix = torch.eye(6, dtype=torch.float64)
    for i in range(6):
        for j in range(6):
            if i != j:
                matrix[i, j] = matrix[j, i] = 0.05 * (min(i, j) + 1) + 0.01 * max(i, j)
    return CKAResult(layers, [0, 0, 1, 1, 2, 2], matrix, 500, 100, "minibatch_unbiased_hsic")


def test_short_layer_names_drop_the_peer_container_prefix():
    assert short_layer_name("peers.0.layer1.0") == "layer1.0"
    assert short_layer_name("branches.12.conv") == "conv"
    assert short_layer_name("trunk.layer1") == "trunk.layer1"


def test_cka_heatmap_shows_the_block_of_the_chosen_peer_pair():
    result = toy_cka()
    fig = cka_heatmap(result, peers=(2, 0), peer_names=["a", "b", "c"])
    (trace,) = fig.data
    assert isinstance(trace, go.Heatmap)
    assert [list(row) for row in trace.z] == result.matrix[4:6, 0:2].tolist()
    assert list(trace.y) == ["layer1", "layer2"] and list(trace.x) == ["layer1", "layer2"]
    assert (trace.zmin, trace.zmax) == (0.0, 1.0)
    assert fig.layout.yaxis.title.text == "c layer" and fig.layout.xaxis.title.text == "a layer"


def test_peer_heatmap_picks_each_peers_layer_at_the_depth():
    result = toy_cka()
    fig = peer_cka_heatmap(result, depth=1)
    z = [list(row) for row in fig.data[0].z]
    assert z == result.matrix[[1, 3, 5]][:, [1, 3, 5]].tolist()
    assert list(fig.data[0].x) == ["peer0", "peer1", "peer2"]
    assert "layer2" in fig.layout.title.text
    assert [row[i] for i, row in enumerate(z)] == [1.0, 1.0, 1.0]


def test_kernel_figures_have_one_line_per_pair_and_per_peer():
    torch.manual_seed(0)
    net = create_model("test_cnn", num_classes=3, in_chans=1, width=4)
    other = create_model("test_cnn", num_classes=3, in_chans=1, width=4)
    model = CollaborativeModel(
        [net, copy.deepcopy(net), other], mean=(0.5,), std=(0.25,), peer_names=["x", "y", "z"]
    )
    sim = kernel_similarity(model)
    lines = kernel_matching_lines(sim)
    assert [t.name for t in lines.data] == ["x vs y", "x vs z", "y vs z"]
    assert list(lines.data[0].y) == pytest.approx([1.0, 1.0])  # x and y are copies
    assert all(v < 0.99 for v in lines.data[1].y)
    assert list(lines.data[2].x) == sim.layers
    bars = filter_redundancy_lines(sim)
    assert [t.name for t in bars.data] == ["x", "y", "z"]
    assert list(bars.data[2].y) == pytest.approx(sim.redundancy[2].tolist())
    assert list(bars.data[0].y) == list(bars.data[1].y)


def test_kernel_lines_axis_covers_negative_similarities():
    sim = KernelSimilarity(
        layers=["c1", "c2"],
        peer_names=["p", "q"],
        matched=torch.tensor([[0.5, -0.2]], dtype=torch.float64),
        redundancy=torch.tensor([[0.1, 0.2], [0.3, 0.4]], dtype=torch.float64),
        pairs=[[0, 1]],
    )
    fig = kernel_matching_lines(sim)
    low, high = fig.layout.yaxis.range
    assert low <= -0.2 and high >= 1.0
