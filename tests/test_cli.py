"""The `collab` CLI: happy paths, and bad input as one line on stderr with a non-zero exit."""

import json
import shutil

from tests.conftest import DML_PRESET, TINY, run_cli


def _assert_one_line_error(proc, *fragments):
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_train_then_eval_then_runs(tmp_path):
    out = tmp_path / "runs" / "cli-run"
    sets = [arg for item in TINY for arg in ("--set", item)]
    train = run_cli("train", str(DML_PRESET), "--out", str(out), *sets, "--set", "train.epochs=1")
    assert train.returncode == 0, train.stderr
    assert "epoch 1/1" in train.stderr  # the progress bar
    ev = run_cli("eval", str(out))
    assert ev.returncode == 0, ev.stderr
    lines = ev.stdout.splitlines()
    assert sum("acc" in line for line in lines) == 4  # 3 peers + ensemble
    assert "ensemble" in lines[-1]
    listing = run_cli("runs", "--root", str(tmp_path / "runs"))
    assert "cli-run" in listing.stdout and "dml" in listing.stdout


def test_unknown_config_key(tmp_path):
    proc = run_cli(
        "train", str(DML_PRESET), "--out", str(tmp_path / "x"), "--set", "train.epohcs=2"
    )
    _assert_one_line_error(proc, "'train.epohcs'")
    assert not (tmp_path / "x").exists()


def test_corrupt_checkpoint(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    best = run / "checkpoints" / "best.safetensors"
    best.write_bytes(best.read_bytes()[:100])
    _assert_one_line_error(run_cli("eval", str(run)), "corrupt, truncated")


def test_checkpoint_of_another_architecture(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    config = run / "config.yaml"
    config.write_text(config.read_text().replace("arch: test_cnn", "arch: test_resnet"))
    _assert_one_line_error(run_cli("eval", str(run)), "does not match this model's architecture")


def test_not_a_run_folder(tmp_path):
    _assert_one_line_error(run_cli("eval", str(tmp_path)), "not a run folder")


def test_resume_with_a_changed_config_is_refused(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    proc = run_cli("train", "--out", str(run), "--resume", "--set", "optim.lr=0.5")
    _assert_one_line_error(proc, "differs")


def test_a_cifar10_folder_in_torchvision_format_trains_for_a_step(tmp_path):
    from tests.data.test_tv_formats import _write_cifar10

    _write_cifar10(tmp_path / "cifar")
    out = tmp_path / "cifar-run"
    sets = [
        "data.name=cifar10",
        f"data.root={tmp_path / 'cifar'}",
        "model.arch=test_cnn",
        "model.options={}",
        "train.epochs=1",
        "train.max_steps_per_epoch=1",
        "data.batch_size=4",
        "train.save_every=1",
    ]
    proc = run_cli(
        "train",
        str(DML_PRESET),
        "--out",
        str(out),
        "--no-progress",
        *[a for s in sets for a in ("--set", s)],
    )
    assert proc.returncode == 0, proc.stderr
    metrics = (out / "metrics.jsonl").read_text().splitlines()
    splits = [json.loads(line)["split"] for line in metrics]
    assert splits == ["train", "val", "test"] and '"samples": 4' in metrics[0]  # 4 CIFAR images
    missing = run_cli(
        "train",
        str(DML_PRESET),
        "--out",
        str(tmp_path / "x"),
        "--set",
        "data.name=cifar10",
        "--set",
        f"data.root={tmp_path / 'nowhere'}",
    )
    _assert_one_line_error(missing, "data.root")
