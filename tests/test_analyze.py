"""`collab analyze`: every applicable probe, one shared pass, cached results, an HTML report."""

import pytest

import analysis
from analysis.probes import shared_pass, suite
from analysis.probes.hooks import hook_count
from tests.conftest import run_cli


def test_suite_shares_one_pass_and_caches(tiny_run, tmp_path, monkeypatch):
    import shutil

    shutil.copytree(tiny_run, tmp_path / "run")
    run = analysis.load_run(tmp_path / "run")
    passes = []
    real = shared_pass.run_pass

    def counting(*args, **kwargs):
        passes.append(len(args[2]))
        return real(*args, **kwargs)

    monkeypatch.setattr(suite, "run_pass", counting)
    first = suite.run_suite(run, probes=["diversity", "cka", "kernels"], limit=64, images=2)
    assert passes == [2]  # diversity and CKA folded into a single pass over the data
    assert list(first) == ["diversity", "cka", "kernels"]
    assert first["diversity"].num_samples == 64 and first["cka"].num_samples == 64
    assert hook_count(run.model) == 0
    again = suite.run_suite(run, probes=["diversity", "cka", "kernels"], limit=64, images=2)
    assert passes == [2]  # all three came from the run folder's cache
    assert (again["cka"].matrix == first["cka"].matrix).all()


def test_unknown_or_inapplicable_probe(tiny_run):
    run = analysis.load_run(tiny_run)
    import pytest

    with pytest.raises(analysis.CollabError, match="unknown probe 'ckaa'"):
        suite.run_suite(run, probes=["ckaa"])


def test_cli_writes_a_self_contained_report(tiny_run, tmp_path):
    import shutil

    shutil.copytree(tiny_run, tmp_path / "run")
    report = tmp_path / "out" / "report.html"
    proc = run_cli(
        "analyze", str(tmp_path / "run"), "--limit", "48", "--report", str(report), "--no-progress"
    )
    assert proc.returncode == 0, proc.stderr
    html = report.read_text()
    assert html.count("<section>") == 7  # training + six probes
    for heading in (
        "Peer word co-occurrence",
        "Agreement and diversity",
        "Representation similarity",
        "Kernel similarity",
        "Through training",
        "Attributions",
    ):
        assert f"<h2>{heading}</h2>" in html
    assert (
        "Plotly.newPlot" in html and "<script src=" not in html
    )  # plotly.js inlined: opens offline


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, heading",
    [
        ("dml-digits", "Kernel similarity"),
        ("dcl-multidigit", "DCL vocabulary"),
        ("anchornet-shapes", "Patch localization"),
        ("divide-cotrain-digits", "Agreement and diversity"),
    ],
)
def test_report_of_each_embedded_run(name, heading, tmp_path):
    import shutil

    from tests.conftest import REPO

    shutil.copytree(REPO / "runs" / name, tmp_path / name)
    report = tmp_path / "report.html"
    proc = run_cli(
        "analyze", str(tmp_path / name), "--limit", "100", "--report", str(report), "--no-progress"
    )
    assert proc.returncode == 0, proc.stderr
    assert f"<h2>{heading}</h2>" in report.read_text()
