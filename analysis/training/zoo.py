"""The embedded default runs and sweeps shipped in ``runs/``, rebuilt deterministically by
``collab zoo`` (one thread per run, fixed seeds)."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from analysis.config import load_config
from analysis.errors import CollabError
from analysis.runs import read_manifest
from analysis.runs.sweep import SweepPlan, drop_resume_state, make_plan, run_path
from analysis.training.sweep import run_sweep
from analysis.training.trainer import Trainer

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]

#: Every zoo run trains on one thread (float reductions then do not depend on the machine's core
#: count) and in NCHW memory order: the shipped runs were trained before release 0.3 made NHWC
#: the CPU default (``train.channels_last=auto``), and pinning it rebuilds them bit for bit.
PINNED = ("train.threads=1", "train.channels_last=false")


@dataclass(frozen=True)
class ZooEntry:
    name: str
    preset: str
    overrides: tuple[str, ...] = ()
    about: str = ""


ZOO = (
    ZooEntry("dml-digits", "configs/dml_digits.yaml", about="DML, 3 ResNet-8 peers on digits"),
    ZooEntry(
        "independent-digits",
        "configs/independent_digits.yaml",
        about="the same 3 peers trained independently (the control for dml-digits)",
    ),
    ZooEntry(
        "divide-cotrain-digits",
        "configs/divide_cotrain_digits.yaml",
        about="a ResNet-8 of width 16 divided into 2 of width 12, co-trained on 2 views",
    ),
    ZooEntry(
        "dcl-multidigit", "configs/dcl_multidigit.yaml", about="a DCL ResNet-8 on two-digit numbers"
    ),
    ZooEntry(
        "anchornet-shapes",
        "configs/anchornet_shapes.yaml",
        about="AnchorNet (padding-free) on shapes",
    ),
)


@dataclass(frozen=True)
class SweepEntry:
    """A shipped sweep: ``collab sweep PRESETS --grid ... --seeds SEEDS --set ...`` into
    ``runs/NAME``, with the resume state of its finished runs dropped (see
    :func:`~analysis.runs.sweep.drop_resume_state`) to keep the repository small."""

    name: str
    presets: str
    grid: tuple[str, ...]
    seeds: str
    overrides: tuple[str, ...] = ()
    about: str = ""

    def plan(self) -> SweepPlan:
        """The plan the zoo trains (:data:`PINNED`, like every zoo entry)."""
        return make_plan(
            REPO / self.presets, list(self.grid), self.seeds, (*self.overrides, *PINNED)
        )

    def command(self) -> str:
        """The ``collab sweep`` command that trains the same sweep (from the repository root)."""
        grid = " ".join(f"--grid {g}" for g in self.grid)
        sets = " ".join(f"--set {o}" for o in (*self.overrides, *PINNED))
        return (
            f"collab sweep {self.presets} {grid} --seeds {self.seeds} --out runs/{self.name} {sets}"
        )


#: The methods of the textured_shapes sweep: the control first (the default control), then the
#: one large network, then every collaborative method.
TEXTURED_SHAPES_PRESETS = (
    "independent",
    "single",
    "dml",
    "divide_cotrain",
    "od_cheap",
    "cl_ilr",
    "one",
    "mcl_okd",
    "intra_cl",
    "joint_decision",
)

SWEEPS = (
    SweepEntry(
        "sweep-textured-shapes",
        "configs/textured_shapes",
        grid=(f"preset={','.join(TEXTURED_SHAPES_PRESETS)}",),
        seeds="0,1,2",
        about="every method on textured_shapes, 3 seeds, the same budget (15 epochs)",
    ),
)


def build_zoo(
    root: str | Path,
    *,
    only: list[str] | None = None,
    progress: bool = True,
    summarize: Callable[[Path], object] | None = None,
) -> list[Path]:
    """Train every zoo entry (or those in ``only``) into ``root/NAME``.

    Each run or sweep is trained into a temporary sibling folder and swapped in only when
    complete, so a failure or a kill never loses what is already shipped. ``summarize`` is
    called with each rebuilt sweep folder before the swap (``collab zoo`` passes the function
    that writes ``summary.csv``, ``differences.csv`` and ``summary.html``; summarising needs
    the probes, which this layer does not import).
    """
    root = Path(root)
    names = {e.name for e in ZOO} | {e.name for e in SWEEPS}
    for name in only or []:
        if name not in names:
            raise CollabError(f"unknown zoo run {name!r}; choose from: {', '.join(sorted(names))}")
    built = []
    for entry in ZOO:
        if only and entry.name not in only:
            continue
        config = load_config(REPO / entry.preset, (*entry.overrides, *PINNED))
        final, tmp = root / entry.name, root / f".{entry.name}.building"
        shutil.rmtree(tmp, ignore_errors=True)
        log.info("building %s from %s", entry.name, entry.preset)
        Trainer(config, tmp, progress=progress).fit()
        built.append(_swap_in(tmp, final))
    for sweep in SWEEPS:
        if only and sweep.name not in only:
            continue
        final, tmp = root / sweep.name, root / f".{sweep.name}.building"
        shutil.rmtree(tmp, ignore_errors=True)
        log.info("building sweep %s: %s", sweep.name, sweep.command())
        _build_sweep(sweep.plan(), tmp, progress=progress)
        if summarize is not None:
            summarize(tmp)
        built.append(_swap_in(tmp, final))
    return built


def _build_sweep(plan: SweepPlan, out: Path, *, progress: bool) -> None:
    run_sweep(plan, out, progress=progress)
    failed = [
        str(run_path(out, cell, seed))
        for cell in plan.cells()
        for seed in plan.seeds
        if (read_manifest(run_path(out, cell, seed)) or {}).get("status") != "complete"
    ]
    if failed:
        raise CollabError(
            f"{len(failed)} runs of the sweep did not complete (first: {failed[0]}); the shipped "
            "sweep is left as it was"
        )
    drop_resume_state(out)


def _swap_in(tmp: Path, final: Path) -> Path:
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    return final
