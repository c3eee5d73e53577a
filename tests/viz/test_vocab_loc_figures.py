"""Vocabulary, localization and cascade figures carry the probes' numbers into their traces."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import TensorDataset

from analysis.models import CollaborativeModel, create_model
from analysis.probes.cascade import cascade_curve
from analysis.probes.class_map import localize
from analysis.probes.localization import LocalizationScore
from analysis.probes.peer_words import PeerCooccurrence
from analysis.probes.shared_pass import run_pass
from analysis.probes.vocabulary import VocabularyConsumer, probe_vocabulary
from analysis.viz.localization import (
    boxes_figure,
    cascade_figure,
    class_map_figure,
    localization_scores_figure,
    patch_gallery,
)
from analysis.viz.vocabulary import cooccurrence_heatmap, vocabulary_usage, word_gallery


@pytest.fixture(scope="module")
def dcl_setup():
    torch.manual_seed(0)
    net = create_model("dcl_resnet8", num_classes=4, in_chans=1, width=4)
    model = CollaborativeModel([net], mean=(0.5,), std=(0.25,))
    gen = torch.Generator().manual_seed(0)
    data = TensorDataset(
        torch.rand(12, 1, 16, 16, generator=gen), torch.randint(0, 4, (12,), generator=gen)
    )
    return model, data, probe_vocabulary(model, data, num_words=3, top_n=2)


def test_cooccurrence_heatmap_counts_and_pmi(dcl_setup):
    _, _, vocab = dcl_setup
    (counts,) = cooccurrence_heatmap(vocab).data
    assert torch.equal(torch.tensor(counts.z), vocab.counts[0].double())
    assert (
        counts.zmin == 0
        and counts.colorscale[0][1] != ""
        and "branch 0 word" in counts.hovertemplate
    )
    (pmi,) = cooccurrence_heatmap(vocab, kind="pmi").data
    torch.testing.assert_close(torch.tensor(pmi.z, dtype=torch.float64), vocab.pmi[0])
    assert pmi.zmid == 0.0 and pmi.zmin == -pmi.zmax == -float(vocab.pmi[0].abs().max())
    with pytest.raises(ValueError, match="pair 1 out of range"):
        cooccurrence_heatmap(vocab, pair=1)
    with pytest.raises(ValueError, match="unknown kind"):
        cooccurrence_heatmap(vocab, kind="ppmi")


def test_peer_cooccurrence_heatmap_draws_empty_cells_as_gaps():
    counts = torch.tensor([[4, 0], [0, 4]])
    peer = PeerCooccurrence(
        layers=["peers.0.layer2", "peers.1.layer2"],
        counts=counts,
        pmi=torch.tensor([[1.0, float("-inf")], [float("-inf"), 1.0]], dtype=torch.float64),
        smoothing=0.0,
        num_samples=2,
        map_size=[2, 2],
        num_positions=8,
        resampled=[False, False],
        mutual_information=1.0,
        entropy_bits=[1.0, 1.0],
    )
    (trace,) = cooccurrence_heatmap(peer, kind="pmi").data
    assert trace.z[0][1] is None and trace.z[0][0] == 1.0
    fig = cooccurrence_heatmap(peer)
    assert (
        fig.layout.yaxis.title.text == "peers.0.layer2 word"
        and "8 positions" in fig.layout.title.text
    )


def test_vocabulary_usage_bars_and_entropy(dcl_setup):
    _, _, vocab = dcl_setup
    fig = vocabulary_usage([vocab, vocab], names=["a", "b"])
    by_name = {t.name: t for t in fig.data}
    assert list(by_name["possible words"].y) == [64, 64]
    assert list(by_name["used words"].y) == [vocab.used_vocabulary] * 2
    assert by_name["entropy (bits)"].y[0] == pytest.approx(vocab.entropy_bits)
    assert by_name["max entropy (bits)"].y[0] == pytest.approx(math.log2(64))
    assert by_name["entropy (bits)"].yaxis == "y2" and fig.layout.yaxis.type == "log"
    assert list(vocabulary_usage(vocab).data[0].x) == [vocab.layer]


def test_word_gallery_shows_the_patches_row_by_row(dcl_setup):
    model, data, vocab = dcl_setup
    fig = word_gallery(vocab)
    images = [t for t in fig.data if t.type == "image"]
    valid = int((vocab.top_samples >= 0).sum())
    assert len(images) == 3 * 2 and valid >= 3
    first = torch.tensor(images[0].z)
    expected = (vocab.patches[0, 0, 0].clamp(0, 1) * 255).round().to(torch.uint8)
    assert torch.equal(first[..., 0], expected)
    titles = [a.text for a in fig.layout.annotations]
    assert titles[0].startswith(f"{vocab.word_label(0)} ×{int(vocab.word_counts[0])}")
    (bare,) = run_pass(model, data, [VocabularyConsumer(model, vocab.layer)])
    with pytest.raises(ValueError, match="no patches"):
        word_gallery(bare)


@pytest.fixture(scope="module")
def loc_setup():
    torch.manual_seed(0)
    net = create_model("test_cnn", num_classes=3, in_chans=1, width=4)
    peer = CollaborativeModel([net], mean=(0.5,), std=(0.25,)).peer(0)
    x = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    return peer, x, localize(peer, x, top_k=2)


def test_boxes_figure_draws_each_box_over_its_pixels(loc_setup):
    _, x, loc = loc_setup
    boxes = torch.tensor([[1, 2, 9, 10], [-1, -1, -1, -1]])
    fig = boxes_figure(x[0], boxes, scores=torch.tensor([2.5, float("nan")]), true_box=(0, 0, 4, 4))
    assert [t.type for t in fig.data] == ["image"] and len(fig.layout.shapes) == 2
    rect, truth = fig.layout.shapes
    assert (rect.x0, rect.y0, rect.x1, rect.y1) == (0.5, 1.5, 8.5, 9.5)
    assert truth.line.dash == "dash" and (truth.x0, truth.x1) == (-0.5, 3.5)
    assert [a.text for a in fig.layout.annotations] == ["1: 2.5"]


def test_class_map_figure_places_values_at_window_centres(loc_setup):
    _, x, loc = loc_setup
    fig = class_map_figure(loc, 1, image=x[1])
    image, heat = fig.data
    assert image.type == "image" and heat.type == "heatmap"
    torch.testing.assert_close(torch.tensor(heat.z), loc.class_map[1])
    size, stride, offset = loc.receptive_field
    assert heat.x[1] - heat.x[0] == stride and heat.x[0] == offset + (size - 1) / 2
    assert len(fig.layout.shapes) == int((loc.boxes[1, :, 0] >= 0).sum())


def test_patch_gallery_crops_each_box(loc_setup):
    _, x, loc = loc_setup
    fig = patch_gallery(x, loc, size=4, class_names=["a", "b", "c"])
    images = [t for t in fig.data if t.type == "image"]
    assert len(images) == 3 * 2 and torch.tensor(images[0].z).shape == (4, 4, 3)
    name = ["a", "b", "c"][int(loc.predicted[0])]
    assert fig.layout.annotations[0].text.startswith(f"{name} #1")


def test_localization_scores_bars():
    score = LocalizationScore(
        num_samples=10, accuracy=0.9, pointing=0.8, iou50=0.6, mean_best_iou=0.55,
        random_pointing=0.2, random_iou50=0.1, random_mean_best_iou=0.15,
        top1_iou=torch.zeros(10), best_iou=torch.zeros(10), random_best_iou=torch.zeros(10),
        hits=torch.zeros(10, dtype=torch.bool), top_k=4, iou_threshold=0.3, seed=0,
    )  # fmt: skip
    ours, rand = localization_scores_figure(score).data
    assert (ours.name, rand.name) == ("class map", "random boxes")
    assert list(ours.y) == [0.8, 0.6, 0.55] and list(rand.y) == [0.2, 0.1, 0.15]


def test_cascade_figure_holds_the_curve(loc_setup):
    peer, _, _ = loc_setup
    gen = torch.Generator().manual_seed(2)
    data = TensorDataset(
        torch.rand(10, 1, 16, 16, generator=gen), torch.randint(0, 3, (10,), generator=gen)
    )
    curve = cascade_curve(peer, data, thresholds=[0.0, 0.6, 1.01], patch_size=8, top_k=2)
    fig = cascade_figure(curve)
    line, full = fig.data
    assert list(line.x) == pytest.approx((curve.cost / curve.full_cost).tolist())
    assert list(line.y) == pytest.approx(curve.accuracy.tolist()) and line.text[0] == "t = 0"
    assert list(full.x) == [1.0] and full.y[0] == pytest.approx(curve.full_accuracy)
    assert fig.layout.shapes[0].y0 == pytest.approx(curve.full_accuracy - 0.01)
