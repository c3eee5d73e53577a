"""The papers' claims checked on a sweep: verdicts follow the 95% t intervals, cells are found by
what they train."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from analysis.probes.sweep_claims import (
    CONTRADICTED,
    DIVIDED,
    ENSEMBLE,
    MUTUAL,
    NOT_SHOWN,
    NOT_TESTED,
    SUPPORTED,
    check_claims,
    plain_verdicts,
    verdict,
)
from analysis.probes.sweep_summary import (
    RunNumbers,
    SweepSummary,
    cell_interval,
    compare_cells,
    paired_difference,
    summarize,
)

SEEDS = (0, 1, 2)


def _runs(cell, method, peers, params, per_seed, *, ensemble_is_peer=False):
    """``per_seed``: metric -> three values (one per seed)."""
    runs = []
    for i, seed in enumerate(SEEDS):
        values = {m: per_seed.get(m, (math.nan,) * 3)[i] for m in per_seed}
        values.setdefault("agreement", math.nan)
        values["ensemble_gain"] = values["ensemble_acc"] - values["best_peer_acc"]
        runs.append(
            RunNumbers(cell, seed, "-", values, params, 1.0, method, peers, ensemble_is_peer)
        )
    return runs


def _summary(*cells) -> SweepSummary:
    runs = [r for c in cells for r in c]
    names = list(dict.fromkeys(r.cell for r in runs))
    summaries, differences = summarize(runs, names, names[0])
    return SweepSummary(names[0], summaries, differences, runs)


def _metrics(ens, best, mean, agree=(math.nan,) * 3):
    return {"ensemble_acc": ens, "best_peer_acc": best, "mean_peer_acc": mean, "agreement": agree}


CONTROL = _runs(
    "independent", "independent", 4, 80_000,
    _metrics((0.70, 0.72, 0.71), (0.60, 0.61, 0.63), (0.58, 0.59, 0.60), (0.60, 0.62, 0.61)),
)  # fmt: skip
SINGLE = _runs("single", "independent", 1, 78_000, _metrics(*[(0.70, 0.74, 0.71)] * 3))
DML = _runs(
    "dml", "dml", 4, 80_000,
    # Peers clearly better; agreement up on two seeds, down on one: not shown.
    _metrics((0.73, 0.74, 0.74), (0.66, 0.68, 0.67), (0.65, 0.66, 0.665), (0.70, 0.71, 0.55)),
)  # fmt: skip
DIVIDED_CELL = _runs(
    "dc", "divide_cotrain", 4, 80_080, _metrics((0.60, 0.63, 0.61), (0.5, 0.5, 0.5), (0.5,) * 3)
)
INTRA = _runs(
    "intra", "intra_cl", 3, 100_000, _metrics((0.7,) * 3, (0.7,) * 3, (0.6,) * 3),
    ensemble_is_peer=True,
)  # fmt: skip


def test_intervals_are_student_t_over_seeds():
    summary = _summary(CONTROL, DML)
    gain = cell_interval(summary, "dml", "ensemble_gain")
    values = [0.73 - 0.66, 0.74 - 0.68, 0.74 - 0.67]
    low, high = stats.t.interval(0.95, 2, loc=sum(values) / 3, scale=stats.sem(values))
    assert (gain.low, gain.high) == (pytest.approx(low), pytest.approx(high))
    diff = compare_cells(summary, "dml", "independent", "mean_peer_acc")
    assert diff.mean == pytest.approx((0.07 + 0.07 + 0.065) / 3)


def test_verdicts_follow_the_intervals():
    up = paired_difference("a", "ensemble_acc", {0: 0.1, 1: 0.12, 2: 0.11})
    down = paired_difference("a", "ensemble_acc", {0: -0.1, 1: -0.12, 2: -0.11})
    mixed = paired_difference("a", "ensemble_acc", {0: 0.1, 1: -0.12, 2: 0.11})
    one_seed = paired_difference("a", "ensemble_acc", {0: 0.1})
    assert verdict([up]) == SUPPORTED and verdict([up, up]) == SUPPORTED
    assert verdict([down]) == CONTRADICTED and verdict([up, down]) == CONTRADICTED
    assert verdict([mixed]) == NOT_SHOWN and verdict([up, mixed]) == NOT_SHOWN
    assert verdict([one_seed]) == NOT_SHOWN and verdict([]) == NOT_SHOWN


def test_the_three_claims_on_a_sweep():
    checks = check_claims(_summary(CONTROL, SINGLE, DML, DIVIDED_CELL, INTRA))
    ensemble = [c for c in checks if c.claim == ENSEMBLE]
    # Every cell with an ensemble of peers; not the one network, not intra_cl's final exit.
    assert [c.subject for c in ensemble] == [
        "independent (4 peers)",
        "dml (4 peers)",
        "dc (4 peers)",
    ]
    assert all(c.verdict == SUPPORTED for c in ensemble)
    accuracy, agreement = [c for c in checks if c.claim == MUTUAL]
    assert accuracy.subject == "dml − independent, peer accuracy"
    assert [d.metric for d in accuracy.evidence + agreement.evidence] == [
        "mean_peer_acc",
        "agreement",
    ]
    assert accuracy.verdict == SUPPORTED and agreement.verdict == NOT_SHOWN
    (divided,) = [c for c in checks if c.claim == DIVIDED]
    assert divided.subject == "dc − single" and divided.verdict == CONTRADICTED
    assert "80,080 in 4 networks vs 78,000 in one" in divided.note
    assert "contradicted" in divided.sentence() and "[" in divided.sentence()


def test_claims_without_their_cells_are_not_tested():
    checks = check_claims(_summary(SINGLE))
    assert [c.verdict for c in checks] == [NOT_TESTED] * 3
    assert checks[1].sentence() == f"{MUTUAL} — -: not tested. {checks[1].note}"


def test_plain_verdicts_gather_each_claim():
    checks = check_claims(_summary(CONTROL, SINGLE, DML, DIVIDED_CELL, INTRA))
    lines = plain_verdicts(checks)
    assert lines == [
        f"{ENSEMBLE}: supported (independent (4 peers), dml (4 peers), dc (4 peers)).",
        f"{MUTUAL}: supported for 1 of 2 (dml − independent, peer accuracy); not shown by these"
        " seeds for 1 of 2 (dml − independent, agreement).",
        f"{DIVIDED}: contradicted (dc − single).",
    ]
    mixed = check_claims(
        _summary(CONTROL, INTRA, _runs("x", "dml", 2, 1, _metrics(*[(0.5, 0.6, 0.7)] * 3)))
    )
    assert plain_verdicts(mixed)[0].startswith(f"{ENSEMBLE}: supported for 1 of 2 (independent")
    assert plain_verdicts(check_claims(_summary(SINGLE)))[0] == f"{ENSEMBLE}: not tested."
