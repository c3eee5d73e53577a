"""Dissection figures draw exactly the numbers of the result."""

from types import SimpleNamespace

import numpy as np

from analysis.probes.dissection import dissect
from analysis.viz.dissection import (
    class_overlap_heatmap,
    dissection_section,
    mask_size_heatmap,
    peer_parts_figure,
)
from tests.probes.test_dissection import FAST, ColourData, _model, _planted_cnn


def test_dissection_figures_show_the_result():
    found = dissect(_model(_planted_cnn(), _planted_cnn()), ColourData(), options=FAST)
    sizes = mask_size_heatmap(found, peer=1, class_names=["r", "g", "b"]).data[0]
    assert list(sizes.y) == ["r", "g", "b"] and list(sizes.x) == found.units
    assert np.allclose(np.array(sizes.z), [[1 / 4, 1 / 8]] * 3)
    assert list(sizes.text[0]) == ["1/4", "1/8"]
    overlap = class_overlap_heatmap(found).data[0]
    assert np.allclose(np.array(overlap.z), np.eye(3))
    bars = {trace.name: list(trace.y) for trace in peer_parts_figure(found).data}
    assert np.allclose(bars["matched channels"], [1.0, 1.0])
    assert np.allclose(bars["index by index"], [1.0, 1.0])  # identical peers
    run = SimpleNamespace(manifest={"data": {"class_names": ["r", "g", "b"]}})
    section = dissection_section(run, found)
    assert section.numbers["matched mask overlap"] == "1.000" and len(section.figures) == 3


def test_peer_parts_figure_without_pairs():
    found = dissect(_model(_planted_cnn()), ColourData(), options=FAST)
    assert peer_parts_figure(found).data == ()
