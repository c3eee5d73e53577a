"""How the peers' accuracy and diversity evolve over a run's saved epoch checkpoints.

Each ``epoch_NNN`` checkpoint is loaded, run over one split, and summarised by a
:class:`~analysis.probes.diversity.DiversityReport`. Reports are cached per checkpoint in the
run folder (probe ``"diversity"``), so reopening a run, or adding epochs later, only computes
what is new.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import torch
from torch.utils.data import Subset

from analysis.errors import CollabError
from analysis.probes.agreement import collect_predictions
from analysis.probes.cache import cached
from analysis.probes.contract import CHECKPOINTS, forwarding_probe, setting
from analysis.probes.diversity import DiversityReport, diversity_report
from analysis.probes.diversity_measures import MEASURES

log = logging.getLogger(__name__)
_EPOCH = re.compile(r"^epoch_(\d+)$")


@dataclass(frozen=True)
class TrainingDynamics:
    """Accuracy and mean pairwise diversity at E saved epochs (K peers).

    Attributes:
        epochs: E epoch numbers, ascending.
        checkpoints: the E checkpoint names (``epoch_NNN``).
        peer_names: K display names.
        peer_acc: (E, K) float64 accuracy of every peer.
        ensemble_acc: (E,) float64 accuracy of the ensemble.
        oracle_acc: (E,) float64 share of samples some peer gets right.
        measures: measure name (see :data:`~analysis.probes.diversity_measures.MEASURES`) -> (E,)
            float64 mean over peer pairs (NaN for a single peer).
    """

    epochs: list[int]
    checkpoints: list[str]
    peer_names: list[str]
    peer_acc: torch.Tensor
    ensemble_acc: torch.Tensor
    oracle_acc: torch.Tensor
    measures: dict[str, torch.Tensor]

    def series(self, measure: str) -> torch.Tensor:
        """(E,) values of a measure, or of ``"ensemble_acc"`` / ``"oracle_acc"``."""
        if measure in ("ensemble_acc", "oracle_acc"):
            return getattr(self, measure)
        if measure not in self.measures:
            known = sorted(self.measures) + ["ensemble_acc", "oracle_acc"]
            raise KeyError(f"unknown measure {measure!r}; choose one of {known}")
        return self.measures[measure]

    # Convenience views of the measures the brief of this probe names.
    @property
    def agreement(self) -> torch.Tensor:
        return self.measures["agreement"]

    @property
    def kappa(self) -> torch.Tensor:
        return self.measures["kappa"]

    @property
    def js_divergence(self) -> torch.Tensor:
        return self.measures["js_divergence"]

    @property
    def disagreement(self) -> torch.Tensor:
        return self.measures["disagreement"]


def epoch_checkpoints(names: Sequence[str]) -> list[tuple[int, str]]:
    """``(epoch, name)`` of the ``epoch_NNN`` names among ``names``, by ascending epoch."""
    found = [(int(m.group(1)), n) for n in names if (m := _EPOCH.match(n))]
    return sorted(found)


def dynamics_from_reports(
    epochs: Sequence[int], reports: Sequence[DiversityReport], *, checkpoints: Sequence[str] = ()
) -> TrainingDynamics:
    """Stack one :class:`DiversityReport` per epoch into a :class:`TrainingDynamics`.

    Args:
        epochs: E epoch numbers, in the order of ``reports``.
        reports: E reports of the same K peers.
        checkpoints: E checkpoint names (default ``epoch_NNN`` from ``epochs``).
    """
    if len(epochs) != len(reports) or not reports:
        raise ValueError(f"need one report per epoch, got {len(reports)} for {len(epochs)} epochs")
    names = list(checkpoints) or [f"epoch_{e:03d}" for e in epochs]

    def column(values: list[float]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.float64)

    return TrainingDynamics(
        epochs=[int(e) for e in epochs],
        checkpoints=names,
        peer_names=list(reports[0].peer_names),
        peer_acc=torch.tensor([r.peer_acc for r in reports], dtype=torch.float64),
        ensemble_acc=column([r.ensemble_acc for r in reports]),
        oracle_acc=column([r.oracle_acc for r in reports]),
        measures={m: column([r.mean(m) for r in reports]) for m in MEASURES},
    )


def _report_at(
    run: Any,
    name: str,
    dataset,
    *,
    split: str,
    limit: int | None,
    batch_size: int,
    device: str,
    use_cache: bool,
) -> DiversityReport:
    """The diversity report of checkpoint ``name`` (from the cache when possible)."""

    def compute() -> DiversityReport:
        log.info("diversity of %s at %s (%s split)", run.path, name, split)
        model = run.load_checkpoint(name)
        preds = collect_predictions(model, dataset, batch_size=batch_size, device=device)
        return diversity_report(preds, peer_names=run.peer_names)

    if not use_cache:
        return compute()
    at_checkpoint = SimpleNamespace(path=run.path, checkpoint=name)
    args = {"split": split, "limit": limit}
    return cached(at_checkpoint, "diversity", args, DiversityReport, compute)


def training_dynamics(
    run: Any,
    *,
    split: str = "test",
    checkpoints: Sequence[str] | None = None,
    limit: int | None = None,
    batch_size: int = 256,
    device: str = "cpu",
    use_cache: bool = True,
) -> TrainingDynamics:
    """Accuracy and diversity of ``run`` at each of its saved epoch checkpoints.

    Args:
        run: a loaded :class:`analysis.Run`.
        split: ``"test"`` or ``"train"``.
        checkpoints: ``epoch_NNN`` names to use; default every epoch checkpoint of the run.
        limit: use only the first ``limit`` samples of the split (all by default).
        batch_size: samples per forward pass.
        device: where the forward passes run.
        use_cache: read and write per-checkpoint results in the run folder.

    Raises:
        CollabError: if the run has no epoch checkpoints (or a requested one is missing).
    """
    available = epoch_checkpoints(run.checkpoints)
    if checkpoints is not None:
        missing = sorted(set(checkpoints) - {n for _, n in available})
        if missing:
            raise CollabError(
                f"run {run.path} has no checkpoint {missing[0]}; "
                f"choose among {[n for _, n in available]}"
            )
        available = [(e, n) for e, n in available if n in set(checkpoints)]
    if not available:
        raise CollabError(
            f"run {run.path} has no epoch_NNN checkpoints; retrain it with "
            "--set train.save_every=1 (or another period) to follow it through training"
        )
    dataset = run.dataset(split)
    if limit is not None:
        dataset = Subset(dataset, range(min(limit, len(dataset))))
    reports = [
        _report_at(
            run,
            name,
            dataset,
            split=split,
            limit=limit,
            batch_size=batch_size,
            device=device,
            use_cache=use_cache,
        )
        for _, name in available
    ]
    return dynamics_from_reports(
        [e for e, _ in available], reports, checkpoints=[n for _, n in available]
    )


@dataclass(frozen=True)
class DynamicsOptions:
    """Options of the dynamics probe: the arguments of :func:`training_dynamics`."""

    split: str = "test"
    limit: int | None = None
    checkpoints: Sequence[str] | None = None
    batch_size: int = setting(256)
    device: str = setting("cpu")
    use_cache: bool = setting(True)


run_dynamics = forwarding_probe(
    "dynamics",
    training_dynamics,
    reads=CHECKPOINTS,
    options=DynamicsOptions,
    result=TrainingDynamics,
    needs=("epoch_checkpoints",),
    about="accuracy and diversity through training",
    cached=False,  # it caches one diversity report per checkpoint itself
)
