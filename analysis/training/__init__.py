"""Training: config, loop, checkpoints.

The trainer is imported on first use: loading a run for analysis needs only the config.
"""

from typing import Any

from analysis.training.config import Config, config_from_dict, load_config


def train(config: Config, out_dir, *, resume: bool = False, progress: bool = True):
    """Train ``config`` into ``out_dir`` and return the run folder path."""
    from analysis.training.trainer import Trainer

    return Trainer(config, out_dir, progress=progress).fit(resume=resume)


def __getattr__(name: str) -> Any:
    if name in ("Callback", "Trainer"):
        from analysis.training import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module 'analysis.training' has no attribute {name!r}")


__all__ = ["Callback", "Config", "Trainer", "config_from_dict", "load_config", "train"]
