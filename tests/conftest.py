"""Shared fixtures: tiny training configs that run in seconds on 2 CPU cores."""

import os
import subprocess
import sys
from pathlib import Path

# One thread per test process: pytest-xdist already runs one worker per core, and more threads
# than cores makes small CPU convolutions many times slower. Subprocesses inherit this.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", "33554432")

import pytest
import torch

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parent.parent
DML_PRESET = REPO / "configs" / "dml_digits.yaml"
TINY = (
    "model.arch=test_cnn",
    "model.options={}",
    "train.epochs=3",
    "train.max_steps_per_epoch=4",
    "train.save_every=1",
    "train.threads=1",
    "data.batch_size=32",
)


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``collab ARGS`` in a fresh interpreter, capturing its output."""
    return subprocess.run(
        [sys.executable, "-m", "analysis.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd or REPO,
        timeout=600,
    )


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A finished 3-epoch DML run of 3 tiny CNNs on digits (shared, read-only)."""
    from analysis.config import load_config
    from analysis.training import Trainer

    out = tmp_path_factory.mktemp("runs") / "tiny-dml"
    Trainer(load_config(DML_PRESET, TINY), out, progress=False).fit()
    return out


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory) -> Path:
    """A finished sweep of independent vs DML on tiny CNNs, seeds 0 and 1 (shared, read-only)."""
    from analysis.cli import main

    out = tmp_path_factory.mktemp("sweeps") / "tiny-sweep"
    sets = [a for t in TINY for a in ("--set", t)]
    args = ["sweep", str(DML_PRESET), "--grid", "method.name=independent,dml", "--seeds", "0,1"]
    assert main([*args, "--out", str(out), *sets, "--no-progress"]) == 0
    return out
