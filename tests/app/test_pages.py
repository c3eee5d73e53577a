"""Every app page, driven with AppTest on the embedded run and on empty or broken runs roots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

import analysis
from analysis.probes import agreement_report, collect_predictions

REPO = Path(__file__).resolve().parents[2]
MAIN = REPO / "app" / "main.py"
RUN = REPO / "runs" / "dml-digits"


def pct(value: float, *, signed: bool = False) -> str:
    return f"{value:+.2%}" if signed else f"{value:.2%}"


@pytest.fixture(scope="module")
def expected():
    """The embedded run and its test-split agreement report, computed without the app."""
    run = analysis.load_run(RUN)
    preds = collect_predictions(run.model, run.dataset("test"))
    return run, agreement_report(preds, peer_names=run.peer_names)


@pytest.fixture
def start(monkeypatch):
    def run_app(root: Path) -> AppTest:
        """The app on runs root ``root``, after its first run."""
        monkeypatch.setenv("COLLAB_RUNS_ROOT", str(root))
        at = AppTest.from_file(str(MAIN), default_timeout=120).run()
        assert not at.exception, at.exception
        return at

    return run_app


def page(name: str) -> str:
    return str(MAIN.parent / "views" / name)


def charts(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def test_entry_point_first_run(monkeypatch):
    monkeypatch.setenv("COLLAB_RUNS_ROOT", str(RUN.parent))
    at = AppTest.from_file(str(MAIN), default_timeout=120).run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Overview"
    assert at.sidebar.selectbox[0].value == "dml-digits"
    assert at.metric == [] and len(at.get("plotly_chart")) == 2


def test_overview_shows_config_peers_and_curves(start, expected):
    run, _ = expected
    at = start(RUN.parent)
    assert at.sidebar.selectbox[0].value == "dml-digits"
    assert at.title[0].value == "Overview"
    table = at.table[0].value
    assert list(table["peer"]) == run.peer_names
    assert list(table["parameters"]) == [f"{n:,}" for n in run.manifest["param_counts"]]
    assert json.loads(at.json[0].value) == run.config
    acc, loss = charts(at)
    k, splits = len(run.peer_names), {line["split"] for line in run.metrics}
    assert len(acc["data"]) == (k + 1) * len(splits)
    test_ensemble = next(t for t in acc["data"] if t["name"] == "ensemble (test)")
    last_test = max(
        (line for line in run.metrics if line["split"] == "test"), key=lambda line: line["epoch"]
    )
    assert test_ensemble["y"][-1] == pytest.approx(last_test["ensemble_acc"])
    assert loss["layout"]["yaxis"]["title"]["text"] == "loss"


def test_agreement_metrics_match_the_probe(start, expected):
    run, report = expected
    at = start(RUN.parent)
    at.switch_page(page("agreement.py")).run()
    assert not at.exception, at.exception
    shown = {metric.label: metric.value for metric in at.metric}
    assert shown["Ensemble accuracy"] == pct(report.ensemble_acc)
    assert shown["Ensemble gain"] == pct(report.ensemble_gain, signed=True)
    assert shown["Oracle accuracy"] == pct(report.oracle_acc)
    assert shown["Mean pairwise agreement"] == pct(report.mean_agreement)
    for name, acc in zip(report.peer_names, report.peer_acc):
        assert shown[f"{name} accuracy"] == pct(acc)

    heatmap, bars, *gallery = charts(at)
    torch.testing.assert_close(
        torch.tensor(heatmap["data"][0]["z"], dtype=torch.float64), report.agreement
    )
    assert bars["data"][0]["x"] == [*report.peer_names, "ensemble", "oracle"]
    count = len(report.disagreements)
    assert f"{count} of {report.num_samples} test samples" in at.subheader[-1].value
    if count:
        (figure,) = gallery
        assert len(figure["data"]) == min(count, 16)
        label = int(run.dataset("test")[int(report.disagreements[0])][1])
        caption = figure["layout"]["annotations"][0]["text"]
        assert caption.startswith(f"label {run.data.class_names[label]}<br>")
        assert all(f"{name}: " in caption for name in report.peer_names)

    at.radio[0].set_value("train").run()
    assert not at.exception
    assert f"{len(run.dataset('train'))} train samples" in at.subheader[-1].value


def test_empty_and_missing_roots_explain_themselves(start, tmp_path):
    at = start(tmp_path)
    assert "No runs under" in at.info[0].value and "COLLAB_RUNS_ROOT" in at.info[0].value
    assert len(at.sidebar.selectbox) == 0
    at = start(tmp_path / "nowhere")
    assert "does not exist" in at.warning[0].value
    at.switch_page(page("agreement.py")).run()
    assert not at.exception and "does not exist" in at.warning[0].value


def test_broken_run_shows_one_error_and_the_app_keeps_working(start, tmp_path):
    broken = tmp_path / "a-broken"
    broken.mkdir()
    (broken / "manifest.json").write_text("{ not json")
    (broken / "config.yaml").write_text("data: {}\n")
    (tmp_path / "dml-digits").symlink_to(RUN, target_is_directory=True)

    at = start(tmp_path)
    assert at.sidebar.selectbox[0].options == ["a-broken", "dml-digits"]
    at.sidebar.selectbox[0].set_value("a-broken").run()
    assert not at.exception
    (error,) = at.error
    with pytest.raises(analysis.CollabError) as raised:
        analysis.load_run(broken)
    assert error.value == str(raised.value) and "\n" not in error.value.strip()
    at.switch_page(page("agreement.py")).run()
    assert not at.exception and len(at.error) == 1 and not at.metric

    at.sidebar.selectbox[0].set_value("dml-digits").run()
    assert not at.exception and not at.error
    assert "Ensemble accuracy" in {metric.label for metric in at.metric}
