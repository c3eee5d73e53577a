"""Every notebook under notebooks/ is committed clean and runs top to bottom."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))
# Appended to the in-memory copy only: proves the kernel ran on this interpreter (the venv).
KERNEL_CHECK = "import sys\nprint(sys.prefix)"


def test_there_are_notebooks():
    assert [p.name for p in NOTEBOOKS][:1] == ["01_quickstart.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs(path: Path):
    nb = nbformat.read(path, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code, "a notebook without code cells tests nothing"
    assert all(not cell.outputs and cell.execution_count is None for cell in code)


@pytest.mark.parametrize(
    "path", [p for p in NOTEBOOKS if p.name != "01_quickstart.ipynb"], ids=lambda p: p.name
)
def test_tutorial_starts_with_a_smoke_parameter_cell(path: Path):
    """Tutorials open with a cell tagged ``parameters`` whose defaults are the smoke setting
    (what ``test_notebook_runs`` executes) and a ``FULL`` switch for real use."""
    nb = nbformat.read(path, as_version=4)
    first = next(cell for cell in nb.cells if cell.cell_type == "code")
    assert "parameters" in first.metadata.get("tags", [])
    params: dict = {}
    exec(first.source, params)  # plain assignments in our own committed notebook
    assert params["FULL"] is False


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path: Path):
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(KERNEL_CHECK))
    client = NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()  # raises CellExecutionError, with the failing cell, on any error

    check = nb.cells[-1].outputs
    assert check and check[0]["text"].strip() == sys.prefix
    errors = [
        out
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
        if out["output_type"] == "error"
    ]
    assert not errors
