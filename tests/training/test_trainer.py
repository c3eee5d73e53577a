import json
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file

import analysis
from analysis.config import load_config
from analysis.errors import CollabError
from analysis.runs import read_metrics
from analysis.training import Trainer
from tests.conftest import DML_PRESET, REPO, TINY, run_cli


def test_run_folder_contents(tiny_run):
    names = sorted(p.name for p in (tiny_run / "checkpoints").iterdir())
    assert names == [
        "best.safetensors",
        "epoch_001.safetensors",
        "epoch_002.safetensors",
        "epoch_003.safetensors",
        "last.safetensors",
    ]
    manifest = json.loads((tiny_run / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["method"] == "dml"
    assert len(manifest["peer_names"]) == 3 and len(manifest["param_counts"]) == 3
    assert manifest["data"]["num_classes"] == 10
    metrics = read_metrics(tiny_run)
    assert [(m["epoch"], m["split"]) for m in metrics] == [
        (e, s) for e in (1, 2, 3) for s in ("train", "val", "test")
    ]
    assert all(len(m["peer_acc"]) == 3 and 0 <= m["ensemble_acc"] <= 1 for m in metrics)
    # best.safetensors holds the weights of the epoch with the best VALIDATION ensemble
    # accuracy (DML's reported number); the first such epoch wins a tie
    vals = [m for m in metrics if m["split"] == "val"]
    best = max(vals, key=lambda m: m["ensemble_acc"])
    assert manifest["best_epoch"] == best["epoch"]
    assert manifest["best_acc"] == pytest.approx(best["ensemble_acc"])
    test_at_best = next(m for m in metrics if m["split"] == "test" and m["epoch"] == best["epoch"])
    assert manifest["test_acc_at_best"] == pytest.approx(test_at_best["ensemble_acc"])
    assert manifest["selection"]["split"] == "val" and manifest["selection"]["metric"] == "ensemble"


def test_load_run_reproduces_logged_test_accuracy(tiny_run):
    run = analysis.load_run(tiny_run, checkpoint="last")
    x = torch.stack([run.dataset("test")[i][0] for i in range(len(run.dataset("test")))])
    y = torch.tensor([run.dataset("test")[i][1] for i in range(len(run.dataset("test")))])
    with torch.no_grad():
        out = run.model(x)
    acc = (out.ensemble_logits.argmax(-1) == y).float().mean().item()
    assert acc == pytest.approx(run.metrics[-1]["ensemble_acc"], abs=1e-6)
    assert not run.model.training
    assert analysis.list_runs(tiny_run.parent) == [tiny_run]


def test_training_is_deterministic(tmp_path, tiny_run):
    again = Trainer(load_config(DML_PRESET, TINY), tmp_path / "again", progress=False).fit()
    a, b = (
        load_file(str(tiny_run / "checkpoints/last.safetensors")),
        load_file(str(again / "checkpoints/last.safetensors")),
    )
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_refuses_to_overwrite_a_run(tiny_run):
    with pytest.raises(CollabError, match="already holds a run; pass --resume"):
        Trainer(load_config(DML_PRESET, TINY), tiny_run, progress=False).fit()


KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from analysis.config import load_config
    from analysis.training import Callback, Trainer

    class KillMidEpoch(Callback):
        def on_step_end(self, trainer, *, epoch, step):
            if epoch == 1 and step == 2:
                os.kill(os.getpid(), signal.SIGKILL)

    Trainer(load_config(sys.argv[1], sys.argv[3:]), sys.argv[2], callbacks=[KillMidEpoch()], progress=False).fit()
    """
)


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(tmp_path, tiny_run):
    out = tmp_path / "killed"
    proc = subprocess.run(
        [sys.executable, "-c", KILLER, str(DML_PRESET), str(out), *TINY], cwd=REPO
    )
    assert proc.returncode == -9
    assert [m["epoch"] for m in read_metrics(out)] == [1, 1, 1]  # killed during epoch 2
    resumed = run_cli("train", "--out", str(out), "--resume", "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    assert read_metrics(out) == read_metrics(tiny_run)
    for name in ("last", "best", "epoch_003"):
        a = load_file(str(tiny_run / f"checkpoints/{name}.safetensors"))
        b = load_file(str(out / f"checkpoints/{name}.safetensors"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    # TensorBoard drops the steps the killed session logged after its last checkpoint
    from tests.training.test_tensorboard import scalars

    assert scalars(out)["step/loss"] == scalars(tiny_run)["step/loss"]


def test_nan_loss_stops_with_a_clear_error(tmp_path):
    config = load_config(DML_PRESET, [*TINY, "optim.lr=1e30", "optim.name=sgd"])
    with pytest.raises(CollabError, match="became nan|became inf"):
        Trainer(config, tmp_path / "nan", progress=False).fit()


def test_per_peer_views_reach_each_peer(tmp_path, monkeypatch):
    """With per_peer_views the model gets (K, B, C, H, W): one independent augmented view per peer."""
    import analysis.models.collaborative as collab
    from analysis.methods.dml import DML

    batches = []
    real_forward = collab.CollaborativeModel.forward

    def recording_forward(self, x):
        batches.append(x.detach().clone())
        return real_forward(self, x)

    monkeypatch.setattr(DML, "per_peer_views", True)
    monkeypatch.setattr(collab.CollaborativeModel, "forward", recording_forward)
    config = load_config(DML_PRESET, [*TINY, "train.epochs=1", "train.max_steps_per_epoch=1"])
    Trainer(config, tmp_path / "views", progress=False).fit()
    first = batches[0]
    assert first.shape == (3, 32, 1, 32, 32)
    assert not torch.equal(first[0], first[1])  # independently augmented
    shifts_only = (first[0] - first[1]).abs().sum(dim=(1, 2, 3))
    assert (shifts_only > 0).float().mean() > 0.5
