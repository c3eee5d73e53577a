"""TensorBoard event files under RUN/tb/, read back with tensorboard's own event reader."""

import logging
import sys

import pytest

from analysis.config import load_config
from analysis.runs import read_metrics
from analysis.training import Trainer, tensorboard
from tests.conftest import DML_PRESET, TINY


def scalars(run_dir):
    """{tag: [(step, value), ...]} of a run's event files, as TensorBoard shows them."""
    reader = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    acc = reader.EventAccumulator(str(run_dir / "tb"))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_events_hold_losses_accuracies_lr_and_loss_parts(tiny_run):
    events = scalars(tiny_run)
    peers = [
        f"{s}/peer{i}_{k}"
        for s in ("train", "val", "test")
        for i in range(3)
        for k in ("loss", "acc")
    ]
    ensemble = [f"{s}/ensemble_{k}" for s in ("train", "val", "test") for k in ("loss", "acc")]
    parts = [f"parts/{p}/peer{i}" for p in ("ce", "kl") for i in range(3)]
    assert {"step/loss", "step/lr", "train/lr", *peers, *ensemble, *parts} <= set(events)
    assert [s for s, _ in events["step/loss"]] == list(range(1, 13))  # 3 epochs x 4 steps
    metrics = read_metrics(tiny_run)
    for split in ("train", "val", "test"):
        logged = [m for m in metrics if m["split"] == split]
        assert [s for s, _ in events[f"{split}/ensemble_acc"]] == [4, 8, 12]  # global steps
        assert [v for _, v in events[f"{split}/ensemble_acc"]] == pytest.approx(
            [m["ensemble_acc"] for m in logged]
        )
        assert [v for _, v in events[f"{split}/peer1_loss"]] == pytest.approx(
            [m["peer_loss"][1] for m in logged]
        )


def test_training_goes_on_without_tensorboard_and_says_so_once(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    monkeypatch.setattr(tensorboard, "_warned", False)
    config = load_config(DML_PRESET, [*TINY, "train.epochs=1", "train.max_steps_per_epoch=2"])
    with caplog.at_level(logging.WARNING):
        for name in ("a", "b"):
            run = Trainer(config, tmp_path / name, progress=False).fit()
            assert not (run / "tb").exists()
            assert read_metrics(run)[-1]["split"] == "test"
    hints = [r.getMessage() for r in caplog.records if "collablens[tensorboard]" in r.getMessage()]
    assert len(hints) == 1


def test_tensorboard_can_be_switched_off(tmp_path):
    config = load_config(
        DML_PRESET,
        [*TINY, "train.epochs=1", "train.max_steps_per_epoch=1", "train.tensorboard=false"],
    )
    run = Trainer(config, tmp_path / "quiet", progress=False).fit()
    assert not (run / "tb").exists()
