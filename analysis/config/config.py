"""The training configuration: dataclasses filled from a YAML preset plus ``--set`` overrides."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from analysis.config.schema import apply_override, from_dict, to_dict
from analysis.errors import CollabError
from analysis.methods import METHODS, MethodOptions


@dataclass
class DataConfig:
    name: str = "digits"
    root: str | None = None
    download: bool = False
    image_size: int | None = None
    batch_size: int = 64
    eval_batch_size: int = 256
    num_workers: int = 0
    augment: bool = True


@dataclass
class ModelConfig:
    """``arch`` is one registered model for every peer, or a list with one name per peer."""

    arch: str | list[str] = "resnet8"
    peers: int = 3
    options: dict[str, Any] = field(default_factory=dict)
    ensemble: Literal["logit_mean", "prob_mean"] = "logit_mean"


@dataclass
class OptimConfig:
    name: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    no_decay_norm_bias: bool = False


@dataclass
class ScheduleConfig:
    name: Literal["cosine", "step", "constant"] = "cosine"
    warmup_epochs: int = 0
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1
    min_lr: float = 0.0


@dataclass
class TrainConfig:
    epochs: int = 10
    seed: int = 0
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    save_every: int = 1
    max_steps_per_epoch: int | None = None
    threads: int | None = None


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodOptions = field(default_factory=lambda: METHODS.get("dml").Options())
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


_SECTIONS = {
    "data": DataConfig,
    "model": ModelConfig,
    "optim": OptimConfig,
    "schedule": ScheduleConfig,
    "train": TrainConfig,
}


def config_from_dict(data: dict[str, Any]) -> Config:
    """Validate a nested dict and build a :class:`Config`; errors name the offending key."""
    if not isinstance(data, dict):
        raise CollabError("a config must be a YAML mapping with sections data, model, method, ...")
    unknown = sorted(set(data) - set(_SECTIONS) - {"method"})
    if unknown:
        raise CollabError(
            f"unknown config section {unknown[0]!r}; valid sections are: "
            f"{', '.join(sorted([*_SECTIONS, 'method']))}"
        )
    sections = {name: from_dict(cls, data.get(name), path=name) for name, cls in _SECTIONS.items()}
    method = dict(data.get("method") or {"name": "dml"})
    if "name" not in method:
        raise CollabError("config key 'method.name' is missing; set it, e.g. method.name=dml")
    options_cls = METHODS.get(str(method["name"])).Options
    config = Config(method=from_dict(options_cls, method, path="method"), **sections)
    _check_ranges(config)
    return config


def load_config(
    path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> Config:
    """Read a YAML preset (or start from defaults) and apply ``key=value`` overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise CollabError(
                f"config file {path} does not exist; pass a YAML preset from configs/"
            )
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            line = getattr(getattr(exc, "problem_mark", None), "line", None)
            where = f" (line {line + 1})" if line is not None else ""
            raise CollabError(
                f"config file {path} is not valid YAML{where}; fix its syntax"
            ) from None
    for assignment in overrides:
        apply_override(data, assignment)
    return config_from_dict(data)


def _check_ranges(config: Config) -> None:
    checks = [
        ("model.peers", config.model.peers >= 1, "at least 1"),
        ("train.epochs", config.train.epochs >= 1, "at least 1"),
        ("train.save_every", config.train.save_every >= 0, "0 (never) or more"),
        ("data.batch_size", config.data.batch_size >= 1, "at least 1"),
        ("optim.lr", config.optim.lr > 0, "positive"),
    ]
    for key, ok, expected in checks:
        if not ok:
            raise CollabError(f"config key {key!r} must be {expected}")
    arch = config.model.arch
    if isinstance(arch, list) and len(arch) != config.model.peers:
        raise CollabError(
            f"config key 'model.arch' lists {len(arch)} architectures for {config.model.peers} peers; "
            "give one per peer or a single name"
        )
