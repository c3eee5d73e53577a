"""`collab sweep`: every cell x seed trained once, resumable, and a summary whose numbers equal a
hand computation from the runs' own metrics."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file
from scipy import stats

from analysis.config import load_config
from analysis.errors import CollabError
from analysis.probes.sweep_summary import sweep_summary
from analysis.runs.sweep import (
    cell_config,
    drop_resume_state,
    make_plan,
    parse_grid,
    parse_seeds,
    read_plan,
)
from analysis.training.sweep import run_sweep
from tests.conftest import DML_PRESET, REPO, TINY
from tests.robustness.helpers import tree_hash

GRID = ["method.name=independent,dml"]


@pytest.fixture
def sweep(tiny_sweep):
    return tiny_sweep


def _hand(out, cell, seed):
    run = out / "runs" / cell / f"seed-{seed}"
    manifest = json.loads((run / "manifest.json").read_text())
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    test = [r for r in lines if r["split"] == "test" and r["epoch"] == manifest["best_epoch"]][0]
    return test["ensemble_acc"], max(test["peer_acc"]), float(np.mean(test["peer_acc"]))


def test_every_cell_and_seed_is_trained(sweep):
    runs = sorted(p.relative_to(sweep).as_posix() for p in (sweep / "runs").glob("*/seed-*"))
    assert runs == [
        "runs/method.name=dml/seed-0",
        "runs/method.name=dml/seed-1",
        "runs/method.name=independent/seed-0",
        "runs/method.name=independent/seed-1",
    ]
    for run in (sweep / "runs").glob("*/seed-*"):
        assert json.loads((run / "manifest.json").read_text())["status"] == "complete"


def test_summary_equals_a_hand_computation(sweep):
    summary = sweep_summary(sweep)
    assert summary.control == "method.name=independent" and not summary.missing
    rows = {r["cell"]: r for r in csv.DictReader(open(sweep / "summary.csv"))}
    for cell in ("method.name=independent", "method.name=dml"):
        ens = [_hand(sweep, cell, s)[0] for s in (0, 1)]
        assert float(rows[cell]["ensemble_acc_mean"]) == pytest.approx(np.mean(ens), abs=1e-12)
        assert float(rows[cell]["ensemble_acc_sd"]) == pytest.approx(np.std(ens, ddof=1), abs=1e-12)
        best = [_hand(sweep, cell, s)[1] for s in (0, 1)]
        assert float(rows[cell]["best_peer_acc_mean"]) == pytest.approx(np.mean(best), abs=1e-12)
    diffs = {r["metric"]: r for r in csv.DictReader(open(sweep / "differences.csv"))}
    d = [
        _hand(sweep, "method.name=dml", s)[0] - _hand(sweep, "method.name=independent", s)[0]
        for s in (0, 1)
    ]
    low, high = stats.t.interval(0.95, 1, loc=np.mean(d), scale=stats.sem(d))
    row = diffs["ensemble_acc"]
    assert float(row["mean"]) == pytest.approx(np.mean(d), abs=1e-12)
    if math.isfinite(low):
        assert float(row["ci95_low"]) == pytest.approx(low, abs=1e-9)
        assert float(row["ci95_high"]) == pytest.approx(high, abs=1e-9)
        assert (row["shown"] == "True") == (low > 0 or high < 0)
    assert (sweep / "summary.html").read_text().count("not shown by these seeds") >= 1


def test_rerun_skips_finished_runs_and_resumes_missing_ones(sweep, tmp_path):
    import shutil

    copy = shutil.copytree(sweep, tmp_path / "copy")
    before = tree_hash(copy / "runs" / "method.name=dml")
    shutil.rmtree(copy / "runs" / "method.name=independent" / "seed-1")  # as if never trained
    plan = make_plan(DML_PRESET, GRID, "0,1", TINY)
    run_sweep(plan, copy)
    assert tree_hash(copy / "runs" / "method.name=dml") == before  # finished runs untouched
    redone = copy / "runs" / "method.name=independent" / "seed-1" / "checkpoints/last.safetensors"
    original = (
        sweep / "runs" / "method.name=independent" / "seed-1" / "checkpoints/last.safetensors"
    )
    a, b = load_file(str(redone)), load_file(str(original))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # deterministic


def test_a_different_plan_for_the_same_folder_is_refused(sweep):
    before = tree_hash(sweep)
    with pytest.raises(CollabError, match="different sweep"):
        run_sweep(make_plan(DML_PRESET, GRID, "0,1,2", TINY), sweep)
    assert tree_hash(sweep) == before


@pytest.mark.parametrize(
    ("grid", "seeds", "message"),
    [
        (["method.name"], "0", "KEY=V1,V2"),
        (["method.name=dml,dml"], "0", "repeated"),
        (["method.name=dml", "method.name=independent"], "0", "twice"),
        (["method.name=dml"], "0,x", "whole numbers"),
        (["method.name=dml"], "-1", ">= 0"),
        (["method.name=telepathy"], "0", "telepathy"),
        (["train.epochs=0"], "0", "train.epochs"),
    ],
)
def test_bad_grids_are_refused_before_anything_trains(tmp_path, grid, seeds, message):
    with pytest.raises(CollabError, match=message):
        make_plan(DML_PRESET, grid, seeds, TINY)


def test_grid_values_split_outside_brackets():
    assert parse_grid(["model.arch=[a, b],c"]) == (("model.arch", ("[a, b]", "c")),)
    assert parse_seeds("3,1") == (3, 1)


# --- a sweep over a folder of presets (each cell its own preset, e.g. its own model) ---

PRESETS = REPO / "configs" / "textured_shapes"
PRESET_GRID = ["preset=independent,single,dml,divide_cotrain"]
PRESET_TINY = (
    "data.name=test_textured_shapes",
    "model.arch=test_cnn",
    "train.epochs=2",
    "train.max_steps_per_epoch=3",
    "train.threads=1",
    "data.batch_size=32",
)


@pytest.fixture(scope="module")
def preset_sweep(tmp_path_factory):
    from analysis.cli import main

    out = tmp_path_factory.mktemp("sweeps") / "presets"
    sets = [a for t in PRESET_TINY for a in ("--set", t)]
    args = ["sweep", str(PRESETS), "--grid", *PRESET_GRID, "--seeds", "0,1,2", "--out", str(out)]
    assert main([*args, *sets, "--no-progress"]) == 0
    return out


def test_each_preset_cell_is_its_preset_with_the_sweep_overrides(preset_sweep):
    plan = read_plan(preset_sweep)
    assert plan.base == {} and set(plan.presets) == {
        "independent",
        "single",
        "dml",
        "divide_cotrain",
    }
    for name, (method, peers, width) in {
        "independent": ("independent", 4, 8),
        "single": ("independent", 1, 16),
        "dml": ("dml", 4, 8),
        "divide_cotrain": ("divide_cotrain", 4, 16),
    }.items():
        config = cell_config(plan, (f"preset={name}",), 2)
        expected = load_config(PRESETS / f"{name}.yaml", (*PRESET_TINY, "train.seed=2"))
        assert config.to_dict() == expected.to_dict()
        assert (config.method.name, config.model.peers) == (method, peers)
        assert config.model.options["width"] == width and config.data.name == "test_textured_shapes"
        saved = preset_sweep / "runs" / f"preset={name}" / "seed-2" / "config.yaml"
        assert yaml.safe_load(saved.read_text()) == config.to_dict()


def test_the_independent_preset_is_the_default_control_and_claims_are_reported(preset_sweep):
    summary = sweep_summary(preset_sweep)
    assert summary.control == "preset=independent" and not summary.missing
    by_cell = {c.cell: c for c in summary.cells}
    assert (by_cell["preset=single"].method, by_cell["preset=single"].peers) == ("independent", 1)
    assert by_cell["preset=divide_cotrain"].peers == 4
    assert "claims at this scale" in (preset_sweep / "summary.html").read_text()
    rows = list(csv.DictReader(open(preset_sweep / "summary.csv")))
    assert [r["method"] for r in rows] == ["independent", "independent", "dml", "divide_cotrain"]


def test_a_changed_preset_file_makes_it_a_different_sweep(preset_sweep, tmp_path):
    import shutil

    folder = shutil.copytree(PRESETS, tmp_path / "presets")
    text = (folder / "dml.yaml").read_text().replace("temperature: 1.0", "temperature: 2.0")
    (folder / "dml.yaml").write_text(text)
    before = tree_hash(preset_sweep)
    with pytest.raises(CollabError, match="different sweep"):
        run_sweep(make_plan(folder, PRESET_GRID, "0,1,2", PRESET_TINY), preset_sweep)
    assert tree_hash(preset_sweep) == before


def test_bad_preset_grids_are_refused(tmp_path):
    with pytest.raises(CollabError, match="no .*telepathy.yaml.*presets in .*dml"):
        make_plan(PRESETS, ["preset=dml,telepathy"], "0", PRESET_TINY)
    with pytest.raises(CollabError, match="needs --grid preset="):
        make_plan(PRESETS, ["train.epochs=1,2"], "0", PRESET_TINY)
    # A preset next to a single CONFIG file: names resolve in that file's folder.
    plan = make_plan(PRESETS / "dml.yaml", ["preset=single"], "0", PRESET_TINY)
    assert cell_config(plan, ("preset=single",), 0).model.peers == 1


def test_dropping_resume_state_keeps_finished_runs_finished(preset_sweep, tmp_path):
    import shutil

    copy = shutil.copytree(preset_sweep, tmp_path / "copy")
    unfinished = copy / "runs" / "preset=dml" / "seed-1"
    manifest = json.loads((unfinished / "manifest.json").read_text())
    (unfinished / "manifest.json").write_text(json.dumps(manifest | {"status": "running"}))
    assert drop_resume_state(copy) > 0
    lasts = sorted(
        p.parent.parent.relative_to(copy).as_posix() for p in copy.rglob("last.safetensors")
    )
    assert lasts == ["runs/preset=dml/seed-1"]  # only the unfinished run can still resume
    (unfinished / "manifest.json").write_text(json.dumps(manifest))
    shutil.rmtree(copy / "runs" / "preset=single" / "seed-0")
    before = tree_hash(copy / "runs" / "preset=independent")
    run_sweep(make_plan(PRESETS, PRESET_GRID, "0,1,2", PRESET_TINY), copy)
    assert tree_hash(copy / "runs" / "preset=independent") == before  # skipped, not retrained
    rebuilt = copy / "runs" / "preset=single" / "seed-0" / "checkpoints" / "best.safetensors"
    original = (
        preset_sweep / "runs" / "preset=single" / "seed-0" / "checkpoints" / "best.safetensors"
    )
    a, b = load_file(str(rebuilt)), load_file(str(original))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_textured_shapes_presets_cover_every_method_with_one_budget():
    from analysis.methods import METHODS

    configs = {p.stem: load_config(p) for p in sorted(PRESETS.glob("*.yaml"))}
    methods = {c.method.name for c in configs.values()}
    assert methods == {m for m in METHODS.list() if not m.startswith("test_")}
    budgets = {
        (
            c.data.name,
            c.data.batch_size,
            c.data.val_fraction,
            c.train.epochs,
            c.train.save_every,
            c.optim.lr,
            c.optim.momentum,
            c.schedule.name,
            c.schedule.warmup_epochs,
        )
        for c in configs.values()
    }
    assert budgets == {("textured_shapes", 64, 0.1, 15, 0, 0.1, 0.9, "cosine", 1)}
    assert {n: c.model.peers for n, c in configs.items() if c.model.peers != 4} == {
        "single": 1,
        "intra_cl": 1,
    }
