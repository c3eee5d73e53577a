"""The embedded runs: what the README promises of them, and that `collab zoo` rebuilds them."""

import dataclasses

import pytest
import torch
import yaml
from safetensors.torch import load_file

import analysis
from analysis.config import load_config
from analysis.training import zoo
from tests.conftest import REPO, TINY

SHIPPED = REPO / "runs"


@pytest.mark.parametrize("entry", zoo.ZOO, ids=lambda e: e.name)
def test_shipped_run_is_what_the_zoo_builds(entry):
    run_dir = SHIPPED / entry.name
    assert analysis.runs.is_run(run_dir), f"{entry.name} is missing: run `collab zoo`"
    expected = load_config(REPO / entry.preset, (*entry.overrides, "train.threads=1")).to_dict()
    assert yaml.safe_load((run_dir / "config.yaml").read_text()) == expected
    weights = sum(p.stat().st_size for p in (run_dir / "checkpoints").glob("*.safetensors"))
    assert weights < 5 * 2**20


def test_default_run_meets_its_accuracy_promise():
    run = analysis.load_run(SHIPPED / "dml-digits")
    assert run.manifest["method"] == "dml" and len(run.peer_names) == 3
    data = run.dataset("test")
    x = torch.stack([data[i][0] for i in range(len(data))])
    y = torch.tensor([data[i][1] for i in range(len(data))])
    with torch.no_grad():
        acc = (run.model(x).ensemble_logits.argmax(-1) == y).float().mean().item()
    assert acc >= 0.95
    assert acc == pytest.approx(run.manifest["test_acc_at_best"], abs=1e-6)  # reported, not used


def test_build_zoo_swaps_in_finished_runs_only(tmp_path, monkeypatch):
    tiny = zoo.ZooEntry("tiny", "configs/dml_digits.yaml", overrides=TINY)
    monkeypatch.setattr(zoo, "ZOO", (tiny,))
    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny" / "old").write_text("previous run")
    (first,) = zoo.build_zoo(tmp_path, progress=False)
    assert not (first / "old").exists() and analysis.runs.is_run(first)
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())
    a = load_file(str(first / "checkpoints/last.safetensors"))
    (second,) = zoo.build_zoo(tmp_path, progress=False)
    b = load_file(str(second / "checkpoints/last.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(analysis.CollabError, match="unknown zoo run 'nope'"):
        zoo.build_zoo(tmp_path, only=["nope"])


@pytest.mark.slow
@pytest.mark.parametrize("entry", zoo.ZOO[:1], ids=lambda e: e.name)
def test_zoo_rebuilds_the_shipped_weights_bit_for_bit(entry, tmp_path, monkeypatch):
    monkeypatch.setattr(zoo, "ZOO", (dataclasses.replace(entry),))
    (rebuilt,) = zoo.build_zoo(tmp_path, progress=False)
    shipped = load_file(str(SHIPPED / entry.name / "checkpoints/last.safetensors"))
    again = load_file(str(rebuilt / "checkpoints/last.safetensors"))
    assert shipped.keys() == again.keys()
    assert all(torch.equal(shipped[k], again[k]) for k in shipped)
