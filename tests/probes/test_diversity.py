"""Known-answer tests for analysis.probes.diversity (numbers worked out by hand)."""

from __future__ import annotations

import math

import pytest
import torch
from sklearn.metrics import cohen_kappa_score
from torch import nn
from torch.utils.data import TensorDataset

from analysis.models import CollaborativeModel, create_model
from analysis.probes import (
    MEASURES,
    DiversityReport,
    Predictions,
    cohen_kappa,
    collect_predictions,
    disagreement_measure,
    diversity_report,
    double_fault,
    error_correlation,
    js_divergence,
    oracle_counts,
    per_class_agreement,
    probe_diversity,
    q_statistic,
)
from analysis.probes.cache import load_result, save_result
from analysis.probes.diversity_measures import JS_MAX, peer_pairs

# Three peers, six samples, three classes (the agreement probe's worked example).
LABELS = torch.tensor([0, 1, 2, 0, 1, 2])
PEER_TOP1 = torch.tensor(
    [
        [0, 1, 2, 0, 0, 0],  # right on 0,1,2,3
        [0, 1, 1, 0, 1, 0],  # right on 0,1,3,4
        [0, 2, 2, 1, 1, 0],  # right on 0,2,4
    ]
)


def logits_of(top1: torch.Tensor, num_classes: int = 3) -> torch.Tensor:
    return 5.0 * nn.functional.one_hot(top1, num_classes).float()


def hand_built(num_classes: int = 3) -> Predictions:
    logits = logits_of(PEER_TOP1, num_classes)
    return Predictions(logits, logits.mean(dim=0), LABELS)


def sym(a01: float, a02: float, a12: float, diag: float) -> torch.Tensor:
    return torch.tensor([[diag, a01, a02], [a01, diag, a12], [a02, a12, diag]], dtype=torch.float64)


def test_oracle_counts_of_the_worked_example():
    c = oracle_counts(logits_of(PEER_TOP1), LABELS)
    # pair (0, 1): both right on 0,1,3; only 0 on 2; only 1 on 4; both wrong on 5.
    assert [c[k][0, 1].item() for k in ("n11", "n10", "n01", "n00")] == [3, 1, 1, 1]
    # pair (0, 2): both right on 0,2; only 0 on 1,3; only 2 on 4; both wrong on 5.
    assert [c[k][0, 2].item() for k in ("n11", "n10", "n01", "n00")] == [2, 2, 1, 1]
    torch.testing.assert_close(c["n01"], c["n10"].T)
    assert c["n11"].diagonal().tolist() == [4, 4, 3]


def test_oracle_measures_of_the_worked_example():
    logits = logits_of(PEER_TOP1)
    torch.testing.assert_close(disagreement_measure(logits, LABELS), sym(2 / 6, 3 / 6, 3 / 6, 0))
    torch.testing.assert_close(
        double_fault(logits, LABELS)[0, 1:], torch.tensor([1 / 6, 1 / 6], dtype=torch.float64)
    )
    assert double_fault(logits, LABELS).diagonal().tolist() == pytest.approx([2 / 6, 2 / 6, 3 / 6])
    torch.testing.assert_close(q_statistic(logits, LABELS), sym(0.5, 0.0, 0.0, 1.0))
    torch.testing.assert_close(error_correlation(logits, LABELS), sym(0.25, 0.0, 0.0, 1.0))


def test_error_correlation_is_pearson_of_the_error_indicators():
    torch.manual_seed(1)
    logits, labels = torch.randn(4, 300, 3), torch.randint(0, 3, (300,))
    errors = (logits.argmax(-1) != labels).double()
    torch.testing.assert_close(error_correlation(logits, labels), torch.corrcoef(errors))


def test_kappa_worked_example_and_sklearn():
    # pair (0, 1): p_o = 4/6; class frequencies (4,1,1)/6 and (3,3,0)/6 -> p_e = 15/36.
    kappa = cohen_kappa(logits_of(PEER_TOP1))
    assert kappa[0, 1].item() == pytest.approx(3 / 7)
    torch.manual_seed(0)
    logits = torch.randn(3, 500, 7)
    top1 = logits.argmax(-1)
    kappa = cohen_kappa(logits)
    for i, j in peer_pairs(3):
        assert kappa[i, j].item() == pytest.approx(cohen_kappa_score(top1[i], top1[j]), abs=1e-12)
    assert kappa.diagonal().tolist() == [1.0, 1.0, 1.0]


def test_opposite_peers_and_degenerate_cases():
    labels = torch.tensor([0, 0, 0, 0])
    a = torch.tensor([0, 0, 1, 1])  # right on 0, 1
    b = torch.tensor([1, 1, 0, 0])  # right on 2, 3
    logits = logits_of(torch.stack([a, b]), 2)
    assert q_statistic(logits, labels)[0, 1].item() == -1.0
    assert error_correlation(logits, labels)[0, 1].item() == pytest.approx(-1.0)
    assert disagreement_measure(logits, labels)[0, 1].item() == 1.0
    assert double_fault(logits, labels)[0, 1].item() == 0.0
    # An always-right peer: its error indicator is constant, Q's denominator is 0.
    perfect = logits_of(torch.stack([labels, a]), 2)
    assert math.isnan(q_statistic(perfect, labels)[0, 1].item())
    assert error_correlation(perfect, labels)[0, 1].item() == 0.0
    # Both always predict class 0: chance agreement is certain; kappa is set to 1.
    constant = logits_of(torch.zeros(2, 4, dtype=torch.long), 2)
    assert cohen_kappa(constant)[0, 1].item() == 1.0
    assert q_statistic(constant, labels)[0, 1].item() == 1.0  # right on the same samples
    assert cohen_kappa(logits_of(torch.stack([labels, a]), 2))[0, 1].item() == 0.0


def test_js_divergence_known_values_and_bounds():
    inf = math.inf
    # sample 0: [1, 0] vs [0, 1] -> ln 2; sample 1: [1, 0] vs [1/2, 1/2] -> 3/4 ln(4/3).
    logits = torch.tensor([[[0.0, -inf], [0.0, -inf]], [[-inf, 0.0], [0.0, 0.0]]])
    expected = (math.log(2) + 0.75 * math.log(4 / 3)) / 2
    assert js_divergence(logits)[0, 1].item() == pytest.approx(expected, abs=1e-12)
    torch.manual_seed(0)
    sharp = 30 * torch.randn(4, 200, 10)
    js = js_divergence(sharp)
    assert torch.all(js >= 0) and torch.all(js <= JS_MAX)
    assert js.max().item() > 0.5  # sharp, unrelated peers are close to the bound
    torch.testing.assert_close(js, js.T)
    assert js.diagonal().tolist() == [0.0] * 4


def test_identical_peers_have_no_diversity():
    torch.manual_seed(0)
    one = torch.randn(50, 4)
    labels = torch.randint(0, 4, (50,))
    report = diversity_report(Predictions(one.expand(3, 50, 4).clone(), one, labels))
    ones = torch.ones(3, 3, dtype=torch.float64)
    for name in ("agreement", "kappa", "q_statistic", "error_correlation"):
        torch.testing.assert_close(report.matrix(name), ones, msg=name)
    for name in ("disagreement", "js_divergence"):
        torch.testing.assert_close(report.matrix(name), 0 * ones, msg=name)
    assert report.ensemble_gain == pytest.approx(0.0)


def test_per_class_agreement_worked_example_with_an_absent_class():
    table = per_class_agreement(logits_of(PEER_TOP1, 4), LABELS)  # class 3 has no samples
    expected = torch.tensor([[1, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 1, 0.5]], dtype=torch.float64)
    torch.testing.assert_close(table[:3], expected)
    assert torch.isnan(table[3]).all()
    report = diversity_report(hand_built(4))
    assert report.mean_class_agreement[:3].tolist() == pytest.approx([2 / 3, 1 / 3, 2 / 3])
    assert report.pairs == [[0, 1], [0, 2], [1, 2]]


def test_report_means_names_and_cache_round_trip(tmp_path):
    report = diversity_report(hand_built(), peer_names=["a", "b", "c"])
    assert set(report.matrices) == set(MEASURES)
    assert report.mean("disagreement") == pytest.approx((2 / 6 + 3 / 6 + 3 / 6) / 3)
    assert report.mean("q_statistic") == pytest.approx(0.5 / 3)
    assert report.oracle_acc == pytest.approx(5 / 6) and report.ensemble_gain == pytest.approx(
        1 / 6
    )
    assert report.to_dict()["means"]["agreement"] == pytest.approx((4 / 6 + 3 / 6 + 3 / 6) / 3)
    with pytest.raises(KeyError, match="unknown measure"):
        report.matrix("entropy")
    with pytest.raises(ValueError, match="2 peer names for 3 peers"):
        diversity_report(hand_built(), peer_names=["a", "b"])
    save_result(tmp_path / "r.safetensors", report)
    back = load_result(tmp_path / "r.safetensors", DiversityReport)
    assert back.peer_names == ["a", "b", "c"] and back.pairs == report.pairs
    for name in MEASURES:
        torch.testing.assert_close(back.matrix(name), report.matrix(name), equal_nan=True)


def test_probe_diversity_matches_collected_predictions():
    torch.manual_seed(0)
    peers = [create_model("test_cnn", num_classes=4, in_chans=1, width=4) for _ in range(2)]
    model = CollaborativeModel(peers, mean=(0.5,), std=(0.25,), peer_names=["x", "y"])
    data = TensorDataset(torch.rand(20, 1, 8, 8), torch.randint(0, 4, (20,)))
    report = probe_diversity(model, data, batch_size=7)
    direct = diversity_report(collect_predictions(model, data), peer_names=["x", "y"])
    assert report.peer_names == ["x", "y"]
    for name in MEASURES:
        torch.testing.assert_close(report.matrix(name), direct.matrix(name), equal_nan=True)
    assert probe_diversity(model, data, limit=5).num_samples == 5
