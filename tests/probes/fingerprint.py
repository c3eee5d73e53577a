"""A fingerprint of probe results: sha256 over every field, exact to the bit.

Used to show that a refactor leaves the shipped runs' probe results bit-identical: the
reference fingerprints in ``probe_fingerprints.json`` were computed by the code before the
refactor, with the same call (``python -m tests.probes.fingerprint`` rewrites them).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[2]
REFERENCE = Path(__file__).with_name("probe_fingerprints.json")
RUNS = ("dml-digits", "divide-cotrain-digits", "dcl-multidigit", "anchornet-shapes")
LIMIT, IMAGES = 48, 2


def _feed(h: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        h.update(f"D{type(value).__name__}".encode())
        for f in dataclasses.fields(value):
            h.update(f.name.encode())
            _feed(h, getattr(value, f.name))
    elif isinstance(value, dict):
        h.update(b"{")
        for k in sorted(value, key=str):
            h.update(repr(k).encode())
            _feed(h, value[k])
        h.update(b"}")
    elif isinstance(value, (list, tuple)):
        h.update(b"[")
        for v in value:
            _feed(h, v)
        h.update(b"]")
    else:
        h.update(repr(value).encode())


def fingerprint(result: Any) -> str:
    h = hashlib.sha256()
    _feed(h, result)
    return h.hexdigest()


def suite_fingerprints(run_suite, load_run, runs_root: Path = REPO / "runs") -> dict[str, dict]:
    """Fingerprints of every probe of every run in ``RUNS``, computed afresh on a copy."""
    torch.set_num_threads(1)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in RUNS:
            copy = Path(tmp) / name
            shutil.copytree(runs_root / name, copy, ignore=shutil.ignore_patterns("probes"))
            torch.manual_seed(0)
            results = run_suite(load_run(copy), limit=LIMIT, images=IMAGES, refresh=True)
            out[name] = {probe: fingerprint(r) for probe, r in sorted(results.items())}
    return out


if __name__ == "__main__":  # the code under test decides where run_suite lives
    from analysis import load_run

    try:
        from analysis.probes.suite import run_suite
    except ImportError:
        from analysis.suite import run_suite
    prints = suite_fingerprints(run_suite, load_run)
    text = json.dumps(prints, indent=1, sort_keys=True) + "\n"
    (Path(sys.argv[1]) if len(sys.argv) > 1 else REFERENCE).write_text(text)
    print(text)
