"""Each figure builder is checked on the data it puts into its traces."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from analysis.viz import (
    accuracy_bars,
    agreement_heatmap,
    image_gallery,
    prediction_captions,
    to_rgb_uint8,
    training_curves,
)


def metric_lines() -> list[dict]:
    lines = []
    for epoch in (2, 1):  # out of order on purpose: curves must sort by epoch
        for split, base in (("train", 0.5), ("test", 0.4)):
            acc = [base + 0.1 * epoch, base + 0.1 * epoch + 0.01]
            lines.append(
                {
                    "epoch": epoch,
                    "split": split,
                    "loss": 1.0 / epoch,
                    "peer_loss": [1.0 / epoch, 1.1 / epoch],
                    "peer_acc": acc,
                    "ensemble_loss": 0.9 / epoch,
                    "ensemble_acc": max(acc) + 0.02,
                    "lr": 0.1,
                }
            )
    return lines


def test_training_curves_has_one_line_per_peer_and_ensemble_per_split():
    fig = training_curves(metric_lines(), peer_names=["a", "b"], metric="acc")
    assert isinstance(fig, go.Figure)
    names = [trace.name for trace in fig.data]
    assert names == [
        "a (train)",
        "b (train)",
        "ensemble (train)",
        "a (test)",
        "b (test)",
        "ensemble (test)",
    ]
    traces = {trace.name: trace for trace in fig.data}
    assert list(traces["b (test)"].x) == [1, 2]
    assert list(traces["b (test)"].y) == pytest.approx([0.51, 0.61])
    assert list(traces["ensemble (train)"].y) == pytest.approx([0.63, 0.73])
    assert traces["a (train)"].line.dash == "dash" and traces["a (test)"].line.dash == "solid"
    assert (
        traces["a (train)"].line.color
        == traces["a (test)"].line.color
        != traces["b (test)"].line.color
    )
    assert fig.layout.xaxis.title.text == "epoch"
    assert fig.layout.yaxis.title.text == "accuracy"
    assert fig.layout.yaxis.tickformat == ".0%"


def test_training_curves_loss_and_missing_keys():
    lines = [line for line in metric_lines() if line["split"] == "test"]
    for line in lines:
        del line["ensemble_loss"]
    fig = training_curves(lines, peer_names=["a", "b"], metric="loss")
    assert [trace.name for trace in fig.data] == ["a (test)", "b (test)"]
    assert list(fig.data[1].y) == pytest.approx([1.1, 0.55])
    assert fig.layout.yaxis.title.text == "loss"
    with pytest.raises(ValueError, match="unknown metric"):
        training_curves(lines, peer_names=["a", "b"], metric="f1")


def test_agreement_heatmap_labels_every_cell():
    matrix = torch.tensor([[1.0, 0.25], [0.25, 1.0]])
    fig = agreement_heatmap(matrix, ["a", "b"])
    (heat,) = fig.data
    assert isinstance(heat, go.Heatmap)
    assert [list(row) for row in heat.z] == [[1.0, 0.25], [0.25, 1.0]]
    assert list(heat.x) == ["a", "b"] and list(heat.y) == ["a", "b"]
    assert [list(row) for row in heat.text] == [["100.0%", "25.0%"], ["25.0%", "100.0%"]]
    assert (heat.zmin, heat.zmax) == (0.0, 1.0)
    assert fig.layout.yaxis.autorange == "reversed"
    with pytest.raises(ValueError, match="2x2"):
        agreement_heatmap(torch.ones(3, 3), ["a", "b"])


def test_accuracy_bars_appends_ensemble_and_oracle():
    fig = accuracy_bars(np.array([0.5, 0.75]), 0.8, 0.9, ["a", "b"])
    (bars,) = fig.data
    assert list(bars.x) == ["a", "b", "ensemble", "oracle"]
    assert list(bars.y) == pytest.approx([0.5, 0.75, 0.8, 0.9])
    assert list(bars.text) == ["50.0%", "75.0%", "80.0%", "90.0%"]
    assert fig.layout.yaxis.title.text == "accuracy"
    with pytest.raises(ValueError, match="3 accuracies for 2"):
        accuracy_bars([0.1, 0.2, 0.3], 0.5, 0.6, ["a", "b"])


def test_gallery_handles_grey_and_rgb():
    grey = torch.zeros(5, 1, 2, 3)
    grey[0, 0, 1, 2] = 1.0
    grey[1] = 0.5
    fig = image_gallery(grey, [f"img{i}" for i in range(5)], cols=2)
    assert len(fig.data) == 5 and all(isinstance(t, go.Image) for t in fig.data)
    first = np.asarray(fig.data[0].z)
    assert first.shape == (2, 3, 3)
    assert first[1, 2].tolist() == [255, 255, 255] and first[0, 0].tolist() == [0, 0, 0]
    assert np.asarray(fig.data[1].z)[0, 0].tolist() == [128, 128, 128]
    assert [a.text for a in fig.layout.annotations] == [f"img{i}" for i in range(5)]
    assert fig.data[4].xaxis == "x5"  # 3 rows x 2 cols: the fifth image is in row 3

    rgb = np.zeros((1, 3, 2, 2), dtype=np.float32)
    rgb[0, 0] = 1.0  # pure red; values above 1 would be clipped
    (image,) = image_gallery(rgb * 2, ["red"]).data
    assert np.asarray(image.z)[0, 0].tolist() == [255, 0, 0]


def test_gallery_rejects_bad_input_and_shows_empty_note():
    with pytest.raises(ValueError, match="C = 1 or 3"):
        to_rgb_uint8(torch.zeros(1, 2, 4, 4))
    with pytest.raises(ValueError, match="1 captions for 2 images"):
        image_gallery(torch.zeros(2, 1, 4, 4), ["only one"])
    empty = image_gallery(torch.zeros(0, 1, 4, 4), [])
    assert len(empty.data) == 0 and empty.layout.annotations[0].text == "no images"


def test_prediction_captions_name_label_and_each_peer():
    captions = prediction_captions(
        torch.tensor([[1, 0], [2, 0]]),
        torch.tensor([1, 2]),
        peer_names=["a", "b"],
        class_names=["x", "y", "z"],
    )
    assert captions == ["label y<br>a: y · b: z", "label z<br>a: x · b: x"]
    assert prediction_captions([[3]], [3], peer_names=["a"]) == ["label 3<br>a: 3"]
