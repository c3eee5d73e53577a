"""Markdown tables, and the README's evidence table quoting the shipped sweep's summary.md."""

from analysis.viz.markdown import markdown_table
from analysis.viz.sweep import sweep_markdown
from tests.conftest import REPO


def test_markdown_table_rows_columns_and_escaping():
    text = markdown_table([{"a": "1", "b": "x|y"}, {"a": "2", "b": "z"}])
    assert text.splitlines() == ["| a | b |", "|---|---|", "| 1 | x\\|y |", "| 2 | z |"]
    assert markdown_table([]) == ""


def test_readme_evidence_is_the_shipped_summary_md():
    """The README's table is exactly what `collab sweep` wrote for the shipped sweep."""
    summary = (REPO / "runs" / "sweep-textured-shapes" / "summary.md").read_text()
    readme = (REPO / "README.md").read_text()
    begin = "<!-- begin runs/sweep-textured-shapes/summary.md -->\n"
    end = "<!-- end runs/sweep-textured-shapes/summary.md -->"
    quoted = readme[readme.index(begin) + len(begin) : readme.index(end)]
    assert quoted == summary


def test_sweep_markdown_holds_every_cell_and_claim(tiny_sweep):
    from analysis.probes.sweep_summary import sweep_summary

    summary = sweep_summary(tiny_sweep)
    text = sweep_markdown(summary)
    for cell in summary.cells:
        assert f"| {cell.cell} | {len(cell.seeds)} |" in text
    assert "an ensemble beats its best peer" in text
