"""Headline numbers read off probe results: what the app's metrics and comparison tables show.

Small pure functions over finished results (no model, no pass over data), so that pages and
notebooks lay numbers out without computing them.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from analysis.probes.diversity import MEASURES, mean_off_diagonal
from analysis.probes.vocabulary import entropy_bits

if TYPE_CHECKING:
    from analysis.probes import (
        CascadeCurve,
        CKAResult,
        DiversityReport,
        LocalizationScore,
        PeerCooccurrence,
    )


def has_true_boxes(dataset) -> bool:
    """Whether ``dataset`` knows the true box of its items (e.g. ``shapes``)."""
    return hasattr(dataset, "box")


def true_box(dataset, index: int | None) -> tuple[int, int, int, int] | None:
    """The true ``(x0, y0, x1, y1)`` pixel box of item ``index`` of ``dataset``.

    ``None`` when there is no item (``index`` None, e.g. an uploaded image) or the dataset has
    no boxes.
    """
    if index is None or not has_true_boxes(dataset):
        return None
    return dataset.box(int(index))


def cheapest_within(curve: CascadeCurve, *, tolerance: float = 0.01) -> float | None:
    """The lowest relative cost of a cascade threshold whose accuracy is at most ``tolerance``
    below the full model's; ``None`` when no threshold gets that close."""
    close = curve.relative_cost[curve.accuracy >= curve.full_accuracy - tolerance]
    return float(close.min()) if len(close) else None


def versus_random(score: LocalizationScore) -> dict[str, tuple[float, float]]:
    """``{measure: (class-map boxes, random boxes)}`` for the three localization measures."""
    return {
        "Pointing game": (score.pointing, score.random_pointing),
        "Top-1 IoU ≥ 0.5": (score.iou50, score.random_iou50),
        "Mean best IoU": (score.mean_best_iou, score.random_mean_best_iou),
    }


def word_pair_numbers(found: PeerCooccurrence) -> dict[str, float]:
    """Used and possible word pairs of a co-occurrence table and the entropy (bits) of the
    pairs: keys ``used``, ``possible`` (ints) and ``entropy_bits``."""
    counts = found.counts
    return {
        "used": int((counts > 0).sum()),
        "possible": counts.numel(),
        "entropy_bits": entropy_bits(counts.reshape(-1)),
    }


def shared_depth_layers(cka: CKAResult) -> list[str]:
    """Peer 0's probed layers at the depths every peer has (the depths ``cka.peer_matrix``
    accepts for all peers), shallowest first."""
    depths = min(len(cka.indices_of(peer)) for peer in range(cka.num_peers))
    return cka.layers_of(0)[:depths]


def comparison_numbers(div: DiversityReport, cka: CKAResult | None) -> dict[str, float]:
    """One run's headline numbers by row name, for a table comparing runs (NaN when missing):
    peer, ensemble and oracle accuracy, ensemble gain, the mean of every diversity measure over
    peer pairs, and the mean CKA between peers at their last layer."""
    rows = {f"accuracy, peer {k}": acc for k, acc in enumerate(div.peer_acc)}
    rows |= {
        "accuracy, ensemble": div.ensemble_acc,
        "accuracy, oracle": div.oracle_acc,
        "ensemble gain": div.ensemble_gain,
    }
    rows |= {f"mean {MEASURES[m].label}": div.mean(m) for m in MEASURES}
    last = mean_off_diagonal(cka.peer_matrix(-1)) if cka is not None else math.nan
    rows["mean CKA between peers, last layer"] = last
    return rows
