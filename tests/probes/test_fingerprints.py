"""The shipped runs' probe results are bit-identical to the recorded ones.

``probe_fingerprints.json`` is written by ``tests/probes/fingerprint.py`` (one thread, fixed
limit); any change to a probe's numbers, however small, changes a sha256 here. The house
refactor was checked against fingerprints written by the code before it (commits 78b089d and
9801d58 pass with the file of 78b089d). A deliberate change of a probe's maths or of the shipped
runs rewrites the file (``python -m tests.probes.fingerprint``) in the same commit, with the
reason in its message.
"""

import json

from analysis import load_run
from analysis.probes.suite import run_suite
from tests.probes.fingerprint import REFERENCE, suite_fingerprints


def test_shipped_runs_probe_results_are_bit_identical():
    expected = json.loads(REFERENCE.read_text())
    assert suite_fingerprints(run_suite, load_run) == expected
