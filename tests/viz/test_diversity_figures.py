"""Diversity figures carry the report's numbers into their traces."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from analysis.probes import MEASURES, Predictions, diversity_report
from analysis.probes.through_training import dynamics_from_reports
from analysis.viz import (
    class_agreement_figure,
    diversity_heatmap,
    dynamics_accuracy_figure,
    dynamics_figure,
)

LABELS = torch.tensor([0, 1, 2, 0, 1, 2])
TOP1 = torch.tensor([[0, 1, 2, 0, 0, 0], [0, 1, 1, 0, 1, 0], [0, 2, 2, 1, 1, 0]])


def report(num_classes: int = 4):
    logits = 5.0 * nn.functional.one_hot(TOP1, num_classes).float()
    return diversity_report(Predictions(logits, logits.mean(0), LABELS), peer_names=["a", "b", "c"])


@pytest.mark.parametrize("measure", sorted(MEASURES))
def test_heatmap_of_every_measure_holds_its_matrix(measure):
    rep = report()
    fig = diversity_heatmap(rep, measure)
    (trace,) = fig.data
    torch.testing.assert_close(torch.tensor(trace.z, dtype=torch.float64), rep.matrix(measure))
    assert list(trace.x) == ["a", "b", "c"] and list(trace.y) == ["a", "b", "c"]
    info = MEASURES[measure]
    assert (trace.zmin, trace.zmax) == (info.low, info.high)
    assert fig.layout.title.text == info.label


def test_heatmap_labels_undefined_cells_and_rejects_unknown_measures():
    labels = torch.tensor([0, 0, 0, 0])
    top1 = torch.tensor([[0, 0, 0, 0], [0, 0, 1, 1]])  # peer 0 always right: Q undefined
    logits = 5.0 * nn.functional.one_hot(top1, 2).float()
    rep = diversity_report(Predictions(logits, logits.mean(0), labels))
    (trace,) = diversity_heatmap(rep, "q_statistic").data
    assert trace.z[0][1] is None and trace.text[0][1] == "n/a"
    assert trace.z[0][0] == 1.0 and trace.zmid == 0.0
    with pytest.raises(ValueError, match="unknown measure 'entropy'"):
        diversity_heatmap(rep, "entropy")


def test_class_agreement_bars_and_heatmap():
    rep = report()
    (bars,) = class_agreement_figure(rep, class_names=["zero", "one", "two", "three"]).data
    assert list(bars.x) == ["zero", "one", "two", "three"]
    assert list(bars.y[:3]) == pytest.approx([2 / 3, 1 / 3, 2 / 3])
    assert bars.y[3] is None and bars.text[3] == "n/a"  # class 3 has no samples
    (heat,) = class_agreement_figure(rep, kind="heatmap").data
    assert list(heat.x) == ["a-b", "a-c", "b-c"] and list(heat.y) == ["0", "1", "2", "3"]
    assert [list(r) for r in heat.z[:3]] == [[1, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 1, 0.5]]
    with pytest.raises(ValueError, match="kind must be"):
        class_agreement_figure(rep, kind="pie")
    with pytest.raises(ValueError, match="2 class names for 4 classes"):
        class_agreement_figure(rep, class_names=["x", "y"])


def test_dynamics_figures_draw_one_line_per_measure_and_predictor():
    early = report(3)
    same = 5.0 * nn.functional.one_hot(TOP1[0], 3).float()
    late = diversity_report(
        Predictions(same.expand(3, 6, 3).clone(), same, LABELS), peer_names=["a", "b", "c"]
    )
    dyn = dynamics_from_reports([2, 5], [early, late])
    fig = dynamics_figure(dyn, measures=["agreement", "js_divergence"])
    assert [t.name for t in fig.data] == [
        MEASURES["agreement"].label,
        MEASURES["js_divergence"].label,
    ]
    assert list(fig.data[0].x) == [2, 5]
    assert list(fig.data[0].y) == pytest.approx([(4 / 6 + 3 / 6 + 3 / 6) / 3, 1.0])
    assert fig.data[1].y[1] == 0.0
    with pytest.raises(ValueError, match="unknown measure"):
        dynamics_figure(dyn, measures=["loss"])
    acc = dynamics_accuracy_figure(dyn)
    assert [t.name for t in acc.data] == ["a", "b", "c", "ensemble", "oracle"]
    assert list(acc.data[0].y) == pytest.approx([4 / 6, 4 / 6])
    assert list(acc.data[2].y) == pytest.approx([3 / 6, 4 / 6])
    assert list(acc.data[4].y) == pytest.approx([5 / 6, 4 / 6])
    assert not any(isinstance(v, float) and math.isnan(v) for t in acc.data for v in t.y)
