"""`collab search`: the widening search stays within its budget, chooses by its stated rule on the
validation split, leaves loadable runs, resumes an interrupted search to the same log, and
refuses bad input with one line."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from analysis.cli import main
from analysis.data import build_dataset
from analysis.errors import CollabError
from analysis.methods import create_method
from analysis.models import count_parameters
from analysis.models.widen import STAGES, widened_widths
from analysis.runs import load_run, read_manifest
from analysis.runs.search import (
    append_log,
    parameters,
    parse_count,
    plan_search,
    read_log,
    step_config,
    uniform_widths,
)
from analysis.training.callbacks import Callback
from analysis.training.search import choose, run_search
from analysis.viz.search import search_figure
from tests.conftest import DML_PRESET, run_cli
from tests.robustness.helpers import assert_refused, tree_hash

SETS = (
    "model.arch=resnet8",
    "model.peers=2",
    "model.options={widths: [2, 2, 4]}",
    "train.tensorboard=false",
    "schedule.warmup_epochs=0",
    "train.threads=1",
    "train.max_steps_per_epoch=2",
    "data.batch_size=32",
)
BUDGET, STEP, EPOCHS = 2500, 2, 2
DIGITS = build_dataset("digits", seed=0)  # only its shape: classes, channels, statistics


def _plan(**changes):
    options = {"budget": BUDGET, "step": STEP, "epochs_per_step": EPOCHS, "overrides": SETS}
    return plan_search(DML_PRESET, **{**options, **changes})


@pytest.fixture(scope="module")
def search(tmp_path_factory):
    """A finished search of 2 DML peers (resnet8 from widths [2, 2, 4]) on digits."""
    out = tmp_path_factory.mktemp("search") / "s"
    run_search(_plan(), out)
    return out


def _params(plan, widths) -> int:
    """Parameters of the model a fresh run with ``widths`` builds (2 peers on digits)."""
    config = step_config(plan, widths, 0)
    count = count_parameters(create_method(config.method).build_model(config.model, DIGITS))
    assert parameters(plan, widths, DIGITS) == count
    return count


def test_search_stays_within_budget_and_stops_when_nothing_fits(search):
    plan, log = _plan(), read_log(search)
    steps, done = log[:-1], log[-1]
    assert (
        done["done"] and len(steps) >= 3 and [r["step"] for r in steps] == list(range(len(steps)))
    )
    assert steps[0]["widths"] == [2, 2, 4] and steps[0]["run"] == "steps/step-00/start"
    for before, record in zip(steps, steps[1:]):
        assert record["from"] == before["widths"]
        assert before["params"] < record["params"] <= BUDGET
        names = {c["name"] for c in record["candidates"]} | {s["name"] for s in record["skipped"]}
        assert names == {f"stage-{s}" for s in STAGES}
        for c in record["candidates"]:
            assert c["widths"] == widened_widths(
                before["widths"], c["stage"], before["widths"][c["stage"] - 1] + STEP
            )
            assert c["params"] == _params(plan, c["widths"])  # a freshly built network's count
    final = steps[-1]["widths"]
    for stage in STAGES:  # the search stopped because no further proposal fits the budget
        assert _params(plan, widened_widths(final, stage, final[stage - 1] + STEP)) > BUDGET
    assert (
        done["widths"] == final
        and done["set"] == f"model.options.widths=[{','.join(map(str, final))}]"
    )
    assert done["params"] == steps[-1]["params"] == _params(plan, final)


def test_choices_follow_the_rule_from_validation_scores(search):
    """Every score in the log is the run's own validation ``best_acc`` (never a test number),
    the gains are recomputed by hand, and the chosen proposal is the rule's."""
    for record in read_log(search)[1:-1]:
        same = read_manifest(search / record["same"]["run"])
        assert record["same"]["val_acc"] == same["best_acc"]
        assert same["selection"]["split"] == "val"
        added = {c["name"]: c["params"] - record["same"]["params"] for c in record["candidates"]}
        for c in record["candidates"]:
            manifest = read_manifest(search / c["run"])
            assert c["val_acc"] == manifest["best_acc"]
            gain = (c["val_acc"] - same["best_acc"]) / added[c["name"]] * 1000
            assert c["gain_per_kparam"] == pytest.approx(gain, abs=1e-12)
        gains = {c["name"]: c["gain_per_kparam"] for c in record["candidates"]}
        if max(gains.values()) > 0:
            assert record["rule"] == "gain" and gains[record["chosen"]] == max(gains.values())
        else:
            accs = {c["name"]: c["val_acc"] for c in record["candidates"]}
            assert record["rule"] == "accuracy" and accs[record["chosen"]] == max(accs.values())


def test_accepted_steps_are_loadable_runs_with_their_widths(search):
    for record in read_log(search)[:-1]:
        run = load_run(search / record["run"])
        assert run.config["model"]["options"]["widths"] == record["widths"]
        assert count_parameters(run.model) == record["params"]
        assert run.manifest["status"] == "complete"
        if record["step"] == 0:
            continue
        stage = int(record["chosen"].removeprefix("stage-"))
        for peer in run.model.peers:  # the noise (0.1) let every copied filter move apart
            rows = getattr(peer, f"layer{stage}")[0].conv1.weight.flatten(1)
            distances = torch.cdist(rows, rows) + torch.eye(len(rows)) * 1e9
            assert distances.min() > 0


def test_choose_known_answers():
    a = {"name": "stage-1", "stage": 1, "params": 10, "val_acc": 0.5, "gain_per_kparam": 2.0}
    b = {"name": "stage-2", "stage": 2, "params": 20, "val_acc": 0.6, "gain_per_kparam": 1.0}
    c = {"name": "stage-3", "stage": 3, "params": 30, "val_acc": None, "gain_per_kparam": None}
    assert choose([a, b, c]) == (a, "gain")  # more per parameter beats more in total
    worse = [{**a, "gain_per_kparam": -1.0}, {**b, "gain_per_kparam": -0.5}, c]
    assert choose(worse) == (worse[1], "accuracy")  # none helps: the best accuracy
    tie = [{**a, "gain_per_kparam": 0.0, "val_acc": 0.6}, {**b, "gain_per_kparam": 0.0}]
    assert choose(tie) == (tie[0], "accuracy")  # equal accuracy: fewer parameters
    with pytest.raises(CollabError, match="every proposal"):
        choose([c])


class _StopAt(Callback):
    """Ctrl-C after epoch ``epoch`` of the run in folder ``run``."""

    def __init__(self, run, epoch):
        self.run, self.epoch = run, epoch

    def on_epoch_end(self, trainer, *, epoch, records):
        if trainer.out == self.run and epoch == self.epoch:
            raise KeyboardInterrupt


def test_an_interrupted_search_resumes_to_the_same_log(search, tmp_path):
    out = tmp_path / "s"
    stop = _StopAt(out / "steps" / "step-02" / "stage-2", 1)  # mid-run: it has last.safetensors
    with pytest.raises(KeyboardInterrupt):
        run_search(_plan(), out, callbacks=[stop])
    assert len(read_log(out)) == 2  # steps 0 and 1 finished
    kept = tree_hash(out / "steps" / "step-01")
    run_search(_plan(), out)
    assert tree_hash(out / "steps" / "step-01") == kept  # finished runs are not rewritten
    assert read_log(out) == read_log(search)
    again = tree_hash(out)
    run_search(_plan(), out)  # a finished search: nothing trains, nothing is written
    assert tree_hash(out) == again


def test_a_torn_log_line_is_dropped_before_appending(tmp_path):
    append_log(tmp_path, {"step": 0})
    with open(tmp_path / "search.jsonl", "a") as fh:
        fh.write('{"step": 1, "wid')  # killed mid-write
    assert read_log(tmp_path) == [{"step": 0}]
    append_log(tmp_path, {"step": 1})
    assert read_log(tmp_path) == [{"step": 0}, {"step": 1}]
    assert (tmp_path / "search.jsonl").read_text().count("\n") == 2


def test_cli_prints_the_width_rule_of_a_finished_search(search, tmp_path, capsys):
    copy = shutil.copytree(search, tmp_path / "copy")
    before = tree_hash(copy)
    args = ["search", str(DML_PRESET), "--budget", f"{BUDGET / 1000}k", "--out", str(copy)]
    args += ["--step", str(STEP), "--epochs-per-step", str(EPOCHS)]
    assert main([*args, *[a for s in SETS for a in ("--set", s)]]) == 0
    out = capsys.readouterr().out
    done = read_log(search)[-1]
    assert f"--set 'model.options.widths=[{','.join(map(str, done['widths']))}]'" in out
    assert f"{done['params']:,} parameters" in out
    assert tree_hash(copy) == before


def test_uniform_widths_is_the_widest_width_rule_within_budget():
    plan = _plan()
    widths = uniform_widths(plan, BUDGET, DIGITS)
    w = widths[0]
    assert widths == [w, 2 * w, 4 * w]
    assert _params(plan, widths) <= BUDGET < _params(plan, [w + 1, 2 * w + 2, 4 * w + 4])
    with pytest.raises(CollabError, match="raise the budget"):
        uniform_widths(plan, 10, DIGITS)


def test_parse_count():
    assert parse_count("2500") == 2500 and parse_count("2.5k") == 2500
    assert parse_count("1.2M") == 1_200_000 and parse_count("50_000") == 50_000
    for bad in ("", "k", "-3", "12x", "0"):
        with pytest.raises(CollabError, match="not a parameter count"):
            parse_count(bad)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"budget": 100}, "already has"),
        ({"overrides": (*SETS, "data.val_fraction=0")}, "validation split"),
        ({"overrides": (*SETS, "method.name=one")}, "separate peer networks"),
        ({"overrides": (*SETS, "model.arch=test_cnn", "model.options={}")}, "cannot be widened"),
        ({"step": 0}, "--step"),
        ({"noise": -1.0}, "--noise"),
    ],
)
def test_bad_searches_are_refused_before_training(tmp_path, changes, message):
    with pytest.raises(CollabError, match=message):
        run_search(_plan(**changes), tmp_path / "s")
    assert not any((tmp_path / "s" / "steps").glob("*/*/checkpoints/*.safetensors"))


def test_cli_refuses_a_folder_that_is_not_this_search(search, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    sets = [a for s in SETS for a in ("--set", s)]
    proc = run_cli("search", str(DML_PRESET), "--budget", "5k", "--out", str(tmp_path), *sets)
    assert_refused(proc, "not empty and holds no width search")
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    before = tree_hash(search)
    proc = run_cli("search", str(DML_PRESET), "--budget", "9k", "--out", str(search), *sets)
    assert_refused(proc, "different width search")
    assert tree_hash(search) == before
    assert_refused(run_cli("search", str(DML_PRESET), "--budget", "lots", "--out", str(tmp_path)))
    assert json.loads((search / "search.json").read_text())["budget"] == BUDGET


def test_search_figure_plots_the_log(search):
    log = read_log(search)
    fig = search_figure(log, compared={"uniform (from scratch)": (1000, 0.5)})
    traces = {t.name: t for t in fig.data}
    assert list(traces) == ["proposals", "search (kept)", "uniform (from scratch)"]
    steps = log[:-1]
    assert list(traces["search (kept)"].x) == [r["params"] for r in steps]
    assert list(traces["search (kept)"].y) == [r["val_acc"] for r in steps]
    tried = [c for r in steps for c in r.get("candidates", [])]
    assert list(traces["proposals"].y) == [c["val_acc"] for c in tried]
    assert list(traces["uniform (from scratch)"].x) == [1000]


def test_a_wrn_stage_that_cannot_be_widened_is_skipped_with_its_reason(tmp_path):
    """A WRN stage 1 as wide as the fixed 16-channel stem has no projection to widen."""
    wrn = ("model.arch=wrn", "model.peers=1", "model.options={depth: 10, widths: [16, 4, 4]}")
    plan = _plan(budget=6_700, overrides=(*SETS, *wrn))
    done = run_search(plan, tmp_path / "s")
    first = read_log(tmp_path / "s")[1]
    reasons = {s["name"]: s["why"] for s in first["skipped"]}
    assert "16-channel stem" in reasons["stage-1"]
    assert {c["name"] for c in first["candidates"]} == {"stage-2", "stage-3"}
    assert done["widths"][0] == 16 and done["params"] <= 6_700
    assert (
        load_run(tmp_path / "s" / done["run"]).config["model"]["options"]["widths"]
        == done["widths"]
    )
