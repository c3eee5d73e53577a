"""The papers' headline claims, checked against a sweep: every verdict is read off 95% intervals.

Three claims the collaborative-learning papers make, and the cells of a sweep that test them:

1. **An ensemble beats its best peer.** Every cell with several peers whose ensemble combines
   them (not a cell whose output *is* one of its peers, like intra_cl's final exit): the
   interval over the seeds of its ensemble gain, ensemble − best peer.
2. **Mutual learning raises each peer's accuracy and the peers' agreement.** The DML cell −
   the control (independent peers), paired by seed, on mean peer accuracy and, as a second
   check, on mean pairwise agreement (the two halves can disagree).
3. **S small networks co-trained beat one large one at equal parameters.** The
   Divide-and-Co-training cell (one network divided into S) − the same network trained alone
   (method independent, one peer), paired by seed, on the deployed (ensemble) accuracy; the
   note gives both parameter counts.

A verdict is *supported* when every interval the claim rests on lies above 0, *contradicted*
when one lies below 0, and otherwise *not shown by these seeds* (an interval contains 0, or
there is too few seeds for one). The cells are found by what they train (method, peers), so
any sweep holding them can be checked; a claim whose cells are missing is *not tested*.
"""

from __future__ import annotations

from dataclasses import dataclass

from analysis.probes.sweep_summary import (
    CellSummary,
    Difference,
    SweepSummary,
    cell_interval,
    compare_cells,
)

SUPPORTED = "supported"
CONTRADICTED = "contradicted"
NOT_SHOWN = "not shown by these seeds"
NOT_TESTED = "not tested"

ENSEMBLE = "an ensemble beats its best peer"
MUTUAL = "mutual learning raises each peer's accuracy and the peers' agreement"
DIVIDED = "S small networks co-trained beat one large one at equal parameters"


@dataclass
class ClaimCheck:
    """One claim checked on one comparison.

    Attributes:
        claim: the claim, in words (:data:`ENSEMBLE`, :data:`MUTUAL`, :data:`DIVIDED`).
        subject: what was compared, e.g. ``"preset=dml − preset=independent"``.
        verdict: :data:`SUPPORTED`, :data:`CONTRADICTED`, :data:`NOT_SHOWN` or :data:`NOT_TESTED`.
        evidence: the intervals the verdict rests on (differences in [0, 1] units).
        note: what else a reader needs (parameter counts, why a claim was not tested).
    """

    claim: str
    subject: str
    verdict: str
    evidence: list[Difference]
    note: str = ""

    def sentence(self) -> str:
        """The check in one plain sentence, with its intervals in percentage points."""
        parts = [
            f"{d.metric} {100 * d.mean:+.2f} [{100 * d.low:+.2f}, {100 * d.high:+.2f}]"
            for d in self.evidence
        ]
        if parts:
            seeds = min(len(d.seeds) for d in self.evidence)
            parts = [f" ({'; '.join(parts)} points, 95% t, {seeds} seeds)"]
        note = f" {self.note}" if self.note else ""
        return f"{self.claim} — {self.subject}: {self.verdict}{''.join(parts)}.{note}"


def verdict(intervals: list[Difference]) -> str:
    """Supported if every interval is above 0, contradicted if one is below, else not shown."""
    if any(d.high < 0 for d in intervals):
        return CONTRADICTED
    if intervals and all(d.shown and d.low > 0 for d in intervals):
        return SUPPORTED
    return NOT_SHOWN


def check_claims(summary: SweepSummary) -> list[ClaimCheck]:
    """Check the three claims on ``summary`` (see the module docstring): one check per
    ensemble cell for claim 1, one per half of claim 2 (peer accuracy, agreement), then
    claim 3."""
    return [*_ensemble_checks(summary), *_mutual_checks(summary), _divided_check(summary)]


def _ensemble_checks(summary: SweepSummary) -> list[ClaimCheck]:
    cells = [c for c in summary.cells if c.peers > 1 and not c.ensemble_is_peer]
    if not cells:
        return [ClaimCheck(ENSEMBLE, "-", NOT_TESTED, [], "no cell has an ensemble of peers")]
    checks = []
    for c in cells:
        gain = cell_interval(summary, c.cell, "ensemble_gain")
        checks.append(ClaimCheck(ENSEMBLE, f"{c.cell} ({c.peers} peers)", verdict([gain]), [gain]))
    return checks


def _mutual_checks(summary: SweepSummary) -> list[ClaimCheck]:
    dml = _first(summary, lambda c: c.method == "dml")
    control = _first(summary, lambda c: c.cell == summary.control)
    if dml is None or control is None or control.method != "independent" or control.peers < 2:
        return [
            ClaimCheck(
                MUTUAL, "-", NOT_TESTED, [], "needs a dml cell and an independent control of peers"
            )
        ]
    checks = []
    for metric, what in (("mean_peer_acc", "peer accuracy"), ("agreement", "agreement")):
        diff = compare_cells(summary, dml.cell, control.cell, metric)
        checks.append(
            ClaimCheck(MUTUAL, f"{dml.cell} − {control.cell}, {what}", verdict([diff]), [diff])
        )
    return checks


def _divided_check(summary: SweepSummary) -> ClaimCheck:
    divided = _first(summary, lambda c: c.method == "divide_cotrain")
    single = _first(summary, lambda c: c.method == "independent" and c.peers == 1)
    if divided is None or single is None:
        return ClaimCheck(
            DIVIDED,
            "-",
            NOT_TESTED,
            [],
            "needs a divide_cotrain cell and one network trained alone",
        )
    evidence = [compare_cells(summary, divided.cell, single.cell, "ensemble_acc")]
    ratio = divided.params / single.params
    note = (
        f"Parameters: {divided.params:,} in {divided.peers} networks vs {single.params:,} in one "
        f"({ratio:.2f}x)."
    )
    if abs(ratio - 1) > 0.15:
        note += " Not equal parameters: read the comparison with that in mind."
    return ClaimCheck(DIVIDED, f"{divided.cell} − {single.cell}", verdict(evidence), evidence, note)


def _first(summary: SweepSummary, wanted) -> CellSummary | None:
    return next((c for c in summary.cells if wanted(c)), None)


def plain_verdicts(checks: list[ClaimCheck]) -> list[str]:
    """One plain sentence per claim, gathering its checks: the verdict when they all agree,
    else how many comparisons each verdict got (and which)."""
    lines = []
    for claim in dict.fromkeys(c.claim for c in checks):
        mine = [c for c in checks if c.claim == claim]
        by_verdict: dict[str, list[str]] = {}
        for c in mine:
            by_verdict.setdefault(c.verdict, []).append(c.subject)
        if len(by_verdict) == 1:
            (only,) = by_verdict
            where = f" ({', '.join(by_verdict[only])})" if only != NOT_TESTED else ""
            lines.append(f"{claim}: {only}{where}.")
            continue
        parts = [
            f"{v} for {len(subjects)} of {len(mine)} ({', '.join(subjects)})"
            for v, subjects in by_verdict.items()
        ]
        lines.append(f"{claim}: {'; '.join(parts)}.")
    return lines
