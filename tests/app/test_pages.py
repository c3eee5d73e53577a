"""Overview and Agreement pages, driven with AppTest on the embedded run and on empty or broken
runs roots: the values shown equal what the probes compute directly."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

import analysis
from analysis.probes import (
    MEASURES,
    agreement_report,
    collect_predictions,
    diversity_report,
    training_dynamics,
)
from tests.app.apptools import (
    MAIN,
    RUN,
    assert_clean,
    charts,
    download_keys,
    metrics,
    page,
    pct,
    start_app,
    z_of,
)


@pytest.fixture(scope="module")
def expected():
    """The embedded run and its test-split reports, computed without the app."""
    run = analysis.load_run(RUN)
    preds = collect_predictions(run.model, run.dataset("test"))
    agreement = agreement_report(preds, peer_names=run.peer_names)
    diversity = diversity_report(preds, peer_names=run.peer_names)
    dynamics = training_dynamics(run, use_cache=False)
    return run, agreement, diversity, dynamics


@pytest.fixture
def start(monkeypatch):
    return lambda root, view=None: start_app(monkeypatch, root, view=view)


def test_entry_point_first_run(monkeypatch):
    monkeypatch.setenv("COLLAB_RUNS_ROOT", str(RUN.parent))
    at = AppTest.from_file(str(MAIN), default_timeout=120).run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Overview"
    assert at.sidebar.selectbox[0].value == "dml-digits"
    assert at.metric == [] and set(charts(at)) == {"curves_acc", "curves_loss"}


def test_overview_shows_config_peers_and_curves(start, expected):
    run, *_ = expected
    at = start(RUN.parent)
    assert at.sidebar.selectbox[0].value == "dml-digits"
    table = at.table[0].value
    assert list(table["peer"]) == run.peer_names
    assert list(table["parameters"]) == [f"{n:,}" for n in run.manifest["param_counts"]]
    assert json.loads(at.json[0].value) == run.config
    found = charts(at)
    acc, loss = found["curves_acc"], found["curves_loss"]
    k, splits = len(run.peer_names), {line["split"] for line in run.metrics}
    assert len(acc["data"]) == (k + 1) * len(splits)
    test_ensemble = next(t for t in acc["data"] if t["name"] == "ensemble (test)")
    last_test = max(
        (line for line in run.metrics if line["split"] == "test"), key=lambda line: line["epoch"]
    )
    assert test_ensemble["y"][-1] == pytest.approx(last_test["ensemble_acc"])
    assert loss["layout"]["yaxis"]["title"]["text"] == "loss"
    assert download_keys(at) == {
        f"curves_{m}_{kind}" for m in ("acc", "loss") for kind in ("csv", "html")
    }


def test_agreement_metrics_and_figures_match_the_probes(start, expected):
    run, report, diversity, dynamics = expected
    at = start(RUN.parent, "agreement")
    shown = metrics(at)
    assert shown["Ensemble accuracy"] == pct(report.ensemble_acc)
    assert shown["Ensemble gain"] == pct(report.ensemble_gain, signed=True)
    assert shown["Oracle accuracy"] == pct(report.oracle_acc)
    assert shown["Mean pairwise agreement"] == pct(report.mean_agreement)
    for name, acc in zip(report.peer_names, report.peer_acc):
        assert shown[f"{name} accuracy"] == pct(acc)

    found = charts(at)
    torch.testing.assert_close(
        torch.tensor(z_of(found["agreement_heatmap"]), dtype=torch.float64), report.agreement
    )
    assert found["accuracy_bars"]["data"][0]["x"] == [*report.peer_names, "ensemble", "oracle"]
    # Diversity: Cohen's kappa by default, then the Jensen-Shannon divergence.
    assert shown["Mean Cohen's kappa over peer pairs"] == f"{diversity.mean('kappa'):.4f}"
    np.testing.assert_allclose(z_of(found["diversity_heatmap"]), diversity.matrix("kappa").numpy())
    np.testing.assert_allclose(
        found["class_agreement"]["data"][0]["y"], diversity.mean_class_agreement.numpy()
    )
    # Through training: every saved epoch, the same accuracies and mean measures.
    accuracy, trend = found["dynamics_accuracy"]["data"], found["dynamics_diversity"]["data"]
    assert accuracy[0]["x"] == dynamics.epochs == [2, 4, 6, 8, 10, 12]
    np.testing.assert_allclose(
        next(t["y"] for t in accuracy if t["name"] == "ensemble"), dynamics.ensemble_acc.numpy()
    )
    kappa = next(t for t in trend if t["name"] == MEASURES["kappa"].label)
    np.testing.assert_allclose(kappa["y"], dynamics.kappa.numpy())

    count = len(report.disagreements)
    assert f"{count} of {report.num_samples} test samples" in at.header[-1].value
    gallery = found["disagreement_gallery"]
    assert len(gallery["data"]) == min(count, 16)
    label = int(run.dataset("test")[int(report.disagreements[0])][1])
    caption = gallery["layout"]["annotations"][0]["text"]
    assert caption.startswith(f"label {run.data.class_names[label]}<br>")
    assert all(f"{name}: " in caption for name in report.peer_names)
    assert download_keys(at) == {f"{key}_{kind}" for key in found for kind in ("csv", "html")}

    measure = next(box for box in at.selectbox if box.label == "Measure")
    measure.set_value("js_divergence").run()
    assert_clean(at)
    js = diversity.matrix("js_divergence").numpy()
    np.testing.assert_allclose(z_of(charts(at)["diversity_heatmap"]), js)
    assert (
        metrics(at)[f"Mean {MEASURES['js_divergence'].label} over peer pairs"]
        == f"{diversity.mean('js_divergence'):.4f}"
    )


def test_agreement_views_follow_their_widgets(start, expected):
    run, *_ = expected
    at = start(RUN.parent, "agreement")
    per_class = next(r for r in at.radio if r.label == "Per class")
    per_class.set_value("heatmap").run()
    assert_clean(at)
    assert len(z_of(charts(at)["class_agreement"])) == len(run.data.class_names)
    at.toggle[0].set_value(False).run()
    assert_clean(at)
    assert "dynamics_accuracy" not in charts(at)
    at.slider[0].set_value(3).run()
    assert len(charts(at)["disagreement_gallery"]["data"]) == 3
    next(r for r in at.radio if r.label == "Split").set_value("train").run()
    assert_clean(at)
    assert f"{len(run.dataset('train'))} train samples" in at.header[-1].value


def test_empty_and_missing_roots_explain_themselves(start, tmp_path):
    at = start(tmp_path)
    assert "No runs under" in at.info[0].value and "COLLAB_RUNS_ROOT" in at.info[0].value
    assert len(at.sidebar.selectbox) == 0
    at = start(tmp_path / "nowhere")
    assert "does not exist" in at.warning[0].value
    for view in ("agreement", "attributions", "similarity"):
        at.switch_page(page(view)).run()
        assert not at.exception and "does not exist" in at.warning[0].value
    at.switch_page(page("compare")).run()
    assert not at.exception and "Comparing needs two runs" in at.info[0].value


def test_broken_run_shows_one_error_and_the_app_keeps_working(start, tmp_path):
    broken = tmp_path / "a-broken"
    broken.mkdir()
    (broken / "manifest.json").write_text("{ not json")
    (broken / "config.yaml").write_text("data: {}\n")
    # a copy: a symbolic link out of the runs root is not listed (see tests/robustness)
    shutil.copytree(RUN, tmp_path / "dml-digits", ignore=shutil.ignore_patterns("probes"))

    at = start(tmp_path)
    assert at.sidebar.selectbox[0].options == ["a-broken", "dml-digits"]
    at.sidebar.selectbox[0].set_value("a-broken").run()
    assert not at.exception
    (error,) = at.error
    with pytest.raises(analysis.CollabError) as raised:
        analysis.load_run(broken)
    assert error.value == str(raised.value) and "\n" not in error.value.strip()
    for view in ("agreement", "attributions", "similarity"):
        at.switch_page(page(view)).run()
        assert not at.exception and len(at.error) == 1 and not at.metric and not charts(at)
    at.switch_page(page("compare")).run()  # run A is the broken one: B still shows
    assert not at.exception and [e.value for e in at.error] == [str(raised.value)]
    assert {"accuracy_B", "diversity_B"} <= set(charts(at)) and "accuracy_A" not in charts(at)

    at.switch_page(page("agreement")).run()
    at.sidebar.selectbox[0].set_value("dml-digits").run()
    assert_clean(at)
    assert "Ensemble accuracy" in metrics(at)


def test_a_run_without_epoch_checkpoints_says_so(start, tmp_path):
    copy = tmp_path / "no-epochs"
    copy.mkdir()
    for name in ("config.yaml", "manifest.json", "metrics.jsonl"):
        (copy / name).write_bytes((RUN / name).read_bytes())
    (copy / "checkpoints").mkdir()
    (copy / "checkpoints" / "best.safetensors").write_bytes(
        (RUN / "checkpoints" / "best.safetensors").read_bytes()
    )
    at = start(tmp_path, "agreement")
    assert "saved no epoch checkpoints" in at.info[0].value and "save_every" in at.info[0].value
    found = charts(at)
    assert "dynamics_accuracy" not in found and "agreement_heatmap" in found
