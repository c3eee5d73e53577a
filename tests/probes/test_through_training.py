"""Diversity through training: epoch checkpoints of the tiny run, and the per-checkpoint cache."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import pytest
import torch

import analysis
from analysis.errors import CollabError
from analysis.probes import MEASURES, Predictions, diversity_report, training_dynamics
from analysis.probes.through_training import dynamics_from_reports, epoch_checkpoints


def test_epoch_checkpoints_are_parsed_and_sorted():
    names = ["best", "epoch_010", "last", "epoch_002", "epoch_x", "epoch_001"]
    assert epoch_checkpoints(names) == [(1, "epoch_001"), (2, "epoch_002"), (10, "epoch_010")]


def test_dynamics_stack_reports_in_epoch_order():
    labels = torch.tensor([0, 1, 0, 1])
    same = torch.tensor([[5.0, 0], [0, 5], [5, 0], [0, 5]])  # always right
    flipped = same.flip(-1)  # always wrong
    early = diversity_report(Predictions(torch.stack([same, flipped]), same, labels))
    late = diversity_report(Predictions(torch.stack([same, same]), same, labels))
    dyn = dynamics_from_reports([1, 4], [early, late])
    assert dyn.checkpoints == ["epoch_001", "epoch_004"]
    assert dyn.peer_acc.tolist() == [[1.0, 0.0], [1.0, 1.0]]
    assert dyn.agreement.tolist() == [0.0, 1.0]
    assert dyn.disagreement.tolist() == [1.0, 0.0]
    assert dyn.kappa.tolist() == [-1.0, 1.0]
    assert dyn.js_divergence[1].item() == 0.0 and dyn.js_divergence[0].item() > 0.6
    assert dyn.series("oracle_acc").tolist() == [1.0, 1.0]
    with pytest.raises(KeyError, match="unknown measure"):
        dyn.series("loss")
    with pytest.raises(ValueError, match="one report per epoch"):
        dynamics_from_reports([1], [early, late])


@pytest.fixture(scope="module")
def dynamics(tiny_run):
    run = analysis.load_run(tiny_run)
    return run, training_dynamics(run, use_cache=False)


def test_tiny_run_dynamics_match_the_logged_test_accuracy(dynamics):
    run, dyn = dynamics
    assert dyn.epochs == [1, 2, 3]
    assert dyn.checkpoints == ["epoch_001", "epoch_002", "epoch_003"]
    assert dyn.peer_names == run.peer_names
    assert dyn.peer_acc.shape == (3, run.model.num_peers)
    logged = {m["epoch"]: m for m in run.metrics if m["split"] == "test"}
    n = len(run.dataset("test"))
    for e, epoch in enumerate(dyn.epochs):
        assert dyn.peer_acc[e].tolist() == pytest.approx(logged[epoch]["peer_acc"], abs=0.5 / n)
        assert dyn.ensemble_acc[e].item() == pytest.approx(
            logged[epoch]["ensemble_acc"], abs=0.5 / n
        )
    assert set(dyn.measures) == set(MEASURES)
    assert all(v.shape == (3,) for v in dyn.measures.values())
    assert torch.all((dyn.agreement >= 0) & (dyn.agreement <= 1))
    assert torch.all(dyn.oracle_acc >= dyn.peer_acc.max(dim=1).values)


def test_results_are_cached_per_checkpoint(dynamics, tmp_path, monkeypatch):
    _, fresh = dynamics
    run = analysis.load_run(shutil.copytree(dynamics[0].path, tmp_path / "run"))
    first = training_dynamics(run)
    assert len(list((run.path / "probes" / "diversity").glob("*.safetensors"))) == 3

    def no_loading(name):
        raise AssertionError(f"checkpoint {name} was loaded although its result is cached")

    monkeypatch.setattr(run, "load_checkpoint", no_loading)
    again = training_dynamics(run)
    for measure in MEASURES:
        torch.testing.assert_close(again.series(measure), first.series(measure), equal_nan=True)
        torch.testing.assert_close(first.series(measure), fresh.series(measure), equal_nan=True)
    torch.testing.assert_close(again.peer_acc, fresh.peer_acc)
    only = training_dynamics(run, checkpoints=["epoch_003", "epoch_001"])
    assert only.epochs == [1, 3]
    torch.testing.assert_close(only.peer_acc, fresh.peer_acc[[0, 2]])


def test_missing_checkpoints_are_clear_errors(dynamics):
    run, _ = dynamics
    with pytest.raises(CollabError, match="no checkpoint epoch_009"):
        training_dynamics(run, checkpoints=["epoch_009"])
    bare = SimpleNamespace(path=run.path, checkpoints=["best", "last"])
    with pytest.raises(CollabError, match="no epoch_NNN checkpoints.*save_every"):
        training_dynamics(bare)
