"""Attribution figures: the peers' maps in a grid, and deletion curves with AUC legends."""

from __future__ import annotations

import plotly.graph_objects as go
import pytest
import torch

from analysis.viz import attribution_grid, deletion_figure, normalize_maps


def test_normalize_maps_scales_each_map_by_its_largest_magnitude():
    maps = torch.tensor([[[2.0, -4.0], [1.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])
    out = normalize_maps(maps)
    assert out[0].tolist() == [[0.5, -1.0], [0.25, 0.0]]
    assert out[1].abs().max().item() == 0.0  # an empty map stays empty


def grid_inputs():
    torch.manual_seed(0)
    images = torch.rand(2, 1, 4, 5)
    maps = torch.rand(3, 2, 4, 5)  # 3 peers, 2 images
    return images, maps


def test_overlay_grid_has_image_column_then_one_map_per_peer():
    images, maps = grid_inputs()
    fig = attribution_grid(
        images, maps, peer_names=["a", "b", "c"], captions=["label 1", "label 7"]
    )
    heatmaps = [t for t in fig.data if isinstance(t, go.Heatmap)]
    pictures = [t for t in fig.data if isinstance(t, go.Image)]
    assert len(heatmaps) == 6 and len(pictures) == 2 + 6  # image column + one under each map
    expected = normalize_maps(maps)
    for b in range(2):
        for k in range(3):
            trace = heatmaps[b * 3 + k]
            assert trace.name == ["a", "b", "c"][k]
            torch.testing.assert_close(torch.tensor(trace.z), expected[k, b])
            assert trace.opacity == 0.6
    assert pictures[0].z.shape == (4, 5, 3)
    titles = [a.text for a in fig.layout.annotations]
    assert {"image", "a", "b", "c", "label 1", "label 7"} <= set(titles)
    assert (fig.layout.coloraxis.cmin, fig.layout.coloraxis.cmax) == (0.0, 1.0)


def test_side_by_side_grid_and_signed_maps():
    images, maps = grid_inputs()
    signed = maps - 0.5
    fig = attribution_grid(images, signed, peer_names=["a", "b", "c"], overlay=False)
    assert sum(isinstance(t, go.Image) for t in fig.data) == 2  # only the image column
    assert all(t.opacity == 1.0 for t in fig.data if isinstance(t, go.Heatmap))
    assert (fig.layout.coloraxis.cmin, fig.layout.coloraxis.cmax) == (-1.0, 1.0)
    with pytest.raises(ValueError, match=r"expected maps \(2, 2, H, W\)"):
        attribution_grid(images, maps, peer_names=["a", "b"])
    with pytest.raises(ValueError, match="1 captions for 2 images"):
        attribution_grid(images, maps, peer_names=["a", "b", "c"], captions=["x"])


def test_deletion_figure_averages_over_images_and_puts_auc_in_the_legend():
    curves = torch.tensor(
        [
            [[1.0, 0.5, 0.0], [0.8, 0.3, 0.2]],  # peer a, two images
            [[1.0, 1.0, 0.5], [1.0, 0.9, 0.7]],  # peer b
        ]
    )
    auc = torch.tensor([[0.5, 0.4], [0.875, 0.875]])
    fig = deletion_figure(curves, auc, peer_names=["a", "b"])
    assert [t.name for t in fig.data] == ["a (AUC 0.450)", "b (AUC 0.875)"]
    assert list(fig.data[0].x) == [0.0, 0.5, 1.0]
    assert list(fig.data[0].y) == pytest.approx([0.9, 0.4, 0.1])
    assert "lower AUC" in fig.layout.title.text
    single = deletion_figure(
        curves[:, 0], auc[:, 0], peer_names=["a", "b"], kind="insertion", fractions=[0.0, 0.25, 1.0]
    )
    assert list(single.data[1].x) == [0.0, 0.25, 1.0] and "higher AUC" in single.layout.title.text
    with pytest.raises(ValueError, match="for 3 peers"):
        deletion_figure(curves, auc, peer_names=["a", "b", "c"])
    with pytest.raises(ValueError, match="kind must be"):
        deletion_figure(curves, auc, peer_names=["a", "b"], kind="rise")
