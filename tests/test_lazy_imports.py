"""``import analysis`` stays light: heavy optional libraries load only when something uses them.

Each check runs in a fresh interpreter, since this test process has long imported everything.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Loaded on first use only (captum by attributions, plotly by analysis.viz, SciPy by the
#: kernel matching / sweep statistics / SVHN reader, scikit-learn by the digits dataset,
#: torchvision by the box and crop helpers, tv datasets and torchvision models).
HEAVY = (
    "captum",
    "matplotlib",
    "plotly",
    "scipy",
    "sklearn",
    "streamlit",
    "torchvision",
    "torchvision.datasets",
)


def _loaded_after(code: str) -> list[str]:
    """The HEAVY modules present in ``sys.modules`` after running ``code`` in a new process."""
    script = (
        f"{code}\nimport json, sys\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "code",
    [
        "import analysis",
        "import analysis.probes",
        "import analysis.probes.cka, analysis.probes.suite",
        # loading a run and building its model touch neither the data nor any probe library
        "import analysis, analysis.probes\nanalysis.load_run('runs/dml-digits').model",
    ],
)
def test_heavy_libraries_load_lazily(code):
    assert _loaded_after(code) == []


def test_the_command_line_starts_without_torch():
    # `collab app` execs Streamlit right away: importing torch first would only delay the app
    script = "import analysis.cli, sys\nassert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, check=True)


def test_lazy_names_and_subpackages_resolve_on_first_use():
    # the app's first page: run metadata and training curves without torch
    script = (
        "import sys, analysis\n"
        "from analysis.viz import training_curves\n"
        "run = analysis.load_run('runs/dml-digits', lazy_model=True)\n"
        "assert run.metrics and run.peer_names and 'torch' not in sys.modules\n"
        "assert analysis.runs.load_run is analysis.load_run  # a subpackage, as before\n"
        "assert type(run.model).__name__ == 'CollaborativeModel' and 'torch' in sys.modules\n"
        "try:\n    analysis.no_such_name\nexcept AttributeError:\n    pass\n"
        "else:\n    raise AssertionError('no AttributeError')"
    )
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, check=True)


def test_the_check_sees_a_heavy_import():
    # the probe itself must be able to fail: using an attribution method does load captum
    code = "import analysis.probes.attributions as a\na._captum()"
    assert "captum" in _loaded_after(code)
