"""Helpers for driving the app with AppTest: start it on a runs root, find charts by key."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parents[2]
MAIN = REPO / "app" / "main.py"
RUNS = REPO / "runs"
RUN = RUNS / "dml-digits"


def pct(value: float, *, signed: bool = False) -> str:
    return f"{value:+.2%}" if signed else f"{value:.2%}"


def start_app(monkeypatch, root: Path, *, view: str | None = None) -> AppTest:
    """The app on runs root ``root`` after its first run (then on ``views/<view>.py``)."""
    monkeypatch.setenv("COLLAB_RUNS_ROOT", str(root))
    at = AppTest.from_file(str(MAIN), default_timeout=120).run()
    assert_clean(at)
    if view is not None:
        at.switch_page(page(view)).run()
        assert_clean(at)
    return at


def page(view: str) -> str:
    return str(MAIN.parent / "views" / f"{view}.py")


def assert_clean(at: AppTest) -> None:
    """No exception and no error box."""
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _decode(value):
    """Plotly JSON may pack arrays as ``{"dtype", "bdata"}``; unpack them to lists."""
    if isinstance(value, dict) and "bdata" in value:
        array = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        shape = value.get("shape")
        if isinstance(shape, str):  # "32, 32, 3"
            shape = [int(n) for n in shape.split(",")]
        return array.reshape(shape).tolist() if shape else array.tolist()
    return value


def charts(at: AppTest) -> dict[str, dict]:
    """Every plotly chart's figure (data with arrays unpacked, layout), by its key."""
    found = {}
    for chart in at.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        for trace in spec["data"]:
            for axis in ("x", "y", "z"):
                if axis in trace:
                    trace[axis] = _decode(trace[axis])
        found[chart.proto.id.split("-", 2)[-1]] = spec  # "$$ID-<hash>-<key>"
    return found


def z_of(spec: dict, trace: int = 0) -> np.ndarray:
    """A heatmap's z as a float array (None -> NaN)."""
    return np.array(spec["data"][trace]["z"], dtype=float)


def metrics(at: AppTest) -> dict[str, str]:
    return {metric.label: metric.value for metric in at.metric}


def download_keys(at: AppTest) -> set[str]:
    return {button.key for button in at.get("download_button")}
