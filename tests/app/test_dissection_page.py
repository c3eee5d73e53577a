"""Dissection page: the masks, class overlaps and peer comparison equal the probe's result."""

from __future__ import annotations

import shutil

import numpy as np

import analysis
from analysis.probes import compute
from tests.app.apptools import assert_clean, charts, metrics, start_app


def test_dissection_page_shows_the_probe(monkeypatch, tiny_run, tmp_path):
    root = tmp_path / "runs"
    shutil.copytree(tiny_run, root / "tiny-dml")
    at = start_app(monkeypatch, root, view="dissection")
    assert at.title[0].value == "Dissection"
    shown = charts(at)
    assert set(shown) == {"mask_sizes", "class_overlap", "peer_parts"}

    result = compute(analysis.load_run(root / "tiny-dml"), "dissection", l1=1.0)  # the cache
    sizes = result.sizes[0].double() / result.sizes.new_tensor(result.widths).double()
    assert np.allclose(np.array(shown["mask_sizes"]["data"][0]["z"], dtype=float), sizes.numpy())
    overlap = np.array(shown["class_overlap"]["data"][0]["z"], dtype=float)
    assert np.allclose(overlap, result.class_overlap[0].numpy())
    matched = result.matched_overlap.mean().item()
    assert metrics(at)["Matched mask overlap"] == f"{matched:.3f}"

    at.selectbox(key="peer").set_value(2).run()  # the third peer
    assert_clean(at)
    overlap = np.array(charts(at)["class_overlap"]["data"][0]["z"], dtype=float)
    assert np.allclose(overlap, result.class_overlap[2].numpy())
