"""Similarity and Compare pages: CKA, kernel matching and the two-run summary equal the probes."""

from __future__ import annotations

import math

import numpy as np
import pytest

import analysis
from analysis.probes import (
    MEASURES,
    cka_probe,
    collect_predictions,
    diversity_report,
    kernel_similarity,
)
from analysis.probes.diversity import mean_off_diagonal
from tests.app.apptools import RUN, RUNS, assert_clean, charts, metrics, start_app, z_of


def computed(name: str):
    """(run, CKA result, diversity report) of an embedded run, without the app."""
    run = analysis.load_run(RUNS / name)
    cka = cka_probe(run.model, run.dataset("test"), batch_size=100)
    preds = collect_predictions(run.model, run.dataset("test"))
    return run, cka, diversity_report(preds, peer_names=run.peer_names)


@pytest.fixture(scope="module")
def dml():
    return computed("dml-digits")


@pytest.fixture(scope="module")
def independent():
    return computed("independent-digits")


def test_similarity_shows_the_cka_and_kernel_probes(monkeypatch, dml):
    run, cka, _ = dml
    at = start_app(monkeypatch, RUN.parent, view="similarity")
    found = charts(at)
    np.testing.assert_allclose(z_of(found["cka_layers"]), cka.block(0, 1).numpy(), atol=1e-9)
    np.testing.assert_allclose(z_of(found["cka_peers"]), cka.peer_matrix(-1).numpy(), atol=1e-9)
    assert (
        metrics(at)["Mean CKA between peers at layer3"]
        == f"{mean_off_diagonal(cka.peer_matrix(-1)):.4f}"
    )
    kernels = kernel_similarity(run.model)
    lines = found["kernel_matching"]["data"]
    assert [t["name"] for t in lines] == kernels.pair_labels()
    np.testing.assert_allclose([t["y"] for t in lines], kernels.matched.numpy())
    np.testing.assert_allclose(
        [t["y"] for t in found["filter_redundancy"]["data"]], kernels.redundancy.numpy()
    )

    at.selectbox[0].set_value(2).run()
    at.selectbox[1].set_value(2).run()
    at.select_slider[0].set_value("layer1").run()
    at.checkbox[0].check().run()
    assert_clean(at)
    found = charts(at)
    np.testing.assert_allclose(z_of(found["cka_layers"]), cka.block(2, 2).numpy(), atol=1e-9)
    np.testing.assert_allclose(np.diag(z_of(found["cka_layers"])), 1.0, atol=1e-9)
    np.testing.assert_allclose(z_of(found["cka_peers"]), cka.peer_matrix(1).numpy(), atol=1e-9)
    aligned = kernel_similarity(run.model, align_inputs=True).matched.numpy()
    np.testing.assert_allclose([t["y"] for t in found["kernel_matching"]["data"]], aligned)


def test_compare_shows_both_runs_and_their_differences(monkeypatch, dml, independent):
    at = start_app(monkeypatch, RUN.parent, view="compare")
    assert [box.value for box in at.selectbox[:2]] == ["independent-digits", "dml-digits"]
    table = at.dataframe[0].value
    assert list(table.columns) == ["A: independent-digits", "B: dml-digits", "B - A"]
    for column, (_, cka, div) in zip(table.columns, (independent, dml)):
        values = table[column]
        assert values["accuracy, ensemble"] == pytest.approx(div.ensemble_acc)
        assert values["accuracy, peer 2"] == pytest.approx(div.peer_acc[2])
        assert values["ensemble gain"] == pytest.approx(div.ensemble_gain)
        for measure, info in MEASURES.items():
            expected = div.mean(measure)
            assert values[f"mean {info.label}"] == pytest.approx(
                expected, nan_ok=math.isnan(expected)
            )
        assert values["mean CKA between peers, last layer"] == pytest.approx(
            mean_off_diagonal(cka.peer_matrix(-1))
        )
    np.testing.assert_allclose(table["B - A"], table.iloc[:, 1] - table.iloc[:, 0])

    found = charts(at)
    np.testing.assert_allclose(found["accuracy_A"]["data"][0]["y"][:3], independent[2].peer_acc)
    np.testing.assert_allclose(z_of(found["diversity_A"]), independent[2].matrix("kappa").numpy())
    np.testing.assert_allclose(z_of(found["cka_B"]), dml[1].peer_matrix(-1).numpy(), atol=1e-9)
    at.selectbox[2].set_value("double_fault").run()
    at.selectbox[0].set_value("dml-digits").run()
    assert_clean(at)
    found = charts(at)
    np.testing.assert_allclose(z_of(found["diversity_A"]), dml[2].matrix("double_fault").numpy())
    np.testing.assert_allclose(at.dataframe[0].value["B - A"], 0.0)
