"""Shared checks of the robustness suite: a clean one-line refusal, and nothing changed on disk."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from tests.conftest import DML_PRESET, TINY, run_cli

TINY_SETS = [arg for item in TINY for arg in ("--set", item)]


def tree_hash(folder: Path) -> str:
    """sha256 over every path, file mode and file content under ``folder`` (and its own state)."""
    h = hashlib.sha256()
    folder = Path(folder)
    if not folder.exists():
        return "absent"
    if folder.is_file():
        return hashlib.sha256(folder.read_bytes()).hexdigest()
    for path in sorted(folder.rglob("*")):
        h.update(str(path.relative_to(folder)).encode())
        if path.is_file():
            h.update(path.read_bytes())
    return h.hexdigest()


def assert_refused(proc, *fragments: str) -> str:
    """Non-zero exit, no traceback, exactly one line on stderr that names the problem."""
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def copy_run(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest)
    return dest


def train(out: Path, *extra: str):
    return run_cli("train", str(DML_PRESET), "--out", str(out), "--no-progress", *TINY_SETS, *extra)
