"""Figures and tables of a sweep summary: mean ± sd per cell, a forest plot of the paired
differences to the control with their 95% intervals, the papers' claims checked; and the files
``collab sweep`` leaves in the sweep folder (:func:`write_sweep_summary`)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import plotly.graph_objects as go

from analysis.probes.sweep_claims import ClaimCheck, check_claims, plain_verdicts
from analysis.probes.sweep_summary import (
    LABELS,
    METRICS,
    SweepSummary,
    summary_rows,
    sweep_summary,
)
from analysis.viz.markdown import markdown_table
from analysis.viz.report import Section, write_report

NOT_SHOWN = "not shown by these seeds"


def _pct(x: float, sd: float | None = None) -> str:
    if math.isnan(x):
        return "–"
    text = f"{100 * x:.2f}"
    return text if sd is None else f"{text} ± {'–' if math.isnan(sd) else f'{100 * sd:.2f}'}"


def cell_table(summary: SweepSummary) -> list[dict[str, str]]:
    """One row per cell: seeds, then mean ± sd (in %) of every metric, parameters, time."""
    return [
        {"cell": c.cell, "seeds": str(len(c.seeds))}
        | {LABELS[m] + " %": _pct(c.mean[m], c.sd[m]) for m in METRICS}
        | {"parameters": f"{c.params:,}", "train s (mean)": f"{c.seconds:.0f}"}
        for c in summary.cells
    ]


def difference_table(summary: SweepSummary) -> list[dict[str, str]]:
    """One row per (cell, metric): paired mean difference and 95% interval in points."""
    return [
        {
            "cell − control": f"{d.cell} − {summary.control}",
            "metric": LABELS[d.metric],
            "seeds": str(len(d.seeds)),
            "difference (points)": _pct(d.mean),
            "95% interval (t)": f"[{_pct(d.low)}, {_pct(d.high)}]",
            "verdict": "shown" if d.shown else NOT_SHOWN,
        }
        for d in summary.differences
    ]


def forest_plot(summary: SweepSummary, metric: str = "ensemble_acc") -> go.Figure:
    """Paired differences (points) of ``metric`` with 95% intervals; a line at 0."""
    rows = [d for d in summary.differences if d.metric == metric]
    fig = go.Figure()
    for d in rows:
        half = [100 * (d.high - d.mean)] if not math.isnan(d.high) else None
        fig.add_trace(
            go.Scatter(
                x=[100 * d.mean],
                y=[d.cell],
                mode="markers",
                marker={"size": 11, "color": "#1f77b4" if d.shown else "#999999"},
                error_x={"type": "data", "array": half, "visible": half is not None},
                name="shown" if d.shown else NOT_SHOWN,
                hovertemplate=f"{d.cell}: %{{x:.2f}} points ({len(d.seeds)} seeds)<extra></extra>",
            )
        )
    fig.add_vline(x=0, line_dash="dash", line_color="black")
    fig.update_layout(
        title=f"{LABELS[metric]}: difference to {summary.control} (95% t interval)",
        xaxis_title="difference (percentage points)",
        showlegend=False,
        height=120 + 50 * max(len(rows), 1),
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
    )
    return fig


def claims_table(checks: list[ClaimCheck]) -> list[dict[str, str]]:
    """One row per claim check: the claim, what was compared, the verdict and its intervals."""
    return [
        {
            "claim": c.claim,
            "compared": c.subject,
            "verdict": c.verdict,
            "95% intervals (points)": "; ".join(
                f"{LABELS[d.metric]} {_pct(d.mean)} [{_pct(d.low)}, {_pct(d.high)}]"
                for d in c.evidence
            )
            or "–",
            "note": c.note,
        }
        for c in checks
    ]


def sweep_sections(summary: SweepSummary) -> list[Section]:
    """The sweep report: the cell table, the differences, a forest plot per metric."""
    text = (
        "Test accuracy at each run's best epoch (chosen on the validation split). Intervals are "
        "Student-t over paired per-seed differences; an interval containing 0 is "
        f"'{NOT_SHOWN}'."
    )
    missing = f" Not finished yet: {len(summary.missing)} runs." if summary.missing else ""
    return [
        Section("Per cell: mean ± sd over seeds", text + missing, table=cell_table(summary)),
        Section(
            f"Paired differences to the control ({summary.control})",
            table=difference_table(summary),
            figures=[
                forest_plot(summary, m) for m in ("ensemble_acc", "best_peer_acc", "agreement")
            ],
        ),
        Section(
            "The papers' claims at this scale",
            "Each verdict is read off the 95% intervals above (supported: every interval above 0; "
            "contradicted: one below 0).",
            table=claims_table(check_claims(summary)),
        ),
    ]


def sweep_markdown(summary: SweepSummary, metric: str = "ensemble_acc") -> str:
    """The sweep as Markdown (``summary.md``): the cell table, the paired differences of
    ``metric`` to the control, and the papers' claims in plain sentences."""
    diffs = [r for r in difference_table(summary) if r["metric"] == LABELS[metric]]
    claims = "\n".join(f"- {line}" for line in plain_verdicts(check_claims(summary)))
    return (
        f"{markdown_table(cell_table(summary))}\n"
        f"Paired differences to `{summary.control}`, {LABELS[metric]} (95% t intervals):\n\n"
        f"{markdown_table(diffs)}\n"
        f"The papers' claims at this scale:\n\n{claims}\n"
    )


def write_sweep_summary(out: str | Path, *, control: str | None = None) -> SweepSummary:
    """Summarise the sweep in ``out`` and write ``summary.csv`` (one row per cell),
    ``differences.csv`` (one row per cell and metric), ``summary.md`` (:func:`sweep_markdown`)
    and ``summary.html`` into it.

    Args:
        out: the sweep folder.
        control: ``KEY=VALUE`` of the control cell (default: see
            :func:`~analysis.probes.sweep_summary.control_cell`).

    Returns:
        The :class:`SweepSummary` written (its ``missing`` lists unfinished runs).
    """
    out = Path(out)
    summary = sweep_summary(out, control=control)
    for name, rows in zip(("summary.csv", "differences.csv"), summary_rows(summary)):
        if rows:
            with open(out / name, "w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
    (out / "summary.md").write_text(sweep_markdown(summary))
    write_report(out / "summary.html", f"CollabLens sweep: {out.name}", sweep_sections(summary))
    return summary
