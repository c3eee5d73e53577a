"""Training: config, loop, checkpoints."""

from analysis.training.config import Config, config_from_dict, load_config
from analysis.training.trainer import Callback, Trainer


def train(config: Config, out_dir, *, resume: bool = False, progress: bool = True):
    """Train ``config`` into ``out_dir`` and return the run folder path."""
    return Trainer(config, out_dir, progress=progress).fit(resume=resume)


__all__ = ["Callback", "Config", "Trainer", "config_from_dict", "load_config", "train"]
