"""Train a sweep: every cell of its grid with every seed (see :mod:`analysis.runs.sweep`).

Running the same sweep again continues it: finished runs are skipped, interrupted ones resume
exactly (see :class:`~analysis.training.trainer.Trainer`), missing ones are trained.
"""

from __future__ import annotations

import logging
from pathlib import Path

from analysis.config import config_from_dict
from analysis.errors import CollabError
from analysis.runs.legacy import continued_config
from analysis.runs.sweep import SweepPlan, cell_config, claim_sweep, run_path
from analysis.training.trainer import Trainer

log = logging.getLogger(__name__)


def run_sweep(plan: SweepPlan, out: str | Path, *, progress: bool = False) -> list[Path]:
    """Train every cell x seed of ``plan`` into ``out`` (continuing an interrupted sweep).

    Returns the run folders in plan order. A run that fails (e.g. a NaN loss) is logged and
    left marked failed; the others still train.
    """
    out = Path(out)
    claim_sweep(out, plan)
    paths = []
    for cell in plan.cells():
        for seed in plan.seeds:
            config, path = cell_config(plan, cell, seed), run_path(out, cell, seed)
            continued = continued_config(config.to_dict(), path)
            if continued is None:
                raise CollabError(
                    f"{path} was trained with another config; move it aside to rerun the sweep"
                )
            config = config_from_dict(continued)  # as its release trained it (runs.legacy)
            log.info("sweep: %s seed %d -> %s", " ".join(cell), seed, path)
            try:
                Trainer(config, path, progress=progress).fit(resume=True)
            except CollabError as exc:
                log.warning("sweep: %s failed: %s", path, exc)
            paths.append(path)
    return paths
