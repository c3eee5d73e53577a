"""`collab sweep`: every cell x seed trained once, resumable, and a summary whose numbers equal a
hand computation from the runs' own metrics."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from scipy import stats

from analysis.errors import CollabError
from analysis.probes.sweep_summary import sweep_summary
from analysis.runs.sweep import make_plan, parse_grid, parse_seeds
from analysis.training.sweep import run_sweep
from tests.conftest import DML_PRESET, TINY
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
