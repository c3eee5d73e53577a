"""`collab import` on the command line, and an imported run under `collab eval`, `collab
analyze` and the app's Overview (a run with no training history)."""

import torch

from analysis.models import create_model
from tests.app.apptools import start_app
from tests.conftest import run_cli


def _assert_one_line_error(proc, *fragments):
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def _two_files(tmp_path):
    torch.manual_seed(0)
    paths = []
    for i in range(2):
        net = create_model("test_cnn", num_classes=10, in_chans=1)
        paths.append(tmp_path / f"net{i}.pth")
        torch.save({"net": {f"module.{k}": v for k, v in net.state_dict().items()}}, paths[-1])
    return [str(p) for p in paths]


def test_import_then_eval_analyze_and_overview(tmp_path, monkeypatch):
    out = tmp_path / "runs" / "imported"
    proc = run_cli(
        "import", *_two_files(tmp_path), "--source", "state_dict", "--arch", "test_cnn",
        "--set", "data.name=test_digits", "--out", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "as 2 peers" in proc.stdout
    ev = run_cli("eval", str(out))
    assert ev.returncode == 0, ev.stderr
    assert sum("acc" in line for line in ev.stdout.splitlines()) == 3
    report = tmp_path / "report.html"
    analyze = run_cli(
        "analyze", str(out), "--limit", "20", "--no-progress", "--report", str(report)
    )
    assert analyze.returncode == 0, analyze.stderr
    assert "diversity" in analyze.stdout and report.is_file()
    assert "No training history: this run was imported (--source state_dict)" in (
        report.read_text()
    )
    listing = run_cli("runs", "--root", str(tmp_path / "runs"))
    assert "imported" in listing.stdout and "complete" in listing.stdout
    at = start_app(monkeypatch, tmp_path / "runs", view="overview")
    assert any("No training history: this run was imported" in info.value for info in at.info)


def test_import_errors_are_one_line(tmp_path):
    files = _two_files(tmp_path)
    out = str(tmp_path / "x")
    wrong_source = run_cli(
        "import", files[0], "--source", "dc", "--set", "data.name=test_digits", "--out", out
    )
    _assert_one_line_error(wrong_source, "no Divide-and-Co-training networks")
    no_arch = run_cli(
        "import", files[0], "--source", "anchornet", "--set", "data.name=test_digits",
        "--out", out,
    )  # fmt: skip
    _assert_one_line_error(no_arch, "does not fit the model")
    hcgnet = run_cli("import", files[0], "--source", "hcgnet", "--out", out)
    _assert_one_line_error(hcgnet, "cannot tell which HCGNet")
    missing = run_cli("import", str(tmp_path / "nope.pth"), "--source", "state_dict", "--out", out)
    _assert_one_line_error(missing, "does not exist")
