"""Known-answer tests for analysis.probes.agreement."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from analysis.errors import CollabError
from analysis.models.collaborative import CollaborativeModel
from analysis.probes import (
    Predictions,
    agreement_report,
    collect_predictions,
    disagreement_indices,
    ensemble_accuracy,
    ensemble_gain,
    gather_samples,
    oracle_accuracy,
    pairwise_agreement,
    peer_accuracy,
)

# Three peers, six samples, three classes; the numbers below are worked out by hand.
LABELS = torch.tensor([0, 1, 2, 0, 1, 2])
PEER_TOP1 = torch.tensor(
    [
        [0, 1, 2, 0, 0, 0],  # right on 0,1,2,3 -> 4/6
        [0, 1, 1, 0, 1, 0],  # right on 0,1,3,4 -> 4/6
        [0, 2, 2, 1, 1, 0],  # right on 0,2,4   -> 3/6
    ]
)


def hand_built() -> Predictions:
    peer_logits = 5.0 * nn.functional.one_hot(PEER_TOP1, 3).float()  # (3, 6, 3)
    # Mean of one-hot logits is a majority vote here: [0, 1, 2, 0, 1, 0] -> 5/6 right.
    return Predictions(peer_logits, peer_logits.mean(dim=0), LABELS)


def test_hand_built_example_has_the_worked_out_numbers():
    preds = hand_built()
    assert peer_accuracy(preds).tolist() == pytest.approx([4 / 6, 4 / 6, 3 / 6])
    assert ensemble_accuracy(preds) == pytest.approx(5 / 6)
    assert oracle_accuracy(preds) == pytest.approx(5 / 6)  # sample 5 is wrong for everyone
    assert ensemble_gain(preds) == pytest.approx(1 / 6)
    expected = torch.tensor(
        [[1, 4 / 6, 3 / 6], [4 / 6, 1, 3 / 6], [3 / 6, 3 / 6, 1]], dtype=torch.float64
    )
    torch.testing.assert_close(pairwise_agreement(preds.peer_logits), expected)
    assert disagreement_indices(preds).tolist() == [1, 2, 3, 4]
    assert disagreement_indices(preds).dtype == torch.long


def test_report_bundles_the_same_numbers():
    report = agreement_report(hand_built(), peer_names=["a", "b", "c"])
    assert report.peer_names == ["a", "b", "c"]
    assert report.peer_acc == pytest.approx([4 / 6, 4 / 6, 3 / 6])
    assert report.best_peer == 0  # tie between a and b goes to the first
    assert report.mean_agreement == pytest.approx((4 / 6 + 3 / 6 + 3 / 6) / 3)
    assert report.disagreement_rate == pytest.approx(4 / 6)
    assert report.num_samples == 6
    as_dict = report.to_dict()
    assert as_dict["disagreements"] == [1, 2, 3, 4]
    assert as_dict["ensemble_gain"] == pytest.approx(1 / 6)
    assert agreement_report(hand_built()).peer_names == ["peer0", "peer1", "peer2"]


def test_identical_peers_agree_everywhere():
    torch.manual_seed(0)
    one = torch.randn(40, 5)
    preds = Predictions(one.expand(3, 40, 5).clone(), one.clone(), torch.randint(0, 5, (40,)))
    acc = peer_accuracy(preds)
    assert torch.equal(pairwise_agreement(preds.peer_logits), torch.ones(3, 3, dtype=torch.float64))
    assert torch.all(acc == acc[0])
    assert oracle_accuracy(preds) == pytest.approx(acc[0].item())
    assert ensemble_accuracy(preds) == pytest.approx(acc[0].item())
    assert ensemble_gain(preds) == pytest.approx(0.0)
    assert disagreement_indices(preds).numel() == 0


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="inconsistent shapes"):
        Predictions(torch.zeros(2, 4, 3), torch.zeros(5, 3), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="inconsistent shapes"):
        Predictions(torch.zeros(4, 3), torch.zeros(4, 3), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="2 peer names for 3 peers"):
        agreement_report(hand_built(), peer_names=["a", "b"])
    with pytest.raises(ValueError, match="N > 0"):
        pairwise_agreement(torch.zeros(2, 0, 3))


def tiny_model() -> CollaborativeModel:
    torch.manual_seed(1)
    peers = [nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(12, 4)) for _ in range(3)]
    return CollaborativeModel(peers, mean=[0.5], std=[0.25], peer_names=["a", "b", "c"])


def test_collect_predictions_matches_one_eval_forward_and_restores_modes():
    model = tiny_model()
    model.train()
    model.peers[1].eval()  # a mixed state must come back exactly as it was
    before = {name: m.training for name, m in model.named_modules()}
    images, labels = torch.rand(10, 1, 3, 4), torch.arange(10) % 4
    preds = collect_predictions(model, TensorDataset(images, labels), batch_size=4)

    assert {name: m.training for name, m in model.named_modules()} == before
    assert preds.peer_logits.shape == (3, 10, 4)
    assert not preds.peer_logits.requires_grad
    assert torch.equal(preds.labels, labels)
    model.eval()
    with torch.no_grad():
        expected = model(images)
    # Dropout would make a training-mode pass differ; equality proves the pass ran in eval mode.
    torch.testing.assert_close(preds.peer_logits, expected.peer_logits)
    torch.testing.assert_close(preds.ensemble_logits, expected.ensemble_logits)


def test_collect_predictions_rejects_an_empty_dataset():
    empty = TensorDataset(torch.zeros(0, 1, 3, 4), torch.zeros(0, dtype=torch.long))
    with pytest.raises(CollabError, match="no samples"):
        collect_predictions(tiny_model(), empty)


def test_gather_samples_keeps_the_requested_order():
    images = torch.arange(5.0).view(5, 1, 1, 1).expand(5, 1, 2, 2)
    dataset = TensorDataset(images, torch.tensor([7, 8, 9, 10, 11]))
    picked, labels = gather_samples(dataset, torch.tensor([3, 0]))
    assert picked.shape == (2, 1, 2, 2)
    assert picked[:, 0, 0, 0].tolist() == [3.0, 0.0]
    assert labels.tolist() == [10, 7]
    assert gather_samples(dataset, [])[0].shape[0] == 0
