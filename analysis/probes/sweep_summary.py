"""What a sweep shows: per cell the mean and spread over seeds, per cell the paired difference to
the control with a 95% confidence interval.

Every number is the test split at each run's selected epoch (``best``, chosen on validation):
accuracies come from the run's own ``metrics.jsonl``; the mean pairwise agreement of the peers
comes from the ``diversity`` probe on the ``best`` checkpoint (cached in the run folder).

Intervals are Student-t intervals over the paired differences (same seed, cell minus control):
``mean ± t(0.975, n − 1) · sd / √n`` with the sample standard deviation (ddof = 1). With one
common seed there is no interval (NaN). A difference whose interval contains 0 is *not shown by
these seeds*. The t interval assumes the per-seed differences are roughly normal; with 3–5
seeds it is wide, which is the honest answer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from analysis.errors import CollabError
from analysis.probes.suite import compute
from analysis.runs import CONFIG, load_run, read_manifest, read_metrics
from analysis.runs.sweep import SweepPlan, cell_config, cell_name, read_plan, run_path

#: Per-run numbers the summary reports, in table order (accuracies in [0, 1]).
METRICS = ("ensemble_acc", "best_peer_acc", "mean_peer_acc", "ensemble_gain", "agreement")
LABELS = {
    "ensemble_acc": "ensemble accuracy",
    "best_peer_acc": "best-peer accuracy",
    "mean_peer_acc": "mean peer accuracy",
    "ensemble_gain": "ensemble gain (ensemble − best peer)",
    "agreement": "mean pairwise agreement",
}


@dataclass
class RunNumbers:
    """One finished run of the sweep (``values`` keyed by :data:`METRICS`).

    ``ensemble_is_peer`` marks a run whose ensemble output is one of its peers (intra_cl's
    ``ensemble: final``), so its ensemble gain cannot be positive.
    """

    cell: str
    seed: int
    path: str
    values: dict[str, float]
    params: int
    seconds: float
    method: str = ""
    peers: int = 1
    ensemble_is_peer: bool = False


@dataclass
class CellSummary:
    """Mean and sample standard deviation over the seeds of one cell (NaN sd for one seed);
    ``method``, ``peers`` and ``ensemble_is_peer`` as in :class:`RunNumbers`."""

    cell: str
    seeds: list[int]
    mean: dict[str, float]
    sd: dict[str, float]
    params: int
    seconds: float
    method: str = ""
    peers: int = 1
    ensemble_is_peer: bool = False


@dataclass
class Difference:
    """Paired difference ``cell − control`` of one metric over their common seeds."""

    cell: str
    metric: str
    seeds: list[int]
    mean: float
    sd: float
    low: float
    high: float

    @property
    def shown(self) -> bool:
        """True when the 95% interval excludes 0 (the seeds show an effect)."""
        return not math.isnan(self.low) and (self.low > 0 or self.high < 0)


@dataclass
class SweepSummary:
    control: str
    cells: list[CellSummary]
    differences: list[Difference]
    runs: list[RunNumbers] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def run_numbers(path: Path, cell: str, seed: int, *, agreement: bool = True) -> RunNumbers | None:
    """The numbers of one complete run, or None when it is not complete."""
    manifest = read_manifest(path)
    if not manifest or manifest.get("status") != "complete":
        return None
    best = manifest["best_epoch"]
    test = next(r for r in read_metrics(path) if r["split"] == "test" and r["epoch"] == best)
    peers = [float(a) for a in test["peer_acc"]]
    values = {
        "ensemble_acc": float(test["ensemble_acc"]),
        "best_peer_acc": max(peers),
        "mean_peer_acc": sum(peers) / len(peers),
        "ensemble_gain": float(test["ensemble_acc"]) - max(peers),
        "agreement": _agreement(path) if agreement and len(peers) > 1 else math.nan,
    }
    return RunNumbers(
        cell,
        seed,
        str(path),
        values,
        int(manifest["total_params"]),
        float(manifest.get("train_seconds", math.nan)),
        method=str(manifest.get("method", "")),
        peers=len(peers),
        ensemble_is_peer=_ensemble_is_peer(path),
    )


def _ensemble_is_peer(path: Path) -> bool:
    try:
        config = yaml.safe_load((Path(path) / CONFIG).read_text()) or {}
    except (OSError, yaml.YAMLError):
        return False
    return (config.get("method") or {}).get("ensemble") == "final"


def _agreement(path: Path) -> float:
    return compute(load_run(path), "diversity").mean("agreement")


def _mean_sd(xs: list[float]) -> tuple[float, float]:
    mean = sum(xs) / len(xs)
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else math.nan
    return mean, sd


def paired_difference(cell: str, metric: str, diffs: dict[int, float]) -> Difference:
    """Mean, sd and 95% t interval of per-seed differences ``diffs`` (seed -> value)."""
    from scipy import stats  # SciPy loads in ~0.5 s: only when used

    seeds = sorted(diffs)
    mean, sd = _mean_sd([diffs[s] for s in seeds])
    n = len(seeds)
    half = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n) if n > 1 else math.nan
    return Difference(cell, metric, seeds, mean, sd, mean - half, mean + half)


def cell_interval(summary: SweepSummary, cell: str, metric: str) -> Difference:
    """Mean and 95% t interval over the seeds of one cell's ``metric`` (e.g. ``ensemble_gain``:
    does the ensemble beat the best peer?), as a :class:`Difference` from 0."""
    values = {r.seed: r.values[metric] for r in summary.runs if r.cell == cell}
    if not values:
        raise CollabError(f"the sweep has no finished run of cell {cell!r}")
    return paired_difference(cell, metric, values)


def compare_cells(summary: SweepSummary, cell: str, reference: str, metric: str) -> Difference:
    """Paired difference ``cell − reference`` of ``metric`` over their common seeds, for any two
    cells (the summary's own differences are all to the control)."""
    a = {r.seed: r.values[metric] for r in summary.runs if r.cell == cell}
    b = {r.seed: r.values[metric] for r in summary.runs if r.cell == reference}
    common = sorted(set(a) & set(b))
    if not common:
        raise CollabError(f"cells {cell!r} and {reference!r} have no finished seed in common")
    return paired_difference(cell, metric, {s: a[s] - b[s] for s in common})


def summarize(runs: list[RunNumbers], cells: list[str], control: str) -> tuple[list, list]:
    """Cell summaries and the paired differences of every other cell to ``control``."""
    by_cell = {c: {r.seed: r for r in runs if r.cell == c} for c in cells}
    summaries = []
    for c in cells:
        done = by_cell[c]
        if not done:
            continue
        seeds = sorted(done)
        mean, sd = {}, {}
        for m in METRICS:
            mean[m], sd[m] = _mean_sd([done[s].values[m] for s in seeds])
        first = done[seeds[0]]
        seconds = _mean_sd([done[s].seconds for s in seeds])[0]
        summaries.append(
            CellSummary(
                c,
                seeds,
                mean,
                sd,
                first.params,
                seconds,
                method=first.method,
                peers=first.peers,
                ensemble_is_peer=first.ensemble_is_peer,
            )
        )
    differences = []
    for c in cells:
        common = sorted(set(by_cell[c]) & set(by_cell[control]))
        if c == control or not common:
            continue
        for m in METRICS:
            diffs = {s: by_cell[c][s].values[m] - by_cell[control][s].values[m] for s in common}
            differences.append(paired_difference(c, m, diffs))
    return summaries, differences


def control_cell(plan: SweepPlan, control: str | None) -> str:
    """The control's cell name: the cell holding ``control`` (``key=value``), by default the
    first cell that sets ``method.name=independent``, else the first cell whose config trains
    ``independent`` (e.g. ``preset=independent``), else the first cell."""
    names = [cell_name(c) for c in plan.cells()]
    if control is None:
        wanted = [n for c, n in zip(plan.cells(), names) if "method.name=independent" in c]
        wanted = wanted or [
            n
            for c, n in zip(plan.cells(), names)
            if cell_config(plan, c, plan.seeds[0]).method.name == "independent"
        ]
        return (wanted or names)[0]
    matching = [n for c, n in zip(plan.cells(), names) if control in c]
    if len(matching) != 1:
        raise CollabError(
            f"--control {control!r} names {len(matching)} cells; give the KEY=VALUE of one cell"
        )
    return matching[0]


def sweep_summary(
    out: str | Path, *, control: str | None = None, agreement: bool = True
) -> SweepSummary:
    """Summarise the sweep in ``out`` (finished runs only; the others are listed as missing)."""
    plan = read_plan(out)
    runs, missing = [], []
    for cell in plan.cells():
        for seed in plan.seeds:
            path = run_path(Path(out), cell, seed)
            numbers = run_numbers(path, cell_name(cell), seed, agreement=agreement)
            (runs.append(numbers) if numbers else missing.append(str(path)))
    names = [cell_name(c) for c in plan.cells()]
    chosen = control_cell(plan, control)
    cells, differences = summarize(runs, names, chosen)
    return SweepSummary(chosen, cells, differences, runs, missing)


def summary_rows(summary: SweepSummary) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """CSV-ready rows: one per cell, one per (cell, metric) difference."""
    cells = [
        {
            "cell": c.cell,
            "method": c.method,
            "peers": c.peers,
            "seeds": " ".join(map(str, c.seeds)),
            "params": c.params,
            "train_seconds": round(c.seconds, 1),
        }
        | {f"{m}_mean": c.mean[m] for m in METRICS}
        | {f"{m}_sd": c.sd[m] for m in METRICS}
        for c in summary.cells
    ]
    diffs = [
        {
            "cell": d.cell,
            "control": summary.control,
            "metric": d.metric,
            "seeds": " ".join(map(str, d.seeds)),
            "mean": d.mean,
            "sd": d.sd,
            "ci95_low": d.low,
            "ci95_high": d.high,
            "shown": d.shown,
        }
        for d in summary.differences
    ]
    return cells, diffs
