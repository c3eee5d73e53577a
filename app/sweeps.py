"""The Compare page's sweep view: a sweep folder's cells (mean ± sd over seeds) and the paired
differences to its control with 95% intervals, as tables and a forest plot."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from analysis.probes.sweep_summary import LABELS, METRICS, SweepSummary, sweep_summary
from analysis.runs.sweep import list_sweeps
from analysis.viz.sweep import NOT_SHOWN, cell_table, difference_table, forest_plot
from app.common import guarded, runs_root, show


def _stamp(path: Path) -> float:
    """Newest manifest time of the sweep's runs: a finished run refreshes the summary."""
    return max((p.stat().st_mtime for p in path.glob("runs/*/seed-*/manifest.json")), default=0.0)


@st.cache_data(show_spinner="Summarising the sweep (agreement of every run)…", max_entries=8)
def _summary(path: str, stamp: float) -> SweepSummary:
    return sweep_summary(path)


def sweep_panel() -> None:
    """Pick a sweep under the runs root and show its summary."""
    root = runs_root()
    sweeps = {p.relative_to(root).as_posix(): p for p in list_sweeps(root)}
    if not sweeps:
        st.info(f"No sweep folder under {root}; make one with `collab sweep` (see the README).")
        return
    left, right = st.columns(2)
    name = left.selectbox("Sweep", list(sweeps), key="compare_sweep")
    metric = right.selectbox("Metric", METRICS, format_func=LABELS.__getitem__, key="sweep_metric")
    path = sweeps[name]
    summary = guarded(lambda: _summary(str(path), _stamp(path)), what=f"sweep {name}")
    if summary is None:
        return
    seeds = sorted({r.seed for r in summary.runs})
    st.caption(
        f"{len(summary.runs)} finished runs, seeds {', '.join(map(str, seeds))}; test split at "
        "each run's epoch chosen on validation. Intervals: Student-t over paired seeds."
        + (f" {len(summary.missing)} runs are not finished." if summary.missing else "")
    )
    st.subheader("Per cell: mean ± sd over seeds")
    st.dataframe(pd.DataFrame(cell_table(summary)), hide_index=True)
    st.subheader(f"Difference to the control: {summary.control}")
    rows = [d for d in summary.differences if d.metric == metric]
    unshown = [d.cell for d in rows if not d.shown]
    if unshown:
        st.warning(
            f"{LABELS[metric]}: {', '.join(unshown)} — {NOT_SHOWN} (the interval contains 0)."
        )
    show(forest_plot(summary, metric), key=f"forest_{metric}", run=name)
    table = pd.DataFrame(difference_table(summary))
    st.dataframe(table[table["metric"] == LABELS[metric]], hide_index=True)
