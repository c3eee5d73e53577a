"""Width search by function-preserving widening (issue #11, "functionally incremental search").

Start from the config's network, trained ``epochs_per_step`` epochs. At every step, propose
widening each stage by ``step`` planes (Net2WiderNet, :mod:`analysis.models.widen`, so every
proposal starts computing exactly what the current network computes), drop proposals over the
parameter budget, and train each remaining one ``epochs_per_step`` more epochs from the current
``best`` weights. The control ``same`` (the current widths, trained just as long from the same
weights) says what more training alone gives. The proposal kept is the one with the largest
validation gain over the control per added parameter; when none beats the control, the one with
the best validation accuracy (fewest parameters on a tie). The search stops when no proposal
fits the budget.

Selection uses the validation split only (``data.val_fraction`` > 0; each run's ``best_acc``,
the score of ``train.select`` on it); the test split is never read here. Every step trains with
the same ``train.seed + step`` for all its proposals and its control (same batches, same
augmentations), so they differ only in their widths.

Resuming: the log ``search.jsonl`` holds finished steps; running the same search again skips
them, skips finished runs of the step in progress and resumes its interrupted ones exactly.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from analysis.config import Config, config_from_dict
from analysis.data import build_dataset
from analysis.errors import CollabError
from analysis.methods import create_method
from analysis.models import count_parameters
from analysis.models.widen import STAGES, stage_groups, stage_planes, widened_widths
from analysis.runs import read_manifest
from analysis.runs.legacy import continued_config
from analysis.runs.search import (
    SearchPlan,
    append_log,
    claim_search,
    read_log,
    step_config,
    step_path,
    width_rule,
)
from analysis.training.callbacks import Callback
from analysis.training.trainer import Trainer
from analysis.training.warm_start import peer_networks, widened_weights

log = logging.getLogger(__name__)


def run_search(
    plan: SearchPlan,
    out: str | Path,
    *,
    progress: bool = False,
    callbacks: Sequence[Callback] = (),
) -> dict[str, Any]:
    """Run (or continue) the search ``plan`` in ``out``; returns the log's ``done`` record:
    the chosen ``widths``, their ``params``, ``val_acc``, ``run`` and the ``--set`` rule."""
    out = Path(out)
    claim_search(out, plan)
    records = read_log(out)
    if records and records[-1].get("done"):
        return records[-1]
    search = _Search(plan, out, progress=progress, callbacks=callbacks)
    if not records:
        records.append(search.start())
        append_log(out, records[-1])
    current = records[-1]
    while (record := search.step(current)) is not None:
        append_log(out, record)
        current = record
    done = {
        "done": True,
        **{k: current[k] for k in ("widths", "params", "val_acc", "run")},
        "steps": current["step"],
        "set": width_rule(current["widths"]),
    }
    append_log(out, done)
    log.info("search done: %s (%d parameters)", done["set"], done["params"])
    return done


class _Search:
    """The steps of one search (state lives in the log, not here)."""

    def __init__(self, plan: SearchPlan, out: Path, *, progress: bool, callbacks) -> None:
        self.plan, self.out, self.progress, self.callbacks = plan, out, progress, callbacks
        cfg = step_config(plan, plan.base["model"]["options"]["widths"], 0)
        self.data = build_dataset(
            cfg.data.name,
            root=cfg.data.root,
            download=cfg.data.download,
            image_size=cfg.data.image_size,
            seed=cfg.train.seed,
        )
        for net in peer_networks(self._model(cfg)):  # refuse what cannot be widened up front
            stage_planes(net)

    def _model(self, config: Config):
        return create_method(config.method).build_model(config.model, self.data)

    def _val_acc(self, run: Path) -> float | None:
        manifest = read_manifest(run) or {}
        return manifest.get("best_acc") if manifest.get("status") == "complete" else None

    def _train(self, config: Config, run: Path, weights=None) -> float | None:
        """Train (or finish) one run; its validation score, or None if it failed."""
        continued = continued_config(config.to_dict(), run)  # as its release trained it
        config = config if continued is None else config_from_dict(continued)
        try:
            trainer = Trainer(
                config, run, callbacks=self.callbacks, progress=self.progress, init_weights=weights
            )
            trainer.fit(resume=True)
        except CollabError as exc:
            log.warning("search: %s failed: %s", run, exc)
        return self._val_acc(run)

    def _rel(self, run: Path) -> str:
        return run.relative_to(self.out).as_posix()

    def start(self) -> dict[str, Any]:
        widths = list(self.plan.base["model"]["options"]["widths"])
        config = step_config(self.plan, widths, 0)
        params = count_parameters(self._model(config))
        if params > self.plan.budget:
            raise CollabError(
                f"the start network {widths} already has {params:,} parameters, more than "
                f"--budget {self.plan.budget:,}; start narrower (--set {width_rule(widths)})"
            )
        run = step_path(self.out, 0, "start")
        acc = self._train(config, run)
        if acc is None:
            raise CollabError(f"the start network failed to train (see {run}); fix the config")
        rel = self._rel(run)
        log.info("search step 0: %s, %d parameters, val %.4f", widths, params, acc)
        return {
            "step": 0,
            "chosen": "start",
            "widths": widths,
            "params": params,
            "val_acc": acc,
            "run": rel,
        }

    def step(self, current: dict[str, Any]) -> dict[str, Any] | None:
        """Train the proposals of the step after ``current``; None when none fits the budget."""
        k, widths = current["step"] + 1, current["widths"]
        same_cfg = step_config(self.plan, widths, k)
        same_model = self._model(same_cfg)
        proposals, skipped = [], []
        for stage in STAGES:
            new = widened_widths(widths, stage, widths[stage - 1] + self.plan.step)
            config = step_config(self.plan, new, k)
            target = self._model(config)
            entry = {"name": f"stage-{stage}", "stage": stage, "widths": new}
            entry["params"] = count_parameters(target)
            why = _unwidenable(same_model, stage)
            if why is None and entry["params"] > self.plan.budget:
                why = "over budget"
            elif why is None and entry["params"] <= current["params"]:
                why = "no more parameters"
            if why is None:
                proposals.append((entry, config, target))
            else:
                skipped.append({**entry, "why": why})
        if not proposals:
            return None
        prev = self.out / current["run"]
        same_run = step_path(self.out, k, "same")
        same_weights = widened_weights(prev, same_model, None, noise=0.0, seed=k)
        same_acc = self._train(same_cfg, same_run, same_weights)
        baseline = current["val_acc"] if same_acc is None else same_acc
        candidates = []
        for entry, config, target in proposals:
            run = step_path(self.out, k, entry["name"])
            weights = widened_weights(prev, target, entry["stage"], noise=self.plan.noise, seed=k)
            acc = self._train(config, run, weights)
            gain = (
                None
                if acc is None
                else (acc - baseline) / (entry["params"] - current["params"]) * 1000
            )
            candidates.append(
                {**entry, "val_acc": acc, "gain_per_kparam": gain, "run": self._rel(run)}
            )
        chosen, rule = choose(candidates)
        log.info(
            "search step %d: %s -> %s, %d parameters, val %.4f (same %s)",
            k,
            chosen["name"],
            chosen["widths"],
            chosen["params"],
            chosen["val_acc"],
            same_acc,
        )
        return {
            "step": k,
            "from": widths,
            "same": {"run": self._rel(same_run), "params": current["params"], "val_acc": same_acc},
            "candidates": candidates,
            "skipped": skipped,
            "chosen": chosen["name"],
            "rule": rule,
            **{key: chosen[key] for key in ("widths", "params", "val_acc", "run")},
        }


def _unwidenable(model, stage: int) -> str | None:
    """Why stage ``stage`` of ``model``'s peers cannot be widened (None if it can)."""
    try:
        for net in peer_networks(model):
            stage_groups(net, stage)
    except CollabError as exc:
        return str(exc)
    return None


def choose(candidates: list[dict[str, Any]]) -> tuple[dict[str, Any], str]:
    """The proposal kept: the largest positive gain over the control per added parameter
    (rule ``gain``), else the best validation accuracy (rule ``accuracy``); ties go to fewer
    parameters, then to the earlier stage. Failed proposals (no accuracy) are never kept."""
    trained = [c for c in candidates if c["val_acc"] is not None]
    if not trained:
        raise CollabError("every proposal of this step failed to train; see the runs' manifests")
    best_gain = max(trained, key=lambda c: (c["gain_per_kparam"], -c["params"], -c["stage"]))
    if best_gain["gain_per_kparam"] > 0:
        return best_gain, "gain"
    return max(trained, key=lambda c: (c["val_acc"], -c["params"], -c["stage"])), "accuracy"
