"""Configs: dataclasses filled from YAML presets and ``--set a.b=value`` overrides."""

from analysis.config.config import (
    Config,
    DataConfig,
    ModelConfig,
    OptimConfig,
    ScheduleConfig,
    TrainConfig,
    config_from_dict,
    load_config,
)
from analysis.config.schema import apply_override, from_dict, to_dict

__all__ = [
    "Config",
    "DataConfig",
    "ModelConfig",
    "OptimConfig",
    "ScheduleConfig",
    "TrainConfig",
    "apply_override",
    "config_from_dict",
    "from_dict",
    "load_config",
    "to_dict",
]
