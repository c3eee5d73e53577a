"""Headline numbers of probe results: known answers on hand-built results."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch.utils.data import TensorDataset

from analysis.data.shapes import ShapesDataset
from analysis.probes import MEASURES, Predictions, diversity_report
from analysis.probes.cascade import CascadeCurve
from analysis.probes.cka import CKAResult
from analysis.probes.headlines import (
    cheapest_within,
    comparison_numbers,
    has_true_boxes,
    shared_depth_layers,
    true_box,
    versus_random,
    word_pair_numbers,
)
from analysis.probes.localization import LocalizationScore


def curve(accuracy, cost, *, full_accuracy=0.9, full_cost=100.0) -> CascadeCurve:
    t = len(accuracy)
    return CascadeCurve(
        thresholds=torch.linspace(0.5, 1.0, t),
        accuracy=torch.tensor(accuracy),
        cost=torch.tensor(cost),
        full_accuracy=full_accuracy,
        full_cost=full_cost,
        stage_costs=torch.tensor([10.0, 20.0]),
        stage_accuracy=torch.tensor([0.5, 0.8]),
        exit_fraction=torch.full((t, 2), 0.5),
        localizer_cost=0.0,
        charge_localizer=False,
        patch_size=16,
        top_k=1,
        combine="sum",
        num_samples=10,
    )


def test_true_boxes_of_shapes_and_none_elsewhere():
    shapes = ShapesDataset(3, seed=0, split="test", image_size=32)
    assert has_true_boxes(shapes)
    assert true_box(shapes, 2) == shapes.box(2)
    assert true_box(shapes, None) is None  # an upload has no index
    plain = TensorDataset(torch.zeros(3, 1, 8, 8), torch.zeros(3, dtype=torch.long))
    assert not has_true_boxes(plain) and true_box(plain, 0) is None


def test_cheapest_cascade_within_the_tolerance():
    found = curve([0.70, 0.885, 0.95, 0.89], [20.0, 50.0, 80.0, 40.0])
    assert cheapest_within(found) == pytest.approx(0.40)  # 0.885 and 0.89 are within 1 point
    assert cheapest_within(found, tolerance=0.0) == pytest.approx(0.80)
    assert cheapest_within(curve([0.5, 0.6], [10.0, 20.0])) is None


def test_localization_measures_next_to_random_boxes():
    score = LocalizationScore(
        num_samples=4,
        accuracy=0.75,
        pointing=0.5,
        iou50=0.25,
        mean_best_iou=0.4,
        random_pointing=0.1,
        random_iou50=0.0,
        random_mean_best_iou=0.2,
        top1_iou=torch.zeros(4),
        best_iou=torch.zeros(4),
        random_best_iou=torch.zeros(4),
        hits=torch.zeros(4, dtype=torch.bool),
        top_k=4,
        iou_threshold=0.3,
        seed=0,
    )
    assert versus_random(score) == {
        "Pointing game": (0.5, 0.1),
        "Top-1 IoU ≥ 0.5": (0.25, 0.0),
        "Mean best IoU": (0.4, 0.2),
    }


def test_word_pairs_used_possible_and_their_entropy():
    counts = torch.tensor([[2, 0, 0], [0, 2, 0]])
    found = SimpleNamespace(counts=counts)  # the table of a PeerCooccurrence
    numbers = word_pair_numbers(found)
    assert numbers == {"used": 2, "possible": 6, "entropy_bits": pytest.approx(1.0)}
    assert isinstance(numbers["used"], int) and isinstance(numbers["possible"], int)


def test_comparison_numbers_of_two_peers():
    labels = torch.tensor([0, 1, 0, 1])
    right, wrong = torch.eye(2)[labels] * 4, torch.eye(2)[1 - labels] * 4
    peers = torch.stack([right, torch.cat([right[:2], wrong[2:]])])  # peer 1 fails the last two
    div = diversity_report(Predictions(peers, peers.mean(0), labels))
    rows = comparison_numbers(div, None)
    assert rows["accuracy, peer 0"] == 1.0 and rows["accuracy, peer 1"] == 0.5
    assert rows["accuracy, ensemble"] == div.ensemble_acc
    assert rows["accuracy, oracle"] == 1.0 and rows["ensemble gain"] == div.ensemble_gain
    assert {f"mean {MEASURES[m].label}" for m in MEASURES} <= set(rows)
    assert rows[f"mean {MEASURES['disagreement'].label}"] == pytest.approx(0.5)
    assert math.isnan(rows["mean CKA between peers, last layer"])

    cka = CKAResult(
        layers=["peers.0.a", "peers.0.b", "peers.1.a", "peers.1.b"],
        peer_of_layer=[0, 0, 1, 1],
        matrix=torch.tensor(
            [
                [1.0, 0.5, 0.9, 0.3],
                [0.5, 1.0, 0.4, 0.25],
                [0.9, 0.4, 1.0, 0.6],
                [0.3, 0.25, 0.6, 1.0],
            ]
        ),
        num_samples=4,
        batch_size=4,
        estimator="minibatch_unbiased_hsic",
    )
    assert comparison_numbers(div, cka)["mean CKA between peers, last layer"] == 0.25


def test_shared_depth_layers_stop_at_the_shallowest_peer():
    cka = CKAResult(
        layers=["peers.0.a", "peers.0.b", "peers.0.c", "peers.1.a", "peers.1.b"],
        peer_of_layer=[0, 0, 0, 1, 1],
        matrix=torch.eye(5),
        num_samples=4,
        batch_size=4,
        estimator="minibatch_unbiased_hsic",
    )
    assert shared_depth_layers(cka) == ["peers.0.a", "peers.0.b"]
