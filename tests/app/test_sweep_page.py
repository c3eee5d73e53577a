"""Compare runs → A sweep: the cell table, the forest plot and the 'not shown' flags equal the
sweep summary computed without the app."""

from __future__ import annotations

import shutil

from analysis.probes.sweep_summary import LABELS, sweep_summary
from tests.app.apptools import assert_clean, charts, start_app


def test_sweep_view_shows_the_summary(monkeypatch, tmp_path, tiny_sweep):
    root = tmp_path / "root"
    shutil.copytree(tiny_sweep, root / "tiny-sweep")
    expected = sweep_summary(root / "tiny-sweep")
    at = start_app(monkeypatch, root, view="compare")
    at.radio(key="compare_mode").set_value("A sweep").run()
    assert not at.exception
    (forest,) = [spec for key, spec in charts(at).items() if key.startswith("forest_")]
    diff = next(d for d in expected.differences if d.metric == "ensemble_acc")
    assert forest["data"][0]["x"][0] == 100 * diff.mean
    table = at.dataframe[0].value
    assert list(table["cell"]) == [c.cell for c in expected.cells]
    flagged = [w.value for w in at.warning]
    assert bool(flagged) == (not diff.shown)
    if flagged:
        assert "not shown by these seeds" in flagged[0] and LABELS["ensemble_acc"] in flagged[0]


def test_no_sweep_says_how_to_make_one(monkeypatch, tmp_path):
    (tmp_path / "empty").mkdir()
    at = start_app(monkeypatch, tmp_path / "empty", view="compare")
    at.radio(key="compare_mode").set_value("A sweep").run()
    assert_clean(at)
    assert "collab sweep" in at.info[0].value
