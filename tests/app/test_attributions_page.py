"""Attributions page: predictions, maps and deletion scores equal the probes' own results; bad
uploads get one error line and the page keeps working."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

import analysis
from analysis.data.upload import load_image
from analysis.probes import attribute_all_peers, deletion_by_peer
from analysis.viz import normalize_maps
from tests.app.apptools import RUN, assert_clean, charts, metrics, start_app
from tests.robustness.test_images import announcing

DEFAULT_METHODS = ["saliency", "integrated_gradients", "grad_cam"]


@pytest.fixture(scope="module")
def run():
    return analysis.load_run(RUN)


@pytest.fixture
def at(monkeypatch):
    return start_app(monkeypatch, RUN.parent, view="attributions")


def widget(items, label):
    return next(item for item in items if item.label.startswith(label))


def expected_for(run, image: torch.Tensor, method: str, target=None):
    """(peer probs (K, C), ensemble probs (C,), maps (K, 1, H, W), auc (K, 1)), computed directly."""
    with torch.no_grad():
        out = run.model(image[None])
    maps = attribute_all_peers(run.model, image[None], method=method, target=target)
    _, auc = deletion_by_peer(run.model, image[None], maps, target=target)
    return out.peer_logits[:, 0].softmax(-1), out.ensemble_logits[0].softmax(-1), maps, auc


def grid_maps(spec: dict, num_peers: int) -> np.ndarray:
    """(M, K, H, W) heatmaps of the attribution grid, in row (method) then peer order."""
    heatmaps = [np.array(t["z"], dtype=float) for t in spec["data"] if t["type"] == "heatmap"]
    return np.stack(heatmaps).reshape(-1, num_peers, *heatmaps[0].shape)


def shown_predictions(at, names, classes, peer_probs, ensemble_probs):
    shown = metrics(at)
    for name, probs in zip([*names, "ensemble"], [*peer_probs, ensemble_probs]):
        assert shown[f"{name} predicts"] == f"{classes[int(probs.argmax())]} ({probs.max():.1%})"
    return shown


def test_test_image_maps_and_deletion_scores_match_the_probes(at, run):
    names, classes = run.peer_names, run.data.class_names
    image, label = run.dataset("test")[7]
    at.number_input[0].set_value(7).run()
    assert_clean(at)
    peer_probs, ensemble_probs, maps, auc = expected_for(run, image, "saliency")
    assert (
        shown_predictions(at, names, classes, peer_probs, ensemble_probs)["Label"] == classes[label]
    )

    found = charts(at)
    grid = grid_maps(found["attribution_grid"], len(names))
    assert grid.shape == (3, len(names), *image.shape[-2:])
    assert [
        a["text"] for a in found["attribution_grid"]["layout"]["annotations"][-3:]
    ] == DEFAULT_METHODS
    np.testing.assert_allclose(grid[0], normalize_maps(maps)[:, 0].numpy(), atol=1e-6)
    table = at.dataframe[0].value
    assert list(table.index) == DEFAULT_METHODS and list(table.columns) == names
    np.testing.assert_allclose(
        table.loc["saliency"].to_numpy(dtype=float), auc[:, 0].numpy(), atol=1e-6
    )
    curves = found["deletion_saliency"]["data"]
    assert [t["name"] for t in curves] == [
        f"{n} (AUC {a:.3f})" for n, a in zip(names, auc[:, 0].tolist())
    ]
    assert {"deletion_integrated_gradients", "deletion_grad_cam"} <= set(found)


def test_explaining_the_ensemble_class_with_one_method(at, run):
    image, _ = run.dataset("test")[0]
    widget(at.multiselect, "Methods").set_value(["grad_cam"]).run()
    at.toggle[0].set_value(True).run()
    assert_clean(at)
    _, ensemble_probs, _, _ = expected_for(run, image, "saliency")
    target = int(ensemble_probs.argmax())
    _, _, maps, auc = expected_for(run, image, "grad_cam", target=target)
    found = charts(at)
    np.testing.assert_allclose(
        grid_maps(found["attribution_grid"], run.model.num_peers)[0],
        normalize_maps(maps)[:, 0].numpy(),
        atol=1e-5,
    )
    np.testing.assert_allclose(
        at.dataframe[0].value.loc["grad_cam"].to_numpy(dtype=float), auc[:, 0].numpy(), atol=1e-6
    )
    assert set(found) == {"attribution_grid", "deletion_grad_cam"}
    widget(at.multiselect, "Methods").set_value([]).run()
    assert_clean(at)
    assert "Pick at least one" in at.info[0].value and not charts(at)


def png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def test_uploads_bad_and_good(at, run):
    names, classes = run.peer_names, run.data.class_names
    widget(at.radio, "Image").set_value("upload").run()
    assert_clean(at)
    assert "Upload an image" in at.info[0].value

    at.file_uploader[0].set_value(
        ("junk.png", b"\x00 these bytes are no image " * 20, "image/png")
    ).run()
    assert not at.exception and "not a readable image" in at.error[0].value and not charts(at)
    at.file_uploader[0].set_value(("huge.png", announcing(30000, 30000), "image/png")).run()
    assert not at.exception and "too large" in at.error[0].value

    stroke = Image.new("RGBA", (40, 60), (255, 255, 255, 255))  # colour with alpha, not square
    for y in range(10, 50):
        for x in range(17, 23):
            stroke.putpixel((x, y), (0, 0, 0, 255))
    data = png(stroke)
    at.file_uploader[0].set_value(("one.png", data, "image/png")).run()
    widget(at.checkbox, "Invert").check().run()
    assert_clean(at)
    image = load_image(data, in_chans=1, image_size=32, invert=True)
    peer_probs, ensemble_probs, _, _ = expected_for(run, image, "saliency")
    assert shown_predictions(at, names, classes, peer_probs, ensemble_probs)["Label"] == "unknown"
    assert "attribution_grid" in charts(at)

    widget(at.radio, "Image").set_value("test set").run()  # the rest of the page still works
    at.number_input[0].set_value(3).run()
    assert_clean(at)
    assert metrics(at)["Label"] == classes[run.dataset("test")[3][1]]
