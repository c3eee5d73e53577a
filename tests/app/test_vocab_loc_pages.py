"""Vocabulary and Localization pages on the embedded runs: the numbers shown equal the probes'
own results at the page's sample limits; runs without DCL layers / without true boxes say so;
a garbage upload shows one error and the rest of the page keeps working."""

from __future__ import annotations

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

import analysis
from analysis.probes import (
    cascade_curve,
    crop_patches,
    localize,
    peer_cooccurrence,
    probe_vocabulary,
    score_localization,
)
from analysis.viz import to_rgb_uint8
from tests.app.apptools import (
    MAIN,
    RUNS,
    assert_clean,
    charts,
    download_keys,
    metrics,
    page,
    z_of,
)

VOCAB_LIMIT, LOC_LIMIT = 250, 100  # the pages' default "Test images"


@pytest.fixture(scope="module")
def runs():
    return {name: analysis.load_run(RUNS / name) for name in ("dcl-multidigit", "anchornet-shapes")}


def open_page(monkeypatch, run: str, view: str) -> AppTest:
    """The app on the embedded runs with ``run`` picked in the sidebar, then on ``view``."""
    monkeypatch.setenv("COLLAB_RUNS_ROOT", str(RUNS))
    at = AppTest.from_file(str(MAIN), default_timeout=120).run()
    at.sidebar.selectbox[0].set_value(run).run()
    at.switch_page(page(view)).run()
    assert_clean(at)
    return at


def widget(items, label: str):
    return next(item for item in items if item.label.startswith(label))


def test_dcl_vocabulary_matches_the_probe(monkeypatch, runs):
    run = runs["dcl-multidigit"]
    vocab = probe_vocabulary(run.model, run.dataset("test"), limit=VOCAB_LIMIT)
    at = open_page(monkeypatch, "dcl-multidigit", "vocabulary")
    shown = metrics(at)
    assert shown["Used composite words"] == f"{vocab.used_vocabulary:,}"
    assert shown["Possible composite words"] == f"{vocab.vocabulary_size:,}" == "1,024"
    assert shown["Entropy of the composite words"] == f"{vocab.entropy_bits:.3f} bits"
    mi = f"{float(vocab.mutual_information[0]):.3f} bits"
    assert shown["Mutual information, branches 0 and 1"] == mi
    found = charts(at)
    np.testing.assert_array_equal(z_of(found["cooccurrence"]), vocab.counts[0].numpy())
    usage = {t["name"]: t["y"] for t in found["vocabulary_usage"]["data"]}
    assert usage["used words"] == [vocab.used_vocabulary]
    gallery = found["word_gallery"]
    assert len(gallery["data"]) == 8 * vocab.top_scores.shape[1]  # 8 words x top_n patches
    first = gallery["layout"]["annotations"][0]["text"]
    np.testing.assert_array_equal(gallery["data"][0]["z"], to_rgb_uint8(vocab.patches[0, :1])[0])
    assert first.startswith(f"{vocab.word_label(0)} ×{int(vocab.word_counts[0]):,}")
    keys = {"cooccurrence", "vocabulary_usage", "word_gallery"}
    assert download_keys(at) == {f"{k}_{kind}" for k in keys for kind in ("csv", "html")}

    widget(at.radio, "Table").set_value("pmi").run()
    at.slider[0].set_value(2).run()
    assert_clean(at)
    found = charts(at)
    np.testing.assert_allclose(z_of(found["cooccurrence"]), vocab.pmi[0].numpy())
    assert len(found["word_gallery"]["data"]) == 2 * vocab.top_scores.shape[1]


def test_peer_cooccurrence_follows_the_chosen_peers_and_layers(monkeypatch):
    run = analysis.load_run(RUNS / "dml-digits")
    at = open_page(monkeypatch, "dml-digits", "vocabulary")
    assert widget(at.radio, "Words across").options == ["two peers"]
    default = peer_cooccurrence(run.model, run.dataset("test"), limit=VOCAB_LIMIT)
    assert default.layers == ["peers.0.layer3", "peers.1.layer3"]
    np.testing.assert_array_equal(z_of(charts(at)["peer_cooccurrence"]), default.counts.numpy())
    assert metrics(at)["Mutual information"] == f"{default.mutual_information:.3f} bits"

    widget(at.selectbox, "Peer B").set_value(2).run()
    widget(at.selectbox, "Layer A").set_value("peers.0.layer2").run()
    widget(at.select_slider, "Test images").set_value(100).run()
    assert_clean(at)
    layers = ["peers.0.layer2", "peers.2.layer3"]
    other = peer_cooccurrence(run.model, run.dataset("test"), layers=layers, limit=100)
    assert other.resampled == [True, False]  # layer2's 16x16 map is pooled to layer3's 8x8
    np.testing.assert_array_equal(z_of(charts(at)["peer_cooccurrence"]), other.counts.numpy())
    shown = metrics(at)
    assert shown["Used word pairs"] == f"{int((other.counts > 0).sum()):,}"
    assert shown["Possible word pairs"] == f"{other.counts.numel():,}"
    assert "peers.0.layer2 average-pooled" in at.caption[0].value


def test_a_run_with_one_peer_and_no_dcl_layer_explains_the_vocabulary_page(monkeypatch):
    at = open_page(monkeypatch, "anchornet-shapes", "vocabulary")
    assert "needs a run with DCL layers" in at.info[0].value
    assert "at least two peers" in at.info[0].value
    assert not charts(at) and not at.metric


def test_localization_on_shapes_matches_the_probes(monkeypatch, runs):
    run = runs["anchornet-shapes"]
    test, peer = run.dataset("test"), run.model.peer(0)
    at = open_page(monkeypatch, "anchornet-shapes", "localization")
    at.number_input[0].set_value(5).run()
    assert_clean(at)
    image, label = test[5]
    loc = localize(peer, image[None])
    shown = metrics(at)
    assert shown["Label"] == run.data.class_names[label]
    assert shown["anchornet#0 predicts"] == run.data.class_names[int(loc.predicted[0])]
    found = charts(at)
    shapes = found["boxes"]["layout"]["shapes"]
    valid = [b for b in loc.boxes[0].tolist() if b[0] >= 0]
    assert len(shapes) == len(valid) + 1  # the ranked boxes, then the true box (dashed)
    x0, y0, x1, y1 = test.box(5)
    assert (shapes[-1]["x0"], shapes[-1]["y1"]) == (x0 - 0.5, y1 - 0.5)
    assert shapes[-1]["line"]["dash"] == "dash"
    assert [
        [s["x0"] + 0.5, s["y0"] + 0.5, s["x1"] + 0.5, s["y1"] + 0.5] for s in shapes[:-1]
    ] == valid
    np.testing.assert_allclose(z_of(found["class_map"], 1), loc.class_map[0].numpy(), rtol=1e-5)
    patches = found["patch_gallery"]["data"]
    assert len(patches) == loc.boxes.shape[1]
    size = loc.receptive_field[0]
    first = crop_patches(image[None], loc.boxes[:, :1], size=size)[0]
    np.testing.assert_array_equal(patches[0]["z"], to_rgb_uint8(first)[0])

    score = score_localization(peer, test, limit=LOC_LIMIT)
    shown = metrics(at)
    assert shown["Pointing game"] == f"{score.pointing:.3f}"
    assert shown["Top-1 IoU ≥ 0.5"] == f"{score.iou50:.3f}"
    assert shown["Mean best IoU"] == f"{score.mean_best_iou:.3f}"
    bars = {t["name"]: t["y"] for t in found["localization_scores"]["data"]}
    np.testing.assert_allclose(bars["random boxes"][0], score.random_pointing)
    assert score.pointing > score.random_pointing  # the class map beats random boxes
    assert {"cascade", "localization_scores"} <= set(found)


def test_localization_without_boxes_and_a_garbage_upload(monkeypatch):
    run = analysis.load_run(RUNS / "dml-digits")
    at = open_page(monkeypatch, "dml-digits", "localization")
    assert "no true boxes" in at.info[0].value and "shapes" in at.info[0].value
    found = charts(at)
    assert set(found) == {"boxes", "class_map", "patch_gallery", "cascade"}
    assert download_keys(at) == {f"{k}_{kind}" for k in found for kind in ("csv", "html")}
    curve = cascade_curve(run.model.peer(0), run.dataset("test"), limit=LOC_LIMIT)
    cascade = charts(at)["cascade"]["data"][0]
    np.testing.assert_allclose(cascade["y"], curve.accuracy.numpy())
    np.testing.assert_allclose(cascade["x"], curve.relative_cost.numpy())
    shown = metrics(at)
    assert shown["Full model accuracy"] == f"{curve.full_accuracy:.2%}"
    cheap = curve.relative_cost[curve.accuracy >= curve.full_accuracy - 0.01]
    expected = f"{float(cheap.min()):.1%}" if len(cheap) else "none"
    assert shown["Cost of the cheapest cascade within 1 point"] == expected

    widget(at.selectbox, "Class map of").set_value(2).run()
    assert_clean(at)
    image, _ = run.dataset("test")[0]
    loc = localize(run.model.peer(2), image[None])
    np.testing.assert_allclose(
        z_of(charts(at)["class_map"], 1), loc.class_map[0].numpy(), rtol=1e-5
    )

    widget(at.radio, "Image").set_value("upload").run()
    at.file_uploader[0].set_value(("junk.png", b"\x00 no image here " * 30, "image/png")).run()
    assert not at.exception and "not a readable image" in at.error[0].value
    found = charts(at)
    assert "boxes" not in found and "cascade" in found  # the rest of the page still works
    widget(at.radio, "Image").set_value("test set").run()
    assert_clean(at)
    assert {"boxes", "class_map", "cascade"} <= set(charts(at))
