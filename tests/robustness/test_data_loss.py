"""Nothing saved is lost: training writes only into a new or empty folder or the run it resumes.

Each refusal is checked three ways: a non-zero exit, one line on stderr naming the problem and
the fix (no traceback), and the folder's hash unchanged.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from safetensors.torch import load_file

from analysis.config import load_config
from analysis.errors import CollabError
from analysis.runs import Claim, claim_run_folder
from analysis.training import Trainer, trainer
from tests.conftest import DML_PRESET, REPO, TINY, run_cli
from tests.robustness.helpers import assert_refused, copy_run, train, tree_hash


def _same_weights(a, b) -> None:
    wa = load_file(str(a / "checkpoints/last.safetensors"))
    wb = load_file(str(b / "checkpoints/last.safetensors"))
    assert wa.keys() == wb.keys()
    assert all((wa[k] == wb[k]).all() for k in wa if k.startswith("model."))


def test_resume_without_last_checkpoint_refuses_and_keeps_everything(tiny_run, tmp_path):
    run = copy_run(tiny_run, tmp_path / "run")
    (run / "manifest.json").write_text(
        json.dumps({**json.loads((run / "manifest.json").read_text()), "status": "running"})
    )
    (run / "checkpoints/last.safetensors").unlink()
    before = tree_hash(run)
    proc = run_cli("train", "--out", str(run), "--resume")
    assert_refused(proc, "last.safetensors", "cannot continue exactly", "new --out")
    assert tree_hash(run) == before


def test_out_with_deleted_manifest_is_refused(tiny_run, tmp_path):
    run = copy_run(tiny_run, tmp_path / "run")
    (run / "manifest.json").unlink()
    before = tree_hash(run)
    assert_refused(train(run), "not empty", "choose another --out")
    assert tree_hash(run) == before


def test_resume_with_deleted_manifest_is_refused(tiny_run, tmp_path):
    run = copy_run(tiny_run, tmp_path / "run")
    (run / "manifest.json").unlink()
    before = tree_hash(run)
    assert_refused(run_cli("train", "--out", str(run), "--resume"), "manifest.json", "new --out")
    assert tree_hash(run) == before


@pytest.mark.parametrize(
    "files",
    [
        {"config.yaml": "my: notes\n", "metrics.jsonl": '{"mine": 1}\n'},
        {"thesis.tex": "\\section{Results}\n"},
        {"checkpoints/epoch_001.safetensors": "not mine to touch"},
    ],
    ids=["user-config-and-metrics", "unrelated-file", "stray-checkpoint"],
)
def test_folder_of_user_files_is_refused(tmp_path, files):
    out = tmp_path / "mine"
    for name, text in files.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)
    before = tree_hash(out)
    assert_refused(train(out), "is not empty", "new or empty folder")
    assert tree_hash(out) == before


def test_resume_of_user_folder_without_config_is_refused(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    before = tree_hash(out)
    assert_refused(run_cli("train", "--out", str(out), "--resume"), "config.yaml")
    assert tree_hash(out) == before


def test_out_is_a_file_is_refused(tmp_path):
    out = tmp_path / "a-file"
    out.write_text("data")
    assert_refused(train(out), "is a file")
    assert out.read_text() == "data"


def test_training_over_a_finished_run_is_refused(tiny_run, tmp_path):
    run = copy_run(tiny_run, tmp_path / "run")
    before = tree_hash(run)
    assert_refused(train(run), "already holds a run", "--resume")
    assert tree_hash(run) == before


def test_resume_of_a_finished_run_changes_nothing(tiny_run, tmp_path):
    run = copy_run(tiny_run, tmp_path / "run")
    before = tree_hash(run)
    proc = run_cli("train", "--out", str(run), "--resume")
    assert proc.returncode == 0, proc.stderr
    assert tree_hash(run) == before  # provenance (created, git sha, versions) untouched


def test_resume_keeps_provenance(tiny_run, tmp_path):
    """A run resumed mid-way keeps the manifest's created date, git sha and versions."""
    run = copy_run(tiny_run, tmp_path / "run")
    manifest = json.loads((run / "manifest.json").read_text())
    marked = {**manifest, "status": "running", "created": "2001-01-01T00:00:00+00:00"}
    marked["versions"] = {**manifest["versions"], "torch": "0.0-original"}
    marked["git_sha"] = "f" * 40
    (run / "manifest.json").write_text(json.dumps(marked))
    proc = run_cli("train", "--out", str(run), "--resume")
    assert proc.returncode == 0, proc.stderr
    after = json.loads((run / "manifest.json").read_text())
    assert after["status"] == "complete"
    assert after["created"] == marked["created"] and after["git_sha"] == "f" * 40
    assert after["versions"]["torch"] == "0.0-original"


def test_empty_folder_is_accepted(tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    assert claim_run_folder(out, resume=False) is Claim.FRESH


def test_failed_setup_leaves_no_folder_behind(tmp_path):
    out = tmp_path / "new"
    proc = train(out, "--set", "data.name=cifar10", "--set", f"data.root={tmp_path / 'nowhere'}")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert not out.exists()


def test_kill_before_first_epoch_is_resumable(tiny_run, tmp_path, monkeypatch):
    """Killed while the dataset is built (config and manifest already written): resume finishes
    with the weights of an uninterrupted run."""
    out = tmp_path / "killed"

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # stands for SIGKILL: nothing after this point runs

    monkeypatch.setattr(trainer, "dataset_for", killed)
    with pytest.raises(KeyboardInterrupt):
        Trainer(load_config(DML_PRESET, TINY), out, progress=False).fit()
    monkeypatch.undo()
    assert (out / "config.yaml").is_file()
    assert json.loads((out / "manifest.json").read_text())["status"] == "starting"
    proc = run_cli("train", "--out", str(out), "--resume")
    assert proc.returncode == 0, proc.stderr
    _same_weights(out, tiny_run)
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"


def test_eval_of_a_run_not_yet_trained_is_a_clear_error(tmp_path, monkeypatch):
    out = tmp_path / "starting"
    monkeypatch.setattr(trainer, "dataset_for", lambda *a, **k: (_ for _ in ()).throw(OSError))
    with pytest.raises(OSError):
        Trainer(load_config(DML_PRESET, TINY), out, progress=False).fit()
    assert_refused(run_cli("eval", str(out)), "no trained model yet", "--resume")


def test_resume_with_nothing_saved_and_a_config_starts(tmp_path):
    """Killed before the folder had any file: resume with the preset starts from epoch 0."""
    out = tmp_path / "nothing"
    out.mkdir()
    proc = run_cli(
        "train",
        str(DML_PRESET),
        "--out",
        str(out),
        "--resume",
        "--set",
        "train.epochs=1",
        *[a for item in TINY if not item.startswith("train.epochs") for a in ("--set", item)],
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"


def test_nan_loss_marks_the_run_failed_and_keeps_no_nan_best(tmp_path):
    out = tmp_path / "nan"
    proc = train(out, "--set", "optim.lr=1e12")
    line = assert_refused(proc, "lower optim.lr")
    assert "non-finite" in line or "nan" in line or "inf" in line
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "failed" and "lower optim.lr" in manifest["failure"]
    best = out / "checkpoints/best.safetensors"
    if best.exists():
        assert all(t.isfinite().all() for t in load_file(str(best)).values())
    before = tree_hash(out)
    assert_refused(
        run_cli("train", "--out", str(out), "--resume", "--no-progress"), "failed", "new --out"
    )
    assert tree_hash(out) == before


def test_failed_run_is_refused_by_the_trainer_api(tmp_path):
    out = tmp_path / "failed"
    out.mkdir()
    (out / "config.yaml").write_text("{}\n")
    (out / "manifest.json").write_text(json.dumps({"status": "failed", "failure": "NaN loss"}))
    with pytest.raises(CollabError, match="NaN loss"):
        claim_run_folder(out, resume=True)


def test_sigterm_says_the_run_can_be_resumed(tiny_run, tmp_path):
    out = tmp_path / "term"
    sets = [a for item in TINY for a in ("--set", item)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "analysis.cli", "train", str(DML_PRESET), "--out", str(out), *sets],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TQDM_DISABLE": "1"},
    )
    deadline = time.monotonic() + 120
    while not (out / "checkpoints/last.safetensors").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("training finished before SIGTERM arrived")
    assert proc.returncode == 143 and "Traceback" not in err
    assert "SIGTERM" in err and f"collab train --out {out} --resume" in err
    done = run_cli("train", "--out", str(out), "--resume")
    assert done.returncode == 0, done.stderr
    _same_weights(out, tiny_run)


def test_eval_checkpoint_outside_the_run_is_refused(tiny_run, tmp_path):
    other = copy_run(tiny_run, tmp_path / "other")
    run = copy_run(tiny_run, tmp_path / "run")
    bad = f"../../{other.name}/checkpoints/best"
    assert_refused(run_cli("eval", str(run), "--checkpoint", bad), "not a checkpoint name")
