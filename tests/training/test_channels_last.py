"""train.channels_last: NHWC by default on the CPU (release 0.3), exact resumes, older runs in NCHW."""

import json
import shutil
import subprocess
import sys

import pytest
import torch
import yaml
from safetensors.torch import load_file

import analysis
from analysis.config import load_config
from analysis.layout import uses_channels_last
from analysis.runs import read_metrics
from analysis.runs.legacy import continued_config
from analysis.training import Trainer
from tests.conftest import DML_PRESET, REPO, TINY, run_cli
from tests.training.test_trainer import KILLER

NCHW = (*TINY, "train.channels_last=false")


def same_checkpoints(a, b, names=("last", "best", "epoch_003")) -> bool:
    for name in names:
        x = load_file(str(a / f"checkpoints/{name}.safetensors"))
        y = load_file(str(b / f"checkpoints/{name}.safetensors"))
        if x.keys() != y.keys() or not all(torch.equal(x[k], y[k]) for k in x):
            return False
    return True


def test_auto_means_nhwc_on_the_cpu_only():
    cpu, cuda, mps = torch.device("cpu"), torch.device("cuda"), torch.device("mps")
    assert uses_channels_last("auto", cpu)
    assert not uses_channels_last("auto", cuda) and not uses_channels_last("auto", mps)
    assert not uses_channels_last(False, cpu) and uses_channels_last(True, cuda)
    assert load_config(DML_PRESET).train.channels_last == "auto"
    assert "channels_last" not in load_config(DML_PRESET).to_dict()["train"]  # quiet at default


@pytest.mark.parametrize(("setting", "nhwc"), [("auto", True), ("false", False)])
def test_cpu_training_lays_the_weights_out_as_configured(tmp_path, setting, nhwc):
    config = load_config(DML_PRESET, (*TINY, "train.epochs=1", f"train.channels_last={setting}"))
    trainer = Trainer(config, tmp_path / "run", progress=False)
    trainer.fit()
    convs = [p for p in trainer.model.parameters() if p.dim() == 4]
    layout, other = torch.channels_last, torch.contiguous_format
    layout, other = (layout, other) if nhwc else (other, layout)
    assert all(p.is_contiguous(memory_format=layout) for p in convs)
    assert any(not p.is_contiguous(memory_format=other) for p in convs)
    run = analysis.load_run(tmp_path / "run")  # checkpoints do not depend on the layout
    assert sorted(run.model.state_dict()) == sorted(trainer.model.state_dict())


def _stamp_as_made_by_0_2(run_dir) -> None:
    """What release 0.2 wrote: no channels_last key (it was quiet at its default, false)."""
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["train"].pop("channels_last") is False
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["versions"]["collablens"] = "0.2.0"
    (run_dir / "manifest.json").write_text(json.dumps(manifest))


def test_a_killed_run_of_release_0_2_resumes_in_nchw_bit_for_bit(tmp_path, tiny_run):
    uninterrupted = Trainer(load_config(DML_PRESET, NCHW), tmp_path / "nchw", progress=False).fit()
    assert not same_checkpoints(uninterrupted, tiny_run)  # NHWC (tiny_run) rounds differently
    out = tmp_path / "old"
    proc = subprocess.run(
        [sys.executable, "-c", KILLER, str(DML_PRESET), str(out), *NCHW], cwd=REPO
    )
    assert proc.returncode == -9
    _stamp_as_made_by_0_2(out)
    resumed = run_cli("train", "--out", str(out), "--resume", "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    assert read_metrics(out) == read_metrics(uninterrupted)
    assert same_checkpoints(out, uninterrupted)
    assert "channels_last" not in yaml.safe_load((out / "config.yaml").read_text())["train"]


def test_a_0_2_run_accepts_its_own_preset_on_resume(tmp_path):
    """``--resume CONFIG``: the preset without the key is what 0.2 trained (NCHW), not a change."""
    out = tmp_path / "old"
    proc = subprocess.run(
        [sys.executable, "-c", KILLER, str(DML_PRESET), str(out), *NCHW], cwd=REPO
    )
    assert proc.returncode == -9
    _stamp_as_made_by_0_2(out)
    sets = [a for t in TINY for a in ("--set", t)]
    resumed = run_cli("train", str(DML_PRESET), "--out", str(out), "--resume", *sets)
    assert resumed.returncode == 0, resumed.stderr
    changed = run_cli(
        "train", str(DML_PRESET), "--out", str(out), "--resume", *sets,
        "--set", "train.channels_last=true",
    )  # fmt: skip
    assert changed.returncode != 0 and "differs" in changed.stderr


def test_sweeps_and_searches_continue_a_0_2_run_in_nchw(tmp_path, tiny_run):
    """What :func:`continued_config` gives the sweep and search runners for a run folder."""
    today = load_config(DML_PRESET, TINY).to_dict()  # auto: NHWC for a new run
    assert continued_config(today, tmp_path / "none") == today
    old = tmp_path / "old"
    shutil.copytree(tiny_run, old)
    config = yaml.safe_load((old / "config.yaml").read_text())
    config["train"]["channels_last"] = False
    (old / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    _stamp_as_made_by_0_2(old)
    assert continued_config(today, old)["train"]["channels_last"] is False
    other = load_config(DML_PRESET, (*TINY, "train.epochs=5")).to_dict()
    assert continued_config(other, old) is None
    assert continued_config(today, tiny_run) == today  # made by 0.3: nothing to fill in
