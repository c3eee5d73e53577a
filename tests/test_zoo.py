"""The embedded runs: what the README promises of them, and that `collab zoo` rebuilds them."""

import csv
import dataclasses
import json

import pytest
import torch
import yaml
from safetensors.torch import load_file

import analysis
from analysis.config import load_config
from analysis.runs.sweep import cell_config, cell_name, is_sweep, read_plan, run_path
from analysis.training import Trainer, zoo
from tests.conftest import REPO, TINY

SHIPPED = REPO / "runs"


@pytest.mark.parametrize("entry", zoo.ZOO, ids=lambda e: e.name)
def test_shipped_run_is_what_the_zoo_builds(entry):
    run_dir = SHIPPED / entry.name
    assert analysis.runs.is_run(run_dir), f"{entry.name} is missing: run `collab zoo`"
    expected = load_config(REPO / entry.preset, (*entry.overrides, *zoo.PINNED)).to_dict()
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
    monkeypatch.setattr(zoo, "SWEEPS", ())
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
    monkeypatch.setattr(zoo, "SWEEPS", ())
    (rebuilt,) = zoo.build_zoo(tmp_path, progress=False)
    shipped = load_file(str(SHIPPED / entry.name / "checkpoints/last.safetensors"))
    again = load_file(str(rebuilt / "checkpoints/last.safetensors"))
    assert shipped.keys() == again.keys()
    assert all(torch.equal(shipped[k], again[k]) for k in shipped)


@pytest.mark.parametrize("entry", zoo.SWEEPS, ids=lambda e: e.name)
def test_shipped_sweep_is_what_the_zoo_builds(entry):
    out = SHIPPED / entry.name
    plan = entry.plan()
    assert is_sweep(out), f"{entry.name} is missing: {entry.command()}"
    assert read_plan(out) == plan  # the same presets, grid, seeds, one thread
    for cell in plan.cells():
        for seed in plan.seeds:
            run = run_path(out, cell, seed)
            assert json.loads((run / "manifest.json").read_text())["status"] == "complete"
            config = cell_config(plan, cell, seed).to_dict()
            assert yaml.safe_load((run / "config.yaml").read_text()) == config
            assert (run / "checkpoints" / "best.safetensors").is_file()
            assert not (run / "checkpoints" / "last.safetensors").exists()  # dropped to ship
    rows = list(csv.DictReader(open(out / "summary.csv")))
    assert [r["cell"] for r in rows] == [cell_name(c) for c in plan.cells()]
    assert all(r["seeds"] == " ".join(map(str, plan.seeds)) for r in rows)
    # summary.html is not shipped (.gitignore): it inlines plotly.js, 4.8 MB of the page.
    shipped = [p for p in out.rglob("*") if p.is_file() and p.name != "summary.html"]
    assert sum(p.stat().st_size for p in shipped) <= 15 * 2**20


def test_the_sweep_command_trains_the_zoo_plan():
    (entry,) = [e for e in zoo.SWEEPS if e.name == "sweep-textured-shapes"]
    command = entry.command()
    assert command.startswith("collab sweep configs/textured_shapes --grid preset=independent,")
    pinned = "--set train.threads=1 --set train.channels_last=false"
    assert f"--seeds 0,1,2 --out runs/sweep-textured-shapes {pinned}" in command
    assert len(entry.plan().cells()) == 10 and len(entry.plan().seeds) >= 3


def test_build_zoo_rebuilds_a_sweep_without_resume_state(tmp_path, monkeypatch):
    tiny = zoo.SweepEntry(
        "tiny-sweep",
        "configs/textured_shapes",
        grid=("preset=independent,dml",),
        seeds="0,1",
        overrides=(
            "data.name=test_textured_shapes",
            "model.arch=test_cnn",
            "train.epochs=2",
            "train.max_steps_per_epoch=2",
        ),
    )
    monkeypatch.setattr(zoo, "ZOO", ())
    monkeypatch.setattr(zoo, "SWEEPS", (tiny,))
    seen = []

    def summarize(path):
        seen.append(path.name)
        (path / "summary.csv").write_text("cell\n")

    (built,) = zoo.build_zoo(tmp_path, progress=False, summarize=summarize)
    assert built == tmp_path / "tiny-sweep" and seen == [".tiny-sweep.building"]
    assert (built / "summary.csv").is_file() and not list(built.rglob("last.safetensors"))
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())
    assert read_plan(built) == tiny.plan()


@pytest.mark.slow
@pytest.mark.parametrize("entry", zoo.SWEEPS, ids=lambda e: e.name)
def test_zoo_rebuilds_a_shipped_sweep_run_bit_for_bit(entry, tmp_path):
    plan = entry.plan()
    cell, seed = plan.cells()[1], plan.seeds[0]  # the one network: the quickest run
    rebuilt = Trainer(cell_config(plan, cell, seed), tmp_path / "run", progress=False).fit()
    shipped = load_file(
        str(run_path(SHIPPED / entry.name, cell, seed) / "checkpoints/best.safetensors")
    )
    again = load_file(str(rebuilt / "checkpoints/best.safetensors"))
    assert shipped.keys() == again.keys()
    assert all(torch.equal(shipped[k], again[k]) for k in shipped)
