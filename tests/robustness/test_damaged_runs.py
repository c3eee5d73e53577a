"""Damaged run folders: every reader gives one clear line, and one damaged run never breaks a
listing of the others. Nothing in the folder is changed by reading it."""

from __future__ import annotations

import json
import pickle
import shutil

import pytest
import torch
from safetensors.torch import save_file

from tests.robustness.helpers import tree_hash
from tests.robustness.test_bad_config import collab

MANIFESTS = {
    "empty-object": b"{}",
    "list": b"[]",
    "scalar": b"3",
    "truncated": b'{"method": "dml", "peer_na',
    "binary": b"\x00\xff\xfe\x89garbage",
    "empty-file": b"",
}


@pytest.fixture
def run(tiny_run, tmp_path):
    return shutil.copytree(tiny_run, tmp_path / "root" / "damaged")


@pytest.mark.parametrize("kind", sorted(MANIFESTS))
def test_damaged_manifest_eval(capsys, run, kind):
    (run / "manifest.json").write_bytes(MANIFESTS[kind])
    before = tree_hash(run)
    code, line = collab(capsys, "eval", str(run))
    assert code == 2 and ("manifest.json" in line or "no trained model" in line)
    assert tree_hash(run) == before


@pytest.mark.parametrize("kind", sorted(MANIFESTS))
def test_one_damaged_manifest_does_not_break_the_listing(capsys, run, tiny_run, kind):
    shutil.copytree(tiny_run, run.parent / "healthy")
    (run / "manifest.json").write_bytes(MANIFESTS[kind])
    from analysis.cli import main

    assert main(["runs", "--root", str(run.parent)]) == 0
    out = capsys.readouterr().out.splitlines()
    healthy = next(line for line in out if line.startswith("healthy"))
    damaged = next(line for line in out if line.startswith("damaged"))
    assert "complete" in healthy and "dml" in healthy
    assert "broken" in damaged or "unknown" in damaged


CONFIGS = {
    "binary": b"\x00\xff\xfe\x89garbage",
    "list": b"- a\n- b\n",
    "broken-yaml": b"data: {name: [\n",
    "unknown-key": b"data: {nmae: digits}\n",
}


@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_damaged_run_config(capsys, run, kind):
    (run / "config.yaml").write_bytes(CONFIGS[kind])
    before = tree_hash(run)
    code, line = collab(capsys, "eval", str(run))
    assert code == 2 and ";" in line
    assert tree_hash(run) == before


def _pickle_disguised(path):
    class Payload:
        def __reduce__(self):
            return (print, ("PAYLOAD RAN",))

    path.write_bytes(pickle.dumps({"model": Payload()}))


def _torch_save(path):
    torch.save({"state_dict": {"w": torch.zeros(2)}}, path)


def _foreign_safetensors(path):
    save_file({"something.else": torch.zeros(3)}, str(path))


def _nan_header(path):
    path.write_bytes(b"\xff" * 8 + b"{not json")


CHECKPOINTS = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[:100]),
    "empty": lambda p: p.write_bytes(b""),
    "garbage": lambda p: p.write_bytes(b"\x01\x02" * 500),
    "pickle-disguised": _pickle_disguised,
    "torch-save": _torch_save,
    "foreign-keys": _foreign_safetensors,
    "absurd-header-length": _nan_header,
    "missing": lambda p: p.unlink(),
}


@pytest.mark.parametrize("kind", sorted(CHECKPOINTS))
def test_damaged_checkpoint(capsys, run, kind):
    CHECKPOINTS[kind](run / "checkpoints" / "best.safetensors")
    before = tree_hash(run)
    code, line = collab(capsys, "eval", str(run))
    assert code == 2 and "best" in line
    assert "PAYLOAD RAN" not in capsys.readouterr().out
    assert tree_hash(run) == before


def test_metrics_with_a_torn_last_line_still_loads(capsys, run):
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write('{"epoch": 4, "spl')
    from analysis.cli import main

    assert main(["eval", str(run)]) == 0


def test_manifest_without_peer_names_is_a_clear_error(capsys, run):
    manifest = json.loads((run / "manifest.json").read_text())
    del manifest["peer_names"]
    (run / "manifest.json").write_text(json.dumps(manifest))
    code, line = collab(capsys, "eval", str(run))
    assert code == 2 and "--resume" in line
