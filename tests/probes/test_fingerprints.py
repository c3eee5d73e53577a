"""The shipped runs' probe results are bit-identical to those of the code before the house move.

``probe_fingerprints.json`` was written by ``tests/probes/fingerprint.py`` run on the code as it
stood before the refactor (one thread, fixed limit); any change to a probe's numbers, however
small, changes a sha256 here. A deliberate change of a probe's maths rewrites the file
(``python -m tests.probes.fingerprint``) in the same commit, with the reason in its message.
"""

import json

from analysis import load_run
from analysis.probes.suite import run_suite
from tests.probes.fingerprint import REFERENCE, suite_fingerprints


def test_shipped_runs_probe_results_are_bit_identical():
    expected = json.loads(REFERENCE.read_text())
    assert suite_fingerprints(run_suite, load_run) == expected
