"""The width-search folder: its plan, its log, and where each of its runs lives.

``DIR/search.json`` records the plan (the resolved start config, the parameter budget, the
widening step, the epochs per step, the noise) before anything trains; ``DIR/search.jsonl``
gets one line per finished step and a last ``done`` line; ``DIR/steps/step-NN/NAME/`` holds
every network trained at step NN (ordinary run folders): ``start`` at step 0, then ``same``
(the current widths, trained on as the control) and ``stage-S`` (stage S widened) per step.
Planning a search is :func:`plan_search`; training it is
:func:`analysis.training.search.run_search`. A different plan for the same folder is refused,
and a folder holding anything else is never written into.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from analysis.config import Config, config_from_dict, load_config
from analysis.errors import CollabError
from analysis.methods import create_method
from analysis.models import count_parameters, create_model
from analysis.models.widen import stage_planes
from analysis.runs.plan_folder import claim_plan_folder, read_plan_file

PLAN, LOG, STEPS = "search.json", "search.jsonl", "steps"


@dataclasses.dataclass(frozen=True)
class SearchPlan:
    """What a width search does.

    Attributes:
        base: the fully resolved config of the start network (``model.options.widths`` set).
        budget: the most parameters (all peers, as ``count_parameters``) a network may have.
        step: planes added to one stage per proposal.
        epochs_per_step: epochs every proposal (and the start network) is trained for.
        noise: the widening noise (see :mod:`analysis.models.widen`). It preserves the function
            like 0 does, but 0 keeps every copied unit identical to its original however long
            it trains (same weights, same gradients), so a widening adds parameters and no
            capacity: searches need it above 0 (default 0.1).
    """

    base: dict[str, Any]
    budget: int
    step: int
    epochs_per_step: int
    noise: float

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SearchPlan:
        return cls(
            base=dict(data["base"]),
            budget=int(data["budget"]),
            step=int(data["step"]),
            epochs_per_step=int(data["epochs_per_step"]),
            noise=float(data["noise"]),
        )


def parse_count(text: str) -> int:
    """A parameter count as written on the command line: ``50000``, ``50k``, ``1.2M``."""
    scale = {"k": 1_000, "m": 1_000_000}.get(text.strip()[-1:].lower(), 1)
    digits = text.strip()[:-1] if scale > 1 else text.strip()
    try:
        value = float(digits.replace("_", "").replace(",", ""))
    except ValueError:
        value = 0.0
    if not value * scale >= 1:
        raise CollabError(f"--budget {text!r} is not a parameter count; e.g. 50000, 50k or 1.2M")
    return int(value * scale)


def config_widths(config: Config) -> list[int]:
    """The per-stage planes ``[w1, w2, w3]`` of ``config``'s network (one arch for all peers)."""
    arch = config.model.arch
    names = set(arch) if isinstance(arch, list) else {arch}
    if len(names) != 1:
        raise CollabError(
            "width search needs one architecture for every peer; set model.arch to one name"
        )
    net = create_model(names.pop(), num_classes=2, in_chans=3, **config.model.options)
    return stage_planes(net)


def plan_search(
    preset: str | Path,
    *,
    budget: int,
    step: int = 8,
    epochs_per_step: int = 1,
    noise: float = 0.1,
    overrides: Sequence[str] = (),
) -> SearchPlan:
    """The plan of ``collab search PRESET --budget ... --set ...`` (checked before training)."""
    config = load_config(preset, tuple(overrides))
    for name, value in (
        ("--budget", budget),
        ("--step", step),
        ("--epochs-per-step", epochs_per_step),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise CollabError(f"{name} must be a positive whole number, got {value!r}")
    if not noise >= 0:
        raise CollabError(f"--noise must be 0 or more, got {noise!r}; e.g. --noise 0.1")
    if config.data.val_fraction <= 0:
        raise CollabError(
            "width search chooses on the validation split, but data.val_fraction is 0; "
            "set data.val_fraction=0.1 (the test split is never used to choose)"
        )
    base = config.to_dict()
    base["model"]["options"] = {**base["model"]["options"], "widths": config_widths(config)}
    plan = SearchPlan(base, budget, step, epochs_per_step, float(noise))
    step_config(plan, base["model"]["options"]["widths"], 0)  # a bad value is named now
    return plan


def step_config(plan: SearchPlan, widths: list[int], step: int) -> Config:
    """The config of a network with ``widths`` trained at ``step``."""
    data = copy.deepcopy(plan.base)
    data["model"]["options"]["widths"] = list(widths)
    data["train"]["epochs"] = plan.epochs_per_step
    data["train"]["seed"] = plan.base["train"]["seed"] + step
    return config_from_dict(data)


def parameters(plan: SearchPlan, widths: list[int], data: Any) -> int:
    """Trainable parameters (all peers) of the model a run of ``plan`` with ``widths`` builds;
    ``data`` gives the shape (a ``DataBundle`` or anything with its ``num_classes``,
    ``in_chans``, ``mean``, ``std``)."""
    config = step_config(plan, widths, 0)
    return count_parameters(create_method(config.method).build_model(config.model, data))


def uniform_widths(plan: SearchPlan, budget: int, data: Any) -> list[int]:
    """The widest ``[w, 2w, 4w]`` (the width rule of the CIFAR ResNets and WRNs) whose model
    has at most ``budget`` parameters: the uniform network a search is compared with."""
    best, w = None, 1
    while parameters(plan, [w, 2 * w, 4 * w], data) <= budget:
        best, w = [w, 2 * w, 4 * w], w + 1
    if best is None:
        raise CollabError(f"no network [w, 2w, 4w] fits {budget:,} parameters; raise the budget")
    return best


def claim_search(out: str | Path, plan: SearchPlan) -> None:
    """Write the plan into a new or empty ``out``, or check that ``out`` holds this very plan."""
    claim_plan_folder(
        out,
        PLAN,
        plan.to_json(),
        kind="width search",
        parse=SearchPlan.from_json,
        same="config, --budget, --step, --epochs-per-step, --noise and --set",
    )


def read_plan(out: str | Path) -> SearchPlan:
    """The plan of the search in ``out`` (a one-line error when there is none)."""
    return read_plan_file(out, PLAN, kind="width search", parse=SearchPlan.from_json)


def read_log(out: str | Path) -> list[dict[str, Any]]:
    """The complete lines of ``search.jsonl`` (a line torn by a kill ends the log)."""
    path = Path(out) / LOG
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines(keepends=True):
        if not line.endswith("\n"):
            break
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return records


def append_log(out: str | Path, record: dict[str, Any]) -> None:
    """Append one line; a torn last line (killed mid-write) is dropped first."""
    path = Path(out) / LOG
    kept = read_log(out)
    if path.is_file() and len(path.read_text().splitlines()) != len(kept):
        tmp = path.with_name(f".{LOG}.tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
        os.replace(tmp, path)
    with open(path, "a") as fh:
        fh.write(json.dumps(record) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def step_path(out: str | Path, step: int, name: str) -> Path:
    """Run folder of network ``name`` (``start``, ``same``, ``stage-S``) at step ``step``."""
    return Path(out) / STEPS / f"step-{step:02d}" / name


def width_rule(widths: list[int]) -> str:
    """The override that trains a network with ``widths``: ``model.options.widths=[..]``."""
    return f"model.options.widths=[{','.join(str(w) for w in widths)}]"
