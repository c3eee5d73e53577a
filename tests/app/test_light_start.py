"""The app's first page shows a run without torch: it needs only the config, manifest and
metrics, so the first chart does not wait for torch, the model or the probe libraries.

Checked in a fresh interpreter, since this test process has long imported torch.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from streamlit.testing.v1 import AppTest

from tests.app.apptools import MAIN, REPO, RUNS, page

SCRIPT = f"""
import json, sys
from streamlit.testing.v1 import AppTest
at = AppTest.from_file({str(MAIN)!r}, default_timeout=120).run()
print(json.dumps({{
    "title": [t.value for t in at.title],
    "charts": len(at.get("plotly_chart")),
    "problems": [e.value for e in [*at.exception, *at.error]],
    "loaded": [m for m in ("torch", "captum", "scipy", "torchvision") if m in sys.modules],
}}))
"""


def first_page(root) -> dict:
    env = {**os.environ, "COLLAB_RUNS_ROOT": str(root)}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_overview_draws_its_curves_without_torch():
    found = first_page(RUNS)
    assert found["title"] == ["Overview"] and found["problems"] == []
    assert found["charts"] >= 1
    assert found["loaded"] == []


def test_a_damaged_checkpoint_still_shows_the_overview_and_is_reported_elsewhere(
    tmp_path, monkeypatch
):
    run = tmp_path / "dml-digits"
    shutil.copytree(RUNS / "dml-digits", run, ignore=shutil.ignore_patterns("probes"))
    (run / "checkpoints" / "best.safetensors").write_bytes(b"not a safetensors file")
    found = first_page(tmp_path)
    assert found["charts"] >= 1 and found["problems"] == []
    # a page that needs the model says what is wrong in one line, as before
    monkeypatch.setenv("COLLAB_RUNS_ROOT", str(tmp_path))
    at = AppTest.from_file(page("agreement"), default_timeout=120)
    at.session_state["run_name"] = "dml-digits"
    at.run()
    assert not at.exception and len(at.error) == 1
    assert "best.safetensors" in at.error[0].value
