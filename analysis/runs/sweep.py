"""The sweep folder: a plan of grid cells x seeds, and where each of its runs lives.

``DIR/sweep.json`` records the plan (the resolved base config, the grid, the seeds) before any
run starts; ``DIR/runs/<cell>/seed-<s>/`` holds each run (an ordinary run folder). Training a
sweep is :func:`analysis.training.sweep.run_sweep`; summarising it is
:mod:`analysis.probes.sweep_summary`. A different plan for the same folder is refused.

A grid key ``preset`` makes whole presets cells: ``--grid preset=independent,dml`` starts each
cell from ``independent.yaml`` / ``dml.yaml`` in the folder of the sweep's CONFIG (or in CONFIG
itself when it is a folder), with the sweep's ``--set`` overrides on top. This is how methods
that need their own model settings (a divided network, cheap students, a shared trunk) share
one sweep. The plan records every preset fully resolved, so editing a preset file later makes
it a different sweep rather than silently changing the runs still to train.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import re
from pathlib import Path
from typing import Any

import yaml

from analysis.config import apply_override, config_from_dict, load_config
from analysis.errors import CollabError
from analysis.methods import METHODS
from analysis.runs.claim import read_manifest
from analysis.runs.layout import checkpoint_path, inside
from analysis.runs.plan_folder import claim_plan_folder, read_plan_file

PLAN = "sweep.json"
RUNS = "runs"
#: The grid key whose values name whole presets (see the module docstring).
PRESET = "preset"


@dataclasses.dataclass(frozen=True)
class SweepPlan:
    """What a sweep trains: ``base`` (a resolved config dict) changed by every grid cell.

    Attributes:
        base: the fully resolved config every run starts from (empty when CONFIG is a folder of
            presets and every cell names one).
        grid: ``(key, values)`` pairs; each value is YAML text as in ``--set key=value``.
        seeds: the ``train.seed`` values every cell is trained with.
        presets: for a ``preset`` grid key, each value's fully resolved config (with the
            sweep's overrides); a cell naming one starts from it instead of ``base``.
    """

    base: dict[str, Any]
    grid: tuple[tuple[str, tuple[str, ...]], ...]
    seeds: tuple[int, ...]
    presets: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    def cells(self) -> list[tuple[str, ...]]:
        """Every combination of grid values, as ``key=value`` assignments, in grid order."""
        keys = [key for key, _ in self.grid]
        combos = itertools.product(*(values for _, values in self.grid))
        return [tuple(f"{k}={v}" for k, v in zip(keys, combo)) for combo in combos]

    def to_json(self) -> dict[str, Any]:
        data = {
            "base": self.base,
            "grid": [[k, list(v)] for k, v in self.grid],
            "seeds": list(self.seeds),
        }
        return data | ({"presets": self.presets} if self.presets else {})

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SweepPlan:
        grid = tuple((str(k), tuple(str(v) for v in values)) for k, values in data["grid"])
        presets = data.get("presets") or {}
        if not isinstance(presets, dict):
            raise TypeError("presets must be a mapping")
        return cls(
            base=data["base"],
            grid=grid,
            seeds=tuple(int(s) for s in data["seeds"]),
            presets={str(k): dict(v) for k, v in presets.items()},
        )


def parse_grid(items: list[str]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """``["method.name=independent,dml"]`` -> ``(("method.name", ("independent", "dml")),)``.

    Values are split at commas outside brackets, so ``model.arch=[a, b],c`` has two values.
    """
    grid = []
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip() or not text.strip():
            raise CollabError(
                f"--grid {item!r} is not KEY=V1,V2,...; e.g. --grid method.name=independent,dml"
            )
        values, depth, start = [], 0, 0
        for i, ch in enumerate(text + ","):
            if ch in "[{":
                depth += 1
            elif ch in "]}":
                depth -= 1
            elif ch == "," and depth == 0:
                values.append(text[start:i].strip())
                start = i + 1
        if any(not v for v in values) or len(set(values)) != len(values):
            raise CollabError(
                f"--grid {item!r} has an empty or repeated value; list each value once"
            )
        grid.append((key.strip(), tuple(values)))
    if len({k for k, _ in grid}) != len(grid):
        raise CollabError("a --grid key is given twice; give each key once with all its values")
    return tuple(grid)


def parse_seeds(text: str) -> tuple[int, ...]:
    """``"0,1,2"`` -> ``(0, 1, 2)``; each seed a whole number >= 0, none repeated."""
    try:
        seeds = tuple(int(s) for s in text.split(","))
    except ValueError:
        raise CollabError(
            f"--seeds {text!r} is not a list of whole numbers; e.g. --seeds 0,1,2"
        ) from None
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise CollabError(f"--seeds {text!r} needs distinct seeds >= 0; e.g. --seeds 0,1,2")
    return seeds


def make_plan(preset: str | Path, grid: list[str], seeds: str, overrides=()) -> SweepPlan:
    """The plan of ``collab sweep PRESET --grid ... --seeds ... --set ...``.

    ``preset`` is a YAML preset, or a folder of presets when the grid has a ``preset`` key.
    Every cell is resolved once here, so a bad value is refused before anything trains.
    """
    preset, parsed = Path(preset), parse_grid(grid)
    names = dict(parsed).get(PRESET, ())
    if preset.is_dir():
        if not names:
            raise CollabError(
                f"{preset} is a folder: a sweep over a folder of presets needs "
                f"--grid {PRESET}=NAME1,NAME2 naming YAML files in it"
            )
        folder, base = preset, {}
    else:
        folder, base = preset.parent, load_config(preset, tuple(overrides)).to_dict()
    presets = {name: _load_preset(folder, name, overrides) for name in names}
    plan = SweepPlan(base=base, grid=parsed, seeds=parse_seeds(seeds), presets=presets)
    for cell in plan.cells():  # every cell must make a valid config before anything trains
        cell_config(plan, cell, plan.seeds[0])
    return plan


def _load_preset(folder: Path, name: str, overrides) -> dict[str, Any]:
    """The resolved config of preset ``name`` (``NAME`` or ``NAME.yaml``) in ``folder``."""
    path = folder / (name if name.endswith((".yaml", ".yml")) else f"{name}.yaml")
    if not path.is_file():
        found = sorted(p.stem for p in folder.glob("*.yaml"))
        raise CollabError(
            f"--grid {PRESET}={name}: there is no {path}; presets in {folder}: "
            f"{', '.join(found) or 'none'}"
        )
    return load_config(path, tuple(overrides)).to_dict()


def cell_name(cell: tuple[str, ...]) -> str:
    """A folder name for a cell: ``method.name=dml`` -> ``method.name=dml``; unsafe characters
    become ``-`` and assignments are joined with ``__``."""
    return "__".join(re.sub(r"[^A-Za-z0-9._=-]+", "-", a).strip("-") for a in cell) or "base"


def cell_config(plan: SweepPlan, cell: tuple[str, ...], seed: int):
    """The config of one run: the base, the cell's assignments, ``train.seed``.

    A ``preset=NAME`` assignment starts from that preset instead of the base (before any other
    assignment of the cell). When a cell sets ``method.name``, the method options that the new
    method does not have are dropped (a DML temperature means nothing to ``independent``); the
    others are kept.
    """
    data = copy.deepcopy(plan.base)
    for assignment in cell:
        key, _, value = assignment.partition("=")
        if key == PRESET:
            data = copy.deepcopy(plan.presets[value])
    if not data:
        raise CollabError(
            f"the sweep has no base config for cell {' '.join(cell)}; give it a {PRESET}= value"
        )
    for assignment in cell:
        key, _, value = assignment.partition("=")
        if key == PRESET:
            continue
        if key == "method.name":
            options = METHODS.get(yaml.safe_load(value)).Options
            known = {f.name for f in dataclasses.fields(options)}
            data["method"] = {k: v for k, v in data["method"].items() if k in known}
        apply_override(data, assignment)
    apply_override(data, f"train.seed={seed}")
    return config_from_dict(data)


def run_path(out: Path, cell: tuple[str, ...], seed: int) -> Path:
    return Path(out) / RUNS / cell_name(cell) / f"seed-{seed}"


def claim_sweep(out: Path, plan: SweepPlan) -> None:
    """Write the plan, or check that ``out`` already holds this very plan."""
    claim_plan_folder(
        out, PLAN, plan.to_json(), kind="sweep", parse=SweepPlan.from_json, same=_SAME
    )


_SAME = "preset, grid, seeds and --set"


def read_plan(out: str | Path) -> SweepPlan:
    """The plan of the sweep in ``out`` (a one-line error when there is none)."""
    return read_plan_file(
        out, PLAN, kind="sweep", parse=SweepPlan.from_json, missing="; run `collab sweep` first"
    )


def drop_resume_state(out: str | Path) -> int:
    """Delete ``checkpoints/last.safetensors`` of every *complete* run of the sweep in ``out``
    and return the bytes freed.

    A finished run never resumes (a rerun of the sweep skips it), so its resume state (weights,
    optimizer momentum, a method's memory banks) is dead weight in a shipped sweep; ``best``
    and the metrics stay. Unfinished runs keep theirs, so the sweep can still continue.
    """
    plan, freed = read_plan(out), 0
    for cell in plan.cells():
        for seed in plan.seeds:
            path = run_path(Path(out), cell, seed)
            last = checkpoint_path(path, "last")
            if last.is_file() and (read_manifest(path) or {}).get("status") == "complete":
                freed += last.stat().st_size
                last.unlink()
    return freed


def is_sweep(path: str | Path) -> bool:
    return (Path(path) / PLAN).is_file()


def list_sweeps(root: str | Path) -> list[Path]:
    """Sweep folders directly under ``root`` (or one level deeper), inside it once resolved."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for child in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        candidates = [child, *sorted(q for q in child.iterdir() if q.is_dir())]
        found += [c for c in candidates if is_sweep(c) and inside(c, root)]
    return found
