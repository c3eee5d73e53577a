"""A damaged probe cache entry is ignored and recomputed: it never breaks `collab analyze`."""

from __future__ import annotations

import shutil

import pytest
from safetensors.torch import save_file

import analysis
from analysis.probes import compute
from tests.probes.fingerprint import fingerprint


def _only_entry(run_dir):
    (path,) = (run_dir / "probes" / "diversity").glob("*.safetensors")
    return path


def _bad_json(path):
    save_file({}, str(path), metadata={"class": "DiversityReport", "json": "{not json"})


def _json_list(path):
    save_file({}, str(path), metadata={"class": "DiversityReport", "json": "[1, 2]"})


def _missing_fields(path):
    save_file({}, str(path), metadata={"class": "DiversityReport", "json": "{}"})


def _foreign_class(path):
    save_file({}, str(path), metadata={"class": "CKAResult", "json": "{}"})


DAMAGE = {
    "bad-json": _bad_json,
    "json-list": _json_list,
    "missing-fields": _missing_fields,
    "foreign-class": _foreign_class,
    "truncated": lambda p: p.write_bytes(p.read_bytes()[:50]),
    "empty": lambda p: p.write_bytes(b""),
    "garbage": lambda p: p.write_bytes(b"\x07" * 300),
}


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_damaged_cache_entry_is_recomputed(tiny_run, tmp_path, kind):
    run_dir = shutil.copytree(tiny_run, tmp_path / "run")
    run = analysis.load_run(run_dir)
    first = compute(run, "diversity", limit=40)
    entry = _only_entry(run_dir)
    DAMAGE[kind](entry)
    again = compute(run, "diversity", limit=40)
    assert fingerprint(again) == fingerprint(first)
    assert _only_entry(run_dir).stat().st_size > 100  # rewritten whole
    # ... and from the command line, with the entry damaged once more
    DAMAGE[kind](_only_entry(run_dir))
    from analysis.cli import main

    report = tmp_path / "r.html"
    assert (
        main(
            [
                "analyze",
                str(run_dir),
                "--probe",
                "diversity",
                "--limit",
                "40",
                "--report",
                str(report),
                "--no-progress",
            ]
        )
        == 0
    )
    assert report.is_file()
